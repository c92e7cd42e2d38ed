/**
 * DreamBooth prior preservation (Ruiz et al. 2023), as diffusers'
 * train_dreambooth.py does it: class images are generated once by the frozen
 * model from the class prompt, and every batch gets class images next to the
 * instance images, so that
 *
 *   L = ‖ε − ε_θ(x_t, t, c_inst)‖² + λ_pp · ‖ε' − ε_θ(x'_t, t', c_class)‖²
 *
 * (the engine's base loss weighs each sample by its item's `weight`).
 */
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs-core";
import { z } from "zod";
import {
  AptError,
  METHOD_API_VERSION,
  Rng,
  readSafetensors,
  writeSafetensors,
  type Batch,
  type Method,
  type MethodPlugin,
  type SetupContext,
  type StepInfo,
  type TrainingModel,
} from "@apt/core";

export const dreamboothOptions = z.strictObject({
  /** The prompt class images are generated from ("a photo of a star"); default: each concept's `classPrompt`. */
  class_prompt: z.string().min(1).optional(),
  /** How many class images to generate (diffusers' default 100). */
  num_class_images: z.number().int().min(1).default(100),
  /** λ_pp, the weight of each prior sample's loss. */
  prior_loss_weight: z.number().min(0).default(1),
  /** Sampling steps for the class images. */
  sample_steps: z.number().int().min(1).default(25),
  /** Classifier-free guidance scale for the class images. */
  guidance_scale: z.number().min(0).default(3),
  /** Class images appended to each batch; default: the training batch size. */
  class_images_per_batch: z.number().int().min(1).optional(),
});

export type DreamBoothOptions = z.output<typeof dreamboothOptions>;
export type DreamBoothOptionsInput = z.input<typeof dreamboothOptions>;

/** Class images are generated in calls of at most this many images. */
export const GENERATE_CHUNK = 8;
/** The folder of the run directory that holds the class-image caches. */
export const CLASS_IMAGES_DIR = "class_images";
const CACHE_FORMAT = "apt-dreambooth-class-images/1";

/** What a set of class images depends on; its hash names the cache file. */
export interface ClassSetSpec {
  prompt: string;
  count: number;
  seed: number;
  steps: number;
  guidance: number;
}

function cacheKey(spec: ClassSetSpec): string {
  const json = JSON.stringify([spec.prompt, spec.count, spec.seed, spec.steps, spec.guidance]);
  return createHash("sha256").update(json).digest("hex").slice(0, 16);
}

/** Where the class images of one prompt are cached, inside the run folder. */
export function classImagesPath(runDir: string, spec: ClassSetSpec): string {
  return join(runDir, CLASS_IMAGES_DIR, `class-${cacheKey(spec)}.safetensors`);
}

function metadataOf(spec: ClassSetSpec): Record<string, string> {
  return {
    format: CACHE_FORMAT,
    prompt: spec.prompt,
    count: String(spec.count),
    seed: String(spec.seed),
    sample_steps: String(spec.steps),
    guidance_scale: String(spec.guidance),
  };
}

/** The cached images when the file exists and matches `spec`; otherwise why not. */
async function readCache(path: string, spec: ClassSetSpec): Promise<tf.Tensor4D | string> {
  if (!existsSync(path)) return "no cache yet";
  let file: Awaited<ReturnType<typeof readSafetensors>>;
  try {
    file = await readSafetensors(path);
  } catch (e) {
    return `unreadable cache: ${(e as Error).message}`;
  }
  const want = metadataOf(spec);
  for (const [k, v] of Object.entries(want)) {
    if (file.metadata[k] !== v) return `cache ${k} is ${JSON.stringify(file.metadata[k])}, expected ${JSON.stringify(v)}`;
  }
  const t = file.tensors.images;
  if (!t || t.dtype !== "F32" || t.shape.length !== 4 || t.shape[0] !== spec.count) {
    return `cache holds no F32 images tensor of ${spec.count} images`;
  }
  const data = t.data as Float32Array;
  for (let i = 0; i < data.length; i++) {
    const v = data[i]!;
    if (!(v >= -1 && v <= 1)) return "cache holds values outside [-1, 1]";
  }
  return tf.tensor4d(data, t.shape as [number, number, number, number]);
}

/** Generates `count` images in chunks of ≤ GENERATE_CHUNK, as NHWC in [-1, 1]. */
async function generateClassImages(model: TrainingModel, spec: ClassSetSpec): Promise<tf.Tensor4D> {
  const seeds = new Rng(spec.seed);
  const parts: tf.Tensor4D[] = [];
  try {
    for (let done = 0; done < spec.count; ) {
      const n = Math.min(GENERATE_CHUNK, spec.count - done);
      const { images } = await model.generate({
        prompt: new Array<string>(n).fill(spec.prompt),
        numInferenceSteps: spec.steps,
        guidanceScale: spec.guidance,
        seed: seeds.nextUint32() >>> 1,
      });
      if (images.shape[0] !== n) {
        images.dispose();
        throw new AptError("INTERNAL", `model.generate returned ${images.shape[0]} images for ${n} prompts`);
      }
      parts.push(tf.tidy(() => tf.clipByValue(tf.sub(tf.mul(images, 2), 1), -1, 1) as tf.Tensor4D));
      images.dispose();
      done += n;
    }
    return parts.length === 1 ? parts.pop()! : (tf.concat(parts, 0) as tf.Tensor4D);
  } finally {
    tf.dispose(parts);
  }
}

/** `k` indices in [0, n): distinct when k ≤ n (partial Fisher–Yates), otherwise with replacement. */
function choose(n: number, k: number, rng: Rng): number[] {
  if (k > n) return Array.from({ length: k }, () => rng.int(n));
  const pool = Array.from({ length: n }, (_, i) => i);
  for (let i = 0; i < k; i++) {
    const j = i + rng.int(n - i);
    [pool[i], pool[j]] = [pool[j]!, pool[i]!];
  }
  return pool.slice(0, k);
}

function createDreamBooth(options: DreamBoothOptions, ctx: SetupContext): Method {
  const o = dreamboothOptions.parse(options);
  const name = ctx.instanceName;
  const noPrompt = (what: string) =>
    new AptError("BAD_INPUT", `${name}: ${what}: set the "class_prompt" option (e.g. "a photo of a dog") or the concept's classPrompt`);
  if (o.class_prompt === undefined && ctx.concepts.length === 0) throw noPrompt("no class prompt");
  const prompts = ctx.concepts.map((c) => {
    const p = o.class_prompt ?? c.classPrompt;
    if (!p) throw noPrompt(`no class prompt for concept ${JSON.stringify(c.name ?? c.prompt)}`);
    return p;
  });
  if (prompts.length === 0) prompts.push(o.class_prompt!);
  const perBatch = o.class_images_per_batch ?? ctx.train.batchSize;
  // Drawn once from the plugin's seeded generator: the same run seed gives the
  // same class images, and so finds the same cache on a resumed run.
  const seed = ctx.rng.nextUint32() >>> 1;
  const sets = new Map<string, tf.Tensor4D>();

  const specFor = (prompt: string): ClassSetSpec => ({
    prompt,
    count: o.num_class_images,
    seed,
    steps: o.sample_steps,
    guidance: o.guidance_scale,
  });

  return {
    async prepare(model) {
      for (const prompt of new Set(prompts)) {
        if (sets.has(prompt)) continue;
        const spec = specFor(prompt);
        const path = classImagesPath(ctx.runDir, spec);
        const cached = await readCache(path, spec);
        if (typeof cached !== "string") {
          ctx.log(`${spec.count} class images for ${JSON.stringify(prompt)} from ${path}`);
          sets.set(prompt, cached);
          continue;
        }
        ctx.log(`generating ${spec.count} class images for ${JSON.stringify(prompt)} (${cached})`);
        const images = await generateClassImages(model, spec);
        sets.set(prompt, images);
        await mkdir(join(ctx.runDir, CLASS_IMAGES_DIR), { recursive: true });
        await writeSafetensors(path, { images }, metadataOf(spec));
      }
    },

    augment(batch: Batch, s: StepInfo): Batch {
      const prompt = prompts[s.task] ?? prompts[0]!;
      const set = sets.get(prompt);
      if (!set) throw new AptError("INTERNAL", `${name}: augment() was called before prepare() generated the class images`);
      const [, h, w, c] = batch.images.shape;
      if (set.shape[3] !== c) {
        throw new AptError("BAD_INPUT", `${name}: class images have ${set.shape[3]} channels, the instance images ${c}`);
      }
      const idx = choose(set.shape[0], perBatch, s.rng);
      const images = tf.tidy(() => {
        let prior = tf.gather(set, tf.tensor1d(idx, "int32")) as tf.Tensor4D;
        if (set.shape[1] !== h || set.shape[2] !== w) prior = tf.clipByValue(tf.image.resizeBilinear(prior, [h, w]), -1, 1) as tf.Tensor4D;
        return tf.concat([batch.images, prior], 0) as tf.Tensor4D;
      });
      const items = idx.map(() => ({ prompt, kind: "prior", weight: o.prior_loss_weight }));
      return { images, items: [...batch.items, ...items] };
    },

    dispose() {
      for (const t of sets.values()) t.dispose();
      sets.clear();
    },
  };
}

export const dreambooth: MethodPlugin<DreamBoothOptions> = {
  apiVersion: METHOD_API_VERSION,
  name: "dreambooth",
  description: "DreamBooth prior preservation: class images from the frozen model, mixed into every batch with prior_loss_weight.",
  options: dreamboothOptions,
  create: createDreamBooth,
};
