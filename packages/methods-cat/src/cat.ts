/**
 * CAT, Contrastive Adapter Training (Park et al. 2024, arXiv 2404.07554), as
 * the official cat_train.py computes it (OnomaAi101/CAT @ ade4624):
 *
 *   L = w(t)·‖ε_{θ+Δ}(x_t, t, c_trig) − target‖²                 (the engine's base loss)
 *     + λ_CAT · w(t)·‖ε_{θ+Δ}(x_t, t, c_no) − sg[ε_θ(x_t, t, c_no)]‖²
 *
 * c_no is the training caption without the trigger; the base prediction ε_θ
 * is the same UNet with adapters off, on the same x_t and t, and carries no
 * gradient. w(t) is optional min-SNR-γ weighting.
 */
import * as tf from "@tensorflow/tfjs-core";
import { z } from "zod";
import { AptError, METHOD_API_VERSION, type Method, type MethodPlugin, type SetupContext, type StepState } from "@apt/core";
import { stripTrigger } from "./caption.js";
import { MIN_SNR_PREDICTION_TYPES, minSnrWeights } from "./snr.js";
import { stopGradient } from "./stop-gradient.js";

export const catOptions = z.strictObject({
  /** λ_CAT, the weight of the contrastive term (official default 1.0; a 6.0 config also ships). */
  cat_factor: z.number().min(0).default(1),
  /** γ of min-SNR-γ weighting; null: no weighting (the official default). */
  snr_gamma: z.number().positive().nullable().default(null),
  /** The trigger word removed from captions; default: each concept's `trigger`. */
  trigger: z.string().min(1).optional(),
});

export type CatOptions = z.output<typeof catOptions>;
export type CatOptionsInput = z.input<typeof catOptions>;

/** The sample kind CAT applies to; other samples (e.g. DreamBooth priors) get weight 0 in the CAT term. */
const INSTANCE = "instance";

function createCat(options: CatOptions, ctx: SetupContext): Method {
  const o = catOptions.parse(options);
  const prefix = `${ctx.instanceName}:`;
  if (o.trigger === undefined) {
    if (ctx.concepts.length === 0) {
      throw new AptError("BAD_INPUT", `${prefix} no concept to take the trigger word from: set the "trigger" option`);
    }
    const missing = ctx.concepts.findIndex((c) => !c.trigger);
    if (missing >= 0) {
      const c = ctx.concepts[missing]!;
      throw new AptError(
        "BAD_INPUT",
        `${prefix} concept ${JSON.stringify(c.name ?? c.prompt)} has no trigger word: set the "trigger" option or the concept's trigger`,
      );
    }
  }
  const predictionType = ctx.model.scheduler.config.prediction_type;
  if (o.snr_gamma !== null && !(MIN_SNR_PREDICTION_TYPES as readonly string[]).includes(predictionType)) {
    throw new AptError(
      "BAD_INPUT",
      `${prefix} "snr_gamma" needs ${MIN_SNR_PREDICTION_TYPES.join(" or ")} prediction; the scheduler's prediction_type is ${JSON.stringify(predictionType)}`,
    );
  }

  const triggerFor = (task: number): string => o.trigger ?? (ctx.concepts[task] ?? ctx.concepts[0])!.trigger!;
  const weights = (snr: ArrayLike<number>): Float32Array =>
    o.snr_gamma === null ? new Float32Array(snr.length).fill(1) : minSnrWeights(snr, o.snr_gamma, predictionType);

  let pending: tf.Scalar | undefined;
  let last: number | undefined;

  return {
    variants(s) {
      const trigger = triggerFor(s.task);
      const prompts = s.batch.items.map((it) => (it.kind === INSTANCE ? stripTrigger(it.prompt, trigger) : it.prompt));
      return [
        { prompts, adapters: true },
        { prompts: [...prompts], adapters: false },
      ];
    },

    weigh(s: StepState) {
      return tf.tensor1d(weights(s.snr));
    },

    losses(s: StepState) {
      const [adapted, base] = s.variants;
      if (!adapted || !base) {
        throw new AptError("INTERNAL", `${prefix} expected 2 variant predictions (adapters on, off), got ${s.variants.length}`);
      }
      const w = weights(s.snr);
      let n = 0;
      s.batch.items.forEach((it, i) => {
        if (it.kind === INSTANCE) n++;
        else w[i] = 0;
      });
      const value = tf.tidy(() => {
        const perSample = tf.mean(tf.square(tf.sub(adapted, stopGradient(base))), [1, 2, 3]);
        const weighted = tf.sum(tf.mul(perSample, tf.tensor1d(w)));
        return tf.mul(weighted, o.cat_factor / Math.max(1, n)) as tf.Scalar;
      });
      pending?.dispose();
      pending = tf.keep(tf.clone(value));
      return { cat: value };
    },

    metrics(): Record<string, number> {
      if (pending) {
        last = pending.dataSync()[0]!;
        pending.dispose();
        pending = undefined;
      }
      return last === undefined ? {} : { cat: last };
    },

    dispose() {
      pending?.dispose();
      pending = undefined;
    },
  };
}

export const cat: MethodPlugin<CatOptions> = {
  apiVersion: METHOD_API_VERSION,
  name: "cat",
  description: "Contrastive Adapter Training: keeps the adapted model close to the base model on trigger-free captions.",
  options: catOptions,
  requires: ["adapter"],
  create: createCat,
};
