/** LoRA on the shapes-s fixture (UNet + CLIP text encoder) on backend-cpu: prepare, math, export, load. */
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs-core";
import { AptError, Rng, readSafetensors, writeSafetensors, type Method, type SetupContext, type TrainingModel } from "@apt/core";
import { backend } from "@apt/backend-cpu";
import { AdaptableModule, CLIPTextModel, Conv2d, DiffusersModel, Linear, UNet2DConditionModel } from "@apt/diffusion";
import { LoraAdapter, kohyaModuleName, loadLoraWeights, lora, type LoraOptions, type LoraOptionsInput } from "../src/index.js";

const fixture = join(import.meta.dirname, "..", "..", "..", "..", "shared", "fixtures", "shapes-s-parity");
const ATTN = "down_blocks.1.attentions.0.transformer_blocks.0";
const TO_OUT = `${ATTN}.attn1.to_out.0`;

let unet: UNet2DConditionModel;
let text: CLIPTextModel;
let model: TrainingModel;
let sample: tf.Tensor4D;
let t: tf.Tensor1D;
let ctx: tf.Tensor3D;
let ids: tf.Tensor2D;

beforeAll(async () => {
  await backend.init();
  unet = await UNet2DConditionModel.fromPretrained(join(fixture, "unet"));
  text = await CLIPTextModel.fromPretrained(join(fixture, "text_encoder"));
  model = { unet, textEncoder: text } as unknown as TrainingModel;
  sample = tf.randomNormal([2, 32, 32, 3], 0, 1, "float32", 1) as tf.Tensor4D;
  t = tf.tensor1d([10, 700], "int32");
  ctx = tf.randomNormal([2, 16, 64], 0, 1, "float32", 2) as tf.Tensor3D;
  ids = tf.tensor2d([[1, 5, 9, 30, 200, 7, 2, 0], [3, 4, 5, 6, 7, 8, 9, 10]], [2, 8], "int32");
});

let active: Method[] = [];
afterEach(() => {
  for (const m of active) m.dispose?.();
  active = [];
});

async function options(input: LoraOptionsInput = {}): Promise<LoraOptions> {
  const r = await lora.options["~standard"].validate(input);
  if (r.issues) throw new Error(JSON.stringify(r.issues));
  return r.value;
}

function setup(m: TrainingModel, seed = 0, log: string[] = []): SetupContext {
  return {
    instanceName: "lora",
    model: m,
    rng: new Rng(seed),
    runDir: tmpdir(),
    methods: ["lora"],
    concepts: [],
    train: { steps: 123, batchSize: 2, seed },
    log: (s) => log.push(s),
  };
}

async function prepared(input: LoraOptionsInput = {}, seed = 0, m: TrainingModel = model): Promise<Method> {
  const method = await lora.create(await options(input), setup(m, seed));
  await method.prepare!(m);
  active.push(method);
  return method;
}

function vars(method: Method): Record<string, { variable: tf.Variable; lrScale?: number }> {
  return method.trainable!(model) as Record<string, { variable: tf.Variable; lrScale?: number }>;
}

async function maxDiff(a: tf.Tensor, b: tf.Tensor): Promise<number> {
  const d = tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))));
  const v = (await d.data())[0]!;
  d.dispose();
  return v;
}

function unetOut(u: UNet2DConditionModel = unet): tf.Tensor4D {
  return tf.tidy(() => u.forward(sample, t, ctx));
}

function textOut(te: CLIPTextModel = text): tf.Tensor3D {
  return tf.tidy(() => te.forward(ids));
}

/** Gives every lora_B (and lora_A) a seeded random value, as after training. */
function perturb(method: Method, seed: number): void {
  let s = seed;
  for (const [name, { variable }] of Object.entries(vars(method))) {
    const noise = tf.randomNormal(variable.shape, 0, name.includes("lora_B") ? 0.2 : 0.5, "float32", s++);
    variable.assign(noise);
    noise.dispose();
  }
}

async function tmp(): Promise<string> {
  return mkdtemp(join(tmpdir(), "apt-lora-"));
}

async function expectAptError(p: Promise<unknown>, ...patterns: RegExp[]): Promise<void> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  expect(AptError.isInstance(err), String(err)).toBe(true);
  expect((err as AptError).exitCode).toBe(2);
  for (const re of patterns) expect((err as Error).message).toMatch(re);
}

function adaptersOn(m: DiffusersModel, path: string): LoraAdapter[] {
  const module = [...m.modules()].find((x) => x.path === path) as AdaptableModule;
  return module.adapters.filter((a): a is LoraAdapter => a instanceof LoraAdapter);
}

describe("prepare", () => {
  it("adds adapters exactly on the matched linears, with B = 0 so the output is unchanged", async () => {
    const before = unetOut();
    const method = await prepared();
    const v = vars(method);
    const attention = unet.hookPoints("attention").map((p) => p.path);
    expect(attention).toHaveLength(14);
    const expected = attention.flatMap((a) => ["to_q", "to_k", "to_v", "to_out.0"].flatMap((m) => [`${a}.${m}.lora_A.weight`, `${a}.${m}.lora_B.weight`]));
    expect(Object.keys(v).sort()).toEqual(expected.sort());
    expect(Object.keys(v)).toHaveLength(14 * 4 * 2);
    const a = v[`${TO_OUT}.lora_A.weight`]!;
    const b = v[`${TO_OUT}.lora_B.weight`]!;
    expect(a.variable.shape).toEqual([64, 4]);
    expect(b.variable.shape).toEqual([4, 64]);
    expect(a.lrScale).toBe(1);
    expect(a.variable.trainable).toBe(true);
    expect(await maxDiff(b.variable, tf.zerosLike(b.variable))).toBe(0);
    // Cross-attention to_k maps the context (64) to the inner dim.
    expect(v[`${ATTN}.attn2.to_k.lora_A.weight`]!.variable.shape).toEqual([64, 4]);
    const after = unetOut();
    expect(await maxDiff(after, before)).toBe(0);
    tf.dispose([before, after]);
    // The metric is the mean |B|: 0 at init.
    expect(method.metrics!()).toEqual({ B_mean_abs: 0 });
  });

  it("gaussian init: A ~ N(0, (1/rank)²); kaiming: U(±1/√in)", async () => {
    const g = await prepared({ rank: 8 });
    const all = tf.tidy(() => tf.concat(Object.entries(vars(g)).filter(([n]) => n.includes("lora_A")).map(([, x]) => tf.reshape(x.variable, [-1]))));
    const { mean, variance } = tf.moments(all);
    expect(Math.abs(mean.dataSync()[0]!)).toBeLessThan(0.01);
    expect(Math.sqrt(variance.dataSync()[0]!)).toBeCloseTo(1 / 8, 2);
    tf.dispose([all, mean, variance]);
    g.dispose!();
    active = [];
    const k = await prepared({ init: "kaiming" });
    const A = vars(k)[`${TO_OUT}.lora_A.weight`]!.variable;
    const maxAbs = tf.tidy(() => tf.max(tf.abs(A)).dataSync()[0]!);
    expect(maxAbs).toBeLessThanOrEqual(1 / Math.sqrt(64));
    expect(maxAbs).toBeGreaterThan(0.8 / Math.sqrt(64));
  });

  it("a regex target and text-encoder targets; lr_scale on every variable, text_encoder_lr_scale on the text encoder's", async () => {
    const log: string[] = [];
    const opts = await options({ target_modules: ".*attn2\\.to_(k|v)", text_encoder_target_modules: ["q_proj", "k_proj", "v_proj", "out_proj"], lr_scale: 2, text_encoder_lr_scale: 0.5 });
    const method = await lora.create(opts, setup(model, 0, log));
    await method.prepare!(model);
    active.push(method);
    const names = Object.keys(vars(method));
    const unetNames = names.filter((n) => !n.startsWith("text_encoder."));
    expect(unetNames).toHaveLength(7 * 2 * 2);
    expect(unetNames.every((n) => /attn2\.to_[kv]\.lora_[AB]\.weight$/.test(n))).toBe(true);
    const te = names.filter((n) => n.startsWith("text_encoder."));
    expect(te).toHaveLength(2 * 4 * 2);
    expect(te).toContain("text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_A.weight");
    expect(te).toContain("text_encoder.text_model.encoder.layers.1.self_attn.out_proj.lora_B.weight");
    expect(Object.entries(vars(method)).every(([n, x]) => x.lrScale === (n.startsWith("text_encoder.") ? 0.5 : 2))).toBe(true);
    expect(log.join("\n")).toMatch(/14 UNet \+ 8 text-encoder modules, \d+ parameters \(22 adapters\)/);
  });

  it("conv modules matched by a target get conv LoRA (peft's Conv2d, LoCon); no match fails listing paths", async () => {
    const before = unetOut();
    const log: string[] = [];
    const method = await lora.create(await options({ target_modules: ["conv1", "conv_shortcut", "downsamplers.0.conv", "ff.net.2"] }), setup(model, 0, log));
    await method.prepare!(model);
    active.push(method);
    const v = vars(method);
    const convPoints = unet.hookPoints("conv").filter((p) => /(conv1|conv_shortcut|downsamplers\.0\.conv)$/.test(p.path));
    expect(convPoints.length).toBeGreaterThan(4);
    for (const p of convPoints) {
      // lora_A is a conv of the base conv's kernel with r output channels (HWIO inside); lora_B maps r → out.
      expect(v[`${p.path}.lora_A.weight`]!.variable.shape, p.path).toEqual([p.kernelSize![0], p.kernelSize![1], p.inFeatures!, 4]);
      expect(v[`${p.path}.lora_B.weight`]!.variable.shape, p.path).toEqual([4, p.outFeatures!]);
    }
    expect(Object.keys(v).filter((n) => n.includes("ff.net.2"))).toHaveLength(7 * 2);
    expect(log.join("\n")).toMatch(new RegExp(`${convPoints.length + 7} UNet \\+ 0 text-encoder modules \\(${convPoints.length} conv\\)`));
    // B = 0: the output is unchanged; with B ≠ 0 (strided convs included) it changes and keeps its shape.
    const same = unetOut();
    expect(await maxDiff(same, before)).toBe(0);
    perturb(method, 3);
    const changed = unetOut();
    expect(changed.shape).toEqual(before.shape);
    expect(await maxDiff(changed, before)).toBeGreaterThan(1e-4);
    tf.dispose([before, same, changed]);
    const bad = await lora.create(await options({ target_modules: ["to_qq"] }), setup(model));
    expect(() => bad.prepare!(model)).toThrow(/target_modules \["to_qq"\] matches no linear or conv module of the UNet; examples of paths: conv_in/);
  });

  it("same seed → identical A; another seed → different A", async () => {
    const read = async (seed: number) => {
      const m = await prepared({}, seed);
      const data = await vars(m)[`${TO_OUT}.lora_A.weight`]!.variable.data();
      m.dispose!();
      active = [];
      return data;
    };
    const a = await read(7);
    const b = await read(7);
    const c = await read(8);
    expect(Buffer.from(a.buffer).equals(Buffer.from(b.buffer))).toBe(true);
    expect(Buffer.from(a.buffer).equals(Buffer.from(c.buffer))).toBe(false);
  });

  it("dispose takes the adapters off the model", async () => {
    const before = unetOut();
    const method = await prepared();
    perturb(method, 1);
    const adapted = unetOut();
    expect(await maxDiff(adapted, before)).toBeGreaterThan(1e-4);
    method.dispose!();
    active = [];
    expect(adaptersOn(unet, TO_OUT)).toHaveLength(0);
    const after = unetOut();
    expect(await maxDiff(after, before)).toBe(0);
    tf.dispose([before, adapted, after]);
  });
});

describe("training and memory", () => {
  it("gradients reach lora_B (A gets none while B = 0); steps, metrics, export and dispose leak no tensors", async () => {
    const start = tf.memory().numTensors;
    const method = await prepared({ target_modules: ["to_q", "to_k", "to_v", "to_out.0", "conv1"], text_encoder_target_modules: ["q_proj"] });
    const list = Object.values(vars(method)).map((x) => x.variable);
    const opt = tf.train.adam(1e-2);
    const step = () => {
      const loss = opt.minimize(
        () => tf.tidy(() => tf.add(tf.mean(tf.square(unet.forward(sample, t, ctx))), tf.mean(tf.square(text.forward(ids))))) as tf.Scalar,
        true,
        list,
      );
      loss!.dispose();
    };
    const { value, grads } = tf.variableGrads(() => tf.mean(tf.square(unet.forward(sample, t, ctx))) as tf.Scalar, list);
    const g = (name: string) => tf.tidy(() => tf.max(tf.abs(grads[vars(method)[name]!.variable.name]!)).dataSync()[0]!);
    expect(g(`${TO_OUT}.lora_B.weight`)).toBeGreaterThan(0);
    expect(g(`${TO_OUT}.lora_A.weight`)).toBe(0);
    expect(g("down_blocks.1.resnets.0.conv1.lora_B.weight")).toBeGreaterThan(0);
    tf.dispose([value, ...Object.values(grads)]);
    step();
    const count = tf.memory().numTensors;
    step();
    expect(tf.memory().numTensors).toBe(count);
    expect(method.metrics!().B_mean_abs).toBeGreaterThan(0);
    await method.export!(await tmp());
    expect(tf.memory().numTensors).toBe(count);
    opt.dispose();
    method.dispose!();
    active = [];
    expect(tf.memory().numTensors).toBe(start);
  });

  it("loading and removing adapters leaks no tensors", async () => {
    const method = await prepared();
    perturb(method, 5);
    const dir = await tmp();
    const [file] = await method.export!(dir);
    method.dispose!();
    active = [];
    const start = tf.memory().numTensors;
    await loadLoraWeights({ unet }, file!);
    tf.dispose(unetOut());
    unet.removeAdapters("lora");
    expect(tf.memory().numTensors).toBe(start);
  });
});

/** A model of one adaptable module at `path` (a Linear or a Conv2d), for the LoRA math by hand. */
class OneModule<M extends Linear | Conv2d> extends DiffusersModel {
  readonly weightsName = "model.safetensors";
  readonly module: M;
  constructor(path: string, module: M, seed: number) {
    super();
    this.module = this.add(path, module);
    this.initialize(new Rng(seed));
  }
  toConfig(): Record<string, unknown> {
    return {};
  }
  forward(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => this.module.call(x as tf.Tensor4D, this.forwardContext()));
  }
}

/** `lora` prepared on a one-module model; its variables by name. */
async function loraOn(tiny: DiffusersModel, input: LoraOptionsInput): Promise<{ method: Method; v: Record<string, { variable: tf.Variable }> }> {
  const m = { unet: tiny, textEncoder: tiny } as unknown as TrainingModel;
  const method = await lora.create(await options(input), setup(m));
  await method.prepare!(m);
  return { method, v: method.trainable!(m) as Record<string, { variable: tf.Variable }> };
}

describe("LoRA math", () => {
  it("the module output changes by (alpha/rank)·x·A·B", async () => {
    const tiny = new OneModule("proj", new Linear(3, 2), 3);
    const { method, v } = await loraOn(tiny, { rank: 2, alpha: 3, target_modules: ["proj"] });
    expect(Object.keys(v)).toEqual(["proj.lora_A.weight", "proj.lora_B.weight"]);
    const A = [
      [0.5, -1],
      [2, 0.25],
      [-0.75, 1.5],
    ]; // [in 3, r 2]
    const B = [
      [1, -2],
      [0.5, 3],
    ]; // [r 2, out 2]
    v["proj.lora_A.weight"]!.variable.assign(tf.tensor2d(A));
    v["proj.lora_B.weight"]!.variable.assign(tf.tensor2d(B));
    const X = [
      [1, 2, 3],
      [-1, 0.5, 4],
    ];
    const x = tf.tensor2d(X);
    const adapted = tiny.forward(x);
    const base = tiny.withAdaptersOff(() => tiny.forward(x));
    const delta = tf.sub(adapted, base);
    const expected = X.map((row) => [0, 1].map((o) => (3 / 2) * [0, 1].reduce((acc, r) => acc + row.reduce((s, xi, i) => s + xi * A[i]![r]!, 0) * B[r]![o]!, 0)));
    const got = (await delta.array()) as number[][];
    for (let i = 0; i < 2; i++) for (let o = 0; o < 2; o++) expect(got[i]![o]).toBeCloseTo(expected[i]![o]!, 4);
    // 3-D input [B, N, in] gives the same per-token delta.
    const x3 = tf.reshape(x, [1, 2, 3]);
    const d3 = tf.tidy(() => tf.sub(tiny.forward(x3), tiny.withAdaptersOff(() => tiny.forward(x3))));
    expect(await maxDiff(tf.reshape(d3, [2, 2]), delta)).toBeLessThan(1e-6);
    tf.dispose([x, adapted, base, delta, x3, d3]);
    method.dispose!();
    tiny.dispose();
  });
});

/** One Conv2d (2 → 3 channels, 3×3, stride 2, padding 1) at path "conv", for conv LoRA by hand. */
const oneConv = () => new OneModule("conv", new Conv2d(2, 3, 3, 2, 1), 4);

/** peft's Conv2d LoRA delta by loops: lora_B (1×1) ∘ lora_A (the base conv's kernel, stride, padding), × scale. x [H][W][in], A [kh][kw][in][r], B [r][out]. */
function convLoraByHand(x: number[][][], A: number[][][][], B: number[][], stride: number, pad: number, scale: number): number[][][] {
  const [H, W, k, r, out] = [x.length, x[0]!.length, A.length, B.length, B[0]!.length];
  const [Ho, Wo] = [Math.floor((H + 2 * pad - k) / stride) + 1, Math.floor((W + 2 * pad - k) / stride) + 1];
  const y: number[][][] = [];
  for (let i = 0; i < Ho; i++) {
    y.push([]);
    for (let j = 0; j < Wo; j++) {
      const down = new Array<number>(r).fill(0);
      for (let dy = 0; dy < k; dy++) {
        for (let dx = 0; dx < k; dx++) {
          const [yy, xx] = [i * stride + dy - pad, j * stride + dx - pad];
          if (yy < 0 || yy >= H || xx < 0 || xx >= W) continue; // zero padding
          for (let c = 0; c < x[0]![0]!.length; c++) for (let q = 0; q < r; q++) down[q]! += x[yy]![xx]![c]! * A[dy]![dx]![c]![q]!;
        }
      }
      y[i]!.push(Array.from({ length: out }, (_, o) => scale * down.reduce((acc, d, q) => acc + d * B[q]![o]!, 0)));
    }
  }
  return y;
}

describe("conv LoRA math", () => {
  it("a strided, padded conv's output changes by (alpha/rank)·conv1x1(conv(x, A), B), of the conv's output size", async () => {
    const tiny = oneConv();
    const { method, v } = await loraOn(tiny, { rank: 2, alpha: 3, target_modules: ["conv"] });
    expect(v["conv.lora_A.weight"]!.variable.shape).toEqual([3, 3, 2, 2]);
    expect(v["conv.lora_B.weight"]!.variable.shape).toEqual([2, 3]);
    const A = tf.randomNormal([3, 3, 2, 2], 0, 1, "float32", 7);
    const B = tf.randomNormal([2, 3], 0, 1, "float32", 8);
    v["conv.lora_A.weight"]!.variable.assign(A);
    v["conv.lora_B.weight"]!.variable.assign(B);
    const x = tf.randomNormal([1, 5, 5, 2], 0, 1, "float32", 9) as tf.Tensor4D;
    const delta = tf.tidy(() => tf.sub(tiny.forward(x), tiny.withAdaptersOff(() => tiny.forward(x))));
    expect(delta.shape).toEqual([1, 3, 3, 3]);
    const expected = convLoraByHand(((await x.array()) as number[][][][])[0]!, (await A.array()) as number[][][][], (await B.array()) as number[][], 2, 1, 3 / 2);
    const got = ((await delta.array()) as number[][][][])[0]!;
    for (let i = 0; i < 3; i++) for (let j = 0; j < 3; j++) for (let o = 0; o < 3; o++) expect(got[i]![j]![o]).toBeCloseTo(expected[i]![j]![o]!, 4);
    tf.dispose([A, B, x, delta]);
    method.dispose!();
    tiny.dispose();
  });

  it("gradients of lora_A and lora_B through a strided conv match central finite differences", async () => {
    const tiny = oneConv();
    const { method, v } = await loraOn(tiny, { rank: 2, target_modules: ["conv"] });
    const A = v["conv.lora_A.weight"]!.variable;
    const B = v["conv.lora_B.weight"]!.variable;
    B.assign(tf.randomNormal([2, 3], 0, 0.5, "float32", 12)); // B ≠ 0, so lora_A gets a gradient too
    const x = tf.randomNormal([2, 6, 6, 2], 0, 1, "float32", 13) as tf.Tensor4D;
    const target = tf.randomNormal([2, 3, 3, 3], 0, 1, "float32", 14);
    const loss = () => tf.tidy(() => tf.sum(tf.mul(tiny.forward(x), target)) as tf.Scalar);
    const { grads } = tf.variableGrads(loss, [A, B]);
    const h = 1e-2; // the loss is linear in each of A's and B's entries, so central differences are exact up to float32 rounding
    for (const variable of [A, B]) {
      const analytic = await grads[variable.name]!.data();
      const values = await variable.data();
      for (const index of [0, 5, variable.size - 1]) {
        const at = (d: number) => {
          const moved = values.slice();
          moved[index] = values[index]! + d;
          variable.assign(tf.tensor(moved, variable.shape));
          const l = loss();
          const out = l.dataSync()[0]!;
          l.dispose();
          return out;
        };
        const numeric = (at(h) - at(-h)) / (2 * h);
        variable.assign(tf.tensor(values, variable.shape));
        expect(analytic[index]!, `${variable === A ? "lora_A" : "lora_B"}[${index}]`).toBeCloseTo(numeric, 2);
      }
    }
    tf.dispose([x, target, ...Object.values(grads)]);
    method.dispose!();
    tiny.dispose();
  });
});

describe("export and load", () => {
  it("writes diffusers and kohya files with torch layouts, alpha and string metadata", async () => {
    const method = await prepared({ rank: 4, alpha: 8, text_encoder_target_modules: ["q_proj", "k_proj", "v_proj", "out_proj"] });
    perturb(method, 11);
    const dir = await tmp();
    const files = await method.export!(dir);
    expect(files).toEqual([join(dir, "pytorch_lora_weights.safetensors"), join(dir, "lora.kohya.safetensors")]);
    const v = vars(method);
    const A = v[`${TO_OUT}.lora_A.weight`]!.variable;
    const B = v[`${TO_OUT}.lora_B.weight`]!.variable;
    const At = tf.transpose(A);
    const Bt = tf.transpose(B);
    const bytes = async (x: tf.Tensor) => Buffer.from((await x.data()).buffer);

    const d = await readSafetensors(files[0]!);
    expect(Object.keys(d.tensors)).toHaveLength((56 + 8) * 2);
    const dA = d.tensors[`unet.${TO_OUT}.lora_A.weight`]!;
    const dB = d.tensors[`unet.${TO_OUT}.lora_B.weight`]!;
    expect(dA.shape).toEqual([4, 64]);
    expect(dB.shape).toEqual([64, 4]);
    expect(Buffer.from(dA.data.buffer, dA.data.byteOffset, dA.data.byteLength).equals(await bytes(At))).toBe(true);
    expect(Buffer.from(dB.data.buffer, dB.data.byteOffset, dB.data.byteLength).equals(await bytes(Bt))).toBe(true);
    expect(d.tensors["text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_A.weight"]!.shape).toEqual([4, 64]);
    expect(Object.keys(d.tensors).every((k) => /^(unet|text_encoder)\..+\.lora_[AB]\.weight$/.test(k))).toBe(true);
    const adapterMeta = JSON.parse(d.metadata.lora_adapter_metadata!);
    expect(adapterMeta).toMatchObject({ "unet.r": 4, "unet.lora_alpha": 8, "text_encoder.r": 4, "text_encoder.lora_alpha": 8 });
    expect(adapterMeta["unet.target_modules"]).toContain(TO_OUT);

    const k = await readSafetensors(files[1]!);
    const stem = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_out_0";
    expect(kohyaModuleName("unet", TO_OUT)).toBe(stem);
    expect(k.tensors[`${stem}.lora_down.weight`]!.shape).toEqual([4, 64]);
    expect(k.tensors[`${stem}.lora_up.weight`]!.shape).toEqual([64, 4]);
    const alpha = k.tensors[`${stem}.alpha`]!;
    expect(alpha.dtype).toBe("F32");
    expect(alpha.shape).toEqual([]);
    expect(alpha.data[0]).toBe(8);
    const kd = k.tensors[`${stem}.lora_down.weight`]!;
    expect(Buffer.from(kd.data.buffer, kd.data.byteOffset, kd.data.byteLength).equals(await bytes(At))).toBe(true);
    expect(k.tensors["lora_te1_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight"]!.shape).toEqual([4, 64]);
    expect(k.tensors["lora_te1_text_model_encoder_layers_1_self_attn_out_proj.alpha"]!.data[0]).toBe(8);
    expect(Object.keys(k.tensors)).toHaveLength((56 + 8) * 3);
    expect(Object.keys(k.tensors).every((n) => /^lora_(unet|te1)_[^.]+\.(lora_down\.weight|lora_up\.weight|alpha)$/.test(n))).toBe(true);

    for (const meta of [d.metadata, k.metadata]) {
      expect(Object.values(meta).every((x) => typeof x === "string")).toBe(true);
      expect(meta).toMatchObject({
        ss_network_module: "networks.lora",
        ss_network_dim: "4",
        ss_network_alpha: "8",
        ss_output_name: "lora",
        ss_steps: "123",
        ss_seed: "0",
        ss_base_model_version: "sd_v1",
        "modelspec.architecture": "stable-diffusion-v1/lora",
        apt_method: "lora",
        apt_target_modules: JSON.stringify(["to_q", "to_k", "to_v", "to_out.0"]),
        format: "pt",
      });
    }
    tf.dispose([At, Bt]);
  });

  it("loadLoraWeights from either file into a fresh model reproduces the trained model exactly", async () => {
    const method = await prepared({ rank: 4, alpha: 8, text_encoder_target_modules: ["q_proj", "k_proj", "v_proj", "out_proj"] });
    perturb(method, 21);
    const trainedUnet = unetOut();
    const trainedText = textOut();
    const dir = await tmp();
    const [diffusersFile, kohyaFile] = await method.export!(dir);
    const freshUnet = await UNet2DConditionModel.fromPretrained(join(fixture, "unet"));
    const freshText = await CLIPTextModel.fromPretrained(join(fixture, "text_encoder"));
    const baseUnet = unetOut(freshUnet);
    expect(await maxDiff(baseUnet, trainedUnet)).toBeGreaterThan(1e-4);
    for (const file of [diffusersFile!, kohyaFile!]) {
      const { modules } = await loadLoraWeights({ unet: freshUnet, textEncoder: freshText }, file);
      expect(modules, file).toBe(56 + 8);
      const loaded = adaptersOn(freshUnet, TO_OUT);
      expect(loaded).toHaveLength(1);
      expect(loaded[0]!.A.trainable).toBe(false);
      expect(loaded[0]!.alpha).toBe(8);
      const u = unetOut(freshUnet);
      const te = textOut(freshText);
      expect(await maxDiff(u, trainedUnet), file).toBe(0);
      expect(await maxDiff(te, trainedText), file).toBe(0);
      freshUnet.removeAdapters("lora");
      freshText.removeAdapters("lora");
      tf.dispose([u, te]);
    }
    // scale multiplies alpha / rank: scale 0 is the base model.
    await loadLoraWeights({ unet: freshUnet, textEncoder: freshText }, kohyaFile!, { scale: 0, adapterName: "sampling" });
    const zero = unetOut(freshUnet);
    expect(await maxDiff(zero, baseUnet)).toBe(0);
    freshUnet.removeAdapters("sampling");
    freshText.removeAdapters("sampling");
    expect(adaptersOn(freshUnet, TO_OUT)).toHaveLength(0);
    tf.dispose([trainedUnet, trainedText, baseUnet, zero]);
    freshUnet.dispose();
    freshText.dispose();
  });

  it("conv LoRA: torch layouts [r, in, kh, kw] / [out, r, 1, 1] in both files, LoCon's conv_dim, and an exact round trip", async () => {
    const method = await prepared({ rank: 4, alpha: 2, target_modules: ["conv1", "conv_shortcut", "to_q"] });
    perturb(method, 31);
    const trained = unetOut();
    const dir = await tmp();
    const [diffusersFile, kohyaFile] = await method.export!(dir);
    const CONV = "down_blocks.1.resnets.0.conv1";
    const point = unet.hookPoints("conv").find((p) => p.path === CONV)!;
    const [inF, outF] = [point.inFeatures!, point.outFeatures!];
    const A = vars(method)[`${CONV}.lora_A.weight`]!.variable; // [3, 3, in, r]
    const B = vars(method)[`${CONV}.lora_B.weight`]!.variable; // [r, out]
    const d = await readSafetensors(diffusersFile!);
    const k = await readSafetensors(kohyaFile!);
    const kohyaName = kohyaModuleName("unet", CONV);
    for (const [a, b] of [
      [d.tensors[`unet.${CONV}.lora_A.weight`]!, d.tensors[`unet.${CONV}.lora_B.weight`]!],
      [k.tensors[`${kohyaName}.lora_down.weight`]!, k.tensors[`${kohyaName}.lora_up.weight`]!],
    ]) {
      expect(a!.shape).toEqual([4, inF, 3, 3]);
      expect(b!.shape).toEqual([outF, 4, 1, 1]);
      // One entry by index: torch's lora_A[q, c, y, x] is tfjs's A[y, x, c, q]; lora_B[o, q] is B[q, o].
      const [q, c, y, x, o] = [3, inF - 1, 2, 0, 5];
      expect(a!.data[((q * inF + c) * 3 + y) * 3 + x]).toBe((await A.data())[((y * 3 + x) * inF + c) * 4 + q]);
      expect(b!.data[o * 4 + q]).toBe((await B.data())[q * outF + o]);
    }
    expect(k.tensors[`${kohyaName}.alpha`]!.data[0]).toBe(2);
    expect(JSON.parse(k.metadata.ss_network_args!)).toEqual({ conv_dim: "4", conv_alpha: "2" });
    expect(JSON.parse(d.metadata.lora_adapter_metadata!)["unet.target_modules"]).toContain(CONV);

    const fresh = await UNet2DConditionModel.fromPretrained(join(fixture, "unet"));
    for (const file of [diffusersFile!, kohyaFile!]) {
      await loadLoraWeights({ unet: fresh }, file);
      expect(adaptersOn(fresh, CONV)[0]!.conv).toEqual({ kernelSize: [3, 3], stride: [1, 1], padding: [1, 1] });
      const u = unetOut(fresh);
      expect(await maxDiff(u, trained), file).toBe(0);
      fresh.removeAdapters("lora");
      u.dispose();
    }
    trained.dispose();
    fresh.dispose();
  });

  it("a file with an unknown module fails naming the key and the closest module; nothing is installed", async () => {
    const dir = await tmp();
    const w = (shape: number[]) => ({ dtype: "F32" as const, shape, data: new Float32Array(shape.reduce((a, b) => a * b, 1)) });
    const badDiffusers = join(dir, "bad.safetensors");
    await writeSafetensors(badDiffusers, {
      [`unet.${ATTN}.attn1.to_q.lora_A.weight`]: w([4, 64]),
      [`unet.${ATTN}.attn1.to_q.lora_B.weight`]: w([64, 4]),
      [`unet.${ATTN}.attn1.to_qq.lora_A.weight`]: w([4, 64]),
      [`unet.${ATTN}.attn1.to_qq.lora_B.weight`]: w([64, 4]),
    });
    await expectAptError(
      loadLoraWeights({ unet }, badDiffusers),
      /bad\.safetensors: tensor "unet\.down_blocks\.1\.attentions\.0\.transformer_blocks\.0\.attn1\.to_qq\.lora_A\.weight"/,
      /closest module is "down_blocks\.1\.attentions\.0\.transformer_blocks\.0\.attn1\.to_q"/,
    );
    expect(adaptersOn(unet, `${ATTN}.attn1.to_q`)).toHaveLength(0);

    const badKohya = join(dir, "bad-kohya.safetensors");
    await writeSafetensors(badKohya, {
      "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_kk.lora_down.weight": w([4, 64]),
      "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_kk.lora_up.weight": w([64, 4]),
    });
    await expectAptError(
      loadLoraWeights({ unet }, badKohya),
      /tensor "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_kk\.lora_down\.weight"/,
      /closest module is "down_blocks\.1\.attentions\.0\.transformer_blocks\.0\.attn1\.to_k" \(kohya name "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_k"\)/,
    );

    const other = join(dir, "other.safetensors");
    await writeSafetensors(other, { "model.diffusion_model.input_blocks.1.weight": w([2]) });
    await expectAptError(loadLoraWeights({ unet }, other), /tensor "model\.diffusion_model\.input_blocks\.1\.weight" is not a LoRA weight/);

    const te = join(dir, "te.safetensors");
    await writeSafetensors(te, { "lora_te1_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight": w([4, 64]) });
    await expectAptError(loadLoraWeights({ unet }, te), /is for the text encoder, but no text encoder was given/);

    // A conv needs 4-D weights of its kernel: a linear-style [r, in] lora_down for conv_in is refused, naming the shapes.
    const conv = join(dir, "conv.safetensors");
    await writeSafetensors(conv, { "lora_unet_conv_in.lora_down.weight": w([4, 3]), "lora_unet_conv_in.lora_up.weight": w([32, 4]) });
    await expectAptError(
      loadLoraWeights({ unet }, conv),
      /module conv_in \(conv 3×3, in 3, out 32\) needs lora_A \[r, 3, 3, 3\] and lora_B \[32, r, 1, 1\]; "lora_unet_conv_in\.lora_down\.weight" is \[4,3\]/,
    );

    const shape = join(dir, "shape.safetensors");
    await writeSafetensors(shape, { [`unet.${TO_OUT}.lora_A.weight`]: w([4, 32]), [`unet.${TO_OUT}.lora_B.weight`]: w([64, 4]) });
    await expectAptError(loadLoraWeights({ unet }, shape), /\(linear, in 64, out 64\) needs lora_A \[r, 64\] and lora_B \[64, r\]/);

    const half = join(dir, "half.safetensors");
    await writeSafetensors(half, { [`unet.${TO_OUT}.lora_A.weight`]: w([4, 64]) });
    await expectAptError(loadLoraWeights({ unet }, half), /has lora_A\/lora_down but no lora_B\/lora_up/);
  });
});
