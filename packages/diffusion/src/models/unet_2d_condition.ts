/**
 * UNet2DConditionModel, driven by diffusers' config.json, with diffusers'
 * parameter names. Public tensors are NHWC (diffusers: NCHW).
 *
 *   const unet = await UNet2DConditionModel.fromPretrained("model/unet");
 *   const eps = unet.forward(sample, timestep, encoderHiddenStates); // [B,H,W,C], [B], [B,N,Cctx]
 */
import * as tf from "@tensorflow/tfjs-core";
import { join } from "node:path";
import { Rng } from "@apt/core";
import { Container, Conv2d, GroupNorm, Linear } from "../nn/layers.js";
import { silu } from "../nn/functional.js";
import { ConfigReader, DiffusersModel, readJson } from "../nn/model.js";
import type { ForwardContext } from "../nn/module.js";
import { TextTimeEmbedding } from "./embeddings.js";
import { DownBlock, MidBlock, UpBlock, type TimeEmbeddingNorm } from "./unet_blocks.js";

const DOWN_TYPES = ["DownBlock2D", "CrossAttnDownBlock2D"] as const;
const UP_TYPES = ["UpBlock2D", "CrossAttnUpBlock2D"] as const;
const MID_TYPES = ["UNetMidBlock2DCrossAttn"] as const;

export interface UNet2DConditionConfig {
  sample_size: number;
  in_channels: number;
  out_channels: number;
  down_block_types: (typeof DOWN_TYPES)[number][];
  mid_block_type: (typeof MID_TYPES)[number];
  up_block_types: (typeof UP_TYPES)[number][];
  block_out_channels: number[];
  layers_per_block: number[];
  /** Heads per down block (diffusers: `num_attention_heads`, or `attention_head_dim` when that is absent). */
  num_attention_heads: number[];
  cross_attention_dim: number;
  norm_num_groups: number;
  norm_eps: number;
  flip_sin_to_cos: boolean;
  freq_shift: number;
  use_linear_projection: boolean;
  transformer_layers_per_block: number[];
  downsample_padding: number;
  act_fn: "silu";
  /** "text": the attention-pooled prompt is added to the time embedding (diffusers' TextTimeEmbedding). */
  addition_embed_type: "text" | null;
  /** Heads of that pooling (diffusers' default 64). */
  addition_embed_type_num_heads: number;
  /** How every ResnetBlock2D takes the time embedding: "default" (a bias) or "scale_shift" (ADM's adaptive GroupNorm). */
  resnet_time_scale_shift: TimeEmbeddingNorm;
}

/** Reads a diffusers UNet config; unsupported values fail naming the field. */
export function parseUNetConfig(raw: Record<string, unknown>, source = "unet config"): UNet2DConditionConfig {
  const r = new ConfigReader(source, raw);
  const down = r.stringList("down_block_types", DOWN_TYPES, ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"]);
  const n = down.length;
  const up = r.stringList("up_block_types", UP_TYPES, ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"]);
  const channels = r.numberList("block_out_channels", n, [320, 640, 1280, 1280]);
  if (up.length !== n) r.fail("up_block_types", `has ${up.length} entries but down_block_types has ${n}`);
  const mid = raw.mid_block_type === undefined ? "UNetMidBlock2DCrossAttn" : r.string("mid_block_type", MID_TYPES);
  // diffusers' naming quirk: without num_attention_heads, attention_head_dim is the number of heads.
  const heads = raw.num_attention_heads != null ? r.numberList("num_attention_heads", n) : r.numberList("attention_head_dim", n, 8);
  const groups = r.number("norm_num_groups", 32, { integer: true, min: 1 });
  channels.forEach((c, i) => {
    if (c % groups !== 0) r.fail("norm_num_groups", `(${groups}) must divide block_out_channels[${i}] = ${c}`);
    if (c % heads[i]! !== 0) r.fail("attention_head_dim", `(${heads[i]} heads) must divide block_out_channels[${i}] = ${c}`);
  });
  const crossDim = raw.cross_attention_dim;
  if (Array.isArray(crossDim)) r.fail("cross_attention_dim", "as a per-block list is not supported; use one number");
  for (const [field, allowed] of [
    ["act_fn", ["silu", "swish"]],
    ["center_input_sample", [false]],
    ["time_embedding_type", ["positional"]],
    ["class_embed_type", [null]],
    ["addition_embed_type", [null, "text"]],
    ["encoder_hid_dim", [null]],
    ["time_cond_proj_dim", [null]],
    ["only_cross_attention", [false]],
    ["dual_cross_attention", [false]],
    ["mid_block_scale_factor", [1]],
    ["conv_in_kernel", [3]],
    ["conv_out_kernel", [3]],
    ["num_class_embeds", [null]],
    ["projection_class_embeddings_input_dim", [null]],
    ["attention_type", ["default"]],
    ["resnet_skip_time_act", [false]],
    ["resnet_out_scale_factor", [1]],
    ["time_embedding_dim", [null]],
    ["time_embedding_act_fn", [null]],
    ["timestep_post_act", [null]],
    ["class_embeddings_concat", [false]],
    ["mid_block_only_cross_attention", [null, false]],
    ["cross_attention_norm", [null]],
    ["reverse_transformer_layers_per_block", [null]],
  ] as const) {
    r.only(field, allowed as unknown as unknown[]);
  }
  const addition = (raw.addition_embed_type ?? null) as "text" | null;
  const additionHeads = r.number("addition_embed_type_num_heads", 64, { integer: true, min: 1 });
  const contextDim = r.number("cross_attention_dim", 1280, { integer: true, min: 1 });
  if (addition === "text" && contextDim % additionHeads !== 0) {
    r.fail("addition_embed_type_num_heads", `(${additionHeads}) must divide cross_attention_dim = ${contextDim}`);
  }
  return {
    sample_size: r.number("sample_size", 64, { integer: true, min: 1 }),
    in_channels: r.number("in_channels", 4, { integer: true, min: 1 }),
    out_channels: r.number("out_channels", 4, { integer: true, min: 1 }),
    down_block_types: down,
    mid_block_type: mid,
    up_block_types: up,
    block_out_channels: channels,
    layers_per_block: r.numberList("layers_per_block", n, 2),
    num_attention_heads: heads,
    cross_attention_dim: contextDim,
    norm_num_groups: groups,
    norm_eps: r.number("norm_eps", 1e-5),
    flip_sin_to_cos: r.bool("flip_sin_to_cos", true),
    freq_shift: r.number("freq_shift", 0),
    use_linear_projection: r.bool("use_linear_projection", false),
    transformer_layers_per_block: r.numberList("transformer_layers_per_block", n, 1),
    downsample_padding: r.number("downsample_padding", 1, { integer: true, min: 0 }),
    act_fn: "silu",
    addition_embed_type: addition,
    addition_embed_type_num_heads: additionHeads,
    resnet_time_scale_shift: r.string("resnet_time_scale_shift", ["default", "scale_shift"] as const, "default"),
  };
}

/** Sinusoidal timestep embedding (diffusers' Timesteps / get_timestep_embedding). */
export function timestepEmbedding(t: tf.Tensor1D, dim: number, flipSinToCos: boolean, freqShift: number): tf.Tensor2D {
  return tf.tidy(() => {
    const half = Math.floor(dim / 2);
    const exponent = tf.mul(tf.range(0, half, 1, "float32"), -Math.log(10000) / (half - freqShift));
    const args = tf.mul(tf.expandDims(tf.cast(t, "float32"), 1), tf.expandDims(tf.exp(exponent), 0));
    const sin = tf.sin(args);
    const cos = tf.cos(args);
    let emb = flipSinToCos ? tf.concat([cos, sin], -1) : tf.concat([sin, cos], -1);
    if (dim % 2 === 1) emb = tf.pad(emb, [[0, 0], [0, 1]]);
    return emb as tf.Tensor2D;
  });
}

/** One conditioning of the same noisy input, for `forwardVariants`. */
export interface UNetVariant {
  /** [B, N, Cctx] text embeddings (B = the sample's batch). */
  encoderHiddenStates: tf.Tensor3D;
  /** Adapters on (default) or off for this variant: the pretrained model on the same weights. */
  adapters?: boolean;
}

export interface UNetForwardOptions {
  /** Time embedding hook: called with e_t [B, Ctemb] (also visible to processors as call.temb). */
  onTimeEmbedding?: (temb: tf.Tensor2D) => void;
}

export class UNet2DConditionModel extends DiffusersModel {
  readonly weightsName = "diffusion_pytorch_model.safetensors";
  readonly convIn: Conv2d;
  readonly timeLinear1: Linear;
  readonly timeLinear2: Linear;
  /** Present when addition_embed_type is "text". */
  readonly addEmbedding: TextTimeEmbedding | null = null;
  readonly downBlocks: DownBlock[] = [];
  readonly midBlock: MidBlock;
  readonly upBlocks: UpBlock[] = [];
  readonly convNormOut: GroupNorm;
  readonly convOut: Conv2d;
  readonly tembChannels: number;

  constructor(readonly config: UNet2DConditionConfig) {
    super();
    const c = config;
    const ch = c.block_out_channels;
    const g = c.norm_num_groups;
    const eps = c.norm_eps;
    const n = ch.length;
    this.tembChannels = ch[0]! * 4;
    this.convIn = this.add("conv_in", new Conv2d(c.in_channels, ch[0]!, 3, 1, 1));
    const te = this.add("time_embedding", new Container());
    this.timeLinear1 = te.set("linear_1", new Linear(ch[0]!, this.tembChannels));
    this.timeLinear2 = te.set("linear_2", new Linear(this.tembChannels, this.tembChannels));
    if (c.addition_embed_type === "text") {
      this.addEmbedding = this.add("add_embedding", new TextTimeEmbedding(c.cross_attention_dim, this.tembChannels, c.addition_embed_type_num_heads));
    }
    const attn = (i: number) => ({ heads: c.num_attention_heads[i]!, crossAttentionDim: c.cross_attention_dim, linearProjection: c.use_linear_projection, transformerLayers: c.transformer_layers_per_block[i]! });

    const downs = this.add("down_blocks", new Container());
    let out = ch[0]!;
    c.down_block_types.forEach((type, i) => {
      const input = out;
      out = ch[i]!;
      const block = new DownBlock(input, out, this.tembChannels, c.layers_per_block[i]!, g, eps, i < n - 1, c.downsample_padding, type === "CrossAttnDownBlock2D" ? attn(i) : null, c.resnet_time_scale_shift);
      this.downBlocks.push(downs.set(String(i), block));
    });

    this.midBlock = this.add("mid_block", new MidBlock(ch[n - 1]!, this.tembChannels, g, eps, attn(n - 1), c.resnet_time_scale_shift));

    const ups = this.add("up_blocks", new Container());
    const rch = [...ch].reverse();
    const rheads = [...c.num_attention_heads].reverse();
    const rlayers = [...c.layers_per_block].reverse();
    const rtl = [...c.transformer_layers_per_block].reverse();
    out = rch[0]!;
    c.up_block_types.forEach((type, i) => {
      const prev = out;
      out = rch[i]!;
      const input = rch[Math.min(i + 1, n - 1)]!;
      const attention = type === "CrossAttnUpBlock2D" ? { heads: rheads[i]!, crossAttentionDim: c.cross_attention_dim, linearProjection: c.use_linear_projection, transformerLayers: rtl[i]! } : null;
      this.upBlocks.push(ups.set(String(i), new UpBlock(input, prev, out, this.tembChannels, rlayers[i]! + 1, g, eps, i < n - 1, attention, c.resnet_time_scale_shift)));
    });

    this.convNormOut = this.add("conv_norm_out", new GroupNorm(g, ch[0]!, eps));
    this.convOut = this.add("conv_out", new Conv2d(ch[0]!, c.out_channels, 3, 1, 1));
  }

  toConfig(): Record<string, unknown> {
    const c = this.config;
    return {
      _class_name: "UNet2DConditionModel",
      _diffusers_version: "0.30.0",
      sample_size: c.sample_size,
      in_channels: c.in_channels,
      out_channels: c.out_channels,
      down_block_types: c.down_block_types,
      mid_block_type: c.mid_block_type,
      up_block_types: c.up_block_types,
      block_out_channels: c.block_out_channels,
      layers_per_block: c.layers_per_block.every((l) => l === c.layers_per_block[0]) ? c.layers_per_block[0] : c.layers_per_block,
      attention_head_dim: c.num_attention_heads.every((h) => h === c.num_attention_heads[0]) ? c.num_attention_heads[0] : c.num_attention_heads,
      cross_attention_dim: c.cross_attention_dim,
      norm_num_groups: c.norm_num_groups,
      norm_eps: c.norm_eps,
      act_fn: c.act_fn,
      flip_sin_to_cos: c.flip_sin_to_cos,
      freq_shift: c.freq_shift,
      use_linear_projection: c.use_linear_projection,
      transformer_layers_per_block: c.transformer_layers_per_block.every((l) => l === c.transformer_layers_per_block[0]) ? c.transformer_layers_per_block[0] : c.transformer_layers_per_block,
      downsample_padding: c.downsample_padding,
      ...(c.addition_embed_type ? { addition_embed_type: c.addition_embed_type, addition_embed_type_num_heads: c.addition_embed_type_num_heads } : {}),
      ...(c.resnet_time_scale_shift !== "default" ? { resnet_time_scale_shift: c.resnet_time_scale_shift } : {}),
    };
  }

  /** A model with random weights (torch's default init), seeded. */
  static fromConfig(raw: Record<string, unknown>, opts: { seed?: number } = {}): UNet2DConditionModel {
    const model = new UNet2DConditionModel(parseUNetConfig(raw));
    model.initialize(new Rng(opts.seed ?? 0));
    return model;
  }

  /** Loads `dir/config.json` and `dir/diffusion_pytorch_model.safetensors`. */
  static async fromPretrained(dir: string): Promise<UNet2DConditionModel> {
    const configPath = join(dir, "config.json");
    const model = new UNet2DConditionModel(parseUNetConfig(await readJson(configPath), configPath));
    await model.loadWeights(join(dir, model.weightsName));
    return model;
  }

  /** e_t = time_embedding(time_proj(t)), [B, Ctemb]; timestep [B] or [1] (broadcast to the batch). */
  timeEmbedding(timestep: tf.Tensor1D, batch: number, ctx?: ForwardContext): tf.Tensor2D {
    const t = timestep.shape[0] === batch ? timestep : (tf.broadcastTo(timestep, [batch]) as tf.Tensor1D);
    const c = this.config;
    const proj = timestepEmbedding(t, c.block_out_channels[0]!, c.flip_sin_to_cos, c.freq_shift);
    return this.timeLinear2.call(silu(this.timeLinear1.call(proj, ctx)), ctx) as tf.Tensor2D;
  }

  /**
   * Several conditionings (and adapters on/off) of the same noisy sample and
   * timesteps in one batched forward: the inputs are repeated per variant, the
   * adapter mask is set per sample, and the output is split back per variant.
   * What CAT (trigger vs. no-trigger caption, base model) and DC scores need.
   */
  forwardVariants(sample: tf.Tensor4D, timestep: tf.Tensor1D, variants: UNetVariant[], opts: UNetForwardOptions = {}): tf.Tensor4D[] {
    const b = sample.shape[0];
    const v = variants.length;
    const samples = tf.concat(new Array<tf.Tensor4D>(v).fill(sample), 0) as tf.Tensor4D;
    const t = timestep.shape[0] === b ? timestep : (tf.broadcastTo(timestep, [b]) as tf.Tensor1D);
    const times = tf.concat(new Array<tf.Tensor1D>(v).fill(t), 0) as tf.Tensor1D;
    const contexts = tf.concat(variants.map((x) => x.encoderHiddenStates), 0) as tf.Tensor3D;
    const restore = this.adapterMaskState();
    if (variants.some((x) => x.adapters === false)) {
      this.setAdapterMask(variants.flatMap((x) => new Array<number>(b).fill(x.adapters === false ? 0 : 1)));
    }
    try {
      return tf.split(this.forward(samples, times, contexts, opts), v, 0) as tf.Tensor4D[];
    } finally {
      restore();
    }
  }

  /**
   * sample [B, H, W, in_channels] (NHWC), timestep [B] or [1] (int or float),
   * encoderHiddenStates [B, N, cross_attention_dim] → [B, H, W, out_channels].
   * Does not tidy internally, so gradients and observed tensors stay valid; call
   * it inside tf.tidy / tf.variableGrads.
   */
  forward(sample: tf.Tensor4D, timestep: tf.Tensor1D | number | number[], encoderHiddenStates: tf.Tensor3D, opts: UNetForwardOptions = {}): tf.Tensor4D {
    const batch = sample.shape[0];
    const t = typeof timestep === "number" ? tf.tensor1d([timestep], "float32") : Array.isArray(timestep) ? tf.tensor1d(timestep, "float32") : timestep;
    const ctx = this.forwardContext();
    let temb = this.timeEmbedding(t, batch, ctx);
    // diffusers: emb = time_embedding(t) + add_embedding(encoder_hidden_states)
    if (this.addEmbedding) temb = tf.add(temb, this.addEmbedding.call(encoderHiddenStates, ctx)) as tf.Tensor2D;
    ctx.temb = temb;
    opts.onTimeEmbedding?.(temb);

    let x = this.convIn.call(sample, ctx);
    const skips: tf.Tensor4D[] = [x];
    for (const block of this.downBlocks) {
      const r = block.call(x, temb, encoderHiddenStates, ctx);
      x = r.out;
      skips.push(...r.skips);
    }
    x = this.midBlock.call(x, temb, encoderHiddenStates, ctx);
    for (const block of this.upBlocks) x = block.call(x, skips, temb, encoderHiddenStates, ctx);
    return this.convOut.call(silu(this.convNormOut.call(x)) as tf.Tensor4D, ctx);
  }
}
