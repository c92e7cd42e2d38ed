/**
 * Prompt agreement: how often a text-to-image model's samples show what their
 * prompts state, judged by the evaluator (the renderer's truth stands behind
 * it). This is the base model's quality measure, and the shape every
 * "does the sample follow the prompt" metric here takes.
 */
import { AptError, Rng, tf } from "@apt/core";
import { ATTRIBUTE_KINDS, ATTRIBUTE_VALUES, isHeldOut, type AttributeKind, type PartialAttributes } from "../world/attributes.js";
import { parsePrompt, promptFor, sampleAttributes, type PromptSpec } from "../world/grammar.js";
import type { ShapeEvaluator } from "./model.js";

/** A prompt and the attributes its samples should show (kinds left out are free). */
export interface PromptCase {
  prompt: string;
  expected: PartialAttributes;
}

/** Anything that samples images for prompts (`StableDiffusionPipeline` is one). */
export interface ImageSampler {
  generate(o: { prompt: string[]; numInferenceSteps: number; guidanceScale: number; seed: number; eta?: number }): Promise<{ images: tf.Tensor4D }>;
}

export interface SamplingOptions {
  /** DDIM steps (default 25). */
  numInferenceSteps?: number;
  /** Classifier-free guidance scale (default 4). */
  guidanceScale?: number;
  /** DDIM's eta (diffusers' name): 0 (default) is deterministic DDIM, 1 adds DDPM's ancestral noise at every step. */
  eta?: number;
  /** Batch i is sampled with seed `seed + i` (default 0): same seeds, same images. */
  seed?: number;
  /** Prompts per `generate` call (default 32). */
  batchSize?: number;
  /** Called after each batch with the number of samples done. */
  onProgress?: (done: number, total: number) => void;
}

export const DEFAULT_SAMPLING: Required<Omit<SamplingOptions, "onProgress">> = { numInferenceSteps: 25, guidanceScale: 4, eta: 0, seed: 0, batchSize: 32 };

export interface AgreementResult {
  count: number;
  /** Per kind: the share of samples showing the stated value, over the samples whose prompt states that kind (absent when none does). */
  byKind: Partial<Record<AttributeKind, number>>;
  /** How many prompts state each kind. */
  stated: Partial<Record<AttributeKind, number>>;
  /** The share of samples whose shape and colour are both as stated (over prompts stating both). */
  shapeAndColor: number;
  /** The share of samples showing everything their prompt states. */
  all: number;
  /** Per sample: the evaluator's reading of it, and whether it agrees with every stated kind. */
  samples: { prompt: string; predicted: Record<AttributeKind, string>; agrees: boolean }[];
  /** Every sample, [count, 32, 32, 3] row-major, values in [0, 1] (for grids). */
  images: Float32Array;
}

/** Samples each case's prompt once (fixed seeds), in batches, returning the images ([N, 32, 32, 3] in [0, 1]). */
export async function sampleCases(sampler: ImageSampler, prompts: readonly string[], options: SamplingOptions = {}): Promise<Float32Array> {
  const o = { ...DEFAULT_SAMPLING, ...options };
  if (prompts.length === 0) throw new AptError("BAD_INPUT", "sampleCases: no prompts");
  if (!Number.isInteger(o.batchSize) || o.batchSize < 1) throw new AptError("BAD_INPUT", `sampleCases: batchSize must be a positive integer, got ${o.batchSize}`);
  const parts: Float32Array[] = [];
  for (let start = 0, batch = 0; start < prompts.length; start += o.batchSize, batch++) {
    const chunk = prompts.slice(start, start + o.batchSize);
    const { images } = await sampler.generate({ prompt: chunk, numInferenceSteps: o.numInferenceSteps, guidanceScale: o.guidanceScale, eta: o.eta, seed: o.seed + batch });
    parts.push(await images.data<"float32">());
    images.dispose();
    options.onProgress?.(Math.min(prompts.length, start + o.batchSize), prompts.length);
  }
  const out = new Float32Array(parts.reduce((a, p) => a + p.length, 0));
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}

/** The evaluator's reading of N images ([N, 32, 32, 3] in [0, 1]). */
export function readImages(evaluator: ShapeEvaluator, images: Float32Array, count: number): Record<AttributeKind, string>[] {
  const x = tf.tensor4d(images, [count, 32, 32, 3]);
  try {
    const p = evaluator.predict(x);
    return Array.from({ length: count }, (_, i) => {
      const row = {} as Record<AttributeKind, string>;
      for (const kind of ATTRIBUTE_KINDS) row[kind] = (ATTRIBUTE_VALUES[kind] as readonly string[])[p[kind].index[i]!]!;
      return row;
    });
  } finally {
    x.dispose();
  }
}

/** Scores samples against what their prompts state. */
export function scoreAgreement(cases: readonly PromptCase[], predicted: Record<AttributeKind, string>[], images: Float32Array): AgreementResult {
  if (cases.length !== predicted.length) throw new AptError("BAD_INPUT", `scoreAgreement: ${cases.length} prompts but ${predicted.length} readings`);
  const hits: Partial<Record<AttributeKind, number>> = {};
  const stated: Partial<Record<AttributeKind, number>> = {};
  let both = 0;
  let bothStated = 0;
  let all = 0;
  const samples = cases.map((c, i) => {
    const p = predicted[i]!;
    let agrees = true;
    for (const kind of ATTRIBUTE_KINDS) {
      const want = c.expected[kind];
      if (want === undefined) continue;
      stated[kind] = (stated[kind] ?? 0) + 1;
      if (p[kind] === want) hits[kind] = (hits[kind] ?? 0) + 1;
      else agrees = false;
    }
    if (c.expected.shape !== undefined && c.expected.color !== undefined) {
      bothStated++;
      if (p.shape === c.expected.shape && p.color === c.expected.color) both++;
    }
    if (agrees) all++;
    return { prompt: c.prompt, predicted: p, agrees };
  });
  const byKind: Partial<Record<AttributeKind, number>> = {};
  for (const kind of ATTRIBUTE_KINDS) if (stated[kind]) byKind[kind] = (hits[kind] ?? 0) / stated[kind]!;
  return { count: cases.length, byKind, stated, shapeAndColor: bothStated ? both / bothStated : Number.NaN, all: all / cases.length, samples, images };
}

/** Samples every case (fixed seeds) and scores what the evaluator reads in the samples against the prompts. */
export async function measurePromptAgreement(sampler: ImageSampler, evaluator: ShapeEvaluator, cases: readonly PromptCase[], options: SamplingOptions = {}): Promise<AgreementResult> {
  const images = await sampleCases(
    sampler,
    cases.map((c) => c.prompt),
    options,
  );
  return scoreAgreement(cases, readImages(evaluator, images, cases.length), images);
}

export interface AgreementPromptOptions {
  /** Seen pairs (never `HELD_OUT`) or only held-out shape × colour pairs. */
  split: "seen" | "held-out";
  /** Seed of the prompt draw (default 0). */
  seed?: number;
}

/**
 * Prompts that always state shape and colour, and each other kind with
 * probability ½ (the context a user adds): "a red star", "a small blue
 * striped ring at left on a white background". The expected attributes are
 * exactly those stated.
 */
export function agreementPrompts(count: number, options: AgreementPromptOptions): PromptCase[] {
  const rng = new Rng(options.seed ?? 0);
  const out: PromptCase[] = [];
  while (out.length < count) {
    const attrs = sampleAttributes({}, rng);
    if (isHeldOut(attrs) !== (options.split === "held-out")) continue;
    const mention: AttributeKind[] = ["shape", "color", ...(["size", "texture", "position", "background"] as const).filter(() => rng.uniform() < 0.5)];
    const prompt = promptFor(attrs, { mention });
    const spec: PromptSpec = parsePrompt(prompt);
    const expected: PartialAttributes = {};
    for (const kind of ATTRIBUTE_KINDS) if (spec[kind] !== undefined) (expected as Record<string, unknown>)[kind] = spec[kind];
    out.push({ prompt, expected });
  }
  return out;
}
