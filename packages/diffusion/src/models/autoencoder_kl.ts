/**
 * AutoencoderKL (the Stable Diffusion 1.x VAE), driven by diffusers'
 * config.json, with diffusers' parameter names. Public tensors are NHWC
 * (diffusers: NCHW).
 *
 *   const vae = await AutoencoderKL.fromPretrained("model/vae");
 *   const posterior = vae.encode(images);                 // [B, H, W, 3] in [-1, 1]
 *   const latents = tf.mul(posterior.sample(rng), vae.scalingFactor);
 *   const decoded = vae.decode(tf.div(latents, vae.scalingFactor)); // [B, H, W, 3]
 *
 * encode/decode do not tidy internally (gradients and observed tensors stay
 * valid): call them inside tf.tidy / tf.variableGrads.
 */
import * as tf from "@tensorflow/tfjs-core";
import { join } from "node:path";
import { AptError, Rng, SafetensorsReader } from "@apt/core";
import { Conv2d } from "../nn/layers.js";
import { ConfigReader, DiffusersModel, readJson, type LoadOptions } from "../nn/model.js";
import type { ParamSpec } from "../nn/module.js";
import { VAEDecoder, VAEEncoder } from "./vae_blocks.js";

const DOWN_TYPES = ["DownEncoderBlock2D"] as const;
const UP_TYPES = ["UpDecoderBlock2D"] as const;

export interface AutoencoderKLConfig {
  in_channels: number;
  out_channels: number;
  down_block_types: (typeof DOWN_TYPES)[number][];
  up_block_types: (typeof UP_TYPES)[number][];
  block_out_channels: number[];
  layers_per_block: number;
  act_fn: "silu" | "swish";
  latent_channels: number;
  norm_num_groups: number;
  /** A number or [height, width]; only informative here (diffusers uses it for tiling). */
  sample_size: number | number[];
  scaling_factor: number;
  /** Only null is supported (SD 1.x/2.x and SDXL VAEs). */
  shift_factor: null;
  /** Kept for toConfig(); ignored (the model computes in float32). */
  force_upcast: boolean;
  use_quant_conv: boolean;
  use_post_quant_conv: boolean;
  mid_block_add_attention: boolean;
}

/** Reads a diffusers AutoencoderKL config; unsupported values fail naming the field. */
export function parseAutoencoderKLConfig(raw: Record<string, unknown>, source = "vae config"): AutoencoderKLConfig {
  const r = new ConfigReader(source, raw);
  r.only("_class_name", ["AutoencoderKL"]);
  const down = r.stringList("down_block_types", DOWN_TYPES, ["DownEncoderBlock2D"]);
  const n = down.length;
  const up = r.stringList("up_block_types", UP_TYPES, ["UpDecoderBlock2D"]);
  if (up.length !== n) r.fail("up_block_types", `has ${up.length} entries but down_block_types has ${n}`);
  if (typeof raw.block_out_channels === "number") r.fail("block_out_channels", `must be a list of ${n} positive integers, got ${raw.block_out_channels}`);
  const channels = r.numberList("block_out_channels", n, [64]);
  const groups = r.number("norm_num_groups", 32, { integer: true, min: 1 });
  channels.forEach((c, i) => {
    if (c % groups !== 0) r.fail("norm_num_groups", `(${groups}) must divide block_out_channels[${i}] = ${c}`);
  });
  const sampleSize = raw.sample_size ?? 32;
  const positiveInt = (v: unknown) => typeof v === "number" && Number.isInteger(v) && v > 0;
  if (!(positiveInt(sampleSize) || (Array.isArray(sampleSize) && sampleSize.length === 2 && sampleSize.every(positiveInt)))) {
    r.fail("sample_size", `must be a positive integer or [height, width], got ${JSON.stringify(sampleSize)}`);
  }
  const scaling = r.number("scaling_factor", 0.18215);
  if (scaling <= 0) r.fail("scaling_factor", `must be > 0, got ${scaling}`);
  for (const [field, allowed] of [
    ["shift_factor", [null]],
    ["latents_mean", [null]],
    ["latents_std", [null]],
  ] as const) {
    r.only(field, allowed as unknown as unknown[]);
  }
  return {
    in_channels: r.number("in_channels", 3, { integer: true, min: 1 }),
    out_channels: r.number("out_channels", 3, { integer: true, min: 1 }),
    down_block_types: down,
    up_block_types: up,
    block_out_channels: channels,
    layers_per_block: r.number("layers_per_block", 1, { integer: true, min: 1 }),
    act_fn: r.string("act_fn", ["silu", "swish"], "silu"),
    latent_channels: r.number("latent_channels", 4, { integer: true, min: 1 }),
    norm_num_groups: groups,
    sample_size: Array.isArray(sampleSize) ? [...(sampleSize as number[])] : (sampleSize as number),
    scaling_factor: scaling,
    shift_factor: null,
    force_upcast: raw.force_upcast === undefined || raw.force_upcast === null ? true : Boolean(raw.force_upcast),
    use_quant_conv: r.bool("use_quant_conv", true),
    use_post_quant_conv: r.bool("use_post_quant_conv", true),
    mid_block_add_attention: r.bool("mid_block_add_attention", true),
  };
}

/**
 * diffusers' DiagonalGaussianDistribution over NHWC latents: the encoder's
 * moments split along channels into mean and logvar, logvar clamped to
 * [-30, 20]. Owns `mean` and `logvar`; the methods return new tensors (mode()
 * returns `mean` itself, as diffusers does).
 */
export class DiagonalGaussianDistribution {
  constructor(
    readonly mean: tf.Tensor4D,
    readonly logvar: tf.Tensor4D,
  ) {}

  /** moments [B, h, w, 2·C] → mean = first C channels, logvar = the rest (clamped). */
  static fromMoments(moments: tf.Tensor4D): DiagonalGaussianDistribution {
    const [mean, logvar] = tf.split(moments, 2, -1) as [tf.Tensor4D, tf.Tensor4D];
    return new DiagonalGaussianDistribution(mean, tf.clipByValue(logvar, -30, 20));
  }

  std(): tf.Tensor4D {
    return tf.exp(tf.mul(this.logvar, 0.5)) as tf.Tensor4D;
  }

  var(): tf.Tensor4D {
    return tf.exp(this.logvar);
  }

  /**
   * mean + std·ε. `noise` is either an Rng (ε drawn from it, standard normal,
   * in NHWC element order) or ε itself, a tensor of the mean's shape.
   */
  sample(noise: Rng | tf.Tensor): tf.Tensor4D {
    let eps: tf.Tensor;
    if (isRng(noise)) {
      const data = new Float32Array(this.mean.size);
      for (let i = 0; i < data.length; i++) data[i] = noise.normal();
      eps = tf.tensor(data, this.mean.shape, "float32");
    } else {
      const want = this.mean.shape;
      if (noise.rank !== want.length || noise.shape.some((d, i) => d !== want[i])) {
        throw new AptError("BAD_INPUT", `DiagonalGaussianDistribution.sample: noise has shape [${noise.shape}] but the latents are [${want}] (NHWC)`);
      }
      eps = noise;
    }
    return tf.add(this.mean, tf.mul(this.std(), eps));
  }

  /** The distribution's mode: `mean` itself (not a copy). */
  mode(): tf.Tensor4D {
    return this.mean;
  }

  /** KL divergence per sample [B], to `other` or to N(0, I) (diffusers' kl). */
  kl(other?: DiagonalGaussianDistribution): tf.Tensor1D {
    const axes = [1, 2, 3];
    if (!other) {
      return tf.mul(tf.sum(tf.sub(tf.sub(tf.add(tf.square(this.mean), this.var()), 1), this.logvar), axes), 0.5);
    }
    const ovar = other.var();
    const terms = tf.add(tf.sub(tf.sub(tf.add(tf.div(tf.square(tf.sub(this.mean, other.mean)), ovar), tf.div(this.var(), ovar)), 1), this.logvar), other.logvar);
    return tf.mul(tf.sum(terms, axes), 0.5);
  }

  dispose(): void {
    this.mean.dispose();
    this.logvar.dispose();
  }
}

function isRng(x: Rng | tf.Tensor): x is Rng {
  return typeof (x as Rng).normal === "function";
}

/**
 * diffusers < 0.14 named the VAE attention's projections query/key/value/proj_attn
 * (the deprecated AttentionBlock); diffusers renames them on load, and so do we.
 */
const LEGACY_PROJECTIONS: Readonly<Record<string, string>> = { to_q: "query", to_k: "key", to_v: "value", "to_out.0": "proj_attn" };
const CURRENT_ATTENTION_PARAM = /^(.*\.mid_block\.attentions\.\d+)\.(to_q|to_k|to_v|to_out\.0)\.(weight|bias)$/;
const LEGACY_ATTENTION_PARAM = /\.mid_block\.attentions\.\d+\.(query|key|value|proj_attn)\.(weight|bias)$/;

/** The name a parameter has in a legacy checkpoint (unchanged for all but the attention projections). */
export function legacyVAEParamName(name: string): string {
  const m = CURRENT_ATTENTION_PARAM.exec(name);
  return m ? `${m[1]}.${LEGACY_PROJECTIONS[m[2]!]}.${m[3]}` : name;
}

async function tensorNames(file: string): Promise<string[]> {
  const reader = await SafetensorsReader.open(file);
  try {
    return reader.names();
  } finally {
    await reader.close();
  }
}

export class AutoencoderKL extends DiffusersModel {
  readonly weightsName = "diffusion_pytorch_model.safetensors";
  readonly encoder: VAEEncoder;
  readonly decoder: VAEDecoder;
  readonly quantConv: Conv2d | null;
  readonly postQuantConv: Conv2d | null;
  /** While a legacy checkpoint loads: parameter name → name in the file. */
  private fileNames: ((name: string) => string) | null = null;

  constructor(readonly config: AutoencoderKLConfig) {
    super();
    const c = config;
    const stack = { blockOutChannels: c.block_out_channels, layersPerBlock: c.layers_per_block, groups: c.norm_num_groups, midBlockAddAttention: c.mid_block_add_attention };
    const lc = c.latent_channels;
    this.encoder = this.add("encoder", new VAEEncoder(c.in_channels, lc, stack));
    this.decoder = this.add("decoder", new VAEDecoder(lc, c.out_channels, stack));
    this.quantConv = c.use_quant_conv ? this.add("quant_conv", new Conv2d(2 * lc, 2 * lc, 1)) : null;
    this.postQuantConv = c.use_post_quant_conv ? this.add("post_quant_conv", new Conv2d(lc, lc, 1)) : null;
  }

  /** config.scaling_factor: latents are multiplied by it before the UNet, divided by it before decode. */
  get scalingFactor(): number {
    return this.config.scaling_factor;
  }

  get latentChannels(): number {
    return this.config.latent_channels;
  }

  /** Image size / latent size: 2^(len(block_out_channels) − 1), diffusers pipelines' vae_scale_factor. */
  get vaeScaleFactor(): number {
    return 2 ** (this.config.block_out_channels.length - 1);
  }

  toConfig(): Record<string, unknown> {
    const c = this.config;
    return {
      _class_name: "AutoencoderKL",
      _diffusers_version: "0.30.0",
      in_channels: c.in_channels,
      out_channels: c.out_channels,
      down_block_types: c.down_block_types,
      up_block_types: c.up_block_types,
      block_out_channels: c.block_out_channels,
      layers_per_block: c.layers_per_block,
      act_fn: c.act_fn,
      latent_channels: c.latent_channels,
      norm_num_groups: c.norm_num_groups,
      sample_size: c.sample_size,
      scaling_factor: c.scaling_factor,
      shift_factor: c.shift_factor,
      latents_mean: null,
      latents_std: null,
      force_upcast: c.force_upcast,
      use_quant_conv: c.use_quant_conv,
      use_post_quant_conv: c.use_post_quant_conv,
      mid_block_add_attention: c.mid_block_add_attention,
    };
  }

  /** A model with random weights (torch's default init), seeded. */
  static fromConfig(raw: Record<string, unknown>, opts: { seed?: number } = {}): AutoencoderKL {
    const model = new AutoencoderKL(parseAutoencoderKLConfig(raw));
    model.initialize(new Rng(opts.seed ?? 0));
    return model;
  }

  /** Loads `dir/config.json` and `dir/diffusion_pytorch_model.safetensors` (current or legacy attention names). */
  static async fromPretrained(dir: string): Promise<AutoencoderKL> {
    const configPath = join(dir, "config.json");
    const model = new AutoencoderKL(parseAutoencoderKLConfig(await readJson(configPath), configPath));
    await model.loadWeights(join(dir, model.weightsName));
    return model;
  }

  /** Parameter specs by diffusers name, or by the file's names while a legacy checkpoint loads. */
  override namedParamSpecs(): Map<string, ParamSpec> {
    const specs = super.namedParamSpecs();
    const rename = this.fileNames;
    return rename ? new Map([...specs].map(([name, spec]) => [rename(name), spec])) : specs;
  }

  /**
   * The base loader (names and shapes checked against the config), reading a
   * checkpoint with the legacy attention names (query/key/value/proj_attn) as
   * to_q/to_k/to_v/to_out.0. A file is legacy when any attention parameter has
   * a legacy name; then every attention parameter must, and errors name the
   * file's tensors. The parameters keep diffusers' current names.
   */
  override async loadWeights(file: string, opts: LoadOptions = {}): Promise<void> {
    const legacy = (await tensorNames(file)).some((n) => LEGACY_ATTENTION_PARAM.test(n));
    if (!legacy) return super.loadWeights(file, opts);
    this.fileNames = legacyVAEParamName;
    try {
      await super.loadWeights(file, opts);
    } finally {
      this.fileNames = null;
    }
  }

  private checkInput(what: string, x: tf.Tensor, channels: number, role: string): void {
    if (x.rank !== 4 || x.shape[3] !== channels) {
      throw new AptError("BAD_INPUT", `AutoencoderKL.${what}: expected ${role} NHWC [B, H, W, ${channels}], got shape [${x.shape}]`);
    }
  }

  /** x NHWC [B, H, W, in_channels], values in [-1, 1] → the latent distribution over [B, H/f, W/f, latent_channels]. */
  encode(x: tf.Tensor4D): DiagonalGaussianDistribution {
    this.checkInput("encode", x, this.config.in_channels, "images");
    const ctx = this.forwardContext();
    let moments = this.encoder.call(x, ctx);
    if (this.quantConv) moments = this.quantConv.call(moments, ctx);
    return DiagonalGaussianDistribution.fromMoments(moments);
  }

  /** Latents NHWC [B, h, w, latent_channels] (unscaled: divide by scalingFactor first) → images NHWC [B, h·f, w·f, out_channels]. */
  decode(latents: tf.Tensor4D): tf.Tensor4D {
    this.checkInput("decode", latents, this.config.latent_channels, "latents");
    const ctx = this.forwardContext();
    const z = this.postQuantConv ? this.postQuantConv.call(latents, ctx) : latents;
    return this.decoder.call(z, ctx);
  }

  /** diffusers' forward: decode(posterior.mode()), or decode(posterior.sample(noise)) when `sample` is given. */
  forward(x: tf.Tensor4D, opts: { sample?: Rng | tf.Tensor } = {}): tf.Tensor4D {
    const posterior = this.encode(x);
    return this.decode(opts.sample === undefined ? posterior.mode() : posterior.sample(opts.sample));
  }
}
