/**
 * Personalization measured in ShapeWorld: sample a concept's evaluation
 * prompts with fixed seeds and read the samples with the evaluator and the
 * renderer's colour tables.
 *
 * - recognised: a "concept" prompt's sample shows the concept — the
 *   evaluator reads its shape, and its two colours cover at least
 *   `MIN_MAIN_COLOR_SHARE` and `MIN_SECOND_COLOR_SHARE` of the object's pixels.
 *   Colours and texture are not the evaluator's reading: it was trained on the
 *   automatic second shades only, and beside a new second colour (what makes
 *   the concept new) it misreads the main colour and often the pattern
 *   (dots as checks), so the two colours are read off the pixels. (A concept
 *   new only as a held-out shape × colour pair is read by the evaluator.);
 * - context: the sample also shows what the prompt states besides the concept
 *   (background, size, position): text alignment;
 * - fidelity: mean cosine of the sample's evaluator embedding to the mean
 *   embedding of the reference images (the DINO score's stand-in);
 * - class prompts ("a star", "a small star at top"): shape as stated, and how
 *   often the sample is read as the concept (leak: the class word drifted);
 * - `classSimilarity(before, after)`: per seed, the embedding cosine between
 *   the base model's class sample and the personalized model's (prior
 *   preservation: does "a star" still look like the base model's star).
 */
import { AptError, tf } from "@apt/core";
import { BACKGROUND_RGB, COLOR_RGB, secondaryRgb, type AttributeKind, type Background, type RGB } from "../world/attributes.js";
import type { ConceptSpec } from "../concepts/spec.js";
import type { ShapeEvaluator } from "./model.js";
import { DEFAULT_SAMPLING, readImages, sampleCases, type ImageSampler, type SamplingOptions } from "./agreement.js";

/** Share of object pixels in the concept's second colour from which the texture counts as the concept's. */
export const MIN_SECOND_COLOR_SHARE = 0.1;
/** Share of object pixels in the concept's main colour from which the object counts as that colour. */
export const MIN_MAIN_COLOR_SHARE = 0.2;

export interface ConceptEvaluationOptions extends SamplingOptions {
  /** Samples per evaluation prompt (default 4). Same prompts, options and seed: every sample gets the same noise. */
  samplesPerPrompt?: number;
}

export interface ConceptSample {
  prompt: string;
  kind: "concept" | "class";
  predicted: Record<AttributeKind, string>;
  /** Shares of the object's pixels close to the concept's main and second colour. */
  mainColorShare: number;
  secondColorShare: number;
  /** Read as the concept (shape, colour, texture, second colour). */
  concept: boolean;
  /** Everything the prompt states is shown (for concept prompts: the concept too). */
  followsPrompt: boolean;
  /** Cosine of the embedding to the references' mean embedding. */
  fidelity: number;
}

export interface ConceptReport {
  concept: string;
  samplesPerPrompt: number;
  sampling: Required<Omit<SamplingOptions, "onProgress">>;
  /** Concept prompts: share of samples read as the concept. */
  recognised: number;
  /** Concept prompts: share showing the concept and everything else the prompt states. */
  followsPrompt: number;
  /** Concept prompts: mean embedding cosine to the references. */
  fidelity: number;
  /** Class prompts: share whose shape is the class. */
  classShape: number;
  /** Class prompts: share showing everything the prompt states. */
  classFollowsPrompt: number;
  /** Class prompts: share read as the concept. */
  classLeak: number;
  samples: ConceptSample[];
  /** Class samples' unit embeddings, row-major [classSamples, embeddingDim], in `samples` order (for `classSimilarity`). */
  classEmbeddings: number[];
  embeddingDim: number;
  /** Concept samples then class samples, [N, 32, 32, 3] in [0, 1]. */
  images: Float32Array;
}

function distance(a: RGB, r: number, g: number, b: number): number {
  return Math.hypot(a[0] - r, a[1] - g, a[2] - b);
}

/**
 * The share of the object's pixels (those further than 60 from the background
 * colour) within `radius` of `color` (sRGB 0–255; image values in [0, 1]),
 * in the image starting at `offset`.
 */
export function colorShare(image: Float32Array, offset: number, background: RGB, color: RGB, radius: number): number {
  let object = 0;
  let hit = 0;
  for (let p = offset; p < offset + 32 * 32 * 3; p += 3) {
    const r = image[p]! * 255;
    const g = image[p + 1]! * 255;
    const b = image[p + 2]! * 255;
    if (distance(background, r, g, b) <= 60) continue;
    object++;
    if (distance(color, r, g, b) < radius) hit++;
  }
  return object === 0 ? 0 : hit / object;
}

function embeddings(evaluator: ShapeEvaluator, images: Float32Array, count: number): Float32Array {
  // Read outside the tidy: tf.tidy walks whatever its function returns, and a
  // typed array is walked element by element (~0.5 µs each).
  const embedded = tf.tidy(() => evaluator.embed(tf.tensor4d(images, [count, 32, 32, 3])));
  const data = embedded.dataSync() as Float32Array;
  embedded.dispose();
  return data;
}

/** Samples a concept's evaluation prompts and reads the samples (see the module comment). */
export async function evaluateConcept(
  sampler: ImageSampler,
  evaluator: ShapeEvaluator,
  spec: ConceptSpec,
  references: Float32Array,
  options: ConceptEvaluationOptions = {},
): Promise<ConceptReport> {
  const perPrompt = options.samplesPerPrompt ?? 4;
  if (!Number.isInteger(perPrompt) || perPrompt < 1) throw new AptError("BAD_INPUT", `evaluateConcept: samplesPerPrompt must be a positive integer, got ${perPrompt}`);
  const per = 32 * 32 * 3;
  const refCount = references.length / per;
  if (!Number.isInteger(refCount) || refCount < 1) throw new AptError("BAD_INPUT", `evaluateConcept: references hold ${references.length} values, not whole 32×32×3 images`);
  // Concept prompts first, then class prompts.
  const prompts = [...spec.evaluation.filter((e) => e.kind === "concept"), ...spec.evaluation.filter((e) => e.kind === "class")];
  const list = prompts.flatMap((e) => Array.from({ length: perPrompt }, () => e));
  const d = DEFAULT_SAMPLING;
  const sampling = { numInferenceSteps: options.numInferenceSteps ?? d.numInferenceSteps, guidanceScale: options.guidanceScale ?? d.guidanceScale, eta: options.eta ?? d.eta, seed: options.seed ?? d.seed, batchSize: options.batchSize ?? d.batchSize };
  const images = await sampleCases(
    sampler,
    list.map((e) => e.prompt),
    { ...sampling, ...(options.onProgress ? { onProgress: options.onProgress } : {}) },
  );
  const predicted = readImages(evaluator, images, list.length);
  const emb = embeddings(evaluator, images, list.length);
  const refEmb = embeddings(evaluator, references, refCount);
  const dim = refEmb.length / refCount;
  const centre = new Float32Array(dim);
  for (let i = 0; i < refCount; i++) for (let d = 0; d < dim; d++) centre[d]! += refEmb[i * dim + d]! / refCount;
  const centreNorm = Math.hypot(...centre) || 1;

  const fixed = spec.attributes;
  const main = COLOR_RGB[fixed.color];
  const samples: ConceptSample[] = list.map((e, i) => {
    const p = predicted[i]!;
    const background = p.background as Background;
    // The evaluator's colour head never saw the concept's two-tone colouring, so
    // both colours are read off the pixels (the second one as the renderer
    // would choose it on this background).
    const second = secondaryRgb({ color: fixed.color, background, ...(fixed.secondaryColor !== undefined ? { secondaryColor: fixed.secondaryColor } : {}) });
    // Half the distance between the two colours, so no pixel counts for both.
    const radius = Math.min(70, distance(main, ...second) / 2);
    const bg = BACKGROUND_RGB[background];
    const mainShare = colorShare(images, i * per, bg, main, radius);
    const share = fixed.texture === "solid" ? 0 : colorShare(images, i * per, bg, second, radius);
    // A concept whose second colour is the automatic shade (new only as a held-out
    // shape × colour pair) is read wholly by the evaluator, which knows that colouring.
    const concept = spec.novelty.secondaryColor
      ? p.shape === fixed.shape && mainShare >= MIN_MAIN_COLOR_SHARE && (fixed.texture === "solid" || share >= MIN_SECOND_COLOR_SHARE)
      : p.shape === fixed.shape && p.color === fixed.color && p.texture === fixed.texture;
    // Concept prompts: the concept, in the context stated (size, position, background); class prompts: all that is stated.
    const kinds = e.kind === "concept" ? (["size", "position", "background"] as const) : (["size", "color", "texture", "shape", "position", "background"] as const);
    const followsPrompt = kinds.every((k) => e.expected[k] === undefined || p[k] === e.expected[k]) && (e.kind === "class" || concept);
    let dot = 0;
    for (let d = 0; d < dim; d++) dot += emb[i * dim + d]! * centre[d]!;
    return { prompt: e.prompt, kind: e.kind, predicted: p, mainColorShare: mainShare, secondColorShare: share, concept, followsPrompt, fidelity: dot / centreNorm };
  });
  const share = (kind: "concept" | "class", f: (s: ConceptSample) => boolean | number) => {
    const xs = samples.filter((s) => s.kind === kind);
    return xs.reduce((a, s) => a + Number(f(s)), 0) / xs.length;
  };
  const classStart = samples.findIndex((s) => s.kind === "class");
  return {
    concept: spec.name,
    samplesPerPrompt: perPrompt,
    sampling,
    recognised: share("concept", (s) => s.concept),
    followsPrompt: share("concept", (s) => s.followsPrompt),
    fidelity: share("concept", (s) => s.fidelity),
    classShape: share("class", (s) => s.predicted.shape === fixed.shape),
    classFollowsPrompt: share("class", (s) => s.followsPrompt),
    classLeak: share("class", (s) => s.concept),
    samples,
    classEmbeddings: Array.from(emb.subarray(classStart * dim)),
    embeddingDim: dim,
    images,
  };
}

/**
 * Mean cosine, seed by seed, between two reports' class samples (same
 * prompts, same noise): 1 means "a star" still gives exactly the base model's stars.
 */
export function classSimilarity(before: Pick<ConceptReport, "classEmbeddings" | "embeddingDim">, after: Pick<ConceptReport, "classEmbeddings" | "embeddingDim">): number {
  const dim = before.embeddingDim;
  const a = before.classEmbeddings;
  const b = after.classEmbeddings;
  if (after.embeddingDim !== dim || a.length !== b.length || a.length % dim !== 0 || a.length === 0) {
    throw new AptError("BAD_INPUT", `classSimilarity: ${a.length / dim} vs ${b.length / dim} class samples; compare reports of the same concept and samplesPerPrompt`);
  }
  let total = 0;
  const n = a.length / dim;
  for (let i = 0; i < n; i++) {
    let dot = 0;
    for (let d = 0; d < dim; d++) dot += a[i * dim + d]! * b[i * dim + d]!;
    total += dot;
  }
  return total / n;
}
