/**
 * AutoencoderKL: numerical parity with an independent PyTorch implementation
 * (fixtures/vae/make_vae_fixture.py), legacy attention names, save/load round
 * trip, loader and config errors, tensor hygiene.
 */
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { copyFile, mkdtemp, readFile, rm, writeFile, mkdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs-core";
import { AptError, Rng, readSafetensors, writeSafetensors, type DecodedTensor, type TensorToWrite } from "@apt/core";
import { backend } from "@apt/backend-cpu";
import { AutoencoderKL, DiagonalGaussianDistribution, legacyVAEParamName, parseAutoencoderKLConfig } from "../src/models/autoencoder_kl.js";

const fixture = join(import.meta.dirname, "fixtures", "vae");
const vaeDir = join(fixture, "vae");
const weightsFile = join(vaeDir, "diffusion_pytorch_model.safetensors");

function relError(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < expected.length; i++) {
    num += (actual[i]! - expected[i]!) ** 2;
    den += expected[i]! ** 2;
  }
  return Math.sqrt(num / den);
}

const toNHWC = (t: DecodedTensor): tf.Tensor4D => tf.transpose(tf.tensor4d(t.data as Float32Array, t.shape as [number, number, number, number]), [0, 2, 3, 1]);
const toNCHW = (t: tf.Tensor): tf.Tensor => tf.transpose(t, [0, 3, 1, 2]);

/** Every parameter's data by name. */
function paramData(model: AutoencoderKL): Map<string, Float32Array> {
  const out = new Map<string, Float32Array>();
  for (const [name, v] of model.namedParameters()) out.set(name, v.dataSync() as Float32Array);
  return out;
}

function expectBitIdentical(a: Map<string, Float32Array>, b: Map<string, Float32Array>): void {
  expect([...b.keys()]).toEqual([...a.keys()]);
  for (const [name, data] of a) {
    const other = b.get(name)!;
    expect(other.length, name).toBe(data.length);
    // Compare the bits, so -0/+0 and NaN payloads count too.
    expect(Buffer.from(other.buffer, other.byteOffset, other.byteLength).equals(Buffer.from(data.buffer, data.byteOffset, data.byteLength)), name).toBe(true);
  }
}

async function errorOf(p: Promise<unknown>): Promise<AptError> {
  try {
    await p;
  } catch (e) {
    expect(AptError.isInstance(e), String(e)).toBe(true);
    return e as AptError;
  }
  throw new Error("expected an AptError, but the call succeeded");
}

function errorOfSync(fn: () => unknown): AptError {
  try {
    fn();
  } catch (e) {
    expect(AptError.isInstance(e), String(e)).toBe(true);
    return e as AptError;
  }
  throw new Error("expected an AptError, but the call succeeded");
}

describe("AutoencoderKL", () => {
  let vae: AutoencoderKL;
  let golden: Record<string, DecodedTensor>;
  let fileTensors: Record<string, DecodedTensor>;
  let config: Record<string, unknown>;
  let tmp: string;

  /** A model folder in tmp with the fixture's config and `tensors` as weights. */
  async function folderWith(name: string, tensors: Record<string, TensorToWrite | DecodedTensor>, cfg: Record<string, unknown> = config): Promise<string> {
    const dir = join(tmp, name);
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, "config.json"), JSON.stringify(cfg));
    await writeSafetensors(join(dir, "diffusion_pytorch_model.safetensors"), tensors as Record<string, TensorToWrite>);
    return dir;
  }

  beforeAll(async () => {
    await backend.init();
    vae = await AutoencoderKL.fromPretrained(vaeDir);
    golden = (await readSafetensors(join(fixture, "golden.safetensors"))).tensors;
    fileTensors = (await readSafetensors(weightsFile)).tensors;
    config = JSON.parse(await readFile(join(vaeDir, "config.json"), "utf8")) as Record<string, unknown>;
    tmp = await mkdtemp(join(tmpdir(), "apt-vae-"));
  });

  afterAll(async () => {
    vae?.dispose();
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  it("builds diffusers' module tree from the config", () => {
    expect(vae.numParameters()).toBe(167_959);
    const names = [...vae.namedParamSpecs().keys()];
    expect(new Set(names)).toEqual(new Set(Object.keys(fileTensors)));
    expect(vae.scalingFactor).toBe(0.18215);
    expect(vae.vaeScaleFactor).toBe(2);
    expect(vae.toConfig()).toMatchObject({ _class_name: "AutoencoderKL", block_out_channels: [16, 32], latent_channels: 4, scaling_factor: 0.18215, shift_factor: null });
    // The mid-block attentions are attention hook points; resnets and blocks are feature points.
    expect(vae.hookPoints("attention").map((p) => p.path)).toEqual(["encoder.mid_block.attentions.0", "decoder.mid_block.attentions.0"]);
    expect(vae.hookPoints("feature").map((p) => p.path)).toContain("decoder.up_blocks.1");
  });

  it("encode (mean, logvar) and decode(mean) match the PyTorch reference to 1e-4", async () => {
    const before = tf.memory().numTensors;
    const [mean, logvar, decoded] = tf.tidy(() => {
      const posterior = vae.encode(toNHWC(golden.x!));
      return [toNCHW(posterior.mean), toNCHW(posterior.logvar), toNCHW(vae.decode(posterior.mode()))];
    });
    const errors: Record<string, number> = {};
    for (const [name, t] of [["mean", mean], ["logvar", logvar], ["decoded", decoded]] as const) {
      expect(t.shape, name).toEqual(golden[name]!.shape);
      errors[name] = relError(await t.data(), golden[name]!.data as Float32Array);
    }
    console.log(`[vae parity cpu] relative errors: ${Object.entries(errors).map(([k, v]) => `${k} ${v.toExponential(2)}`).join(", ")}`);
    for (const [k, v] of Object.entries(errors)) expect(v, k).toBeLessThanOrEqual(1e-4);
    tf.dispose([mean, logvar, decoded]);
    expect(tf.memory().numTensors).toBe(before);
  });

  it("loads a checkpoint with the legacy attention names (query/key/value/proj_attn)", async () => {
    const renamed: Record<string, DecodedTensor> = {};
    let legacyCount = 0;
    for (const [name, t] of Object.entries(fileTensors)) {
      const legacy = legacyVAEParamName(name);
      if (legacy !== name) legacyCount++;
      renamed[legacy] = t;
    }
    expect(legacyCount).toBe(16); // 2 attentions × 4 projections × (weight, bias)
    expect(Object.keys(renamed)).toContain("encoder.mid_block.attentions.0.proj_attn.weight");
    const dir = await folderWith("legacy", renamed);
    const legacy = await AutoencoderKL.fromPretrained(dir);
    try {
      expect([...legacy.namedParamSpecs().keys()]).toEqual([...vae.namedParamSpecs().keys()]);
      expect([...legacy.namedParamSpecs().keys()]).toContain("decoder.mid_block.attentions.0.to_out.0.weight");
      expectBitIdentical(paramData(vae), paramData(legacy));
      // Saving writes the current names.
      await legacy.savePretrained(join(tmp, "legacy-saved"));
      const saved = await readSafetensors(join(tmp, "legacy-saved", "diffusion_pytorch_model.safetensors"));
      expect(new Set(Object.keys(saved.tensors))).toEqual(new Set(Object.keys(fileTensors)));
    } finally {
      legacy.dispose();
    }
    // A legacy file missing one projection names the legacy tensor.
    delete renamed["decoder.mid_block.attentions.0.value.bias"];
    const dir2 = await folderWith("legacy-missing", renamed);
    const err = await errorOf(AutoencoderKL.fromPretrained(dir2));
    expect(err.message).toContain('missing tensor "decoder.mid_block.attentions.0.value.bias" (expected shape [32])');
  });

  it("save → load round trip is bit-identical, and writes the fixture's tensors unchanged", async () => {
    const random = AutoencoderKL.fromConfig(config, { seed: 7 });
    try {
      await random.savePretrained(join(tmp, "random"));
      const reloaded = await AutoencoderKL.fromPretrained(join(tmp, "random"));
      try {
        expectBitIdentical(paramData(random), paramData(reloaded));
        expect(reloaded.toConfig()).toEqual(random.toConfig());
      } finally {
        reloaded.dispose();
      }
    } finally {
      random.dispose();
    }
    await vae.savePretrained(join(tmp, "resaved"));
    const resaved = (await readSafetensors(join(tmp, "resaved", "diffusion_pytorch_model.safetensors"))).tensors;
    expect(Object.keys(resaved).sort()).toEqual(Object.keys(fileTensors).sort());
    for (const [name, t] of Object.entries(fileTensors)) {
      expect(resaved[name]!.shape, name).toEqual(t.shape);
      expect(Buffer.from((resaved[name]!.data as Float32Array).buffer).equals(Buffer.from((t.data as Float32Array).buffer)), name).toBe(true);
    }
  });

  it("fromConfig is deterministic per seed", () => {
    const a = AutoencoderKL.fromConfig(config, { seed: 3 });
    const b = AutoencoderKL.fromConfig(config, { seed: 3 });
    try {
      expectBitIdentical(paramData(a), paramData(b));
    } finally {
      a.dispose();
      b.dispose();
    }
  });

  it("a missing tensor, an unexpected tensor and a wrong shape fail naming the tensor", async () => {
    const missing = { ...fileTensors };
    delete missing["encoder.mid_block.attentions.0.to_k.bias"];
    let err = await errorOf(AutoencoderKL.fromPretrained(await folderWith("missing", missing)));
    expect(err.code).toBe("BAD_INPUT");
    expect(err.message).toContain('missing tensor "encoder.mid_block.attentions.0.to_k.bias" (expected shape [32])');

    const unexpected = { ...fileTensors, "decoder.extra.weight": { dtype: "F32", shape: [2], data: new Float32Array(2) } as TensorToWrite };
    err = await errorOf(AutoencoderKL.fromPretrained(await folderWith("unexpected", unexpected)));
    expect(err.message).toContain('unexpected tensor "decoder.extra.weight" [2]');

    const wrong = { ...fileTensors, "quant_conv.weight": { dtype: "F32", shape: [8, 8, 3, 3], data: new Float32Array(8 * 8 * 9) } as TensorToWrite };
    err = await errorOf(AutoencoderKL.fromPretrained(await folderWith("wrong-shape", wrong)));
    expect(err.message).toContain('tensor "quant_conv.weight" has shape [8,8,3,3] in the file but the config gives [8,8,1,1]');

    // use_quant_conv: false makes quant_conv.* unexpected.
    err = await errorOf(AutoencoderKL.fromPretrained(await folderWith("no-quant", fileTensors, { ...config, use_quant_conv: false })));
    expect(err.message).toContain('unexpected tensor "quant_conv.weight"');
  });

  it("config errors name the field", () => {
    const cases: [Record<string, unknown>, string, string][] = [
      [{ down_block_types: ["Foo", "DownEncoderBlock2D"] }, "down_block_types", '"Foo"'],
      [{ up_block_types: ["UpDecoderBlock2D", "AttnUpDecoderBlock2D"] }, "up_block_types", "AttnUpDecoderBlock2D"],
      [{ up_block_types: ["UpDecoderBlock2D"] }, "up_block_types", "has 1 entries"],
      [{ shift_factor: 1 }, "shift_factor", "supports only null"],
      [{ latents_mean: [0, 0, 0, 0] }, "latents_mean", "supports only null"],
      [{ block_out_channels: [16] }, "block_out_channels", "list of 2"],
      [{ block_out_channels: 16 }, "block_out_channels", "list of 2"],
      [{ norm_num_groups: 5 }, "norm_num_groups", "must divide"],
      [{ act_fn: "gelu" }, "act_fn", '"gelu"'],
      [{ layers_per_block: [1, 1] }, "layers_per_block", "must be a number"],
      [{ use_quant_conv: "yes" }, "use_quant_conv", "true or false"],
      [{ sample_size: [16] }, "sample_size", "[height, width]"],
      [{ scaling_factor: 0 }, "scaling_factor", "> 0"],
      [{ _class_name: "AsymmetricAutoencoderKL" }, "_class_name", "AsymmetricAutoencoderKL"],
    ];
    for (const [patch, field, detail] of cases) {
      const err = errorOfSync(() => AutoencoderKL.fromConfig({ ...config, ...patch }));
      expect(err.code).toBe("BAD_INPUT");
      expect(err.message, JSON.stringify(patch)).toContain(`field "${field}"`);
      expect(err.message, JSON.stringify(patch)).toContain(detail);
    }
    // Defaults and tolerated fields.
    const parsed = parseAutoencoderKLConfig({ block_out_channels: [32], force_upcast: false, shift_factor: null, sample_size: [64, 32] });
    expect(parsed).toMatchObject({ down_block_types: ["DownEncoderBlock2D"], layers_per_block: 1, latent_channels: 4, norm_num_groups: 32, use_quant_conv: true, use_post_quant_conv: true, mid_block_add_attention: true, force_upcast: false, sample_size: [64, 32] });
  });

  it("config.json errors name the file", async () => {
    const dir = join(tmp, "bad-config");
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, "config.json"), JSON.stringify({ ...config, shift_factor: 0.1159 }));
    await copyFile(weightsFile, join(dir, "diffusion_pytorch_model.safetensors"));
    const err = await errorOf(AutoencoderKL.fromPretrained(dir));
    expect(err.message).toContain(join(dir, "config.json"));
    expect(err.message).toContain('field "shift_factor"');
  });

  it("encode/decode/sample leave tf.memory().numTensors unchanged in tf.tidy, with the right shapes", () => {
    const before = tf.memory().numTensors;
    const shapes = tf.tidy(() => {
      const x = tf.randomUniform([2, 16, 24, 3], -1, 1) as tf.Tensor4D;
      const posterior = vae.encode(x);
      const z = posterior.sample(new Rng(1));
      const images = vae.decode(z);
      const roundTrip = vae.forward(x);
      return { mean: posterior.mean.shape, logvar: posterior.logvar.shape, z: z.shape, images: images.shape, roundTrip: roundTrip.shape };
    });
    expect(tf.memory().numTensors).toBe(before);
    expect(shapes).toEqual({ mean: [2, 8, 12, 4], logvar: [2, 8, 12, 4], z: [2, 8, 12, 4], images: [2, 16, 24, 3], roundTrip: [2, 16, 24, 3] });
  });

  it("the posterior: logvar clamped to [-30, 20], sample = mean + exp(logvar/2)·ε, mode = mean, kl", () => {
    const before = tf.memory().numTensors;
    const r = tf.tidy(() => {
      const moments = tf.concat([tf.fill([1, 2, 2, 1], 0.5), tf.tensor4d([-100, 0, 2, 100], [1, 2, 2, 1])], -1) as tf.Tensor4D;
      const d = DiagonalGaussianDistribution.fromMoments(moments);
      const badNoise = tf.zeros([1, 2, 2, 2]);
      return {
        logvar: Array.from(d.logvar.dataSync()),
        modeIsMean: d.mode() === d.mean,
        sample: Array.from(d.sample(tf.tensor4d([1, -1, 0.5, 0], [1, 2, 2, 1])).dataSync()),
        // An Rng gives reproducible noise.
        rngA: Array.from(d.sample(new Rng(5)).dataSync()),
        rngB: Array.from(d.sample(new Rng(5)).dataSync()),
        kl: d.kl().dataSync()[0]!,
        klSelf: d.kl(d).dataSync()[0]!,
        badNoise: errorOfSync(() => d.sample(badNoise)).message,
      };
    });
    expect(tf.memory().numTensors).toBe(before);
    expect(r.logvar).toEqual([-30, 0, 2, 20]);
    expect(r.modeIsMean).toBe(true);
    const expected = [0.5 + Math.exp(-15), 0.5 - 1, 0.5 + 0.5 * Math.E, 0.5];
    r.sample.forEach((v, i) => expect(v).toBeCloseTo(expected[i]!, 5));
    expect(r.rngA).toEqual(r.rngB);
    expect(r.rngA).not.toEqual([0.5, 0.5, 0.5, 0.5]);
    // KL to N(0, I): 0.5·Σ(μ² + σ² − 1 − logσ²); to itself: 0.
    const want = 0.5 * [-30, 0, 2, 20].reduce((acc, l) => acc + 0.25 + Math.exp(l) - 1 - l, 0);
    expect(r.kl / want).toBeCloseTo(1, 5);
    expect(r.klSelf).toBe(0);
    expect(r.badNoise).toContain("noise has shape [1,2,2,2] but the latents are [1,2,2,1]");
  });

  it("rejects inputs with the wrong layout", () => {
    const x = tf.zeros([1, 3, 16, 16]) as tf.Tensor4D;
    try {
      expect(errorOfSync(() => vae.encode(x)).message).toContain("expected images NHWC [B, H, W, 3], got shape [1,3,16,16]");
      expect(errorOfSync(() => vae.decode(x)).message).toContain("expected latents NHWC [B, H, W, 4]");
    } finally {
      x.dispose();
    }
  });

  it("attention observers see the mid-block attention probabilities", () => {
    const seen: Record<string, number[]> = {};
    const stop = vae.observeAttention("encoder.mid_block.attentions.0", (o) => {
      seen[o.path] = o.probs.shape;
    });
    tf.tidy(() => {
      vae.encode(tf.zeros([1, 16, 16, 3]) as tf.Tensor4D);
    });
    stop();
    expect(seen).toEqual({ "encoder.mid_block.attentions.0": [1, 64, 64] });
  });
});
