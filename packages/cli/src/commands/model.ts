/** Loading a diffusers pipeline folder for training or sampling. */
import { AutoencoderKL, StableDiffusionPipeline } from "@apt/diffusion";

export async function loadPipeline(dir: string): Promise<StableDiffusionPipeline> {
  return StableDiffusionPipeline.fromPretrained(dir, { loadVae: AutoencoderKL.fromPretrained });
}

/** The image resolution the model trains at: UNet sample size × the VAE's downsampling (1 without a VAE). */
export function modelResolution(p: StableDiffusionPipeline): { size: number; vaeFactor: number } {
  let vaeFactor = 1;
  if (p.vae) {
    const blocks = p.vae.toConfig().block_out_channels;
    vaeFactor = Array.isArray(blocks) && blocks.length > 0 ? 2 ** (blocks.length - 1) : 8;
  }
  return { size: p.unet.config.sample_size * vaeFactor, vaeFactor };
}
