/**
 * What DDPMScheduler and DDIMScheduler share: the config, the noise schedule,
 * the inference timesteps, the forward process (addNoise, getVelocity, snr) and
 * the model-output parameterisations.
 *
 * Scalars (ᾱ_t and every coefficient built from them) are computed in float64
 * and enter the float32 tensor math as single multipliers, so the tensor math
 * rounds once per operation rather than once per scalar formula.
 */
import * as tf from "@tensorflow/tfjs-core";
import { AptError, type Rng } from "@apt/core";
import {
  CONFIG_KEYS,
  resolveSchedulerConfig,
  writeSchedulerConfigFile,
  type SchedulerClassName,
  type SchedulerConfig,
} from "./config.js";
import { cumprod, inferenceTimesteps, makeBetas } from "./schedule.js";

export interface StepOptions {
  /** DDIM only: 0 is deterministic DDIM, 1 gives DDPM's variance (default 0). */
  eta?: number;
  /** Source of the step's Gaussian noise: sample.size normal draws, in row-major order. */
  rng?: Rng;
  /** The step's Gaussian noise itself, shaped like the sample (diffusers' `variance_noise`). */
  generatorNoise?: tf.Tensor;
}

export interface StepOutput {
  /** x_{t-1}. */
  prevSample: tf.Tensor;
  /** The model's estimate of x_0 (after clip_sample). */
  predOriginalSample: tf.Tensor;
}

/** Timesteps of a batch: one per sample, or one for the whole batch. */
export type BatchTimesteps = tf.Tensor1D | Int32Array | readonly number[];

export abstract class Scheduler {
  abstract readonly className: SchedulerClassName;
  /** The resolved config, diffusers' defaults filled in. */
  readonly config: Readonly<SchedulerConfig>;
  readonly betas: Float64Array;
  readonly alphas: Float64Array;
  readonly alphasCumprod: Float64Array;
  /** Standard deviation of x_T (diffusers' init_noise_sigma): 1 for DDPM and DDIM. */
  readonly initNoiseSigma = 1;
  /** Descending; all training timesteps until setTimesteps is called. */
  timesteps: Int32Array;
  numInferenceSteps: number | undefined = undefined;

  protected constructor(className: SchedulerClassName, config: Partial<SchedulerConfig>) {
    const resolved = resolveSchedulerConfig(config, `${className} config`);
    if (resolved.trained_betas) Object.freeze(resolved.trained_betas);
    this.config = Object.freeze(resolved);
    this.betas = makeBetas(resolved);
    this.alphas = this.betas.map((b) => 1 - b);
    this.alphasCumprod = cumprod(this.alphas);
    const T = resolved.num_train_timesteps;
    this.timesteps = Int32Array.from({ length: T }, (_, i) => T - 1 - i);
  }

  /** Chooses the `numInferenceSteps` timesteps to sample with, per `timestep_spacing`. */
  setTimesteps(numInferenceSteps: number): void {
    const c = this.config;
    this.timesteps = inferenceTimesteps(c.timestep_spacing, c.num_train_timesteps, numInferenceSteps, c.steps_offset);
    this.numInferenceSteps = numInferenceSteps;
  }

  /** The timestep the step from `timestep` lands on; negative past the end. */
  abstract previousTimestep(timestep: number): number;

  abstract step(modelOutput: tf.Tensor, timestep: number, sample: tf.Tensor, opts?: StepOptions): StepOutput;

  /** DDPM and DDIM do not scale the model input; kept for diffusers API parity. Returns `sample` itself. */
  scaleModelInput(sample: tf.Tensor, _timestep?: number): tf.Tensor {
    return sample;
  }

  /** The forward process: x_t = sqrt(ᾱ_t)·x_0 + sqrt(1 − ᾱ_t)·ε, per sample of the batch (axis 0). */
  addNoise(original: tf.Tensor, noise: tf.Tensor, timesteps: BatchTimesteps): tf.Tensor {
    assertSameShape("addNoise", "noise", noise, "original", original);
    return tf.tidy(() => {
      const [a, b] = this.batchCoefficients("addNoise", timesteps, original);
      return tf.add(tf.mul(a, original), tf.mul(b, noise));
    });
  }

  /** The v-prediction target (Salimans & Ho 2022): v = sqrt(ᾱ_t)·ε − sqrt(1 − ᾱ_t)·x_0. */
  getVelocity(sample: tf.Tensor, noise: tf.Tensor, timesteps: BatchTimesteps): tf.Tensor {
    assertSameShape("getVelocity", "noise", noise, "sample", sample);
    return tf.tidy(() => {
      const [a, b] = this.batchCoefficients("getVelocity", timesteps, sample);
      return tf.sub(tf.mul(a, noise), tf.mul(b, sample));
    });
  }

  /** Signal-to-noise ratio ᾱ_t / (1 − ᾱ_t) per timestep (min-SNR loss weighting, Hang et al. 2023). */
  snr(timesteps: ArrayLike<number>): Float64Array {
    const out = new Float64Array(timesteps.length);
    for (let i = 0; i < out.length; i++) {
      const a = this.alphaCumprodAt("snr", timesteps[i]!);
      out[i] = a / (1 - a);
    }
    return out;
  }

  /** The config in diffusers' format: this class's fields plus `_class_name`. */
  toJSON(): Record<string, unknown> {
    const out: Record<string, unknown> = { _class_name: this.className };
    for (const key of CONFIG_KEYS[this.className]) {
      const v = this.config[key];
      out[key] = Array.isArray(v) ? v.slice() : v;
    }
    return out;
  }

  /** Writes `dir/scheduler_config.json` (atomically); returns the file's path. */
  async savePretrained(dir: string): Promise<string> {
    return writeSchedulerConfigFile(dir, this.toJSON());
  }

  /** ᾱ at a training timestep, checked. */
  protected alphaCumprodAt(what: string, t: number): number {
    const T = this.config.num_train_timesteps;
    if (!Number.isInteger(t) || t < 0 || t >= T) {
      throw new AptError("BAD_INPUT", `${this.className}.${what}: timestep must be an integer in [0, ${T - 1}]; got ${String(t)}`);
    }
    return this.alphasCumprod[t]!;
  }

  /**
   * x̂_0 and ε̂ from the model output, for each prediction_type (ε̂ from the
   * unclipped x̂_0, as diffusers), then x̂_0 clipped when clip_sample is set.
   * Call inside tf.tidy.
   */
  protected parameterise(modelOutput: tf.Tensor, sample: tf.Tensor, alphaProdT: number): { x0: tf.Tensor; eps: tf.Tensor } {
    const sa = Math.sqrt(alphaProdT);
    const sb = Math.sqrt(1 - alphaProdT);
    let x0: tf.Tensor;
    let eps: tf.Tensor;
    switch (this.config.prediction_type) {
      case "epsilon":
        // (x_t − sqrt(1−ᾱ)·ε) / sqrt(ᾱ), with the division folded into the scalars.
        x0 = tf.sub(tf.mul(sample, 1 / sa), tf.mul(modelOutput, sb / sa));
        eps = modelOutput;
        break;
      case "sample":
        // A copy, so that the returned predOriginalSample is a tensor of its own to dispose.
        x0 = tf.clone(modelOutput);
        eps = tf.sub(tf.mul(sample, 1 / sb), tf.mul(modelOutput, sa / sb));
        break;
      case "v_prediction":
        x0 = tf.sub(tf.mul(sample, sa), tf.mul(modelOutput, sb));
        eps = tf.add(tf.mul(modelOutput, sa), tf.mul(sample, sb));
        break;
    }
    if (this.config.clip_sample) {
      const r = this.config.clip_sample_range;
      x0 = tf.clipByValue(x0, -r, r);
    }
    return { x0, eps };
  }

  /** Checks step()'s arguments common to both schedulers. */
  protected checkStepInputs(modelOutput: tf.Tensor, timestep: number, sample: tf.Tensor): void {
    this.alphaCumprodAt("step", timestep);
    assertSameShape(`${this.className}.step`, "modelOutput", modelOutput, "sample", sample);
  }

  /** The step's noise: from opts.generatorNoise or opts.rng (one of them required). Call inside tf.tidy. */
  protected stepNoise(sample: tf.Tensor, opts: StepOptions, why: string): tf.Tensor {
    const { rng, generatorNoise } = opts;
    if (rng && generatorNoise) {
      throw new AptError("BAD_INPUT", `${this.className}.step: pass opts.rng or opts.generatorNoise, not both`);
    }
    if (generatorNoise) {
      assertSameShape(`${this.className}.step`, "opts.generatorNoise", generatorNoise, "sample", sample);
      return generatorNoise;
    }
    if (rng) {
      const data = new Float32Array(sample.size);
      for (let i = 0; i < data.length; i++) data[i] = rng.normal();
      return tf.tensor(data, sample.shape, "float32");
    }
    // Unseeded noise would make sampling irreproducible, so there is no silent default.
    throw new AptError("BAD_INPUT", `${this.className}.step: ${why} adds noise; pass opts.rng or opts.generatorNoise`);
  }

  /**
   * [sqrt(ᾱ_t), sqrt(1 − ᾱ_t)] shaped [k, 1, …, 1] (k = 1 or the batch size) to
   * broadcast over `like`. Call inside tf.tidy.
   */
  private batchCoefficients(what: string, timesteps: BatchTimesteps, like: tf.Tensor): [tf.Tensor, tf.Tensor] {
    const rank = like.rank;
    const batch = like.shape[0];
    if (rank < 1 || batch === undefined) {
      throw new AptError("BAD_INPUT", `${this.className}.${what}: samples need a batch axis (rank >= 1)`);
    }
    const k = timesteps instanceof tf.Tensor ? timesteps.shape[0] : timesteps.length;
    if (timesteps instanceof tf.Tensor && (timesteps.rank !== 1 || timesteps.dtype !== "int32")) {
      throw new AptError("BAD_INPUT", `${this.className}.${what}: timesteps must be an int32 Tensor1D; got ${timesteps.dtype} of shape [${timesteps.shape.join(", ")}]`);
    }
    if (k !== 1 && k !== batch) {
      throw new AptError("BAD_INPUT", `${this.className}.${what}: ${k} timesteps for a batch of ${batch}; give one per sample or one for all`);
    }
    const shape = [k, ...new Array<number>(rank - 1).fill(1)];
    if (timesteps instanceof tf.Tensor) {
      // Gathered on the device, so a timestep tensor is never read back; its range is
      // not checked here (that would need a read-back), so it must hold valid indices.
      const table = (f: (a: number) => number) => tf.tensor1d(Float32Array.from(this.alphasCumprod, f));
      return [
        tf.reshape(tf.gather(table(Math.sqrt), timesteps), shape),
        tf.reshape(tf.gather(table((a) => Math.sqrt(1 - a)), timesteps), shape),
      ];
    }
    const alpha = Float64Array.from(timesteps, (t) => this.alphaCumprodAt(what, t));
    return [
      tf.tensor(Float32Array.from(alpha, Math.sqrt), shape),
      tf.tensor(Float32Array.from(alpha, (a) => Math.sqrt(1 - a)), shape),
    ];
  }
}

export function assertSameShape(where: string, aName: string, a: tf.Tensor, bName: string, b: tf.Tensor): void {
  if (!tf.util.arraysEqual(a.shape, b.shape)) {
    throw new AptError("BAD_INPUT", `${where}: ${aName} has shape [${a.shape.join(", ")}] but ${bName} has [${b.shape.join(", ")}]`);
  }
}
