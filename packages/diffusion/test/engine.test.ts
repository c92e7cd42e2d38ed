/**
 * The training engine of @apt/core driving a real diffusers-format model (the
 * shapes-s fixture), with small inline plugins: loss terms by name, batched
 * variants, determinism, resume bit-identity, divergence, hook conflicts and
 * the memory rule over 200 steps.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs-core";
import { AptError, DEFAULT_TRAIN_OPTIONS, emaDecayAt, listCheckpoints, minSnrWeight, perSampleSquaredError, readCheckpoint, train, type MethodPlugin, type ResolvedMethod, type StandardSchemaV1, type TrainEvent, type TrainRun } from "@apt/core";
import { backend } from "@apt/backend-cpu";
import { CLIPTextModel, DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel, WordLevelTokenizer } from "../src/index.js";

const fixture = join(import.meta.dirname, "..", "..", "..", "..", "shared", "fixtures", "shapes-s-parity");

/** A Standard-Schema validator that accepts objects as they are. */
const anyOptions: StandardSchemaV1<unknown, Record<string, unknown>> = {
  "~standard": { version: 1, vendor: "test", validate: (v) => ({ value: (v ?? {}) as Record<string, unknown> }) },
};

/** A rank-1 adapter on every attention to_q/to_v: provides "adapter", trains only its variables. */
const toyAdapter: MethodPlugin<Record<string, unknown>> = {
  apiVersion: 1,
  name: "toy-adapter",
  options: anyOptions,
  provides: ["adapter"],
  create: (_o, ctx) => {
    let vars: Record<string, tf.Variable> = {};
    return {
      prepare: (model) => {
        vars = model.unet.addAdapter(["to_q", "to_v"], (p) => {
          const init = new Float32Array(p.inFeatures!);
          for (let i = 0; i < init.length; i++) init[i] = ctx.rng.normal() * 0.1;
          const a = tf.variable(tf.tensor2d(init, [p.inFeatures!, 1]));
          const b = tf.variable(tf.zeros([1, p.outFeatures!]));
          return {
            name: "toy",
            variables: () => ({ "toy.a": a, "toy.b": b }),
            forward: (x) => tf.reshape(tf.matMul(tf.matMul(tf.reshape(x, [-1, p.inFeatures!]), a), b), [...x.shape.slice(0, -1), p.outFeatures!]),
          };
        });
      },
      trainable: () => vars,
      dispose: () => undefined,
    };
  },
};

/** A CAT-like regulariser: adapted vs. base prediction on another prompt, in the same batched forward. */
const toyReg: MethodPlugin<Record<string, unknown>> = {
  apiVersion: 1,
  name: "toy-reg",
  options: anyOptions,
  requires: ["adapter"],
  create: () => ({
    variants: (s) => [
      { prompts: s.batch.items.map(() => "w1 w2"), adapters: true },
      { prompts: s.batch.items.map(() => "w1 w2"), adapters: false },
    ],
    losses: (s) => ({ reg: tf.mul(tf.mean(tf.square(tf.sub(s.variants[0]!, s.variants[1]!))), 0.5) as tf.Scalar }),
  }),
};

const uniformTimesteps = (name: string): MethodPlugin<Record<string, unknown>> => ({
  apiVersion: 1,
  name,
  options: anyOptions,
  create: () => ({ timesteps: (n, s) => Int32Array.from({ length: n }, () => s.rng.int(1000)) }),
});

const nanLoss: MethodPlugin<Record<string, unknown>> = {
  apiVersion: 1,
  name: "nan-at-3",
  options: anyOptions,
  create: () => ({ losses: (s) => ({ boom: tf.scalar(s.step === 3 ? NaN : 0) }) }),
};

let pipe: StableDiffusionPipeline;
const vocab: Record<string, number> = { "<pad>": 0, "<bos>": 1, "<eos>": 2, "<unk>": 3 };
for (let i = 4; i < 256; i++) vocab[`w${i - 3}`] = i;
let images: tf.Tensor4D;

beforeAll(async () => {
  await backend.init();
  pipe = new StableDiffusionPipeline({
    unet: await UNet2DConditionModel.fromPretrained(join(fixture, "unet")),
    textEncoder: await CLIPTextModel.fromPretrained(join(fixture, "text_encoder")),
    tokenizer: new WordLevelTokenizer({ vocab, modelMaxLength: 16, bosToken: "<bos>", eosToken: "<eos>", padToken: "<pad>", unkToken: "<unk>" }),
    scheduler: new DDPMScheduler({}),
  });
  // Four 16×16 "instance images" (the UNet is convolutional: any multiple of 4 works).
  images = tf.tidy(() => tf.tanh(tf.randomNormal([4, 16, 16, 3], 0, 1, "float32", 5))) as tf.Tensor4D;
});

function methods(...plugins: MethodPlugin<Record<string, unknown>>[]): ResolvedMethod[] {
  return plugins.map((p) => ({ plugin: p as MethodPlugin<unknown>, options: {}, name: p.name }));
}

async function runDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "apt-engine-"));
  await mkdir(dir, { recursive: true });
  return dir;
}

function baseRun(dir: string, over: Partial<TrainRun> = {}, trainOver: Partial<typeof DEFAULT_TRAIN_OPTIONS> = {}): TrainRun {
  return {
    model: pipe,
    task: "personalize",
    concepts: [{ images, prompt: "w5 w6 w7", trigger: "w6" }],
    train: { ...DEFAULT_TRAIN_OPTIONS, steps: 6, batchSize: 2, lr: 1e-2, checkpointEvery: 2, seed: 7, ...trainOver },
    methods: methods(toyAdapter, toyReg),
    runDir: dir,
    ...over,
  };
}

/** A fresh copy of the fixture pipeline (for runs that train every weight). */
async function fresh(): Promise<StableDiffusionPipeline> {
  return new StableDiffusionPipeline({
    unet: await UNet2DConditionModel.fromPretrained(join(fixture, "unet")),
    textEncoder: await CLIPTextModel.fromPretrained(join(fixture, "text_encoder")),
    tokenizer: pipe.tokenizer,
    scheduler: new DDPMScheduler({}),
  });
}

/** The bytes of every adapter variable currently installed on the UNet (those of the last run). */
async function adapterWeights(): Promise<Buffer> {
  const parts: Buffer[] = [];
  for (const m of pipe.unet.modules()) {
    for (const a of (m as { adapters?: { variables(): Record<string, tf.Variable> }[] }).adapters ?? []) {
      for (const v of Object.values(a.variables())) parts.push(Buffer.from((await v.data()).buffer));
    }
  }
  return Buffer.concat(parts);
}

describe("training engine", () => {
  it("runs named loss terms from several plugins, checkpoints, and is reproducible from its seed", async () => {
    const events: TrainEvent[] = [];
    const dir = await runDir();
    const summary = await train(baseRun(dir, { onEvent: (e) => events.push(e) }));
    const steps = events.filter((e) => e.type === "step");
    expect(steps).toHaveLength(6);
    const first = steps[0] as Extract<TrainEvent, { type: "step" }>;
    expect(Object.keys(first.terms)).toEqual(["base", "toy-reg/reg"]);
    expect(first.loss).toBeCloseTo(first.terms.base! + first.terms["toy-reg/reg"]!, 5);
    expect(first.terms["toy-reg/reg"]).toBe(0); // B = 0 at init: adapted == base
    expect((steps[5] as Extract<TrainEvent, { type: "step" }>).terms["toy-reg/reg"]).toBeGreaterThan(0);
    expect((await listCheckpoints(dir)).map((c) => c.step)).toEqual([2, 4, 6]);
    expect(summary.steps).toBe(6);
    const weightsA = await adapterWeights();
    pipe.unet.removeAdapters();
    await train(baseRun(await runDir()));
    expect((await adapterWeights()).equals(weightsA)).toBe(true);
    pipe.unet.removeAdapters();
  });

  it("a run stopped at step 3 and resumed from its checkpoint ends bit-identical", async () => {
    await train(baseRun(await runDir()));
    const straight = await adapterWeights();
    pipe.unet.removeAdapters();
    const dir = await runDir();
    await train(baseRun(dir, { stopAfter: 3 }, { checkpointEvery: 3 }));
    pipe.unet.removeAdapters();
    // Simulate a crash mid-write of the next checkpoint: a leftover temp folder is ignored.
    await mkdir(join(dir, "checkpoints", "checkpoint-4.tmp-999"), { recursive: true });
    expect((await listCheckpoints(dir)).map((c) => c.step)).toEqual([3]);
    await train(baseRun(dir, { resume: "latest" }, { checkpointEvery: 3 }));
    expect((await adapterWeights()).equals(straight)).toBe(true);
    pipe.unet.removeAdapters();
  });

  it("fails at start on conflicting exclusive hooks, unmet requirements and duplicates, naming them", async () => {
    const dir = await runDir();
    await expect(train(baseRun(dir, { methods: methods(toyAdapter, uniformTimesteps("sampler-a"), uniformTimesteps("sampler-b")) }))).rejects.toThrow(/methods "sampler-a" and "sampler-b" both implement "timesteps"/);
    pipe.unet.removeAdapters();
    await expect(train(baseRun(dir, { methods: methods(toyReg) }))).rejects.toThrow(/method "toy-reg" needs a plugin that provides "adapter"/);
    await expect(train(baseRun(dir, { methods: methods(toyAdapter, toyAdapter) }))).rejects.toThrow(/appears twice/);
    const err = await train(baseRun(dir, { methods: methods(toyReg) })).catch((e: unknown) => e);
    expect(AptError.isInstance(err) && (err as AptError).exitCode).toBe(2);
    expect(existsSync(join(dir, "checkpoints"))).toBe(false);
  });

  it("stops on a NaN loss with the step and the bad term, keeping the last good checkpoint", async () => {
    const dir = await runDir();
    const err = await train(baseRun(dir, { methods: methods(toyAdapter, nanLoss) }, { checkpointEvery: 2 })).catch((e: unknown) => e);
    pipe.unet.removeAdapters();
    expect(AptError.isInstance(err)).toBe(true);
    expect((err as AptError).code).toBe("DIVERGED");
    expect((err as Error).message).toMatch(/training diverged at step 3: nan-at-3\/boom = NaN/);
    expect((err as Error).message).toMatch(/checkpoint-2/);
    expect((await listCheckpoints(dir)).map((c) => c.step)).toEqual([2]);
  });

  it("runs a continual task concept after concept, with task start/end hooks and only the current concept's data", async () => {
    const seen: string[] = [];
    const recorder: MethodPlugin<Record<string, unknown>> = {
      apiVersion: 1,
      name: "recorder",
      options: anyOptions,
      create: () => ({
        onTaskStart: (task, c) => void seen.push(`start ${task} ${c.name}`),
        onTaskEnd: (task, c) => void seen.push(`end ${task} ${c.name}`),
        augment: (batch, s) => {
          seen.push(`step ${s.step} task ${s.task} ${batch.items[0]!.prompt}`);
          return batch;
        },
      }),
    };
    const half = (i: number) => tf.slice(images, [i * 2, 0, 0, 0], [2, 8, 8, 3]) as tf.Tensor4D;
    await train(
      baseRun(await runDir(), {
        task: "continual",
        concepts: [
          { images: half(0), prompt: "w5 w6", name: "first" },
          { images: half(1), prompt: "w7 w8", name: "second" },
        ],
        methods: methods(toyAdapter, recorder),
      }, { steps: 2, batchSize: 1 }),
    );
    pipe.unet.removeAdapters();
    expect(seen).toEqual(["start 0 first", "step 1 task 0 w5 w6", "step 2 task 0 w5 w6", "end 0 first", "start 1 second", "step 3 task 1 w7 w8", "step 4 task 1 w7 w8", "end 1 second"]);
  });

  it("keeps tf.memory().numTensors constant over 200 steps", async () => {
    const counts: number[] = [];
    await train(
      baseRun(await runDir(), {
        concepts: [{ images: tf.slice(images, [0, 0, 0, 0], [2, 8, 8, 3]) as tf.Tensor4D, prompt: "w5 w6" }],
        onEvent: (e) => {
          if (e.type === "step") counts.push(tf.memory().numTensors);
        },
      }, { steps: 200, batchSize: 1, checkpointEvery: 0 }),
    );
    pipe.unet.removeAdapters();
    expect(counts).toHaveLength(200);
    expect(new Set(counts.slice(1)).size).toBe(1);
  });

  it("pretrains without a concept: `data` makes each batch, the UNet and the text encoder both train (or the UNet alone: trainTextEncoder false), resume is bit-identical", async () => {
    const calls: string[] = [];
    // Fresh "rendered" images each step, drawn from the run's Rng (so resume replays them).
    const data = (n: number, info: { step: number; rng: { uniform(): number } }) => {
      calls.push(`${info.step}:${n}`);
      const values = Float32Array.from({ length: n * 8 * 8 * 3 }, () => info.rng.uniform() * 2 - 1);
      return { images: tf.tensor4d(values, [n, 8, 8, 3]), items: Array.from({ length: n }, (_, i) => ({ prompt: `w${5 + i} w9`, kind: "instance", weight: 1 })) };
    };
    const weightsOf = async (m: { namedParameters(): Map<string, tf.Variable> }) => Buffer.concat(await Promise.all([...m.namedParameters().values()].map(async (v) => Buffer.from((await v.data()).buffer))));
    const weights = async (m: StableDiffusionPipeline) => {
      const parts: Buffer[] = [];
      for (const v of [...m.unet.namedParameters().values(), ...m.textEncoder.namedParameters().values()]) parts.push(Buffer.from((await v.data()).buffer));
      return Buffer.concat(parts);
    };
    const run = (model: StableDiffusionPipeline, dir: string, over: Partial<TrainRun> = {}): TrainRun => ({
      model,
      task: "pretrain",
      concepts: [],
      data,
      train: { ...DEFAULT_TRAIN_OPTIONS, steps: 4, batchSize: 2, lr: 1e-3, checkpointEvery: 2, seed: 3 },
      methods: [],
      runDir: dir,
      ...over,
    });

    const a = await fresh();
    const before = a.textEncoder.namedParameters().get("text_model.embeddings.token_embedding.weight")!.dataSync().slice();
    const events: TrainEvent[] = [];
    const counts: number[] = [];
    await train(run(a, await runDir(), { onEvent: (e) => {
      events.push(e);
      if (e.type === "step") counts.push(tf.memory().numTensors);
    } }));
    expect(calls).toEqual(["1:2", "2:2", "3:2", "4:2"]);
    const start = events.find((e) => e.type === "start") as Extract<TrainEvent, { type: "start" }>;
    expect(start.trainable).toBe(1_687_075 + 84_480);
    const after = a.textEncoder.namedParameters().get("text_model.embeddings.token_embedding.weight")!.dataSync();
    expect(after.some((v, i) => v !== before[i])).toBe(true);
    expect(new Set(counts).size).toBe(1);
    const straight = await weights(a);
    a.dispose();

    const b = await fresh();
    const dir = await runDir();
    await train(run(b, dir, { stopAfter: 2 }));
    b.dispose();
    const c = await fresh();
    await train(run(c, dir, { resume: "latest" }));
    expect((await weights(c)).equals(straight)).toBe(true);
    c.dispose();

    // trainTextEncoder: false pretrains the UNet under a frozen text encoder (diffusers' --train_text_encoder off).
    const d = await fresh();
    const textBefore = await weightsOf(d.textEncoder);
    const unetBefore = await weightsOf(d.unet);
    const frozenEvents: TrainEvent[] = [];
    await train(run(d, await runDir(), { train: { ...run(d, "").train, trainTextEncoder: false }, onEvent: (e) => frozenEvents.push(e) }));
    expect((frozenEvents.find((e) => e.type === "start") as Extract<TrainEvent, { type: "start" }>).trainable).toBe(1_687_075);
    expect((await weightsOf(d.textEncoder)).equals(textBefore)).toBe(true);
    expect((await weightsOf(d.unet)).equals(unetBefore)).toBe(false);
    d.dispose();
    await expect(train(run(pipe, dir, { train: { ...run(pipe, "").train, trainTextEncoder: "yes" as never } }))).rejects.toThrow(/train\.trainTextEncoder: yes is not true or false/);
    await expect(train(baseRun(await runDir(), {}, { trainTextEncoder: true }))).rejects.toThrow(/train\.trainTextEncoder applies when no method chooses the trainable weights, but toy-adapter does/);

    await expect(train(run(pipe, dir, { data: undefined }))).rejects.toThrow(/task "pretrain": give `data`/);
    await expect(train(run(pipe, dir, { concepts: [{ images, prompt: "w5" }] }))).rejects.toThrow(/not on concepts/);
    await expect(train(baseRun(dir, { data }))).rejects.toThrow(/`data` is for task "pretrain"/);
  });

  it("a run that trains the model's own weights (no method chooses them) writes the fine-tuned pipeline to final/; an adapter run does not", async () => {
    const model = await fresh();
    const dir = await runDir();
    const events: TrainEvent[] = [];
    await train(baseRun(dir, { model, methods: [], onEvent: (e) => events.push(e) }, { steps: 2 }));
    const exported = events.find((e) => e.type === "export") as Extract<TrainEvent, { type: "export" }>;
    expect(exported.paths).toEqual([join(dir, "final", "model_index.json")]);
    const saved = await UNet2DConditionModel.fromPretrained(join(dir, "final", "unet"));
    const original = await UNet2DConditionModel.fromPretrained(join(fixture, "unet"));
    const bytes = async (m: UNet2DConditionModel) => Buffer.concat(await Promise.all([...m.namedParameters().values()].map(async (v) => Buffer.from((await v.data()).buffer))));
    expect((await bytes(saved)).equals(await bytes(model.unet))).toBe(true);
    expect((await bytes(saved)).equals(await bytes(original))).toBe(false);
    expect(existsSync(join(dir, "final", "text_encoder", "config.json"))).toBe(true);
    [saved, original, model].forEach((m) => m.dispose());
    // With adapters, only the methods' exports land in final/ (the base weights did not change).
    const adapterDir = await runDir();
    await train(baseRun(adapterDir, {}, { steps: 2 }));
    pipe.unet.removeAdapters();
    expect(existsSync(join(adapterDir, "final", "model_index.json"))).toBe(false);
  });

  it("emaDecay: diffusers' EMAModel average of the trainable weights, checkpointed, replacing the weights when the run completes; resume is bit-identical", async () => {
    expect([1, 2, 3, 100].map((n) => emaDecayAt(n, 0.9))).toEqual([0, 2 / 11, 3 / 12, 0.9]);
    /** Every installed adapter variable, concatenated (the trainable set of baseRun). */
    const adapterVector = (): Float64Array => {
      const parts: number[] = [];
      for (const m of pipe.unet.modules()) {
        for (const a of (m as { adapters?: { variables(): Record<string, tf.Variable> }[] }).adapters ?? []) {
          for (const v of Object.values(a.variables())) parts.push(...v.dataSync());
        }
      }
      return Float64Array.from(parts);
    };
    const decay = 0.8;
    const raw: Float64Array[] = [];
    const counts: number[] = [];
    const dir = await runDir();
    await train(baseRun(dir, { onEvent: (e) => {
      if (e.type !== "step") return;
      raw.push(adapterVector()); // the optimizer's weights after step e.step
      counts.push(tf.memory().numTensors);
    } }, { emaDecay: decay }));
    const averaged = adapterVector();
    pipe.unet.removeAdapters();
    // The same average in float64: a₁ = w₁, aₙ = aₙ₋₁ − (1 − dₙ)(aₙ₋₁ − wₙ).
    const reference: Float64Array[] = [];
    let a = raw[0]!.slice();
    reference.push(a.slice());
    for (let n = 2; n <= raw.length; n++) {
      const oneMinus = 1 - emaDecayAt(n, decay);
      a = a.map((x, i) => x - oneMinus * (x - raw[n - 1]![i]!));
      reference.push(a.slice());
    }
    const maxAbs = (x: ArrayLike<number>, y: ArrayLike<number>) => Math.max(...Array.from(x, (v, i) => Math.abs(v - y[i]!)));
    expect(raw).toHaveLength(6);
    expect(maxAbs(averaged, reference[5]!)).toBeLessThan(1e-6);
    expect(maxAbs(averaged, raw[5]!)).toBeGreaterThan(1e-4); // the average is not the last weights
    expect(new Set(counts.slice(1)).size).toBe(1);
    // Checkpoint 4 holds the raw weights and the average after step 4.
    const ck = await readCheckpoint((await listCheckpoints(dir)).find((c) => c.step === 4)!.path);
    const flat = (r: Record<string, tf.Tensor>) => Float64Array.from(Object.values(r).flatMap((t) => Array.from(t.dataSync())));
    expect(maxAbs(flat(ck.trainable), raw[3]!)).toBe(0);
    expect(maxAbs(flat(ck.ema!), reference[3]!)).toBeLessThan(1e-6);
    tf.dispose([...Object.values(ck.trainable), ...Object.values(ck.optimizer), ...Object.values(ck.ema!)]);

    // Stopped at step 3 and resumed: the same final (averaged) weights, bit for bit.
    const resumed = await runDir();
    await train(baseRun(resumed, { stopAfter: 3 }, { emaDecay: decay, checkpointEvery: 3 }));
    pipe.unet.removeAdapters();
    await train(baseRun(resumed, { resume: "latest" }, { emaDecay: decay, checkpointEvery: 3 }));
    expect(Buffer.from(Float64Array.from(adapterVector()).buffer).equals(Buffer.from(averaged.buffer))).toBe(true);
    pipe.unet.removeAdapters();

    // A checkpoint written without an average cannot continue one; out-of-range decays are refused.
    const plain = await runDir();
    await train(baseRun(plain, { stopAfter: 2 }));
    pipe.unet.removeAdapters();
    const err = await train(baseRun(plain, { resume: "latest" }, { emaDecay: decay })).then(() => undefined, (e: unknown) => e);
    pipe.unet.removeAdapters();
    expect(AptError.isInstance(err), String(err)).toBe(true);
    expect((err as Error).message).toMatch(/checkpoint-2: train\.emaDecay is 0\.8 but the checkpoint has no weight average for any trainable variable \(it was written with emaDecay 0\)/);
    await expect(train(baseRun(await runDir(), {}, { emaDecay: 1 }))).rejects.toThrow(/train\.emaDecay: 1 is not in \[0, 1\)/);
    pipe.unet.removeAdapters();
  });

  it("per-pixel loss weights: the weighted mean of squared errors; a constant map changes nothing; wrong shapes fail naming lossWeights", async () => {
    const pred = tf.tensor4d([1, 2, 3, 4, 5, 6, 7, 8], [2, 2, 2, 1]);
    const target = tf.zeros([2, 2, 2, 1]) as tf.Tensor4D;
    const mask = tf.tensor4d([1, 0, 0, 0, 0, 0, 3, 1], [2, 2, 2, 1]);
    expect(Array.from(perSampleSquaredError(pred, target, mask).dataSync())).toEqual([1, (3 * 49 + 64) / 4]);
    const plainErr = perSampleSquaredError(pred, target).dataSync();
    const constErr = perSampleSquaredError(pred, target, tf.fill([2, 2, 2, 1], 2.5) as tf.Tensor4D).dataSync();
    constErr.forEach((v, i) => expect(v).toBeCloseTo(plainErr[i]!, 5));
    tf.dispose([pred, target, mask]);
    const bad = (n: number) => ({ images: tf.zeros([n, 8, 8, 3]) as tf.Tensor4D, items: Array.from({ length: n }, () => ({ prompt: "w5", kind: "instance", weight: 1 })), lossWeights: tf.ones([n, 4, 4, 1]) as tf.Tensor4D });
    await expect(train({ model: pipe, task: "pretrain", concepts: [], data: bad, methods: [], runDir: await runDir(), train: { ...DEFAULT_TRAIN_OPTIONS, steps: 1, batchSize: 2 } })).rejects.toThrow(/lossWeights \[2, 4, 4, 1\] must be \[2, 8, 8, 1\]/);
  });

  it("snrGamma: min-SNR-γ weighs each sample's base loss by diffusers' formula, the same with a replica thread; a bad value fails naming it", async () => {
    // diffusers: min(SNR, γ) / SNR (ε), / (SNR + 1) (v), min(SNR, γ) (x₀); ε at SNR 0 takes the limit 1.
    const snrs = [0, 0.5, 5, 100];
    expect(snrs.map((x) => minSnrWeight(x, 5, "epsilon"))).toEqual([1, 1, 1, 0.05]);
    expect(snrs.map((x) => minSnrWeight(x, 5, "v_prediction"))).toEqual([0, 0.5 / 1.5, 5 / 6, 5 / 101]);
    expect(snrs.map((x) => minSnrWeight(x, 5, "sample"))).toEqual([0, 0.5, 5, 5]);

    const data = (n: number, info: { rng: { uniform(): number } }) => ({
      images: tf.tensor4d(Float32Array.from({ length: n * 8 * 8 * 3 }, () => info.rng.uniform() * 2 - 1), [n, 8, 8, 3]),
      items: Array.from({ length: n }, (_, i) => ({ prompt: `w${5 + i} w9`, kind: "instance", weight: 1 + i })),
    });
    // Fixed timesteps across the SNR range (the fixture's DDPM: ε-prediction); with `capture`, each step's per-sample losses and SNRs.
    const seen: { losses: number[]; snr: number[] }[] = [];
    const fixed = (capture: boolean): MethodPlugin<Record<string, unknown>> => ({
      apiVersion: 1, name: "fixed-timesteps", options: anyOptions,
      create: () => ({
        timesteps: (n) => Int32Array.from({ length: n }, (_, i) => [950, 400, 20][i % 3]!),
        ...(capture ? { losses: (st) => (seen.push({ losses: Array.from(st.perSampleLoss.dataSync()), snr: Array.from(st.snr) }), {}) } : {}),
      }),
    });
    const firstLoss = async (snrGamma: number, capture: boolean, replicas?: TrainRun["replicas"]) => {
      const m = await fresh();
      let loss = Number.NaN;
      await train({
        model: m, task: "pretrain", concepts: [], data, methods: methods(fixed(capture)), runDir: await runDir(),
        train: { ...DEFAULT_TRAIN_OPTIONS, steps: 1, batchSize: 3, lr: 1e-3, checkpointEvery: 0, seed: 5, snrGamma },
        ...(replicas ? { replicas } : {}),
        onEvent: (e) => void (e.type === "step" && (loss = e.loss)),
      });
      m.dispose();
      return loss;
    };
    const plain = await firstLoss(0, true);
    const weighed = await firstLoss(1, true);
    const [a, b] = seen;
    expect(a!.losses).toEqual(b!.losses); // same seed, same timesteps: the same per-sample losses
    expect(a!.snr[2]).toBeGreaterThan(1); // t = 20 is weighed down, t = 400 and 950 are not
    expect(a!.snr[0]).toBeLessThan(1);
    const items = [1, 2, 3];
    expect(plain).toBeCloseTo(a!.losses.reduce((acc, l, i) => acc + items[i]! * l, 0) / 3, 5);
    expect(weighed).toBeCloseTo(a!.losses.reduce((acc, l, i) => acc + items[i]! * minSnrWeight(a!.snr[i]!, 1, "epsilon") * l, 0) / 3, 5);
    expect(weighed).not.toBeCloseTo(plain, 3);
    // A replica thread weighs its slice (the last sample, t = 20) the same way.
    const replica = { count: 1, module: new URL("./fixtures/replica-model.mjs", import.meta.url), args: { fixture, vocab } };
    expect(await firstLoss(1, false, replica)).toBeCloseTo(weighed, 5);
    await expect(train({ ...baseRun(await runDir()), train: { ...DEFAULT_TRAIN_OPTIONS, snrGamma: -1 } })).rejects.toThrow(/train\.snrGamma: -1 is not a number ≥ 0/);
  });

  it("splits pretraining batches with a replica thread: the same update as one process, up to float order (with and without per-pixel loss weights)", async () => {
    // masked: a loss-weight map per image (0 on the left half, 1 + rng on the right), as kohya's masked loss.
    const data = (masked: boolean) => (n: number, info: { rng: { uniform(): number } }) => {
      const values = Float32Array.from({ length: n * 8 * 8 * 3 }, () => info.rng.uniform() * 2 - 1);
      const batch = { images: tf.tensor4d(values, [n, 8, 8, 3]), items: Array.from({ length: n }, (_, i) => ({ prompt: `w${5 + i} w9`, kind: "instance", weight: 1 })) };
      if (!masked) return batch;
      const m = Float32Array.from({ length: n * 64 }, (_, i) => (i % 8 < 4 ? 0 : 1 + info.rng.uniform()));
      return { ...batch, lossWeights: tf.tensor4d(m, [n, 8, 8, 1]) };
    };
    const run = async (masked: boolean, replicas?: TrainRun["replicas"]) => {
      const m = await fresh();
      const losses: number[] = [];
      const counts: number[] = [];
      await train({
        model: m, task: "pretrain", concepts: [], data: data(masked), methods: [], runDir: await runDir(),
        train: { ...DEFAULT_TRAIN_OPTIONS, steps: 3, batchSize: 3, lr: 1e-3, checkpointEvery: 0, seed: 5 },
        ...(replicas ? { replicas } : {}),
        onEvent: (e) => void (e.type === "step" && (losses.push(e.loss), counts.push(tf.memory().numTensors))),
      });
      expect(new Set(counts).size).toBe(1);
      const w = [...m.unet.namedParameters().values(), ...m.textEncoder.namedParameters().values()].map((v) => v.dataSync().slice());
      m.dispose();
      return { losses, w };
    };
    const start = await fresh();
    const w0 = [...start.unet.namedParameters().values(), ...start.textEncoder.namedParameters().values()].map((v) => v.dataSync().slice());
    start.dispose();
    const replica = { count: 1, module: new URL("./fixtures/replica-model.mjs", import.meta.url), args: { fixture, vocab } };
    const plain = await run(false);
    for (const masked of [false, true]) {
      const one = masked ? await run(true) : plain;
      const two = await run(masked, replica);
      two.losses.forEach((l, i) => expect(l).toBeCloseTo(one.losses[i]!, 5));
      // Compare the updates (not the weights, which barely move in 3 steps).
      let diff = 0;
      let norm = 0;
      one.w.forEach((a, i) => a.forEach((v, j) => {
        const d1 = v - w0[i]![j]!;
        const d2 = two.w[i]![j]! - w0[i]![j]!;
        diff += (d1 - d2) ** 2;
        norm += d1 * d1;
      }));
      expect(norm).toBeGreaterThan(0);
      expect(Math.sqrt(diff / norm)).toBeLessThan(1e-3);
      // The weights matter: masked training takes another path than plain.
      if (masked) expect(one.losses[0]).not.toBeCloseTo(plain.losses[0]!, 3);
    }
    // A plugin with per-sample hooks cannot be split.
    await expect(train({ ...baseRun(await runDir()), replicas: { count: 1, module: "x" } })).rejects.toThrow(/replicas: toy-adapter, toy-reg have per-sample hooks/);
    pipe.unet.removeAdapters();
  });
});
