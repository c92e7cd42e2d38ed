import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AdamW, AptError, Rng, tf } from "@apt/core";
import { backend } from "@apt/backend-cpu";
import {
  ATTRIBUTE_KINDS,
  ATTRIBUTE_VALUES,
  EVALUATOR_CONFIG,
  HELD_OUT,
  SHAPES,
  ShapeEvaluator,
  attributeLabels,
  evaluatorLoss,
  evaluatorTrainStep,
  evaluatorTrainingBatch,
  renderBatch,
  sampleAttributes,
  shippedEvaluatorDir,
  type Attributes,
  type EvaluatorConfig,
} from "../src/index.js";

// Seeds the training script never uses (it trains on --seed 1 and measures on --eval-seed 20250).
const TEST_SEED = 777_001;
const COUNT = 500;

let evaluator: ShapeEvaluator;
/** The same weights, run 7 images at a time. */
let chunked: ShapeEvaluator;
let images: tf.Tensor4D;
let truths: Attributes[];

beforeAll(async () => {
  await backend.init();
  evaluator = await ShapeEvaluator.load();
  chunked = await ShapeEvaluator.load(undefined, { batchSize: 7 });
  const rng = new Rng(TEST_SEED);
  truths = Array.from({ length: COUNT }, () => sampleAttributes({}, rng));
  const r = renderBatch(truths, TEST_SEED + 1);
  images = tf.tensor4d(r.images, r.shape);
});

afterAll(() => {
  images?.dispose();
  evaluator?.dispose();
  chunked?.dispose();
});

/** Mean cosine similarity between the rows of a and the rows of b (embeddings are unit length). */
function meanCosine(a: tf.Tensor2D, b: tf.Tensor2D): number {
  return tf.tidy(() => tf.mean(tf.matMul(a, b, false, true)).dataSync()[0]!);
}

describe("the shipped evaluator", () => {
  it("is a small config.json + model.safetensors inside the package", async () => {
    const dir = shippedEvaluatorDir();
    const config = JSON.parse(await readFile(join(dir, "config.json"), "utf8")) as EvaluatorConfig;
    expect(config.model_type).toBe("shapeworld-evaluator");
    for (const kind of ATTRIBUTE_KINDS) expect(config.labels[kind]).toEqual([...ATTRIBUTE_VALUES[kind]]);
    const { size } = await stat(join(dir, "model.safetensors"));
    expect(size).toBeLessThan(2_000_000);
    expect(evaluator.parameterCount * 4).toBeLessThan(size);
    expect(evaluator.config.embedding_dim).toBe(128);
  });

  it("predicts every attribute of 500 fresh renders with ≥ 98% accuracy", () => {
    const acc = evaluator.accuracy(images, truths);
    expect(Object.keys(acc).sort()).toEqual([...ATTRIBUTE_KINDS].sort());
    for (const kind of ATTRIBUTE_KINDS) expect(acc[kind], kind).toBeGreaterThanOrEqual(0.98);
  });

  it("judges the held-out shape × colour pairs too", () => {
    const rng = new Rng(TEST_SEED + 2);
    const list = Array.from({ length: 96 }, (_, i) => sampleAttributes({ ...HELD_OUT[i % HELD_OUT.length]! }, rng));
    const r = renderBatch(list, TEST_SEED + 3);
    const x = tf.tensor4d(r.images, r.shape);
    try {
      const acc = evaluator.accuracy(x, r.truths);
      expect(acc.shape).toBeGreaterThanOrEqual(0.95);
      expect(acc.color).toBeGreaterThanOrEqual(0.95);
    } finally {
      x.dispose();
    }
  });

  it("returns probabilities whose argmax is the index, one row per image", () => {
    const x = tf.slice(images, [0, 0, 0, 0], [20, -1, -1, -1]);
    try {
      const pred = evaluator.predict(x);
      for (const kind of ATTRIBUTE_KINDS) {
        const k = ATTRIBUTE_VALUES[kind].length;
        expect(pred[kind].index).toHaveLength(20);
        expect(pred[kind].probs).toHaveLength(20 * k);
        for (let i = 0; i < 20; i++) {
          const row = Array.from(pred[kind].probs.subarray(i * k, (i + 1) * k));
          expect(row.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 5);
          expect(row.indexOf(Math.max(...row))).toBe(pred[kind].index[i]);
        }
      }
      // Chunking inside predict does not change the answer.
      const inChunks = chunked.predict(x);
      for (const kind of ATTRIBUTE_KINDS) expect(Array.from(inChunks[kind].index)).toEqual(Array.from(pred[kind].index));
    } finally {
      x.dispose();
    }
  });

  it("embeds to unit vectors; the same attributes embed closer than a different shape", () => {
    const rng = new Rng(TEST_SEED + 4);
    const sameSims: number[] = [];
    const otherSims: number[] = [];
    for (let g = 0; g < 12; g++) {
      const base = sampleAttributes({}, rng);
      const others = SHAPES.filter((s) => s !== base.shape).slice(0, 4).map((shape) => ({ ...base, shape }));
      const same = renderBatch([base, base, base, base], TEST_SEED + 100 + g);
      const diff = renderBatch(others, TEST_SEED + 200 + g);
      const [a, b] = [tf.tensor4d(same.images, same.shape), tf.tensor4d(diff.images, diff.shape)];
      const [ea, eb] = [evaluator.embed(a), evaluator.embed(b)];
      try {
        expect(ea.shape).toEqual([4, 128]);
        const norms = tf.tidy(() => tf.norm(ea, "euclidean", 1).dataSync());
        for (const n of norms) expect(n).toBeCloseTo(1, 5);
        // Same attributes: mean over distinct pairs (the diagonal is exactly 1).
        const all = meanCosine(ea, ea) * 16;
        sameSims.push((all - 4) / 12);
        otherSims.push(meanCosine(ea, eb));
      } finally {
        tf.dispose([a, b, ea, eb]);
      }
    }
    const mean = (xs: number[]) => xs.reduce((s, v) => s + v, 0) / xs.length;
    expect(mean(sameSims)).toBeGreaterThan(mean(otherSims) + 0.1);
    // And it holds for most groups, not only on average.
    expect(sameSims.filter((s, i) => s > otherSims[i]!).length).toBeGreaterThanOrEqual(11);
  });

  it("embeds the same way in one batch or in chunks", () => {
    const x = tf.slice(images, [0, 0, 0, 0], [10, -1, -1, -1]);
    const [whole, parts] = [evaluator.embed(x), chunked.embed(x)];
    try {
      expect(parts.shape).toEqual([10, 128]);
      const d = tf.tidy(() => tf.max(tf.abs(tf.sub(whole, parts))).dataSync()[0]!);
      expect(d).toBeLessThan(1e-5);
    } finally {
      tf.dispose([x, whole, parts]);
    }
  });

  it("leaves tf.memory().numTensors unchanged", () => {
    const x = tf.slice(images, [0, 0, 0, 0], [40, -1, -1, -1]);
    try {
      const before = tf.memory().numTensors;
      evaluator.predict(x);
      evaluator.accuracy(x, truths.slice(0, 40));
      expect(tf.memory().numTensors).toBe(before);
      const e = evaluator.embed(x);
      expect(tf.memory().numTensors).toBe(before + 1);
      e.dispose();
      expect(tf.memory().numTensors).toBe(before);
    } finally {
      x.dispose();
    }
  });

  it("rejects images of the wrong shape and mismatched truths", () => {
    const bad = tf.zeros([2, 16, 16, 3]) as tf.Tensor4D;
    const x = tf.slice(images, [0, 0, 0, 0], [2, -1, -1, -1]);
    try {
      expect(() => evaluator.predict(bad)).toThrow(AptError);
      expect(() => evaluator.accuracy(x, truths.slice(0, 3))).toThrow(/3 truths for 2 images/);
    } finally {
      tf.dispose([bad, x]);
    }
  });
});

describe("evaluator files and training", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "apt-evaluator-"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("saves and loads back to identical predictions", async () => {
    await evaluator.save(dir, { note: "test" });
    const again = await ShapeEvaluator.load(dir);
    const x = tf.slice(images, [0, 0, 0, 0], [16, -1, -1, -1]);
    try {
      const [a, b] = [evaluator.predict(x), again.predict(x)];
      for (const kind of ATTRIBUTE_KINDS) expect(Array.from(b[kind].probs)).toEqual(Array.from(a[kind].probs));
      expect(again.config.training).toEqual({ note: "test" });
    } finally {
      x.dispose();
      again.dispose();
    }
  });

  it("fails to load a missing folder or mismatched weights with a clear error", async () => {
    await expect(ShapeEvaluator.load(join(dir, "nope"))).rejects.toThrow(/cannot read/);
    const other = ShapeEvaluator.create({ ...EVALUATOR_CONFIG, block_out_channels: [16, 32, 48, 64] }, 0);
    const wrong = join(dir, "wrong");
    await other.save(wrong);
    other.dispose();
    // The config says one architecture, the weights another.
    await writeFile(join(wrong, "config.json"), JSON.stringify(EVALUATOR_CONFIG));
    await expect(ShapeEvaluator.load(wrong)).rejects.toThrow(/expected F32/);
  });

  it("trains: steps lower the loss on their batch and leak nothing; batches are seeded", () => {
    const model = ShapeEvaluator.create({ ...EVALUATOR_CONFIG, block_out_channels: [8, 16, 16, 16], layers_per_block: [1, 1, 1, 1] }, 3);
    const opt = new AdamW(Object.fromEntries(model.namedParameters()), { lr: 3e-3 });
    const options = { batchSize: 16, noise: { probability: 0.5, maxSigma: 0.04 } };
    const batch = evaluatorTrainingBatch(5, 0, options);
    expect(evaluatorTrainingBatch(5, 0, options).images).toEqual(batch.images);
    expect(evaluatorTrainingBatch(5, 1, options).images).not.toEqual(batch.images);
    const x = tf.tensor4d(batch.images, batch.shape);
    try {
      const before = tf.memory().numTensors;
      const losses = Array.from({ length: 5 }, () => evaluatorTrainStep(model, opt, x, batch.truths, 3e-3));
      expect(tf.memory().numTensors).toBe(before);
      expect(losses[4]!).toBeLessThan(losses[0]!);
      // The loss starts near the sum over heads of ln(number of values): uniform guesses.
      const uniform = ATTRIBUTE_KINDS.reduce((s, k) => s + Math.log(ATTRIBUTE_VALUES[k].length), 0);
      expect(Math.abs(losses[0]! - uniform)).toBeLessThan(1);
      const perKind = tf.tidy(() => {
        const { total, perKind } = evaluatorLoss(model.forward(x).logits, attributeLabels(batch.truths));
        return [total.dataSync()[0]!, ATTRIBUTE_KINDS.reduce((s, k) => s + perKind[k].dataSync()[0]!, 0)];
      });
      expect(perKind[0]).toBeCloseTo(perKind[1]!, 4);
    } finally {
      x.dispose();
      opt.dispose();
      model.dispose();
    }
  });
});
