/**
 * An exponential moving average of the trainable weights, as diffusers'
 * EMAModel (`--use_ema` in its training scripts) with its default warm-up:
 * after n optimizer steps the decay is min(decay, (1 + k) / (10 + k)) with
 * k = n − 1 (0 at the first step, so the average starts at the first update's
 * weights), and each step moves the average by (1 − decay)·(weights − average).
 * A diffusion model's sampler sees the average of the last ~1/(1 − decay)
 * updates instead of the last one, which DDPM and its successors sample from.
 */
import * as tf from "@tensorflow/tfjs-core";
import type { NamedAttrMap } from "@tensorflow/tfjs-core";

/**
 * Name of the optional fused kernel for one average's update (tfjs `registerKernel`
 * for a backend): inputs `{ average, weights }` (float32, one shape), attribute
 * `oneMinusDecay`; output a new tensor  average − oneMinusDecay · (average − weights).
 * Composed, that is three kernels and a scalar upload per weight tensor, every step.
 */
export const FUSED_EMA = "AptFusedEma";

/** One weight average's update: the backend's `FUSED_EMA` kernel when it has one, else tfjs ops. */
export function emaUpdate(average: tf.Tensor, weights: tf.Tensor, oneMinusDecay: number): tf.Tensor {
  if (tf.getKernel(FUSED_EMA, tf.getBackend())) {
    return tf.engine().runKernel(FUSED_EMA, { average, weights }, { oneMinusDecay } as unknown as NamedAttrMap) as tf.Tensor;
  }
  return tf.tidy(() => tf.sub(average, tf.mul(tf.sub(average, weights), oneMinusDecay)));
}

/** The decay diffusers' EMAModel uses after `optimizationStep` optimizer steps (no `update_after_step`, no inverse-gamma warm-up). */
export function emaDecayAt(optimizationStep: number, decay: number): number {
  const k = Math.max(0, optimizationStep - 1);
  return k <= 0 ? 0 : Math.min(decay, (1 + k) / (10 + k));
}

export class WeightAverage {
  /** The averages by trainable name (non-trainable variables of their own). */
  readonly shadow = new Map<string, tf.Variable>();

  constructor(
    private readonly weights: Map<string, tf.Variable>,
    readonly decay: number,
  ) {
    for (const [name, v] of weights) {
      const copy = v.clone();
      this.shadow.set(name, tf.variable(copy, false));
      copy.dispose();
    }
  }

  /** After optimizer step `optimizationStep` (1-based): average ← average − (1 − d)·(average − weights). */
  update(optimizationStep: number): void {
    const oneMinus = 1 - emaDecayAt(optimizationStep, this.decay);
    tf.tidy(() => {
      for (const [name, avg] of this.shadow) avg.assign(emaUpdate(avg, this.weights.get(name)!, oneMinus));
    });
  }

  /** Replaces the averages (resume). */
  load(values: Record<string, tf.Tensor>): void {
    for (const [name, avg] of this.shadow) avg.assign(values[name]!);
  }

  /** Writes the averages into the weights (diffusers' `ema.copy_to`): what the saved model holds. */
  copyToWeights(): void {
    for (const [name, avg] of this.shadow) this.weights.get(name)!.assign(avg);
  }

  dispose(): void {
    for (const avg of this.shadow.values()) avg.dispose();
    this.shadow.clear();
  }
}
