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
export { AdamW, FUSED_ADAMW, adamwUpdate, type AdamWOptions, type AdamWState, type AdamWUpdateAttrs } from "./optim/adamw.js";
export {
  METHOD_API_VERSION,
  EXCLUSIVE_HOOKS,
  type Batch,
  type BatchItem,
  type Capability,
  type ConceptSpec,
  type Method,
  type MethodPlugin,
  type PluginState,
  type SetupContext,
  type StandardSchemaV1,
  type StepInfo,
  type StepResult,
  type StepState,
  type StepVariant,
  type TrainingModel,
} from "./method.js";
export { DEFAULT_TRAIN_OPTIONS, type LrSchedule, type ResolvedMethod, type TaskKind, type TrainEvent, type TrainOptions, type TrainRun, type TrainSummary } from "./engine/types.js";
export { train, pluginSeed } from "./engine/train.js";
export { FUSED_GROUP_NORM, FUSED_GROUP_NORM_GRAD, groupNorm } from "./ops/group-norm.js";
export { FUSED_EMA, emaDecayAt, emaUpdate, WeightAverage } from "./engine/ema.js";
export { ReplicaPool, type ReplicaOptions, type ShardRequest, type ShardResult } from "./engine/replicas.js";
export { baseLoss, minSnrWeight, perSampleSquaredError } from "./engine/loss.js";
export { checkMethodSet, checkExclusiveHooks } from "./engine/methods.js";
export { learningRate } from "./engine/schedule.js";
export { listCheckpoints, readCheckpoint, resolveCheckpoint, writeCheckpoint, checkpointDir, type CheckpointContents, type CheckpointState } from "./engine/checkpoint.js";
export { writeFileAtomic } from "./fs.js";
