/**
 * The text-to-image sampling pipeline (diffusers' StableDiffusionPipeline):
 * tokenizer → text encoder → seeded initial noise → scheduler loop over the
 * UNet with classifier-free guidance → VAE decode (latent models) → images.
 *
 *   const pipe = await StableDiffusionPipeline.fromPretrained("model");
 *   const { images } = await pipe.generate({ prompt: "a red star", numInferenceSteps: 25, guidanceScale: 3, seed: 0 });
 *   // images: NHWC float32 in [0, 1]
 */
import * as tf from "@tensorflow/tfjs-core";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { AptError, Rng, type TrainingModel } from "@apt/core";
import { CLIPTextModel } from "../models/clip_text_model.js";
import { UNet2DConditionModel } from "../models/unet_2d_condition.js";
import { readJson, writeFileAtomic, type SaveOptions } from "../nn/model.js";
import { DDIMScheduler, DDPMScheduler, loadScheduler, type AnyScheduler } from "../schedulers/index.js";
import { loadTokenizer, type Tokenizer } from "../tokenizers/index.js";

/** What the pipeline needs from a VAE (AutoencoderKL). */
export interface PipelineVae {
  readonly scalingFactor: number;
  /** Image size / latent size (diffusers' `vae_scale_factor`: 8 for SD's VAE). */
  readonly vaeScaleFactor: number;
  /** latents NHWC → images NHWC in [-1, 1]. */
  decode(latents: tf.Tensor4D): tf.Tensor4D;
  /** images NHWC in [-1, 1] → the latent distribution (training). */
  encode(x: tf.Tensor4D): { sample(noise: Rng | tf.Tensor): tf.Tensor4D; dispose(): void };
  savePretrained(dir: string, opts?: SaveOptions): Promise<void>;
  dispose(): void;
  toConfig(): Record<string, unknown>;
}

export type VaeLoader = (dir: string) => Promise<PipelineVae>;

export interface PipelineComponents {
  unet: UNet2DConditionModel;
  textEncoder: CLIPTextModel;
  tokenizer: Tokenizer;
  scheduler: AnyScheduler;
  /** Absent for pixel-space models (the UNet's in_channels are image channels). */
  vae?: PipelineVae;
}

export interface GenerateOptions {
  prompt: string | string[];
  /** One per prompt, or one for all; "" (default) is the unconditional prompt. */
  negativePrompt?: string | string[];
  numInferenceSteps?: number;
  /** ≤ 1 turns classifier-free guidance off (one forward per step). Default 7.5, as diffusers. */
  guidanceScale?: number;
  /** Images per prompt. */
  numImagesPerPrompt?: number;
  /** Seeds the initial noise and any sampler noise. Same seed → same images on the same backend. */
  seed?: number;
  /**
   * diffusers' `guidance_rescale` φ (Lin et al. 2023, "Common Diffusion Noise
   * Schedules and Sample Steps are Flawed", §3.4): the guided prediction is
   * rescaled to the standard deviation of the conditional one, then mixed back,
   * φ · rescaled + (1 − φ) · guided. Keeps strong guidance from over-exposing
   * zero-terminal-SNR models. 0 (default) leaves guidance as it is.
   */
  guidanceRescale?: number;
  /** DDIM's η (0: deterministic). */
  eta?: number;
  height?: number;
  width?: number;
  /** Called after every scheduler step with the step index and timestep. */
  onStep?: (step: number, timestep: number) => void;
}

export interface GenerateResult {
  /** NHWC float32 in [0, 1], prompts in order, `numImagesPerPrompt` each. */
  images: tf.Tensor4D;
}

function list(v: string | string[], n: number, field: string): string[] {
  const arr = Array.isArray(v) ? v : new Array<string>(n).fill(v);
  if (arr.length !== n) throw new AptError("BAD_INPUT", `${field}: ${arr.length} entries for ${n} prompts; give one, or one per prompt`);
  return arr;
}

/**
 * diffusers' `rescale_noise_cfg`: the guided prediction scaled, per sample, to
 * the standard deviation of the conditional prediction, and mixed with the
 * unscaled one by φ.
 */
export function rescaleNoiseCfg(guided: tf.Tensor4D, conditional: tf.Tensor4D, guidanceRescale: number): tf.Tensor4D {
  return tf.tidy(() => {
    const std = (x: tf.Tensor4D) => tf.sqrt(tf.moments(x, [1, 2, 3], true).variance);
    const rescaled = tf.mul(guided, tf.div(std(conditional), std(guided)));
    return tf.add(tf.mul(rescaled, guidanceRescale), tf.mul(guided, 1 - guidanceRescale)) as tf.Tensor4D;
  });
}

export class StableDiffusionPipeline implements TrainingModel {
  unet: UNet2DConditionModel;
  textEncoder: CLIPTextModel;
  tokenizer: Tokenizer;
  scheduler: AnyScheduler;
  vae?: PipelineVae;

  constructor(c: PipelineComponents) {
    this.unet = c.unet;
    this.textEncoder = c.textEncoder;
    this.tokenizer = c.tokenizer;
    this.scheduler = c.scheduler;
    this.vae = c.vae;
  }

  /**
   * Loads a diffusers pipeline folder (model_index.json, unet/, text_encoder/,
   * tokenizer/, scheduler/, optional vae/). A scheduler other than DDPM/DDIM
   * (e.g. SD's PNDM) is sampled with DDIM on its config, as diffusers allows.
   */
  static async fromPretrained(dir: string, opts: { loadVae?: VaeLoader } = {}): Promise<StableDiffusionPipeline> {
    const index = await readJson(join(dir, "model_index.json"));
    const component = (name: string): boolean => Array.isArray(index[name]) && (index[name] as unknown[])[0] !== null;
    for (const required of ["unet", "text_encoder", "tokenizer", "scheduler"]) {
      if (!component(required)) throw new AptError("BAD_INPUT", `${join(dir, "model_index.json")}: component "${required}" is missing; a text-to-image pipeline needs unet, text_encoder, tokenizer and scheduler`);
    }
    const schedulerClass = (index.scheduler as unknown[])[1];
    const scheduler = schedulerClass === "DDPMScheduler" || schedulerClass === "DDIMScheduler" ? await loadScheduler(join(dir, "scheduler")) : await DDIMScheduler.fromPretrained(join(dir, "scheduler"));
    let vae: PipelineVae | undefined;
    if (component("vae")) {
      if (!opts.loadVae) throw new AptError("BAD_INPUT", `${dir} has a vae/ component: pass { loadVae: AutoencoderKL.fromPretrained }`);
      vae = await opts.loadVae(join(dir, "vae"));
    }
    return new StableDiffusionPipeline({
      unet: await UNet2DConditionModel.fromPretrained(join(dir, "unet")),
      textEncoder: await CLIPTextModel.fromPretrained(join(dir, "text_encoder")),
      tokenizer: await loadTokenizer(join(dir, "tokenizer")),
      scheduler,
      vae,
    });
  }

  /** Writes the whole pipeline folder in diffusers' layout; `opts.dtype` is every model's weights' dtype. */
  async savePretrained(dir: string, opts: Pick<SaveOptions, "dtype"> = {}): Promise<void> {
    await mkdir(dir, { recursive: true });
    await this.unet.savePretrained(join(dir, "unet"), opts);
    await this.textEncoder.savePretrained(join(dir, "text_encoder"), opts);
    await this.tokenizer.savePretrained(join(dir, "tokenizer"));
    await this.scheduler.savePretrained(join(dir, "scheduler"));
    if (this.vae) await this.vae.savePretrained(join(dir, "vae"), opts);
    const index = {
      _class_name: "StableDiffusionPipeline",
      _diffusers_version: "0.30.0",
      unet: ["diffusers", "UNet2DConditionModel"],
      text_encoder: ["transformers", "CLIPTextModel"],
      tokenizer: ["transformers", this.tokenizer.tokenizerClass],
      scheduler: ["diffusers", this.scheduler instanceof DDPMScheduler ? "DDPMScheduler" : "DDIMScheduler"],
      vae: this.vae ? ["diffusers", "AutoencoderKL"] : [null, null],
      safety_checker: [null, null],
      feature_extractor: [null, null],
      requires_safety_checker: false,
    };
    await writeFileAtomic(join(dir, "model_index.json"), `${JSON.stringify(index, null, 2)}\n`);
  }

  /** Prompts → text embeddings [B, N, C] (padded to the tokenizer's max length, as SD). */
  encodePrompt(prompts: string[]): tf.Tensor3D {
    const batch = this.tokenizer.call(prompts, { padding: "max_length", truncation: true, maxLength: Math.min(this.tokenizer.modelMaxLength, this.textEncoder.config.max_position_embeddings) });
    return tf.tidy(() => this.textEncoder.forward(tf.tensor2d(batch.inputIds, batch.shape, "int32")));
  }

  async generate(o: GenerateOptions): Promise<GenerateResult> {
    const prompts = typeof o.prompt === "string" ? [o.prompt] : o.prompt;
    if (prompts.length === 0) throw new AptError("BAD_INPUT", "generate: prompt is empty");
    const perPrompt = o.numImagesPerPrompt ?? 1;
    const negatives = list(o.negativePrompt ?? "", prompts.length, "negativePrompt");
    const guidance = o.guidanceScale ?? 7.5;
    const steps = o.numInferenceSteps ?? 50;
    const rng = new Rng(o.seed ?? 0);
    const latentScale = this.vae ? this.vae.vaeScaleFactor : 1;
    const size = this.unet.config.sample_size * latentScale;
    const height = o.height ?? size;
    const width = o.width ?? size;
    const down = 2 ** (this.unet.config.block_out_channels.length - 1) * latentScale;
    if (height % down !== 0 || width % down !== 0) throw new AptError("BAD_INPUT", `generate: height and width must be multiples of ${down} for this model, got ${height}×${width}`);
    const b = prompts.length * perPrompt;
    const repeat = (xs: string[]) => xs.flatMap((x) => new Array<string>(perPrompt).fill(x));
    const useCfg = guidance > 1;
    const rescale = o.guidanceRescale ?? 0;
    if (!(rescale >= 0 && rescale <= 1)) throw new AptError("BAD_INPUT", `generate: guidanceRescale must be in [0, 1], got ${o.guidanceRescale}`);

    const context = tf.tidy(() => {
      const cond = this.encodePrompt(repeat(prompts));
      return useCfg ? tf.concat([this.encodePrompt(repeat(negatives)), cond], 0) : cond;
    });
    const shape: [number, number, number, number] = [b, height / latentScale, width / latentScale, this.unet.config.in_channels];
    const noise = new Float32Array(shape.reduce((a, c) => a * c, 1));
    for (let i = 0; i < noise.length; i++) noise[i] = rng.normal();
    let latents = tf.tidy(() => tf.mul(tf.tensor4d(noise, shape), this.scheduler.initNoiseSigma) as tf.Tensor4D);

    this.scheduler.setTimesteps(steps);
    const timesteps = Array.from(this.scheduler.timesteps);
    try {
      for (let i = 0; i < timesteps.length; i++) {
        const t = timesteps[i]!;
        const next = tf.tidy(() => {
          const input = useCfg ? tf.concat([latents, latents], 0) : latents;
          const out = this.unet.forward(this.scheduler.scaleModelInput(input, t) as tf.Tensor4D, tf.fill([input.shape[0]], t, "int32") as tf.Tensor1D, context);
          let eps: tf.Tensor = out;
          if (useCfg) {
            const [uncond, cond] = tf.split(out, 2, 0) as [tf.Tensor, tf.Tensor];
            eps = tf.add(uncond, tf.mul(tf.sub(cond, uncond), guidance));
            if (rescale > 0) eps = rescaleNoiseCfg(eps as tf.Tensor4D, cond as tf.Tensor4D, rescale);
          }
          const { prevSample, predOriginalSample } = this.scheduler.step(eps, t, latents, { eta: o.eta ?? 0, rng });
          predOriginalSample.dispose();
          return prevSample as tf.Tensor4D;
        });
        latents.dispose();
        latents = next;
        o.onStep?.(i, t);
        await tf.nextFrame();
      }
      const images = tf.tidy(() => {
        const decoded = this.vae ? this.vae.decode(tf.div(latents, this.vae.scalingFactor) as tf.Tensor4D) : latents;
        return tf.clipByValue(tf.add(tf.mul(decoded, 0.5), 0.5), 0, 1) as tf.Tensor4D;
      });
      return { images };
    } finally {
      latents.dispose();
      context.dispose();
    }
  }

  dispose(): void {
    this.unet.dispose();
    this.textEncoder.dispose();
    this.vae?.dispose();
  }
}
