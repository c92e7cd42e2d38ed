/** Loading/saving and the hook API of UNet2DConditionModel and CLIPTextModel, on backend-cpu. */
import { beforeAll, describe, expect, it } from "vitest";
import { cp, mkdtemp, readFile, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs-core";
import { AdamW, AptError, readSafetensors, writeSafetensors, type AttentionProcessor, type ModuleAdapter } from "@apt/core";
import { backend } from "@apt/backend-cpu";
import { CLIPTextModel, UNet2DConditionModel, defaultAttentionProcessor, parseUNetConfig, toDiffusersLayout } from "../src/index.js";

const fixture = join(import.meta.dirname, "..", "..", "..", "..", "shared", "fixtures", "shapes-s-parity");
const ATTN = "down_blocks.1.attentions.0.transformer_blocks.0";

let unet: UNet2DConditionModel;
let text: CLIPTextModel;
let sample: tf.Tensor4D;
let t: tf.Tensor1D;
let ctx: tf.Tensor3D;

beforeAll(async () => {
  await backend.init();
  unet = await UNet2DConditionModel.fromPretrained(join(fixture, "unet"));
  text = await CLIPTextModel.fromPretrained(join(fixture, "text_encoder"));
  sample = tf.randomNormal([2, 32, 32, 3], 0, 1, "float32", 1) as tf.Tensor4D;
  t = tf.tensor1d([10, 700], "int32");
  ctx = tf.randomNormal([2, 16, 64], 0, 1, "float32", 2) as tf.Tensor3D;
});

async function maxDiff(a: tf.Tensor, b: tf.Tensor): Promise<number> {
  const d = tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))));
  const v = (await d.data())[0]!;
  d.dispose();
  return v;
}

async function tmp(): Promise<string> {
  return mkdtemp(join(tmpdir(), "apt-diffusion-"));
}

async function expectAptError(p: Promise<unknown>, ...patterns: RegExp[]): Promise<void> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  expect(AptError.isInstance(err), String(err)).toBe(true);
  expect((err as AptError).exitCode).toBe(2);
  for (const re of patterns) expect((err as Error).message).toMatch(re);
}

describe("save and load", () => {
  it("UNet and text encoder round-trip bit-identically through diffusers' layout", async () => {
    for (const model of [unet, text] as const) {
      const dir = await tmp();
      await model.savePretrained(dir);
      const again = model instanceof UNet2DConditionModel ? await UNet2DConditionModel.fromPretrained(dir) : await CLIPTextModel.fromPretrained(dir);
      const a = model.namedParameters();
      const b = again.namedParameters();
      expect([...b.keys()]).toEqual([...a.keys()]);
      for (const [name, v] of a) expect(Buffer.from((await b.get(name)!.data()).buffer).equals(Buffer.from((await v.data()).buffer)), name).toBe(true);
      again.dispose();
    }
    // The file written has diffusers' names and layouts: identical tensors to the PyTorch file.
    const dir = await tmp();
    await unet.savePretrained(dir);
    const ours = await readSafetensors(join(dir, "diffusion_pytorch_model.safetensors"));
    const theirs = await readSafetensors(join(fixture, "unet", "diffusion_pytorch_model.safetensors"));
    expect(Object.keys(ours.tensors).sort()).toEqual(Object.keys(theirs.tensors).sort());
    for (const [name, tensor] of Object.entries(theirs.tensors)) {
      expect(ours.tensors[name]!.shape, name).toEqual(tensor.shape);
      expect(Buffer.from(ours.tensors[name]!.data.buffer).equals(Buffer.from(tensor.data.buffer)), name).toBe(true);
    }
  });

  it("F16 and BF16 weights load as float32", async () => {
    const dir = await tmp();
    await cp(join(fixture, "text_encoder"), dir, { recursive: true });
    const file = join(dir, "model.safetensors");
    const st = await readSafetensors(file);
    const names = Object.keys(st.tensors);
    const converted = Object.fromEntries(names.map((n, i) => [n, { dtype: i % 2 ? ("F16" as const) : ("BF16" as const), shape: st.tensors[n]!.shape, data: st.tensors[n]!.data as Float32Array }]));
    await writeSafetensors(file, converted);
    const half = await CLIPTextModel.fromPretrained(dir);
    const w = half.namedParameters().get("text_model.final_layer_norm.weight")!;
    expect(w.dtype).toBe("float32");
    const ref = text.namedParameters().get("text_model.final_layer_norm.weight")!;
    expect(await maxDiff(w, ref)).toBeLessThan(1e-2);
    half.dispose();
  });

  it("savePretrained({ dtype: 'float16' }) writes F16 (half the bytes), reloads as float32 within float16 rounding", async () => {
    const full = await tmp();
    const half = await tmp();
    await unet.savePretrained(full);
    await unet.savePretrained(half, { dtype: "float16" });
    const file = (d: string) => join(d, "diffusion_pytorch_model.safetensors");
    const [a, b] = [await readSafetensors(file(full)), await readSafetensors(file(half))];
    expect(Object.values(b.tensors).every((x) => x.dtype === "F16")).toBe(true);
    const bytes = (st: typeof a) => Object.values(st.tensors).reduce((s, x) => s + x.data.length, 0);
    expect(bytes(b)).toBe(bytes(a));
    expect((await stat(file(half))).size).toBeLessThan((await stat(file(full))).size * 0.51);
    const again = await UNet2DConditionModel.fromPretrained(half);
    for (const [name, v] of unet.namedParameters()) {
      const w = again.namedParameters().get(name)!;
      expect(w.dtype).toBe("float32");
      const [x, y] = [await v.data(), await w.data()];
      // float16 keeps 11 significant bits: relative error ≤ 2^-11 for normal values.
      let worst = 0;
      for (let i = 0; i < x.length; i++) worst = Math.max(worst, Math.abs(y[i]! - x[i]!) - (Math.abs(x[i]!) * 2 ** -11 + 6e-8));
      expect(worst, name).toBeLessThanOrEqual(0);
    }
    const [outFull, outHalf] = [unet.forward(sample, t, ctx), again.forward(sample, t, ctx)];
    expect(await maxDiff(outFull, outHalf)).toBeLessThan(1e-2);
    expect(await maxDiff(outFull, outHalf)).toBeGreaterThan(0);
    tf.dispose([outFull, outHalf]);
    again.dispose();
    await expectAptError(unet.savePretrained(await tmp(), { dtype: "int8" as "float16" }), /savePretrained: dtype "int8" is not one of float32, float16, bfloat16/);
  });

  it("names every missing, unexpected or mis-shaped tensor with both shapes", async () => {
    const dir = await tmp();
    await cp(join(fixture, "unet"), dir, { recursive: true });
    const file = join(dir, "diffusion_pytorch_model.safetensors");
    const st = await readSafetensors(file);
    const tensors = { ...st.tensors } as Record<string, { dtype: "F32"; shape: number[]; data: Float32Array }>;
    delete tensors["conv_in.bias"];
    tensors["extra.weight"] = { dtype: "F32", shape: [2], data: new Float32Array(2) };
    const w = tensors["mid_block.resnets.0.conv1.weight"]!;
    tensors["mid_block.resnets.0.conv1.weight"] = { dtype: "F32", shape: [64, 64, 3, 1], data: w.data.slice(0, 64 * 64 * 3) };
    await writeSafetensors(file, tensors);
    await expectAptError(
      UNet2DConditionModel.fromPretrained(dir),
      /diffusion_pytorch_model\.safetensors does not match the model config \(3 problems\)/,
      /missing tensor "conv_in\.bias" \(expected shape \[32\]\)/,
      /unexpected tensor "extra\.weight" \[2\]/,
      /tensor "mid_block\.resnets\.0\.conv1\.weight" has shape \[64,64,3,1\] in the file but the config gives \[64,64,3,3\]/,
    );
  });

  it("a config that does not fit the weights fails naming tensors and shapes", async () => {
    const dir = await tmp();
    await cp(join(fixture, "unet"), dir, { recursive: true });
    const config = JSON.parse(await readFile(join(dir, "config.json"), "utf8"));
    await writeFile(join(dir, "config.json"), JSON.stringify({ ...config, cross_attention_dim: 32 }));
    await expectAptError(UNet2DConditionModel.fromPretrained(dir), /attn2\.to_k\.weight" has shape \[64,64\] in the file but the config gives \[64,32\]/);
  });

  it("unsupported or invalid config values name the field", async () => {
    const base = JSON.parse(await readFile(join(fixture, "unet", "config.json"), "utf8"));
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ down_block_types: ["DownBlock2D", "Foo", "CrossAttnDownBlock2D"] }, /field "down_block_types" entry 1 is "Foo"; supported: "DownBlock2D", "CrossAttnDownBlock2D"/],
      [{ center_input_sample: true }, /field "center_input_sample" is true; @apt\/diffusion supports only false/],
      [{ class_embed_type: "timestep" }, /field "class_embed_type"/],
      [{ norm_num_groups: 7 }, /field "norm_num_groups" \(7\) must divide block_out_channels\[0\] = 32/],
      [{ block_out_channels: [32, 64] }, /field "block_out_channels" must be a positive integer or a list of 3/],
      [{ up_block_types: ["UpBlock2D"] }, /field "up_block_types" has 1 entries but down_block_types has 3/],
      [{ layers_per_block: "two" }, /field "layers_per_block"/],
    ];
    for (const [patch, re] of cases) {
      const dir = await tmp();
      await writeFile(join(dir, "config.json"), JSON.stringify({ ...base, ...patch }));
      await expectAptError(UNet2DConditionModel.fromPretrained(dir), re, new RegExp(dir.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")));
    }
    const dir = await tmp();
    await writeFile(join(dir, "config.json"), "{ not json");
    await expectAptError(UNet2DConditionModel.fromPretrained(dir), /config\.json: invalid JSON/);
    await expectAptError(UNet2DConditionModel.fromPretrained(join(dir, "nope")), /config\.json does not exist/);
  });
});

describe("hook points", () => {
  it("lists attention, linear, conv and feature points with diffusers' paths", () => {
    const attn = unet.hookPoints("attention");
    expect(attn.map((p) => p.path)).toContain(`${ATTN}.attn2`);
    expect(attn.find((p) => p.path === `${ATTN}.attn1`)).toEqual({ path: `${ATTN}.attn1`, kind: "attention", attention: "self", heads: 4 });
    expect(attn.find((p) => p.path === `${ATTN}.attn2`)?.attention).toBe("cross");
    // Transformer2D modules: 2 down blocks × 1 layer, mid 1, 2 up blocks × 2 layers; each has attn1 and attn2.
    expect(attn).toHaveLength(2 * (2 + 1 + 4));
    const linear = unet.hookPoints("linear").map((p) => p.path);
    expect(linear).toContain(`${ATTN}.attn1.to_out.0`);
    expect(linear).toContain("time_embedding.linear_1");
    expect(unet.hookPoints("conv").map((p) => p.path)).toContain("down_blocks.0.downsamplers.0.conv");
    // A conv point carries what a conv adapter needs to match the conv's output size (torch's Conv2d attributes).
    const down = unet.hookPoints("conv").find((p) => p.path === "down_blocks.0.downsamplers.0.conv");
    expect(down).toMatchObject({ kernelSize: [3, 3], stride: [2, 2], padding: [1, 1] });
    expect(unet.hookPoints("conv").find((p) => p.path === "conv_in")).toMatchObject({ kernelSize: [3, 3], stride: [1, 1], padding: [1, 1] });
    expect(unet.hookPoints("feature").map((p) => p.path)).toEqual(expect.arrayContaining(["down_blocks.1", "mid_block", "up_blocks.2", "down_blocks.1.attentions.0", "up_blocks.0.resnets.1"]));
    expect(text.hookPoints("linear").map((p) => p.path)).toContain("text_model.encoder.layers.1.self_attn.q_proj");
  });

  it("swaps attention processors by path; the time embedding is visible to them; reset restores the output", async () => {
    const before = tf.tidy(() => unet.forward(sample, t, ctx));
    let tembShape: number[] | undefined;
    const zeroCross: AttentionProcessor = (call) => {
      tembShape = call.temb?.shape;
      return tf.zerosLike(call.hidden);
    };
    const set = unet.setAttentionProcessor(["attn2"], zeroCross);
    expect(set).toHaveLength(unet.hookPoints("attention").length / 2);
    const changed = tf.tidy(() => unet.forward(sample, t, ctx));
    expect(tembShape).toEqual([2, 128]);
    expect(await maxDiff(changed, before)).toBeGreaterThan(1e-3);
    // A processor built from the default reproduces the default exactly.
    unet.setAttentionProcessor(".*attn[12]", defaultAttentionProcessor());
    const same = tf.tidy(() => unet.forward(sample, t, ctx));
    expect(await maxDiff(same, before)).toBe(0);
    unet.resetAttentionProcessors();
    const after = tf.tidy(() => unet.forward(sample, t, ctx));
    expect(await maxDiff(after, before)).toBe(0);
    tf.dispose([before, changed, same, after]);
    expect(() => unet.setAttentionProcessor(["attn9"], zeroCross)).toThrow(/matches no attention module; examples of paths: down_blocks\.1\.attentions\.0/);
  });

  it("observers reduce on the spot: a few query rows of self-attention and per-channel feature statistics", () => {
    const kept: Record<string, number[]> = {};
    const stopA = unet.observeAttention(`${ATTN}.attn1`, (o) => {
      kept[o.path] = tf.tidy(() => tf.slice(o.probs, [0, 0, 0], [-1, 3, -1])).shape; // 3 query rows
    });
    const stopF = unet.observeFeatures(["down_blocks.1", "mid_block"], (path, f) => {
      const { mean, variance } = tf.moments(f, [1, 2]);
      kept[path] = [...mean.shape, ...variance.shape];
    });
    const before = tf.memory().numTensors;
    tf.tidy(() => {
      unet.forward(sample, t, ctx);
    });
    expect(tf.memory().numTensors).toBe(before);
    expect(kept[`${ATTN}.attn1`]).toEqual([2 * 4, 3, 256]);
    expect(kept["down_blocks.1"]).toEqual([2, 64, 2, 64]);
    expect(kept["mid_block"]).toEqual([2, 64, 2, 64]);
    stopA();
    stopF();
    const n = Object.keys(kept).length;
    tf.dispose(tf.tidy(() => unet.forward(sample, t, ctx)));
    expect(Object.keys(kept)).toHaveLength(n);
  });

  it("captured attention probabilities carry gradients to the weights", () => {
    const toQ = unet.namedParameters().get(`${ATTN}.attn2.to_q.weight`)!;
    const { grads } = tf.variableGrads(() => {
      let captured: tf.Tensor | undefined;
      const stop = unet.observeAttention(`${ATTN}.attn2`, (o) => (captured = o.probs));
      unet.forward(sample, t, ctx);
      stop();
      return tf.sum(tf.square(captured!)) as tf.Scalar;
    }, [toQ]);
    const g = grads[toQ.name]!;
    expect(tf.tidy(() => tf.max(tf.abs(g)).dataSync()[0]!)).toBeGreaterThan(0);
    tf.dispose(grads);
  });
});

/** A LoRA-like adapter (down·up), enough to test the mechanism; real LoRA is @apt/method-lora. */
function testAdapter(inF: number, outF: number, seed: number): ModuleAdapter {
  const down = tf.variable(tf.randomNormal([inF, 2], 0, 0.5, "float32", seed));
  const up = tf.variable(tf.randomNormal([2, outF], 0, 0.5, "float32", seed + 1));
  return {
    name: "test",
    variables: () => ({ "test.down": down, "test.up": up }),
    forward: (x) => {
      const flat = tf.reshape(x, [-1, inF]);
      return tf.reshape(tf.matMul(tf.matMul(flat, down), up), [...x.shape.slice(0, -1), outF]);
    },
  };
}

describe("adapters", () => {
  it("wrap matched linears, list their variables, and switch off globally or per sample in one batch", async () => {
    const base = tf.tidy(() => unet.forward(sample, t, ctx));
    let seed = 10;
    const vars = unet.addAdapter(["to_q", "to_v"], (p) => testAdapter(p.inFeatures!, p.outFeatures!, seed++));
    expect(Object.keys(vars)).toContain(`${ATTN}.attn2.to_v.test.up`);
    expect(Object.keys(vars)).toHaveLength(unet.hookPoints("attention").length * 2 * 2);
    const adapted = tf.tidy(() => unet.forward(sample, t, ctx));
    expect(await maxDiff(adapted, base)).toBeGreaterThan(1e-3);
    const off = tf.tidy(() => unet.withAdaptersOff(() => unet.forward(sample, t, ctx)));
    expect(await maxDiff(off, base)).toBe(0);
    unet.setAdapterMask([1, 0]);
    const mixed = tf.tidy(() => unet.forward(sample, t, ctx));
    unet.setAdapterMask(true);
    const [m0, m1] = tf.split(mixed, 2, 0);
    const [a0] = tf.split(adapted, 2, 0);
    const [, b1] = tf.split(base, 2, 0);
    expect(await maxDiff(m0!, a0!)).toBeLessThan(1e-5);
    expect(await maxDiff(m1!, b1!)).toBeLessThan(1e-5);
    // Variants: two prompts, adapters on for the first and off for the second, in one forward.
    const [v0, v1] = tf.tidy(() => unet.forwardVariants(sample, t, [{ encoderHiddenStates: ctx }, { encoderHiddenStates: ctx, adapters: false }]));
    expect(await maxDiff(v0!, adapted)).toBeLessThan(1e-5);
    expect(await maxDiff(v1!, base)).toBeLessThan(1e-5);
    // A training step on the adapter variables only leaves the tensor count unchanged.
    const opt = tf.train.adam(1e-3);
    const varList = Object.values(vars);
    const step = () => {
      const loss = opt.minimize(() => tf.mean(tf.square(unet.forward(sample, t, ctx))) as tf.Scalar, true, varList);
      loss!.dispose();
    };
    step();
    const count = tf.memory().numTensors;
    step();
    expect(tf.memory().numTensors).toBe(count);
    opt.dispose();
    unet.removeAdapters();
    const removed = tf.tidy(() => unet.forward(sample, t, ctx));
    expect(await maxDiff(removed, base)).toBe(0);
    tf.dispose([base, adapted, off, mixed, m0!, m1!, a0!, b1!, v0!, v1!, removed]);
  });
});

describe("memory", () => {
  it("a forward and a full training step (every UNet weight, AdamW) leave the tensor count unchanged", () => {
    const params = Object.fromEntries(unet.namedParameters());
    const saved = Object.fromEntries(Object.entries(params).map(([n, v]) => [n, v.clone()]));
    const opt = new AdamW(params, { lr: 1e-4 });
    const x = tf.slice(sample, [0, 0, 0, 0], [1, -1, -1, -1]) as tf.Tensor4D;
    const c = tf.slice(ctx, [0, 0, 0], [1, -1, -1]) as tf.Tensor3D;
    const tt = tf.tensor1d([500], "int32");
    const step = () =>
      tf.tidy(() => {
        const { value, grads } = tf.variableGrads(() => tf.mean(tf.square(unet.forward(x, tt, c))) as tf.Scalar, Object.values(params));
        opt.apply(Object.fromEntries(Object.entries(params).map(([n, v]) => [n, grads[v.name]!])));
        return value.dataSync()[0]!;
      });
    const first = step(); // creates the optimizer's moments
    const count = tf.memory().numTensors;
    const second = step();
    tf.dispose(tf.tidy(() => unet.forward(x, tt, c)));
    expect(tf.memory().numTensors).toBe(count);
    expect(second).toBeLessThan(first);
    // Put the fixture weights back for other tests.
    for (const [n, v] of Object.entries(params)) v.assign(saved[n]!);
    tf.dispose([...Object.values(saved), x, c, tt]);
    opt.dispose();
  });
});

describe('addition_embed_type "text" (diffusers TextTimeEmbedding)', () => {
  // scripts/make-text-time-fixture.py: diffusers' AttentionPooling in PyTorch, float64.
  const dir = join(import.meta.dirname, "fixtures", "unet-text-time");

  it("matches PyTorch: the pooled prompt and the UNet output", async () => {
    const model = await UNet2DConditionModel.fromPretrained(dir);
    expect(model.addEmbedding).not.toBeNull();
    const gold = (await readSafetensors(join(dir, "golden.safetensors"))).tensors;
    const T = (name: string) => tf.tensor(gold[name]!.data as Float32Array | Int32Array, gold[name]!.shape, gold[name]!.dtype === "I32" ? "int32" : "float32");
    const nhwc = (x: tf.Tensor) => tf.transpose(x, [0, 2, 3, 1]) as tf.Tensor4D;
    const [context, sample, timestep, wantPooled, want] = [T("context") as tf.Tensor3D, nhwc(T("sample")), T("t") as tf.Tensor1D, T("pooled"), nhwc(T("out"))];
    const pooled = tf.tidy(() => model.addEmbedding!.call(context));
    expect(await maxDiff(pooled, wantPooled)).toBeLessThan(1e-4);
    const out = tf.tidy(() => model.forward(sample, timestep, context));
    expect(await maxDiff(out, want)).toBeLessThan(1e-4);
    // The same weights without the pooled prompt are far off: the comparison above sees that term.
    const raw = { ...model.toConfig() } as Record<string, unknown>;
    delete raw.addition_embed_type;
    const plainModel = new UNet2DConditionModel(parseUNetConfig(raw));
    await plainModel.loadWeights(join(dir, "diffusion_pytorch_model.safetensors"), { ignore: (n) => n.startsWith("add_embedding.") });
    const plain = tf.tidy(() => plainModel.forward(sample, timestep, context));
    expect(await maxDiff(plain, want)).toBeGreaterThan(1e-2);
    plainModel.dispose();
    model.dispose();
    tf.dispose([context, sample, timestep, wantPooled, want, pooled, out, plain]);
  });

  it("round-trips its config and rejects heads that do not divide cross_attention_dim", async () => {
    const model = await UNet2DConditionModel.fromPretrained(dir);
    const reloaded = await tmp();
    await model.savePretrained(reloaded);
    expect(JSON.parse(await readFile(join(reloaded, "config.json"), "utf8")).addition_embed_type).toBe("text");
    const config = model.toConfig();
    expect(config.addition_embed_type).toBe("text");
    expect(config.addition_embed_type_num_heads).toBe(4);
    expect([...model.namedParameters().keys()].filter((k) => k.startsWith("add_embedding.")).sort()).toEqual([
      "add_embedding.norm1.bias", "add_embedding.norm1.weight", "add_embedding.norm2.bias", "add_embedding.norm2.weight",
      "add_embedding.pool.k_proj.bias", "add_embedding.pool.k_proj.weight", "add_embedding.pool.positional_embedding",
      "add_embedding.pool.q_proj.bias", "add_embedding.pool.q_proj.weight", "add_embedding.pool.v_proj.bias", "add_embedding.pool.v_proj.weight",
      "add_embedding.proj.bias", "add_embedding.proj.weight",
    ]);
    expect(() => UNet2DConditionModel.fromConfig({ ...config, addition_embed_type_num_heads: 5 })).toThrow(/addition_embed_type_num_heads.*must divide cross_attention_dim = 16/);
    expect(() => UNet2DConditionModel.fromConfig({ ...config, addition_embed_type: "text_time" })).toThrow(/addition_embed_type/);
    model.dispose();
  });
});

describe('resnet_time_scale_shift "scale_shift" (ADM\'s adaptive GroupNorm)', () => {
  // scripts/make-scale-shift-fixture.py: diffusers' ResnetBlock2D "scale_shift" in PyTorch, float64.
  const dir = join(import.meta.dirname, "fixtures", "unet-scale-shift");

  it("matches PyTorch: the output and the gradients of every time_emb_proj and norm2", async () => {
    const model = await UNet2DConditionModel.fromPretrained(dir);
    expect(model.config.resnet_time_scale_shift).toBe("scale_shift");
    const gold = (await readSafetensors(join(dir, "golden.safetensors"))).tensors;
    const T = (name: string) => tf.tensor(gold[name]!.data as Float32Array | Int32Array, gold[name]!.shape, gold[name]!.dtype === "I32" ? "int32" : "float32");
    const nhwc = (x: tf.Tensor) => tf.transpose(x, [0, 2, 3, 1]) as tf.Tensor4D;
    const [context, sample, timestep, target, want] = [T("context") as tf.Tensor3D, nhwc(T("sample")), T("t") as tf.Tensor1D, nhwc(T("target")), nhwc(T("out"))];
    const out = tf.tidy(() => model.forward(sample, timestep, context));
    expect(await maxDiff(out, want)).toBeLessThan(1e-4);

    const specs = [...model.namedParamSpecs()].filter(([n]) => gold[`grad.${n}`] !== undefined);
    expect(specs.length).toBe(Object.keys(gold).filter((k) => k.startsWith("grad.")).length);
    const { value, grads } = tf.variableGrads(() => tf.mean(tf.square(tf.sub(model.forward(sample, timestep, context), target))) as tf.Scalar, specs.map(([, s]) => s.variable!));
    expect(value.dataSync()[0]!).toBeCloseTo((gold.loss!.data as Float32Array)[0]!, 5);
    for (const [name, spec] of specs) {
      const got = tf.tidy(() => toDiffusersLayout(grads[spec.variable!.name]!, spec.layout));
      const ref = T(`grad.${name}`);
      const rel = tf.tidy(() => tf.norm(tf.sub(got, ref)).dataSync()[0]! / tf.norm(ref).dataSync()[0]!);
      expect(rel, name).toBeLessThan(1e-4);
      tf.dispose([got, ref]);
    }

    // The same weights read as "default" cannot load: time_emb_proj has 2·C outputs there.
    const raw = { ...model.toConfig() } as Record<string, unknown>;
    delete raw.resnet_time_scale_shift;
    const plainModel = new UNet2DConditionModel(parseUNetConfig(raw));
    await expect(plainModel.loadWeights(join(dir, "diffusion_pytorch_model.safetensors"))).rejects.toThrow(/time_emb_proj/);
    plainModel.dispose();
    model.dispose();
    tf.dispose([context, sample, timestep, target, want, out, value, ...Object.values(grads)]);
  });

  it("round-trips its config; other values fail naming the field", async () => {
    const model = await UNet2DConditionModel.fromPretrained(dir);
    const reloaded = await tmp();
    await model.savePretrained(reloaded);
    expect(JSON.parse(await readFile(join(reloaded, "config.json"), "utf8")).resnet_time_scale_shift).toBe("scale_shift");
    const again = await UNet2DConditionModel.fromPretrained(reloaded);
    // [in, out] as tfjs stores it: 2 × 16 outputs, a scale and a shift per channel.
    expect(again.namedParameters().get("down_blocks.0.resnets.0.time_emb_proj.weight")!.shape).toEqual([64, 32]);
    // "default" is diffusers' default and stays out of the written config, as before.
    expect(unet.toConfig().resnet_time_scale_shift).toBeUndefined();
    expect(() => UNet2DConditionModel.fromConfig({ ...model.toConfig(), resnet_time_scale_shift: "ada_group" })).toThrow(/resnet_time_scale_shift.*"scale_shift"/);
    again.dispose();
    model.dispose();
  });
});
