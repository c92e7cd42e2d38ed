/**
 * DDIMScheduler (Song et al. 2020, "Denoising Diffusion Implicit Models"), with
 * diffusers' semantics: eta interpolates between deterministic DDIM (0) and
 * DDPM-like sampling (1).
 */
import * as tf from "@tensorflow/tfjs-core";
import { AptError } from "@apt/core";
import { readSchedulerConfigFile, resolveSchedulerConfig, type SchedulerConfig } from "./config.js";
import { Scheduler, type StepOptions, type StepOutput } from "./scheduler.js";

export class DDIMScheduler extends Scheduler {
  readonly className = "DDIMScheduler" as const;
  /** ᾱ used for the step past the last timestep: 1 with set_alpha_to_one, else ᾱ_0. */
  readonly finalAlphaCumprod: number;

  constructor(config: Partial<SchedulerConfig> = {}) {
    super("DDIMScheduler", config);
    this.finalAlphaCumprod = this.config.set_alpha_to_one ? 1 : this.alphasCumprod[0]!;
  }

  /**
   * Reads `dir/scheduler_config.json`. Like diffusers' `DDIMScheduler.from_pretrained`,
   * it takes another scheduler's config (Stable Diffusion ships a PNDMScheduler
   * one) and uses the fields DDIM shares; `loadScheduler` dispatches on `_class_name`.
   */
  static async fromPretrained(dir: string): Promise<DDIMScheduler> {
    const { file, raw } = await readSchedulerConfigFile(dir);
    return new DDIMScheduler(resolveSchedulerConfig(raw, file));
  }

  /** diffusers steps DDIM by T // n whatever the spacing (so "linspace" steps need not land on the next timestep). */
  previousTimestep(timestep: number): number {
    if (this.numInferenceSteps === undefined) {
      throw new AptError("BAD_INPUT", "DDIMScheduler: call setTimesteps(numInferenceSteps) before step");
    }
    return timestep - Math.floor(this.config.num_train_timesteps / this.numInferenceSteps);
  }

  /** The DDIM variance σ_t² / η² (formula 16 of the paper). */
  variance(timestep: number, prevTimestep: number): number {
    const aT = this.alphasCumprod[timestep]!;
    const aPrev = prevTimestep >= 0 ? this.alphasCumprod[prevTimestep]! : this.finalAlphaCumprod;
    return ((1 - aPrev) / (1 - aT)) * (1 - aT / aPrev);
  }

  /**
   * x_{t−1} = sqrt(ᾱ_prev)·x̂_0 + sqrt(1 − ᾱ_prev − σ²)·ε̂ + σ·z, σ = η·sqrt(variance):
   * formula 12 of the paper. z (from opts) is drawn only when η > 0.
   */
  step(modelOutput: tf.Tensor, timestep: number, sample: tf.Tensor, opts: StepOptions = {}): StepOutput {
    const prev = this.previousTimestep(timestep);
    this.checkStepInputs(modelOutput, timestep, sample);
    const eta = opts.eta ?? 0;
    if (!(Number.isFinite(eta) && eta >= 0)) {
      throw new AptError("BAD_INPUT", `DDIMScheduler.step: eta must be a finite number >= 0; got ${String(eta)}`);
    }
    const aT = this.alphasCumprod[timestep]!;
    const aPrev = prev >= 0 ? this.alphasCumprod[prev]! : this.finalAlphaCumprod;
    const std = eta * Math.sqrt(this.variance(timestep, prev));
    // 1 − ᾱ_prev − σ² ≥ 0 for eta ≤ 1, and exactly 0 at a zero-SNR T − 1 with
    // eta = 1, where rounding can push it below 0 (diffusers then returns NaN):
    // rounding is clamped to 0, a truly negative value (eta > 1) is an error.
    const radicand = 1 - aPrev - std * std;
    if (radicand < -1e-12) {
      throw new AptError(
        "BAD_INPUT",
        `DDIMScheduler.step: eta ${eta} is too large at timestep ${timestep}: the noise variance exceeds 1 − ᾱ_prev`,
      );
    }
    const direction = Math.sqrt(Math.max(0, radicand));
    return tf.tidy(() => {
      const { x0, eps } = this.parameterise(modelOutput, sample, aT);
      let prevSample = tf.add(tf.mul(x0, Math.sqrt(aPrev)), tf.mul(eps, direction));
      if (eta > 0) prevSample = tf.add(prevSample, tf.mul(this.stepNoise(sample, opts, "eta > 0"), std));
      return { prevSample, predOriginalSample: x0 };
    });
  }
}
