/**
 * What the evaluator's training script needs from the library: the loss
 * (softmax cross-entropy summed over the attribute heads), one optimizer step,
 * and the seeded, infinite stream of freshly rendered training batches.
 */
import * as tf from "@tensorflow/tfjs-core";
import { AptError, Rng } from "@apt/core";
import { ATTRIBUTE_KINDS, type AttributeKind, type Attributes } from "../world/attributes.js";
import { sampleAttributes } from "../world/grammar.js";
import { itemSeed, renderBatch, type Truth } from "../world/render.js";
import { attributeLabels, type ShapeEvaluator } from "./model.js";

/** Mean softmax cross-entropy of each head, and their sum (the training loss). */
export function evaluatorLoss(
  logits: Record<AttributeKind, tf.Tensor2D>,
  labels: Record<AttributeKind, Int32Array>,
): { total: tf.Scalar; perKind: Record<AttributeKind, tf.Scalar> } {
  const perKind = {} as Record<AttributeKind, tf.Scalar>;
  let total: tf.Scalar | undefined;
  for (const kind of ATTRIBUTE_KINDS) {
    const l = logits[kind];
    const target = tf.oneHot(tf.tensor1d(labels[kind], "int32"), l.shape[1]);
    const ce = tf.neg(tf.mean(tf.sum(tf.mul(target, tf.logSoftmax(l)), 1))) as tf.Scalar;
    perKind[kind] = ce;
    total = total === undefined ? ce : (tf.add(total, ce) as tf.Scalar);
  }
  return { total: total!, perKind };
}

/** Anything that applies named gradients at a learning rate (@apt/core's AdamW). */
export interface NamedOptimizer {
  apply(grads: Record<string, tf.Tensor>, lr?: number): void;
}

/**
 * One training step on `images` ([B, 32, 32, 3] in [0, 1]) with the truths'
 * attributes as targets. Returns the summed loss; leaves no tensors behind.
 */
export function evaluatorTrainStep(
  model: ShapeEvaluator,
  optimizer: NamedOptimizer,
  images: tf.Tensor4D,
  truths: readonly (Truth | Attributes)[],
  lr: number,
): number {
  const labels = attributeLabels(truths);
  const params = model.namedParameters();
  const byVariable = new Map(params.map(([name, v]) => [v.name, name]));
  const { value, grads } = tf.variableGrads(() => evaluatorLoss(model.forward(images).logits, labels).total, params.map(([, v]) => v));
  try {
    const named: Record<string, tf.Tensor> = {};
    for (const [varName, g] of Object.entries(grads)) {
      const name = byVariable.get(varName);
      if (name === undefined) throw new AptError("INTERNAL", `evaluatorTrainStep: gradient for unknown variable ${varName}`);
      named[name] = g;
    }
    optimizer.apply(named, lr);
    const loss = value.dataSync()[0]!;
    if (!Number.isFinite(loss)) throw new AptError("DIVERGED", `evaluator training diverged: loss ${loss}`);
    return loss;
  } finally {
    value.dispose();
    for (const g of Object.values(grads)) g.dispose();
  }
}

export interface TrainingBatchOptions {
  /** Items in the batch. */
  batchSize: number;
  /**
   * Gaussian pixel noise added to a share of the items (robustness to the
   * diffusion model's samples): probability per item and the largest σ (σ is
   * uniform in [0, maxSigma]). Default: none.
   */
  noise?: { probability: number; maxSigma: number };
}

/**
 * Training batch `step` of the stream seeded by `seed`: attributes drawn
 * uniformly over every combination (held-out pairs included: the evaluator
 * judges those too), rendered fresh. A batch depends only on (seed, step), so a
 * resumed run sees the same data as an uninterrupted one.
 */
export function evaluatorTrainingBatch(seed: number, step: number, options: TrainingBatchOptions): { images: Float32Array; shape: [number, number, number, number]; truths: Truth[] } {
  if (!Number.isInteger(options.batchSize) || options.batchSize < 1) {
    throw new AptError("BAD_INPUT", `evaluatorTrainingBatch: batchSize must be a positive integer, got ${options.batchSize}`);
  }
  const rng = new Rng(itemSeed(seed, step));
  const attrs = Array.from({ length: options.batchSize }, () => sampleAttributes({}, rng));
  const r = renderBatch(attrs, rng.nextUint32());
  const noise = options.noise;
  if (noise && noise.probability > 0 && noise.maxSigma > 0) {
    const per = r.images.length / options.batchSize;
    for (let i = 0; i < options.batchSize; i++) {
      if (rng.uniform() >= noise.probability) continue;
      const sigma = rng.uniform() * noise.maxSigma;
      for (let j = i * per; j < (i + 1) * per; j++) r.images[j] = Math.min(1, Math.max(0, r.images[j]! + sigma * rng.normal()));
    }
  }
  return { images: r.images, shape: r.shape, truths: r.truths };
}
