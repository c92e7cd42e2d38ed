/**
 * DDPMScheduler (Ho et al. 2020, "Denoising Diffusion Probabilistic Models"),
 * with diffusers' semantics: ancestral sampling from the posterior
 * q(x_{t−1} | x_t, x̂_0), also over a subset of the timesteps.
 */
import * as tf from "@tensorflow/tfjs-core";
import { AptError } from "@apt/core";
import { readSchedulerConfigFile, resolveSchedulerConfig, type SchedulerConfig } from "./config.js";
import { Scheduler, type StepOptions, type StepOutput } from "./scheduler.js";

export class DDPMScheduler extends Scheduler {
  readonly className = "DDPMScheduler" as const;

  constructor(config: Partial<SchedulerConfig> = {}) {
    super("DDPMScheduler", config);
  }

  /**
   * Reads `dir/scheduler_config.json`. Like diffusers' `DDPMScheduler.from_pretrained`,
   * it takes another scheduler's config and uses the fields DDPM shares;
   * `loadScheduler` dispatches on `_class_name`.
   */
  static async fromPretrained(dir: string): Promise<DDPMScheduler> {
    const { file, raw } = await readSchedulerConfigFile(dir);
    return new DDPMScheduler(resolveSchedulerConfig(raw, file));
  }

  /**
   * The next entry of `timesteps` (−1 after the last one) once setTimesteps was
   * called, else t − 1: diffusers' rule, which for "linspace" and "trailing"
   * differs from DDIM's t − T // n.
   */
  previousTimestep(timestep: number): number {
    if (this.numInferenceSteps === undefined) return timestep - 1;
    const index = this.timesteps.indexOf(timestep);
    if (index < 0) {
      throw new AptError(
        "BAD_INPUT",
        `DDPMScheduler.step: timestep ${timestep} is not one of the ${this.timesteps.length} timesteps set by setTimesteps(${this.numInferenceSteps})`,
      );
    }
    return index === this.timesteps.length - 1 ? -1 : this.timesteps[index + 1]!;
  }

  /** Standard deviation of the noise added when stepping from `timestep`, per `variance_type`. */
  noiseStd(timestep: number): number {
    const prev = this.previousTimestep(timestep);
    const aT = this.alphasCumprod[timestep]!;
    const aPrev = prev >= 0 ? this.alphasCumprod[prev]! : 1;
    const betaT = 1 - aT / aPrev;
    // β̃_t = (1 − ᾱ_prev) / (1 − ᾱ_t) · β_t, the true posterior variance (formula 7),
    // floored as diffusers does so that the log of fixed_small_log stays finite.
    const posterior = Math.max(((1 - aPrev) / (1 - aT)) * betaT, 1e-20);
    switch (this.config.variance_type) {
      case "fixed_small":
        return Math.sqrt(posterior);
      case "fixed_small_log":
        return Math.exp(0.5 * Math.log(posterior));
      case "fixed_large":
        return Math.sqrt(betaT);
    }
  }

  /**
   * x_{t−1} = μ̃_t(x_t, x̂_0) + σ_t·z (formulas 6–7 of the paper), with the
   * per-step β_t = 1 − ᾱ_t / ᾱ_prev so that strided schedules stay consistent.
   * No noise is added at t = 0; otherwise z comes from opts.rng or opts.generatorNoise.
   */
  step(modelOutput: tf.Tensor, timestep: number, sample: tf.Tensor, opts: StepOptions = {}): StepOutput {
    this.checkStepInputs(modelOutput, timestep, sample);
    const prev = this.previousTimestep(timestep);
    const aT = this.alphasCumprod[timestep]!;
    const aPrev = prev >= 0 ? this.alphasCumprod[prev]! : 1;
    const alphaT = aT / aPrev;
    const x0Coeff = (Math.sqrt(aPrev) * (1 - alphaT)) / (1 - aT);
    const xtCoeff = (Math.sqrt(alphaT) * (1 - aPrev)) / (1 - aT);
    const std = timestep > 0 ? this.noiseStd(timestep) : 0;
    return tf.tidy(() => {
      const { x0 } = this.parameterise(modelOutput, sample, aT);
      let prevSample = tf.add(tf.mul(x0, x0Coeff), tf.mul(sample, xtCoeff));
      if (timestep > 0) prevSample = tf.add(prevSample, tf.mul(this.stepNoise(sample, opts, "a step from t > 0"), std));
      return { prevSample, predOriginalSample: x0 };
    });
  }
}
