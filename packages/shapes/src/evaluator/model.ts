/**
 * The ShapeWorld evaluator: a small CNN that reads a 32×32 render and predicts
 * every attribute, and whose pooled features are the image embedding. It is
 * @apt's stand-in for CLIP (does the image show what the prompt says?) and DINO
 * (do two images show the same thing?) in the metrics.
 *
 * Architecture (NHWC, all convolutions 3×3 with "same" padding):
 *
 *   input [B, 32, 32, 3] in [0, 1] → 2x − 1, plus two coordinate channels (x, y in [−1, 1])
 *   conv_in            5 → c0, stride 1, SiLU
 *   blocks.i.convs.j   the first conv of blocks 1… has stride 2 (32 → 16 → 8 → 4 px);
 *                      each conv is followed by GroupNorm and SiLU
 *   global average pool → c_last
 *   embed              linear c_last → embedding_dim: the embedding (L2-normalised by `embed`)
 *   heads.<kind>       linear embedding_dim → number of values, one head per attribute kind
 *
 * Parameters have stable names (`namedParameters`) and are stored as
 * `model.safetensors` (F32) next to `config.json`.
 */
import * as tf from "@tensorflow/tfjs-core";
import { mkdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { AptError, Rng, SafetensorsReader, groupNorm, writeFileAtomic, writeSafetensors } from "@apt/core";
import { ATTRIBUTE_KINDS, ATTRIBUTE_VALUES, CHANNELS, IMAGE_SIZE, type AttributeKind, type Attributes } from "../world/attributes.js";
import type { Truth } from "../world/render.js";

/** `config.json` of an evaluator folder. */
export interface EvaluatorConfig {
  model_type: "shapeworld-evaluator";
  image_size: number;
  in_channels: number;
  /** Append x and y coordinate channels to the input (position is then easy to read). */
  coord_channels: boolean;
  /** Output channels of each block; blocks after the first halve the resolution. */
  block_out_channels: number[];
  /** Convolutions per block (the first of a downsampling block has stride 2). */
  layers_per_block: number[];
  norm_num_groups: number;
  norm_eps: number;
  embedding_dim: number;
  /** The values each head predicts, in logit order (ATTRIBUTE_VALUES when written). */
  labels: Record<AttributeKind, string[]>;
  /** What the training script recorded (steps, wall time, accuracy); informative only. */
  training?: Record<string, unknown>;
}

/** The shipped evaluator's architecture (≈ 340k parameters, 1.3 MB as F32). */
export const EVALUATOR_CONFIG: EvaluatorConfig = {
  model_type: "shapeworld-evaluator",
  image_size: IMAGE_SIZE,
  in_channels: CHANNELS,
  coord_channels: true,
  block_out_channels: [32, 64, 96, 128],
  layers_per_block: [1, 2, 2, 1],
  norm_num_groups: 8,
  norm_eps: 1e-5,
  embedding_dim: 128,
  labels: {
    size: [...ATTRIBUTE_VALUES.size],
    color: [...ATTRIBUTE_VALUES.color],
    texture: [...ATTRIBUTE_VALUES.texture],
    shape: [...ATTRIBUTE_VALUES.shape],
    position: [...ATTRIBUTE_VALUES.position],
    background: [...ATTRIBUTE_VALUES.background],
  },
};

/** The diffusers folder of the base model shipped in this package (`model: "@apt/shapes/base"` in a config). */
export function shippedBaseModelDir(): string {
  return fileURLToPath(new URL("../../models/base/", import.meta.url));
}

/** The folder of the evaluator shipped in this package. */
export function shippedEvaluatorDir(): string {
  return fileURLToPath(new URL("../../models/evaluator/", import.meta.url));
}

/** One attribute's predictions for N images. */
export interface AttributePrediction {
  /** [N]: the index of the most probable value (into ATTRIBUTE_VALUES[kind]). */
  index: Int32Array;
  /** [N, values], row-major: softmax probabilities. */
  probs: Float32Array;
}

export type EvaluatorPrediction = Record<AttributeKind, AttributePrediction>;

/** What the network computes for a batch (inside the caller's tidy). */
export interface EvaluatorOutputs {
  /** [B, embedding_dim], before L2 normalisation. */
  features: tf.Tensor2D;
  logits: Record<AttributeKind, tf.Tensor2D>;
}

export interface EvaluatorOptions {
  /** Images per forward pass inside predict / embed / accuracy (default 256). */
  batchSize?: number;
}

interface ConvSpec {
  name: string;
  inChannels: number;
  outChannels: number;
  stride: 1 | 2;
  norm: boolean;
}

function checkConfig(c: EvaluatorConfig, where: string): void {
  const bad = (problem: string) => new AptError("BAD_INPUT", `${where}: ${problem}`);
  if (c.model_type !== "shapeworld-evaluator") throw bad(`model_type is ${JSON.stringify(c.model_type)}, not "shapeworld-evaluator"`);
  if (c.image_size !== IMAGE_SIZE || c.in_channels !== CHANNELS) throw bad(`expects ${IMAGE_SIZE}×${IMAGE_SIZE}×${CHANNELS} images`);
  const blocks = c.block_out_channels;
  if (!Array.isArray(blocks) || blocks.length === 0 || !Array.isArray(c.layers_per_block) || c.layers_per_block.length !== blocks.length) {
    throw bad("block_out_channels and layers_per_block must be arrays of the same, non-zero length");
  }
  for (const ch of blocks) {
    if (!Number.isInteger(ch) || ch <= 0 || ch % c.norm_num_groups !== 0) throw bad(`block channels ${ch} must be a positive multiple of norm_num_groups ${c.norm_num_groups}`);
  }
  if (!c.layers_per_block.every((n) => Number.isInteger(n) && n >= 1)) throw bad("layers_per_block must be positive integers");
  if (IMAGE_SIZE % 2 ** (blocks.length - 1) !== 0) throw bad(`${blocks.length} blocks downsample ${IMAGE_SIZE} px too far`);
  for (const kind of ATTRIBUTE_KINDS) {
    const labels = c.labels?.[kind];
    const values = ATTRIBUTE_VALUES[kind] as readonly string[];
    if (!Array.isArray(labels) || labels.length !== values.length || labels.some((l, i) => l !== values[i])) {
      throw bad(`labels.${kind} must be ${JSON.stringify(values)} (the attribute values of this version of ShapeWorld)`);
    }
  }
}

function convSpecs(c: EvaluatorConfig): ConvSpec[] {
  const inputChannels = c.in_channels + (c.coord_channels ? 2 : 0);
  const specs: ConvSpec[] = [{ name: "conv_in", inChannels: inputChannels, outChannels: c.block_out_channels[0]!, stride: 1, norm: false }];
  let prev = c.block_out_channels[0]!;
  c.block_out_channels.forEach((ch, i) => {
    for (let j = 0; j < c.layers_per_block[i]!; j++) {
      specs.push({ name: `blocks.${i}.convs.${j}`, inChannels: j === 0 ? prev : ch, outChannels: ch, stride: i > 0 && j === 0 ? 2 : 1, norm: i > 0 });
    }
    prev = ch;
  });
  return specs;
}

/** Every parameter's name and shape, in file order. */
export function evaluatorParameterShapes(c: EvaluatorConfig): [string, number[]][] {
  const out: [string, number[]][] = [];
  for (const s of convSpecs(c)) {
    out.push([`${s.name}.weight`, [3, 3, s.inChannels, s.outChannels]], [`${s.name}.bias`, [s.outChannels]]);
    if (s.norm) out.push([`${s.name}.norm.weight`, [s.outChannels]], [`${s.name}.norm.bias`, [s.outChannels]]);
  }
  const last = c.block_out_channels[c.block_out_channels.length - 1]!;
  out.push(["embed.weight", [last, c.embedding_dim]], ["embed.bias", [c.embedding_dim]]);
  for (const kind of ATTRIBUTE_KINDS) {
    out.push([`heads.${kind}.weight`, [c.embedding_dim, c.labels[kind].length]], [`heads.${kind}.bias`, [c.labels[kind].length]]);
  }
  return out;
}

function initialValue(name: string, shape: number[], rng: Rng): Float32Array {
  const size = shape.reduce((a, b) => a * b, 1);
  const data = new Float32Array(size);
  if (name.endsWith(".norm.weight")) return data.fill(1);
  if (name.endsWith(".bias")) return data;
  // He-normal over the fan-in (3·3·in for convolutions, in for linears); heads start small.
  const fanIn = shape.length === 4 ? shape[0]! * shape[1]! * shape[2]! : shape[0]!;
  const std = name.startsWith("heads.") ? 0.01 : Math.sqrt(2 / fanIn);
  for (let i = 0; i < size; i++) data[i] = rng.normal() * std;
  return data;
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

function labelsOf(item: Truth | Attributes): Attributes {
  return "attributes" in item ? item.attributes : item;
}

export class ShapeEvaluator {
  readonly config: EvaluatorConfig;
  private readonly params: Map<string, tf.Variable>;
  private readonly specs: ConvSpec[];
  private readonly batchSize: number;
  private coords: tf.Tensor4D | undefined;
  private disposed = false;

  private constructor(config: EvaluatorConfig, params: Map<string, tf.Variable>, options: EvaluatorOptions = {}) {
    this.config = config;
    this.params = params;
    this.specs = convSpecs(config);
    this.batchSize = options.batchSize ?? 256;
    if (!Number.isInteger(this.batchSize) || this.batchSize < 1) {
      throw new AptError("BAD_INPUT", `ShapeEvaluator: batchSize must be a positive integer, got ${String(options.batchSize)}`);
    }
    // [1, 32, 32, 2]: x and y of each pixel centre in [-1, 1], made once (a constant, not a parameter).
    this.coords = config.coord_channels
      ? tf.tidy(() => {
          const r = tf.linspace(-1 + 1 / IMAGE_SIZE, 1 - 1 / IMAGE_SIZE, IMAGE_SIZE);
          const xs = tf.tile(tf.reshape(r, [1, IMAGE_SIZE, 1]), [IMAGE_SIZE, 1, 1]);
          const ys = tf.tile(tf.reshape(r, [IMAGE_SIZE, 1, 1]), [1, IMAGE_SIZE, 1]);
          return tf.reshape<tf.Rank.R4>(tf.concat([xs, ys], 2), [1, IMAGE_SIZE, IMAGE_SIZE, 2]);
        })
      : undefined;
  }

  /** A freshly initialised evaluator (He-normal weights drawn from `seed`), for training. */
  static create(config: EvaluatorConfig = EVALUATOR_CONFIG, seed = 0, options: EvaluatorOptions = {}): ShapeEvaluator {
    checkConfig(config, "ShapeEvaluator.create");
    const rng = new Rng(seed);
    const params = new Map<string, tf.Variable>();
    for (const [name, shape] of evaluatorParameterShapes(config)) {
      params.set(name, tf.tidy(() => tf.variable(tf.tensor(initialValue(name, shape, rng), shape, "float32"), true)));
    }
    return new ShapeEvaluator(structuredClone(config), params, options);
  }

  /**
   * Loads an evaluator folder (`config.json` + `model.safetensors`); by default
   * the one shipped in this package.
   */
  static async load(dir: string = shippedEvaluatorDir(), options: EvaluatorOptions = {}): Promise<ShapeEvaluator> {
    const configPath = join(dir, "config.json");
    let config: EvaluatorConfig;
    try {
      config = JSON.parse(await readFile(configPath, "utf8")) as EvaluatorConfig;
    } catch (e) {
      throw new AptError("BAD_INPUT", `ShapeEvaluator.load: cannot read ${configPath}: ${(e as Error).message}`, { cause: e });
    }
    checkConfig(config, configPath);
    const weightsPath = join(dir, "model.safetensors");
    const reader = await SafetensorsReader.open(weightsPath);
    const params = new Map<string, tf.Variable>();
    try {
      const expected = evaluatorParameterShapes(config);
      const known = new Set(expected.map(([n]) => n));
      const extra = reader.names().filter((n) => !known.has(n));
      if (extra.length > 0) throw new AptError("BAD_INPUT", `${weightsPath}: unexpected tensors ${extra.slice(0, 5).join(", ")}`);
      for (const [name, shape] of expected) {
        if (!reader.has(name)) throw new AptError("BAD_INPUT", `${weightsPath}: missing tensor "${name}"`);
        const entry = reader.entry(name);
        if (entry.dtype !== "F32" || !sameShape(entry.shape, shape)) {
          throw new AptError("BAD_INPUT", `${weightsPath}: "${name}" is ${entry.dtype} [${entry.shape.join(", ")}], expected F32 [${shape.join(", ")}]`);
        }
        const t = await reader.readTensor(name);
        params.set(name, tf.variable(t, false));
        t.dispose();
      }
    } catch (e) {
      for (const v of params.values()) v.dispose();
      throw e;
    } finally {
      await reader.close();
    }
    return new ShapeEvaluator(config, params, options);
  }

  /** Writes `config.json` and `model.safetensors` into `dir` (each atomically). */
  async save(dir: string, training?: Record<string, unknown>): Promise<void> {
    this.checkAlive();
    await mkdir(dir, { recursive: true });
    const config: EvaluatorConfig = { ...this.config };
    if (training !== undefined) config.training = training;
    else delete config.training;
    await writeSafetensors(join(dir, "model.safetensors"), Object.fromEntries(this.params), { format: "apt-shapeworld-evaluator" });
    await writeFileAtomic(join(dir, "config.json"), `${JSON.stringify(config, null, 2)}\n`);
  }

  /** The parameters by name (the variables themselves: training updates them in place). */
  namedParameters(): [string, tf.Variable][] {
    this.checkAlive();
    return [...this.params];
  }

  /** Number of scalar parameters. */
  get parameterCount(): number {
    let n = 0;
    for (const v of this.params.values()) n += v.size;
    return n;
  }

  private p(name: string): tf.Variable {
    const v = this.params.get(name);
    if (!v) throw new AptError("INTERNAL", `ShapeEvaluator: no parameter "${name}"`);
    return v;
  }

  private checkAlive(): void {
    if (this.disposed) throw new AptError("BAD_INPUT", "ShapeEvaluator: used after dispose()");
  }

  private checkImages(images: tf.Tensor, where: string): void {
    this.checkAlive();
    const s = images.shape;
    if (s.length !== 4 || s[1] !== IMAGE_SIZE || s[2] !== IMAGE_SIZE || s[3] !== CHANNELS || images.dtype !== "float32") {
      throw new AptError("BAD_INPUT", `ShapeEvaluator.${where}: expected float32 images [N, ${IMAGE_SIZE}, ${IMAGE_SIZE}, ${CHANNELS}] in [0, 1], got ${images.dtype} [${s.join(", ")}]`);
    }
  }

  private norm(x: tf.Tensor4D, name: string): tf.Tensor4D {
    // core's op: the backend's fused kernels where it has them (training and every measure run this).
    const weight = this.p(`${name}.norm.weight`) as tf.Tensor1D;
    const bias = this.p(`${name}.norm.bias`) as tf.Tensor1D;
    return groupNorm(x, weight, bias, this.config.norm_num_groups, this.config.norm_eps);
  }

  /**
   * The network on one batch: pre-normalisation embedding features and each
   * head's logits. Call it inside tf.tidy (or tf.variableGrads when training).
   */
  forward(images: tf.Tensor4D): EvaluatorOutputs {
    this.checkImages(images, "forward");
    const n = images.shape[0];
    let x: tf.Tensor4D = tf.sub(tf.mul(images, 2), 1);
    if (this.coords) x = tf.concat([x, tf.tile(this.coords, [n, 1, 1, 1])], 3);
    for (const s of this.specs) {
      x = tf.add(tf.conv2d(x, this.p(`${s.name}.weight`) as tf.Tensor4D, s.stride, "same"), this.p(`${s.name}.bias`)) as tf.Tensor4D;
      if (s.norm) x = this.norm(x, s.name);
      x = tf.mul(x, tf.sigmoid(x)) as tf.Tensor4D;
    }
    const pooled = tf.mean(x, [1, 2]) as tf.Tensor2D;
    const features = tf.add(tf.matMul(pooled, this.p("embed.weight")), this.p("embed.bias")) as tf.Tensor2D;
    const logits = {} as Record<AttributeKind, tf.Tensor2D>;
    for (const kind of ATTRIBUTE_KINDS) {
      logits[kind] = tf.add(tf.matMul(features, this.p(`heads.${kind}.weight`)), this.p(`heads.${kind}.bias`)) as tf.Tensor2D;
    }
    return { features, logits };
  }

  private chunks(images: tf.Tensor4D): [number, number][] {
    const n = images.shape[0];
    const out: [number, number][] = [];
    for (let start = 0; start < n; start += this.batchSize) out.push([start, Math.min(this.batchSize, n - start)]);
    return out;
  }

  /** Every attribute's most probable value and its probabilities, for each image. */
  predict(images: tf.Tensor4D): EvaluatorPrediction {
    this.checkImages(images, "predict");
    const n = images.shape[0];
    const out = {} as EvaluatorPrediction;
    for (const kind of ATTRIBUTE_KINDS) {
      const k = this.config.labels[kind].length;
      out[kind] = { index: new Int32Array(n), probs: new Float32Array(n * k) };
    }
    for (const [start, size] of this.chunks(images)) {
      const probs = tf.tidy(() => {
        const { logits } = this.forward(tf.slice(images, [start, 0, 0, 0], [size, -1, -1, -1]));
        return ATTRIBUTE_KINDS.map((kind) => tf.softmax(logits[kind]));
      });
      try {
        ATTRIBUTE_KINDS.forEach((kind, i) => {
          const k = this.config.labels[kind].length;
          const data = probs[i]!.dataSync() as Float32Array;
          const target = out[kind];
          target.probs.set(data, start * k);
          for (let r = 0; r < size; r++) {
            let best = 0;
            for (let j = 1; j < k; j++) if (data[r * k + j]! > data[r * k + best]!) best = j;
            target.index[start + r] = best;
          }
        });
      } finally {
        for (const t of probs) t.dispose();
      }
    }
    return out;
  }

  /** [N, embedding_dim]: unit-length embeddings (cosine similarity is their dot product). The caller disposes it. */
  embed(images: tf.Tensor4D): tf.Tensor2D {
    this.checkImages(images, "embed");
    const parts = this.chunks(images).map(([start, size]) =>
      tf.tidy(() => {
        const { features } = this.forward(tf.slice(images, [start, 0, 0, 0], [size, -1, -1, -1]));
        return tf.div(features, tf.maximum(tf.norm(features, "euclidean", 1, true), 1e-12)) as tf.Tensor2D;
      }),
    );
    if (parts.length === 1) return parts[0]!;
    const all = tf.concat(parts, 0);
    for (const t of parts) t.dispose();
    return all;
  }

  /** Share of images whose predicted value equals the truth, per attribute kind. */
  accuracy(images: tf.Tensor4D, truths: readonly (Truth | Attributes)[]): Record<AttributeKind, number> {
    this.checkImages(images, "accuracy");
    if (truths.length !== images.shape[0]) {
      throw new AptError("BAD_INPUT", `ShapeEvaluator.accuracy: ${truths.length} truths for ${images.shape[0]} images`);
    }
    return attributeAccuracy(this.predict(images), truths);
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const v of this.params.values()) v.dispose();
    this.params.clear();
    this.coords?.dispose();
    this.coords = undefined;
  }
}

/** The index of each image's true value per attribute kind (the heads' labels). */
export function attributeLabels(truths: readonly (Truth | Attributes)[]): Record<AttributeKind, Int32Array> {
  const out = {} as Record<AttributeKind, Int32Array>;
  for (const kind of ATTRIBUTE_KINDS) {
    const values = ATTRIBUTE_VALUES[kind] as readonly string[];
    out[kind] = Int32Array.from(truths, (t) => {
      const v = labelsOf(t)[kind];
      const i = values.indexOf(v);
      if (i < 0) throw new AptError("BAD_INPUT", `unknown ${kind} ${JSON.stringify(v)}`);
      return i;
    });
  }
  return out;
}

/**
 * Per-kind accuracy of `prediction` against `truths`; with `where`, only over
 * the images it keeps (NaN when it keeps none).
 */
export function attributeAccuracy(
  prediction: EvaluatorPrediction,
  truths: readonly (Truth | Attributes)[],
  where?: (attrs: Attributes, index: number) => boolean,
): Record<AttributeKind, number> {
  const labels = attributeLabels(truths);
  const out = {} as Record<AttributeKind, number>;
  for (const kind of ATTRIBUTE_KINDS) {
    let hit = 0;
    let total = 0;
    truths.forEach((t, i) => {
      if (where && !where(labelsOf(t), i)) return;
      total++;
      if (prediction[kind].index[i] === labels[kind][i]) hit++;
    });
    out[kind] = total === 0 ? Number.NaN : hit / total;
  }
  return out;
}
