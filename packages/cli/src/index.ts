/**
 * @apt/cli: the `apt-run` command and, for config files, `defineConfig` and
 * the config types. Also the building blocks the command uses, for programs
 * that drive a run themselves.
 */
export {
  defineConfig,
  type AptConfig,
  type AptConfigExport,
  type AptConfigFn,
  type BackendRequest,
  type ConceptConfig,
  type ConfigEnv,
  type ContinualTaskConfig,
  type MethodEntry,
  type MethodOptionsInput,
  type PersonalizeTaskConfig,
  type SampleConfig,
} from "./config/define.js";
export { loadConfigFile, SEARCH_PLACES, type LoadedConfig } from "./config/load.js";
export { resolveConfig, describeResolved, type ResolvedConfig, type ResolvedConcept, type ResolveOptions } from "./config/resolve.js";
export { resolveMethods, methodCandidates, KNOWN_METHODS, type ResolvedMethodEntry, type MethodSource } from "./config/resolve-methods.js";
export { resolveModel, type ModelResolution } from "./config/resolve-model.js";
export { parseOverride, applyOverrides, type Override } from "./config/overrides.js";
export { Problems, formatPath, type Problem } from "./config/problems.js";
export { writeImageGrid, encodeGrid, type GridOptions } from "./png.js";
export { decodePng, imagesToTensor, cropResize, findImages, type DecodedImage } from "./images.js";
export { ProgressReporter, MetricsWriter, EtaEstimator, formatDuration } from "./progress.js";
export { main } from "./cli.js";
