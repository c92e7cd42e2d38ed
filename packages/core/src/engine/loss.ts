/**
 * The base denoising loss of a batch, Σᵢ wᵢ · mean((model(x_t, t, c) − target)²) / n_instance,
 * with the target the scheduler's prediction type asks for (ε, v or x₀). The
 * engine computes it inline with the plugins' hooks; replicas (replicas.ts)
 * compute it with this function, on the same formula.
 */
import * as tf from "@tensorflow/tfjs-core";
import type { TrainingModel } from "../method.js";

export function baseLoss(model: TrainingModel, x0: tf.Tensor4D, noise: tf.Tensor4D, timesteps: Int32Array, prompts: string[], itemWeights: number[], nInstance: number): tf.Scalar {
  return tf.tidy(() => {
    const xt = model.scheduler.addNoise(x0, noise, timesteps) as tf.Tensor4D;
    const pt = model.scheduler.config.prediction_type;
    const target = pt === "v_prediction" ? model.scheduler.getVelocity(x0, noise, timesteps) : pt === "sample" ? x0 : noise;
    const prediction = model.unet.forward(xt, tf.tensor1d(timesteps, "int32"), model.encodePrompt(prompts));
    const perSample = tf.mean(tf.square(tf.sub(prediction, target)), [1, 2, 3]);
    return tf.div(tf.sum(tf.mul(tf.tensor1d(itemWeights), perSample)), nInstance) as tf.Scalar;
  });
}
