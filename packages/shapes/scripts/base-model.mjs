// The ShapeWorld base model's architecture and noise schedule, and a factory
// for it: the pretraining script builds its model here, and so does each of its
// replica threads (`--workers`), which get their weights from the main thread.
import { backend } from "@apt/backend-cpu";
import { AutoencoderKL, CLIPTextModel, DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel } from "@apt/diffusion";
import { createTokenizer, vocabulary } from "../dist/index.js";

// shapes-s (../shared/bench) sized for the 2-core budget: the 32×32 level has no attention.
export const UNET_CONFIG = {
  sample_size: 32, in_channels: 3, out_channels: 3,
  down_block_types: ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
  mid_block_type: "UNetMidBlock2DCrossAttn",
  up_block_types: ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
  block_out_channels: [32, 64, 64], layers_per_block: 1, attention_head_dim: 4, cross_attention_dim: 64,
  norm_num_groups: 8, norm_eps: 1e-5, act_fn: "silu", flip_sin_to_cos: true, freq_shift: 0,
  use_linear_projection: true, transformer_layers_per_block: 1,
};

// Cross-attention only at 8×8 and in the middle: 1.8× cheaper a step on backend-cpu.
const ATTN8_CONFIG = {
  ...UNET_CONFIG,
  down_block_types: ["DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D"],
  up_block_types: ["CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D"],
};

// shapes-s-attn8 plus the pooled prompt added to the time embedding (diffusers'
// addition_embed_type "text"): every ResNet block sees the prompt.
const TEXT_TIME_CONFIG = { ...ATTN8_CONFIG, addition_embed_type: "text", addition_embed_type_num_heads: 4 };

export const UNET_VARIANTS = {
  "shapes-s": UNET_CONFIG,
  "shapes-s-attn8": ATTN8_CONFIG,
  "shapes-t": TEXT_TIME_CONFIG,
  // shapes-t with ADM's adaptive GroupNorm (diffusers' resnet_time_scale_shift
  // "scale_shift"): the time + pooled-prompt embedding scales and shifts every
  // ResnetBlock2D after its norm2, where a bias added before it (shapes-t) is
  // partly normalized away — the prompt reaches the 32×32 and 16×16 levels,
  // which have no cross-attention, as more than an offset. 1,512,387 parameters
  // (shapes-t: 1,433,955).
  "shapes-t-scale-shift": { ...TEXT_TIME_CONFIG, resnet_time_scale_shift: "scale_shift" },
  // shapes-t with a 4×4 level and 128 channels at 8×8 and 4×4, where a sample
  // commits to a shape (DDPM's CIFAR UNet also goes down to 4×4): 4.5× the
  // parameters for about 1.4× the step time.
  "shapes-t4": {
    ...TEXT_TIME_CONFIG,
    block_out_channels: [32, 64, 128, 128],
    down_block_types: ["DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    up_block_types: ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D"],
  },
  // A latent UNet (with `--vae`, scripts/train-vae.mjs: 8×8×8 latents of the
  // 32×32 images), as Stable Diffusion: 8×8, 4×4 and 2×2 levels, cross-attention
  // at each; the same text-time embedding as shapes-t. 6.9M parameters (256
  // channels at 2×2 would be 16.6M: too large to ship). Measured (6,400 steps,
  // EMA 0.999, with train-vae's 8-channel VAE): seen shape & colour 15.6%,
  // held-out 23.4% — no better at shape than the shipped pixel model.
  "shapes-l": {
    ...TEXT_TIME_CONFIG,
    sample_size: 8, in_channels: 8, out_channels: 8,
    block_out_channels: [64, 128, 128],
    down_block_types: ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    up_block_types: ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
  },
};

const vocab = vocabulary();
export const TEXT_CONFIG = {
  vocab_size: Math.max(...Object.values(vocab)) + 1, max_position_embeddings: 16, hidden_size: 64,
  intermediate_size: 128, num_hidden_layers: 2, num_attention_heads: 4, hidden_act: "quick_gelu", layer_norm_eps: 1e-5,
};

// Zero terminal SNR + v-prediction: backgrounds are the low-frequency mean a
// model with residual signal at t = T never learns (DESIGN.md's evidence).
// Linear betas: the cosine schedule (Nichol & Dhariwal 2021, "squaredcos_cap_v2",
// `--beta-schedule`) moves training from the near-pure-noise half of the linear
// schedule (SNR < 0.08 from t = 500) to low noise; measured on the shipped recipe
// (7,500 steps), it drew textures better (47% vs 23%) but shapes no better
// (seen shape & colour 20.3% vs 24.2%, held-out 10.9% vs 32.8%).
export const SCHEDULER_CONFIG = {
  num_train_timesteps: 1000, beta_schedule: "linear", beta_start: 0.0001, beta_end: 0.02,
  prediction_type: "v_prediction", rescale_betas_zero_snr: true, timestep_spacing: "trailing", clip_sample: false,
};

/**
 * The scheduler config for a beta schedule by name (diffusers' names).
 * "scaled_linear" takes Stable Diffusion's betas (0.00085 → 0.012), the
 * latent models' default: a latent carries less redundancy than pixels, so the
 * same noise destroys more of it.
 */
export function schedulerConfig(betaSchedule = SCHEDULER_CONFIG.beta_schedule) {
  const betas = betaSchedule === "scaled_linear" ? { beta_start: 0.00085, beta_end: 0.012 } : {};
  return { ...SCHEDULER_CONFIG, beta_schedule: betaSchedule, ...betas };
}

/**
 * Initialises backend-cpu and builds the freshly initialised pipeline (UNet
 * variant and beta schedule by name). With `vae` (a trained AutoencoderKL
 * folder) the UNet denoises its latents: the variant must take them. With
 * `textEncoder` (a CLIPTextModel folder, scripts/train-text-encoder.mjs) the
 * pipeline starts from that encoder instead of a random one.
 */
export default async function createBaseModel({ unet = "shapes-s", betaSchedule = SCHEDULER_CONFIG.beta_schedule, vae, textEncoder } = {}) {
  const config = UNET_VARIANTS[unet];
  if (!config) throw new Error(`unet variant "${unet}" is not one of ${Object.keys(UNET_VARIANTS).join(", ")}`);
  await backend.init();
  const autoencoder = vae ? await AutoencoderKL.fromPretrained(vae) : undefined;
  const [channels, size] = autoencoder ? [autoencoder.latentChannels, 32 / autoencoder.vaeScaleFactor] : [3, 32];
  if (config.in_channels !== channels || config.out_channels !== channels || config.sample_size !== size) {
    autoencoder?.dispose();
    throw new Error(`unet variant "${unet}" takes ${config.sample_size}×${config.sample_size}×${config.in_channels} inputs, but ${vae ? `the VAE in ${vae} gives ${size}×${size}×${channels} latents` : "without --vae it denoises 32×32×3 images"}`);
  }
  return new StableDiffusionPipeline({
    unet: UNet2DConditionModel.fromConfig(config, { seed: 1 }),
    textEncoder: textEncoder ? await CLIPTextModel.fromPretrained(textEncoder) : CLIPTextModel.fromConfig(TEXT_CONFIG, { seed: 2 }),
    tokenizer: createTokenizer(),
    scheduler: new DDPMScheduler(schedulerConfig(betaSchedule)),
    vae: autoencoder,
  });
}
