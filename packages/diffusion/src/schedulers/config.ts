/**
 * Scheduler configuration in diffusers' own format (`scheduler/scheduler_config.json`):
 * the same field names, defaults and JSON layout, so a directory saved here loads
 * in diffusers and the other way round.
 */
import { mkdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { AptError, writeFileAtomic } from "@apt/core";

export type BetaSchedule = "linear" | "scaled_linear" | "squaredcos_cap_v2";
export type PredictionType = "epsilon" | "v_prediction" | "sample";
export type TimestepSpacing = "leading" | "trailing" | "linspace";
/** DDPM's fixed posterior variances; the learned ones need a model with a variance head. */
export type VarianceType = "fixed_small" | "fixed_small_log" | "fixed_large";

export const BETA_SCHEDULES: readonly BetaSchedule[] = ["linear", "scaled_linear", "squaredcos_cap_v2"];
export const PREDICTION_TYPES: readonly PredictionType[] = ["epsilon", "v_prediction", "sample"];
export const TIMESTEP_SPACINGS: readonly TimestepSpacing[] = ["leading", "trailing", "linspace"];
export const VARIANCE_TYPES: readonly VarianceType[] = ["fixed_small", "fixed_small_log", "fixed_large"];

export const SCHEDULER_CLASSES = ["DDPMScheduler", "DDIMScheduler"] as const;
export type SchedulerClassName = (typeof SCHEDULER_CLASSES)[number];

export const CONFIG_NAME = "scheduler_config.json";

/**
 * The union of DDPMScheduler's and DDIMScheduler's diffusers config fields. Each
 * class reads the fields it uses (`variance_type` is DDPM's, `set_alpha_to_one`
 * DDIM's) and writes only its own in `toJSON`, as diffusers does.
 */
export interface SchedulerConfig {
  num_train_timesteps: number;
  beta_start: number;
  beta_end: number;
  beta_schedule: BetaSchedule;
  /** Explicit betas, one per training timestep; overrides beta_start/beta_end/beta_schedule. */
  trained_betas: number[] | null;
  prediction_type: PredictionType;
  timestep_spacing: TimestepSpacing;
  /** Added to "leading" timesteps (Stable Diffusion uses 1). */
  steps_offset: number;
  clip_sample: boolean;
  clip_sample_range: number;
  /** DDIM: ᾱ used past the last step is 1 (true) or ᾱ_0 (false). */
  set_alpha_to_one: boolean;
  /** Lin et al. 2023, "Common Diffusion Noise Schedules and Sample Steps are Flawed": ᾱ_{T-1} = 0. */
  rescale_betas_zero_snr: boolean;
  /** DDPM only. */
  variance_type: VarianceType;
  /** Dynamic thresholding (Imagen) is not implemented: only false is accepted. */
  thresholding: boolean;
  /** Kept so configs round-trip; used by thresholding only. */
  dynamic_thresholding_ratio: number;
  /** Kept so configs round-trip; used by thresholding only. */
  sample_max_value: number;
}

/** diffusers' defaults (identical for DDPMScheduler and DDIMScheduler). */
export const DEFAULT_SCHEDULER_CONFIG: Readonly<SchedulerConfig> = Object.freeze({
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  beta_schedule: "linear",
  trained_betas: null,
  prediction_type: "epsilon",
  timestep_spacing: "leading",
  steps_offset: 0,
  clip_sample: true,
  clip_sample_range: 1.0,
  set_alpha_to_one: true,
  rescale_betas_zero_snr: false,
  variance_type: "fixed_small",
  thresholding: false,
  dynamic_thresholding_ratio: 0.995,
  sample_max_value: 1.0,
});

/** The keys diffusers writes for each class (its `__init__` parameters). */
export const CONFIG_KEYS: Readonly<Record<SchedulerClassName, readonly (keyof SchedulerConfig)[]>> = {
  DDPMScheduler: [
    "num_train_timesteps",
    "beta_start",
    "beta_end",
    "beta_schedule",
    "trained_betas",
    "variance_type",
    "clip_sample",
    "prediction_type",
    "thresholding",
    "dynamic_thresholding_ratio",
    "clip_sample_range",
    "sample_max_value",
    "timestep_spacing",
    "steps_offset",
    "rescale_betas_zero_snr",
  ],
  DDIMScheduler: [
    "num_train_timesteps",
    "beta_start",
    "beta_end",
    "beta_schedule",
    "trained_betas",
    "clip_sample",
    "set_alpha_to_one",
    "steps_offset",
    "prediction_type",
    "thresholding",
    "dynamic_thresholding_ratio",
    "clip_sample_range",
    "sample_max_value",
    "timestep_spacing",
    "rescale_betas_zero_snr",
  ],
};

function bad(source: string, message: string): AptError {
  return new AptError("BAD_INPUT", `${source}: ${message}`);
}

function show(value: unknown): string {
  if (value === undefined) return "undefined";
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

function oneOf<T extends string>(source: string, field: string, value: unknown, allowed: readonly T[]): T {
  if (typeof value === "string" && (allowed as readonly string[]).includes(value)) return value as T;
  throw bad(source, `${field} must be one of ${allowed.map((a) => `"${a}"`).join(", ")}; got ${show(value)}`);
}

function bool(source: string, field: string, value: unknown): boolean {
  if (typeof value === "boolean") return value;
  throw bad(source, `${field} must be true or false; got ${show(value)}`);
}

function num(source: string, field: string, value: unknown, what: string, ok: (x: number) => boolean): number {
  if (typeof value === "number" && Number.isFinite(value) && ok(value)) return value;
  throw bad(source, `${field} must be ${what}; got ${show(value)}`);
}

/**
 * Validates a diffusers scheduler config (parsed JSON or a `Partial<SchedulerConfig>`)
 * and fills in diffusers' defaults. Keys it does not know (`_class_name`,
 * `_diffusers_version`, other schedulers' fields such as PNDM's `skip_prk_steps`)
 * are ignored, as diffusers ignores them. `source` prefixes every error message.
 */
export function resolveSchedulerConfig(input: unknown, source: string): SchedulerConfig {
  if (typeof input !== "object" || input === null || Array.isArray(input)) {
    throw bad(source, `a scheduler config must be a JSON object; got ${show(input)}`);
  }
  const raw = input as Record<string, unknown>;
  const get = <K extends keyof SchedulerConfig>(key: K): unknown =>
    raw[key] === undefined ? DEFAULT_SCHEDULER_CONFIG[key] : raw[key];

  const T = num(source, "num_train_timesteps", get("num_train_timesteps"), "a positive integer", (x) => Number.isInteger(x) && x >= 1);
  const betaIn01 = "a number in [0, 1]";
  const in01 = (x: number) => x >= 0 && x <= 1;

  let trainedBetas: number[] | null = null;
  const tb = get("trained_betas");
  if (tb !== null) {
    if (!Array.isArray(tb) || !tb.every((b) => typeof b === "number" && Number.isFinite(b) && in01(b))) {
      throw bad(source, `trained_betas must be null or an array of numbers in [0, 1]; got ${show(tb).slice(0, 80)}`);
    }
    if (tb.length !== T) {
      throw bad(source, `trained_betas must have num_train_timesteps (${T}) entries; got ${tb.length}`);
    }
    trainedBetas = (tb as number[]).slice();
  }

  const config: SchedulerConfig = {
    num_train_timesteps: T,
    beta_start: num(source, "beta_start", get("beta_start"), betaIn01, in01),
    beta_end: num(source, "beta_end", get("beta_end"), betaIn01, in01),
    beta_schedule: oneOf(source, "beta_schedule", get("beta_schedule"), BETA_SCHEDULES),
    trained_betas: trainedBetas,
    prediction_type: oneOf(source, "prediction_type", get("prediction_type"), PREDICTION_TYPES),
    timestep_spacing: oneOf(source, "timestep_spacing", get("timestep_spacing"), TIMESTEP_SPACINGS),
    steps_offset: num(source, "steps_offset", get("steps_offset"), "a non-negative integer", (x) => Number.isInteger(x) && x >= 0),
    clip_sample: bool(source, "clip_sample", get("clip_sample")),
    clip_sample_range: num(source, "clip_sample_range", get("clip_sample_range"), "a positive number", (x) => x > 0),
    set_alpha_to_one: bool(source, "set_alpha_to_one", get("set_alpha_to_one")),
    rescale_betas_zero_snr: bool(source, "rescale_betas_zero_snr", get("rescale_betas_zero_snr")),
    variance_type: oneOf(source, "variance_type", get("variance_type"), VARIANCE_TYPES),
    thresholding: bool(source, "thresholding", get("thresholding")),
    dynamic_thresholding_ratio: num(source, "dynamic_thresholding_ratio", get("dynamic_thresholding_ratio"), "a finite number", () => true),
    sample_max_value: num(source, "sample_max_value", get("sample_max_value"), "a finite number", () => true),
  };
  if (config.thresholding) {
    throw bad(source, "thresholding must be false: dynamic thresholding is not implemented (use clip_sample instead)");
  }
  // The rescale pins ᾱ_0 and ᾱ_{T-1} apart; with one timestep they coincide and it divides by zero.
  if (config.rescale_betas_zero_snr && T < 2) {
    throw bad(source, "rescale_betas_zero_snr needs num_train_timesteps >= 2");
  }
  return config;
}

/** Path of the config file inside a scheduler directory. */
export function schedulerConfigPath(dir: string): string {
  return join(dir, CONFIG_NAME);
}

/** Reads and parses `dir/scheduler_config.json` (not validated: see resolveSchedulerConfig). */
export async function readSchedulerConfigFile(dir: string): Promise<{ file: string; raw: Record<string, unknown> }> {
  const file = schedulerConfigPath(dir);
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === "ENOENT" ? "no such file" : `cannot read it (${code ?? String(e)})`;
    throw new AptError("BAD_INPUT", `${file}: ${why}; a diffusers scheduler directory holds ${CONFIG_NAME}`, { cause: e });
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw new AptError("BAD_INPUT", `${file}: not valid JSON (${(e as Error).message})`, { cause: e });
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw new AptError("BAD_INPUT", `${file}: a scheduler config must be a JSON object`);
  }
  return { file, raw: parsed as Record<string, unknown> };
}

/**
 * Writes `dir/scheduler_config.json` atomically: a temporary file in the same
 * directory, then a rename, so a reader never sees half a file and a crash
 * leaves the previous config intact.
 */
export async function writeSchedulerConfigFile(dir: string, json: Record<string, unknown>): Promise<string> {
  await mkdir(dir, { recursive: true });
  const file = schedulerConfigPath(dir);
  // diffusers writes `json.dumps(config, indent=2, sort_keys=True) + "\n"`.
  await writeFileAtomic(file, JSON.stringify(sortKeys(json), null, 2) + "\n");
  return file;
}

function sortKeys(obj: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(obj).sort()) out[k] = obj[k];
  return out;
}
