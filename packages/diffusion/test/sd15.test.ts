/**
 * An SD-1.5-shaped pipeline, scaled down: 4 down blocks, 1×1 conv projections
 * (use_linear_projection false), a 4-block VAE with 8× downsampling, a CLIP BPE
 * tokenizer with a small vocabulary, SD's scheduler config. Random weights:
 * save → load round trip, a forward of the right shape, and DDIM sampling.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs-core";
import { backend } from "@apt/backend-cpu";
import { readFileSync } from "node:fs";
import { AutoencoderKL, BYTE_TO_UNICODE, CLIPTextModel, CLIPTokenizer, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel, rescaleNoiseCfg } from "../src/index.js";

const unetConfig = {
  _class_name: "UNet2DConditionModel",
  sample_size: 8,
  in_channels: 4,
  out_channels: 4,
  down_block_types: ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
  up_block_types: ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
  block_out_channels: [16, 32, 32, 32],
  layers_per_block: 2,
  attention_head_dim: 2,
  cross_attention_dim: 32,
  norm_num_groups: 8,
  norm_eps: 1e-5,
  act_fn: "silu",
  flip_sin_to_cos: true,
  freq_shift: 0,
  use_linear_projection: false,
  center_input_sample: false,
  downsample_padding: 1,
  mid_block_scale_factor: 1,
};
const vaeConfig = {
  _class_name: "AutoencoderKL",
  in_channels: 3,
  out_channels: 3,
  down_block_types: ["DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D"],
  up_block_types: ["UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"],
  block_out_channels: [8, 16, 16, 16],
  layers_per_block: 1,
  latent_channels: 4,
  norm_num_groups: 4,
  sample_size: 64,
  scaling_factor: 0.18215,
};
const schedulerConfig = {
  beta_start: 0.00085,
  beta_end: 0.012,
  beta_schedule: "scaled_linear" as const,
  clip_sample: false,
  set_alpha_to_one: false,
  steps_offset: 1,
  num_train_timesteps: 1000,
};

/** A small byte-level BPE vocabulary: the 256 byte symbols (with and without </w>), a few merges, CLIP's specials. */
function tinyClipTokenizer(): CLIPTokenizer {
  const vocab: Record<string, number> = {};
  for (const ch of BYTE_TO_UNICODE) vocab[ch] = Object.keys(vocab).length;
  for (const ch of BYTE_TO_UNICODE) vocab[`${ch}</w>`] = Object.keys(vocab).length;
  const merges = ["s t", "st a", "sta r</w>", "r e", "re d</w>", "o f</w>", "p h", "ph o", "pho t", "phot o</w>"];
  for (const m of merges) vocab[m.replace(" ", "")] = Object.keys(vocab).length;
  vocab["<|startoftext|>"] = Object.keys(vocab).length;
  vocab["<|endoftext|>"] = Object.keys(vocab).length;
  return new CLIPTokenizer({ vocab, merges, modelMaxLength: 16 });
}

let pipe: StableDiffusionPipeline;

beforeAll(async () => {
  await backend.init();
  const tokenizer = tinyClipTokenizer();
  const textConfig = { vocab_size: tokenizer.vocabSize, max_position_embeddings: 16, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2, num_attention_heads: 2, hidden_act: "quick_gelu", layer_norm_eps: 1e-5 };
  pipe = new StableDiffusionPipeline({
    unet: UNet2DConditionModel.fromConfig(unetConfig, { seed: 1 }),
    textEncoder: CLIPTextModel.fromConfig(textConfig, { seed: 2 }),
    tokenizer,
    scheduler: new DDIMScheduler(schedulerConfig),
    vae: AutoencoderKL.fromConfig(vaeConfig, { seed: 3 }),
  });
});

describe("SD-1.5-shaped pipeline, scaled down", () => {
  it("has SD-1.5's module layout: 4 down blocks, conv projections, VAE with 8× downsampling", () => {
    const names = [...pipe.unet.namedParameters().keys()];
    expect(names).toContain("down_blocks.2.attentions.1.proj_in.weight");
    expect(names).toContain("up_blocks.3.attentions.2.transformer_blocks.0.attn2.to_k.weight");
    expect(names.some((n) => n.startsWith("down_blocks.3.attentions"))).toBe(false);
    expect(pipe.unet.hookPoints("conv").map((p) => p.path)).toContain("down_blocks.0.attentions.0.proj_in");
    expect([...(pipe.vae as AutoencoderKL).namedParameters().keys()]).toContain("decoder.up_blocks.3.resnets.1.conv2.weight");
  });

  it("saves as a diffusers folder and loads back bit-identically", async () => {
    const dir = await mkdtemp(join(tmpdir(), "apt-sd15-"));
    await pipe.savePretrained(dir);
    const again = await StableDiffusionPipeline.fromPretrained(dir, { loadVae: AutoencoderKL.fromPretrained });
    for (const [a, b] of [
      [pipe.unet, again.unet],
      [pipe.textEncoder, again.textEncoder],
      [pipe.vae as AutoencoderKL, again.vae as AutoencoderKL],
    ] as const) {
      const pa = a.namedParameters();
      const pb = b.namedParameters();
      expect([...pb.keys()]).toEqual([...pa.keys()]);
      for (const [name, v] of pa) expect(Buffer.from((await pb.get(name)!.data()).buffer).equals(Buffer.from((await v.data()).buffer)), name).toBe(true);
    }
    expect(again.tokenizer.encode("a photo of a red star")).toEqual(pipe.tokenizer.encode("a photo of a red star"));
    expect(again.scheduler.config).toEqual(pipe.scheduler.config);
    again.dispose();
  });

  it("runs a forward of the right shape and samples a few DDIM steps, seeded", async () => {
    const out = tf.tidy(() => pipe.unet.forward(tf.randomNormal([2, 8, 8, 4]) as tf.Tensor4D, tf.tensor1d([1, 999], "int32"), pipe.encodePrompt(["a red star", ""])));
    expect(out.shape).toEqual([2, 8, 8, 4]);
    out.dispose();
    const before = tf.memory().numTensors;
    const steps: number[] = [];
    const a = await pipe.generate({ prompt: "a photo of a red star", numInferenceSteps: 3, guidanceScale: 7.5, seed: 7, onStep: (_, t) => steps.push(t) });
    expect(steps).toEqual([667, 334, 1]);
    expect(a.images.shape).toEqual([1, 64, 64, 3]);
    const px = await a.images.data();
    expect(Math.min(...px)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...px)).toBeLessThanOrEqual(1);
    const b = await pipe.generate({ prompt: "a photo of a red star", numInferenceSteps: 3, guidanceScale: 7.5, seed: 7 });
    const c = await pipe.generate({ prompt: "a photo of a red star", numInferenceSteps: 3, guidanceScale: 7.5, seed: 8 });
    expect(Buffer.from((await b.images.data()).buffer).equals(Buffer.from(px.buffer))).toBe(true);
    expect(Buffer.from((await c.images.data()).buffer).equals(Buffer.from(px.buffer))).toBe(false);
    tf.dispose([a.images, b.images, c.images]);
    expect(tf.memory().numTensors).toBe(before);
  });

  it("guidanceRescale: diffusers' rescale_noise_cfg (PyTorch float64 reference), 0 leaves sampling as it was", async () => {
    const ref = JSON.parse(readFileSync(new URL("./fixtures/guidance-rescale.json", import.meta.url), "utf8")) as {
      shape: [number, number, number, number]; guided: number[]; conditional: number[]; cases: { guidance_rescale: number; expected: number[] }[];
    };
    const guided = tf.tensor4d(ref.guided, ref.shape);
    const conditional = tf.tensor4d(ref.conditional, ref.shape);
    for (const c of ref.cases) {
      const got = rescaleNoiseCfg(guided, conditional, c.guidance_rescale);
      const diff = Math.max(...Array.from(await got.data(), (v, i) => Math.abs(v - c.expected[i]!)));
      expect(diff, `φ = ${c.guidance_rescale}`).toBeLessThan(1e-4);
      got.dispose();
    }
    // φ = 1 moves the guided prediction: the reference's two ends differ.
    expect(Math.max(...ref.cases[0]!.expected.map((v, i) => Math.abs(v - ref.cases[2]!.expected[i]!)))).toBeGreaterThan(0.1);
    tf.dispose([guided, conditional]);

    const before = tf.memory().numTensors;
    const base = { prompt: "a photo of a red star", numInferenceSteps: 3, guidanceScale: 7.5, seed: 7 };
    const plain = await pipe.generate(base);
    const zero = await pipe.generate({ ...base, guidanceRescale: 0 });
    const rescaled = await pipe.generate({ ...base, guidanceRescale: 0.7 });
    const bytes = async (t: tf.Tensor) => Buffer.from((await t.data()).buffer);
    expect((await bytes(zero.images)).equals(await bytes(plain.images))).toBe(true);
    expect((await bytes(rescaled.images)).equals(await bytes(plain.images))).toBe(false);
    tf.dispose([plain.images, zero.images, rescaled.images]);
    expect(tf.memory().numTensors).toBe(before);
    await expect(pipe.generate({ ...base, guidanceRescale: 1.5 })).rejects.toThrow(/guidanceRescale must be in \[0, 1\], got 1.5/);
  });

  it("sizes images by the VAE's own scale factor (a 2-block VAE upsamples 2×, not SD's 8×)", async () => {
    const small = new StableDiffusionPipeline({
      unet: pipe.unet,
      textEncoder: pipe.textEncoder,
      tokenizer: pipe.tokenizer,
      scheduler: pipe.scheduler,
      vae: AutoencoderKL.fromConfig({ ...vaeConfig, down_block_types: vaeConfig.down_block_types.slice(0, 2), up_block_types: vaeConfig.up_block_types.slice(0, 2), block_out_channels: [8, 16] }, { seed: 4 }),
    });
    expect(small.vae!.vaeScaleFactor).toBe(2);
    // Default size: sample_size 8 latents → 16 pixels; an explicit 32×32 → 16×16 latents (SD's 8× would ask for multiples of 64).
    const byDefault = await small.generate({ prompt: "a red star", numInferenceSteps: 2, guidanceScale: 1, seed: 1 });
    expect(byDefault.images.shape).toEqual([1, 16, 16, 3]);
    byDefault.images.dispose();
    const { images } = await small.generate({ prompt: "a red star", numInferenceSteps: 2, guidanceScale: 1, seed: 1, height: 32, width: 32 });
    expect(images.shape).toEqual([1, 32, 32, 3]);
    images.dispose();
    small.vae!.dispose();
  });
});
