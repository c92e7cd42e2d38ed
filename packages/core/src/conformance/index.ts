export { conformanceCases, type CaseInput, type ConformanceCase } from "./cases.js";
export { checkCase, makeInputs, normalisedError, type CaseResult } from "./check.js";
export {
  runConformanceSuite,
  validateExclusions,
  resolveSeed,
  type ConformanceExclusion,
  type ConformanceOptions,
  type ConformanceTestApi,
} from "./suite.js";
export * as reference from "./reference.js";
