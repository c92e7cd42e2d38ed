/**
 * DreamBooth prior preservation with a fake TrainingModel whose `generate`
 * returns deterministic images: generation in chunks, the on-disk cache (and
 * its reuse), augment, options and errors.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs-core";
import { AptError, Rng, readSafetensors, type Batch, type ConceptSpec, type Method, type SetupContext, type TrainingModel } from "@apt/core";
import { backend } from "@apt/backend-cpu";
import dreamboothDefault, { CLASS_IMAGES_DIR, classImagesPath, dreambooth, dreamboothOptions, type DreamBoothOptionsInput } from "../src/index.js";

await backend.init();

interface GenerateCall {
  prompt: string[];
  numInferenceSteps?: number;
  guidanceScale?: number;
  seed?: number;
}

/** A model whose generate() returns [n, size, size, 3] images in [0, 1], a function of the seed only (0 and 1 included). */
function fakeModel(size = 4): TrainingModel & { calls: GenerateCall[] } {
  const calls: GenerateCall[] = [];
  return {
    calls,
    scheduler: { config: { num_train_timesteps: 1000, prediction_type: "epsilon" } },
    async generate(o: GenerateCall) {
      calls.push({ ...o, prompt: [...o.prompt] });
      const rng = new Rng(o.seed ?? 0);
      const n = o.prompt.length;
      const data = Float32Array.from({ length: n * size * size * 3 }, (_, i) => (i % 7 === 0 ? 0 : i % 7 === 1 ? 1 : rng.uniform()));
      return { images: tf.tensor4d(data, [n, size, size, 3]) };
    },
  } as unknown as TrainingModel & { calls: GenerateCall[] };
}

const concept = (classPrompt?: string, name = "star"): ConceptSpec =>
  ({ images: undefined as unknown as tf.Tensor4D, prompt: "a photo of sks star", classPrompt, trigger: "sks", name }) as ConceptSpec;

let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "apt-dreambooth-"));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

let runs = 0;
async function runDir(): Promise<string> {
  return join(root, `run-${runs++}`);
}

function context(model: TrainingModel, dir: string, o: { concepts?: ConceptSpec[]; seed?: number; batchSize?: number; log?: string[] } = {}): SetupContext {
  return {
    instanceName: "dreambooth",
    model,
    rng: new Rng(o.seed ?? 7),
    runDir: dir,
    methods: ["dreambooth", "lora"],
    concepts: o.concepts ?? [concept("a photo of a star")],
    train: { steps: 10, batchSize: o.batchSize ?? 2, seed: 0 },
    log: (m) => o.log?.push(m),
  };
}

async function make(options: DreamBoothOptionsInput, ctx: SetupContext): Promise<Method> {
  const m = await dreambooth.create(dreamboothOptions.parse(options), ctx);
  await m.prepare!(ctx.model);
  return m;
}

function instanceBatch(n = 2, size = 4): Batch {
  return {
    images: tf.fill([n, size, size, 3], 0.25) as tf.Tensor4D,
    items: Array.from({ length: n }, () => ({ prompt: "a photo of sks star", kind: "instance", weight: 1 })),
  };
}

async function cacheFiles(dir: string): Promise<string[]> {
  return existsSync(join(dir, CLASS_IMAGES_DIR)) ? (await readdir(join(dir, CLASS_IMAGES_DIR))).sort() : [];
}

describe("class images", () => {
  it("are generated once by the model, in chunks of ≤ 8, with seeds from ctx.rng, and cached as safetensors in [-1, 1]", async () => {
    const model = fakeModel();
    const dir = await runDir();
    const m = await make({ num_class_images: 20 }, context(model, dir));
    expect(model.calls.map((c) => c.prompt.length)).toEqual([8, 8, 4]);
    for (const c of model.calls) {
      expect(new Set(c.prompt)).toEqual(new Set(["a photo of a star"]));
      expect(c.numInferenceSteps).toBe(25);
      expect(c.guidanceScale).toBe(3);
    }
    const seeds = model.calls.map((c) => c.seed);
    expect(new Set(seeds).size).toBe(3);
    // Same ctx.rng seed → same generation seeds.
    const again = fakeModel();
    (await make({ num_class_images: 20 }, context(again, await runDir()))).dispose!();
    expect(again.calls.map((c) => c.seed)).toEqual(seeds);

    const files = await cacheFiles(dir);
    expect(files).toHaveLength(1);
    expect(files[0]).toMatch(/^class-[0-9a-f]{16}\.safetensors$/);
    const { tensors, metadata } = await readSafetensors(join(dir, CLASS_IMAGES_DIR, files[0]!));
    expect(metadata.prompt).toBe("a photo of a star");
    expect(metadata.count).toBe("20");
    const images = tensors.images!;
    expect(images.shape).toEqual([20, 4, 4, 3]);
    const data = images.data as Float32Array;
    expect(Math.min(...data)).toBe(-1);
    expect(Math.max(...data)).toBe(1);

    // The cached values are 2x − 1 of what generate returned.
    const first = await model.generate({ prompt: ["x", "x", "x", "x", "x", "x", "x", "x"], seed: seeds[0]! });
    const expected = Array.from(first.images.dataSync()).map((v) => 2 * v - 1);
    first.images.dispose();
    expect(Array.from(data.slice(0, expected.length))).toEqual(expected.map((v) => Math.fround(v)));
    m.dispose!();
  });

  it("a second create/prepare in the same run folder reuses the cache (no generate call, same images)", async () => {
    const dir = await runDir();
    const first = fakeModel();
    const a = await make({ num_class_images: 10, class_images_per_batch: 10 }, context(first, dir));
    expect(first.calls).toHaveLength(2);
    const log: string[] = [];
    const second = fakeModel();
    const b = await make({ num_class_images: 10, class_images_per_batch: 10 }, context(second, dir, { log }));
    expect(second.calls).toHaveLength(0);
    expect(log.join("\n")).toMatch(/from .*class-[0-9a-f]{16}\.safetensors/);
    const batch = instanceBatch(1);
    const s = { step: 1, task: 0 };
    const ra = a.augment!(batch, { ...s, rng: new Rng(3) });
    const rb = b.augment!(batch, { ...s, rng: new Rng(3) });
    expect(Array.from(rb.images.dataSync())).toEqual(Array.from(ra.images.dataSync()));
    tf.dispose([batch.images, ra.images, rb.images]);
    a.dispose!();
    b.dispose!();
  });

  it("regenerates when the cache does not match (count, seed) or is corrupt", async () => {
    const dir = await runDir();
    (await make({ num_class_images: 3 }, context(fakeModel(), dir))).dispose!();
    // Another count or another seed: another file.
    const other = fakeModel();
    (await make({ num_class_images: 4 }, context(other, dir))).dispose!();
    expect(other.calls).toHaveLength(1);
    const reseeded = fakeModel();
    (await make({ num_class_images: 3 }, context(reseeded, dir, { seed: 8 }))).dispose!();
    expect(reseeded.calls).toHaveLength(1);
    expect(await cacheFiles(dir)).toHaveLength(3);

    // A truncated file is replaced.
    const seed = new Rng(7).nextUint32() >>> 1;
    const path = classImagesPath(dir, { prompt: "a photo of a star", count: 3, seed, steps: 25, guidance: 3 });
    expect(existsSync(path)).toBe(true);
    await writeFile(path, Buffer.from([1, 2, 3]));
    const log: string[] = [];
    const model = fakeModel();
    (await make({ num_class_images: 3 }, context(model, dir, { log }))).dispose!();
    expect(model.calls).toHaveLength(1);
    expect(log.join("\n")).toMatch(/unreadable cache/);
    (await readSafetensors(path)).tensors.images!.shape.forEach((d, i) => expect(d).toBe([3, 4, 4, 3][i]));
  });

  it("dispose() frees the class image tensors", async () => {
    const before = tf.memory().numTensors;
    const m = await make({ num_class_images: 5 }, context(fakeModel(), await runDir()));
    expect(tf.memory().numTensors).toBe(before + 1);
    m.dispose!();
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe("augment", () => {
  it("appends class_images_per_batch (default: the batch size) prior samples with the class prompt and prior_loss_weight", async () => {
    const m = await make({ num_class_images: 6, prior_loss_weight: 0.5 }, context(fakeModel(), await runDir(), { batchSize: 2 }));
    const batch = instanceBatch(2);
    const before = tf.memory().numTensors;
    const out = m.augment!(batch, { step: 1, task: 0, rng: new Rng(1) });
    expect(tf.memory().numTensors).toBe(before + 1); // only the new images
    expect(batch.images.isDisposed).toBe(false);
    expect(out.images.shape).toEqual([4, 4, 4, 3]);
    expect(out.items).toEqual([
      ...batch.items,
      { prompt: "a photo of a star", kind: "prior", weight: 0.5 },
      { prompt: "a photo of a star", kind: "prior", weight: 0.5 },
    ]);
    const data = out.images.dataSync();
    const per = 4 * 4 * 3;
    expect(Array.from(data.slice(0, 2 * per)).every((v) => v === 0.25)).toBe(true);
    const prior = Array.from(data.slice(2 * per));
    expect(prior.every((v) => v >= -1 && v <= 1)).toBe(true);
    expect(prior.some((v) => v === -1) && prior.some((v) => v === 1)).toBe(true);
    // Two distinct class images (chosen without replacement while enough exist).
    expect(prior.slice(0, per)).not.toEqual(prior.slice(per));
    tf.dispose([batch.images, out.images]);
    m.dispose!();
  });

  it("follows s.rng, honours class_images_per_batch, and samples with replacement past num_class_images", async () => {
    const m = await make({ num_class_images: 2, class_images_per_batch: 3 }, context(fakeModel(), await runDir()));
    const batch = instanceBatch(1);
    const a = m.augment!(batch, { step: 1, task: 0, rng: new Rng(5) });
    const b = m.augment!(batch, { step: 1, task: 0, rng: new Rng(5) });
    expect(a.items.map((it) => it.kind)).toEqual(["instance", "prior", "prior", "prior"]);
    expect(a.images.shape[0]).toBe(4);
    expect(Array.from(a.images.dataSync())).toEqual(Array.from(b.images.dataSync()));
    tf.dispose([batch.images, a.images, b.images]);
    m.dispose!();
  });

  it("resizes class images to the batch's size", async () => {
    const m = await make({ num_class_images: 2 }, context(fakeModel(8), await runDir()));
    const batch = instanceBatch(2, 4);
    const out = m.augment!(batch, { step: 1, task: 0, rng: new Rng(0) });
    expect(out.images.shape).toEqual([4, 4, 4, 3]);
    expect(Array.from(out.images.dataSync()).every((v) => v >= -1 && v <= 1)).toBe(true);
    tf.dispose([batch.images, out.images]);
    m.dispose!();
  });

  it("uses each task's class prompt in a continual run (one cache per prompt)", async () => {
    const dir = await runDir();
    const model = fakeModel();
    const ctx = context(model, dir, { concepts: [concept("a photo of a star"), concept("a photo of a dog", "dog")] });
    const m = await make({ num_class_images: 2, class_images_per_batch: 1 }, ctx);
    expect(new Set(model.calls.map((c) => c.prompt[0]))).toEqual(new Set(["a photo of a star", "a photo of a dog"]));
    expect(await cacheFiles(dir)).toHaveLength(2);
    const batch = instanceBatch(1);
    const out = m.augment!(batch, { step: 1, task: 1, rng: new Rng(0) });
    expect(out.items[1]!.prompt).toBe("a photo of a dog");
    tf.dispose([batch.images, out.images]);
    m.dispose!();
  });

  it("fails clearly when called before prepare()", async () => {
    const ctx = context(fakeModel(), await runDir());
    const m = await dreambooth.create(dreamboothOptions.parse({}), ctx);
    const batch = instanceBatch(1);
    expect(() => m.augment!(batch, { step: 1, task: 0, rng: new Rng(0) })).toThrow(/before prepare/);
    batch.images.dispose();
  });
});

describe("plugin and options", () => {
  it("is a v1 plugin named dreambooth; default and named exports agree", () => {
    expect(dreamboothDefault).toBe(dreambooth);
    expect(dreambooth.apiVersion).toBe(1);
    expect(dreambooth.name).toBe("dreambooth");
  });

  const validate = (v: unknown) => dreambooth.options["~standard"].validate(v) as { value?: unknown; issues?: readonly unknown[] };

  it("fills defaults", () => {
    expect(validate({})).toEqual({
      value: { num_class_images: 100, prior_loss_weight: 1, sample_steps: 25, guidance_scale: 3 },
    });
    expect(validate({ class_prompt: "a photo of a dog", class_images_per_batch: 1 }).value).toMatchObject({ class_prompt: "a photo of a dog", class_images_per_batch: 1 });
  });

  it.each([
    [{ typo: 1 }, "typo"],
    [{ class_prompt: "" }, "class_prompt"],
    [{ num_class_images: 0 }, "num_class_images"],
    [{ num_class_images: 2.5 }, "num_class_images"],
    [{ prior_loss_weight: -1 }, "prior_loss_weight"],
    [{ sample_steps: 0 }, "sample_steps"],
    [{ guidance_scale: -1 }, "guidance_scale"],
    [{ class_images_per_batch: 0 }, "class_images_per_batch"],
  ])("rejects %j", (options, field) => {
    const r = validate(options);
    expect(r.issues?.length).toBeGreaterThan(0);
    expect(JSON.stringify(r.issues)).toContain(field);
  });

  it("create() fails without a class prompt, naming the option", async () => {
    const ctx = context(fakeModel(), await runDir(), { concepts: [concept(undefined)] });
    const err = await Promise.resolve()
      .then(() => dreambooth.create(dreamboothOptions.parse({}), ctx))
      .catch((e: unknown) => e);
    expect(AptError.isInstance(err)).toBe(true);
    expect((err as AptError).code).toBe("BAD_INPUT");
    expect((err as Error).message).toMatch(/"class_prompt" option/);
    // The option alone is enough.
    const model = fakeModel();
    const m = await make({ class_prompt: "a photo of a thing", num_class_images: 1 }, { ...ctx, model });
    expect(model.calls[0]!.prompt).toEqual(["a photo of a thing"]);
    m.dispose!();
  });
});
