/**
 * The base denoising loss of a batch, Σᵢ wᵢ · mean((model(x_t, t, c) − target)²) / n_instance,
 * with the target the scheduler's prediction type asks for (ε, v or x₀), and
 * the mean weighted by per-pixel loss weights where the batch has them. The
 * engine computes it inline with the plugins' hooks; replicas (replicas.ts)
 * compute it with this function, on the same formula.
 */
import * as tf from "@tensorflow/tfjs-core";
import type { TrainingModel } from "../method.js";

/**
 * mean((prediction − target)²) per sample, or Σ m·e² / Σ m with per-pixel
 * weights m [B, H, W, 1] (broadcast over channels; an all-zero map counts as 0).
 */
export function perSampleSquaredError(prediction: tf.Tensor4D, target: tf.Tensor4D, pixelWeights?: tf.Tensor4D): tf.Tensor1D {
  return tf.tidy(() => {
    const e = tf.square(tf.sub(prediction, target));
    if (!pixelWeights) return tf.mean(e, [1, 2, 3]) as tf.Tensor1D;
    const channels = e.shape[3]!;
    const weighted = tf.sum(tf.mul(e, pixelWeights), [1, 2, 3]);
    return tf.div(weighted, tf.maximum(tf.mul(tf.sum(pixelWeights, [1, 2, 3]), channels), 1e-12)) as tf.Tensor1D;
  });
}

export function baseLoss(model: TrainingModel, x0: tf.Tensor4D, noise: tf.Tensor4D, timesteps: Int32Array, prompts: string[], itemWeights: number[], nInstance: number, pixelWeights?: tf.Tensor4D): tf.Scalar {
  return tf.tidy(() => {
    const xt = model.scheduler.addNoise(x0, noise, timesteps) as tf.Tensor4D;
    const pt = model.scheduler.config.prediction_type;
    const target = pt === "v_prediction" ? model.scheduler.getVelocity(x0, noise, timesteps) : pt === "sample" ? x0 : noise;
    const prediction = model.unet.forward(xt, tf.tensor1d(timesteps, "int32"), model.encodePrompt(prompts));
    const perSample = perSampleSquaredError(prediction, target as tf.Tensor4D, pixelWeights);
    return tf.div(tf.sum(tf.mul(tf.tensor1d(itemWeights), perSample)), nInstance) as tf.Scalar;
  });
}
