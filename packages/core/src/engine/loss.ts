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

/**
 * The min-SNR-γ weight of one sample (Hang et al. 2023), as diffusers' training
 * scripts compute it: min(SNR, γ) divided by the weight the prediction type's
 * loss already puts on x₀'s error (SNR for ε, SNR + 1 for v, 1 for x₀). For ε
 * it is written min(1, γ / SNR), its limit at SNR = 0 (zero terminal SNR),
 * where diffusers' quotient is 0 / 0.
 */
export function minSnrWeight(snr: number, gamma: number, predictionType: string): number {
  if (predictionType === "v_prediction") return Math.min(snr, gamma) / (snr + 1);
  if (predictionType === "sample") return Math.min(snr, gamma);
  return Math.min(1, gamma / snr);
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
