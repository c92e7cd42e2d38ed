export {
  BETA_SCHEDULES,
  CONFIG_NAME as SCHEDULER_CONFIG_NAME,
  DEFAULT_SCHEDULER_CONFIG,
  PREDICTION_TYPES,
  SCHEDULER_CLASSES,
  TIMESTEP_SPACINGS,
  VARIANCE_TYPES,
  resolveSchedulerConfig,
  type BetaSchedule,
  type PredictionType,
  type SchedulerClassName,
  type SchedulerConfig,
  type TimestepSpacing,
  type VarianceType,
} from "./config.js";
export { Scheduler, type BatchTimesteps, type StepOptions, type StepOutput } from "./scheduler.js";
export { DDPMScheduler } from "./ddpm.js";
export { DDIMScheduler } from "./ddim.js";
export { loadScheduler, type AnyScheduler } from "./load.js";
export { rescaleZeroTerminalSnr } from "./schedule.js";
