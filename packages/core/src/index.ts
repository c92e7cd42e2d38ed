export { AptError, type AptErrorCode } from "./errors.js";
export { tf, registerTfjsCore, tfjsCoreLocation, expectNoTensorLeak } from "./tensor.js";
export {
  AUTO_ORDER,
  backendPackageName,
  chooseBackend,
  packageBackendLoader,
  type AptBackend,
  type BackendChoice,
  type BackendInfo,
  type BackendInitOptions,
  type BackendLoader,
  type BackendName,
  type BackendProbe,
} from "./backend.js";
export { Rng } from "./random.js";
export * from "./safetensors/index.js";
export {
  matchesTargetModules,
  type AdapterContext,
  type AttentionCall,
  type AttentionObservation,
  type AttentionObserver,
  type AttentionProcessor,
  type AttentionProjections,
  type FeatureObserver,
  type HookedModel,
  type HookPoint,
  type HookPointKind,
  type ModuleAdapter,
  type TargetModules,
} from "./hooks.js";
export { AdamW, type AdamWOptions, type AdamWState } from "./optim/adamw.js";
