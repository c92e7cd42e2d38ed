/**
 * The blocks of AutoencoderKL's Encoder and Decoder, with diffusers' module
 * names: ResnetBlock2D without a time embedding, the mid-block attention (one
 * head over all channels, biased q/k/v, residual), DownEncoderBlock2D,
 * UpDecoderBlock2D and UNetMidBlock2D. Activations NHWC.
 */
import * as tf from "@tensorflow/tfjs-core";
import { Container, Conv2d, GroupNorm, Linear } from "../nn/layers.js";
import { Module, type ForwardContext } from "../nn/module.js";
import { silu } from "../nn/functional.js";
import { defaultAttentionProcessor } from "./attention.js";
import { Downsample2D, Upsample2D, emitFeature, type FeaturePoint } from "./unet_blocks.js";

/** diffusers builds every VAE resnet and group norm with eps 1e-6. */
export const VAE_NORM_EPS = 1e-6;

/** ResnetBlock2D with temb_channels=None (no time_emb_proj), output_scale_factor 1. */
export class VAEResnetBlock2D extends Module implements FeaturePoint {
  readonly featurePoint = true;
  readonly norm1: GroupNorm;
  readonly conv1: Conv2d;
  readonly norm2: GroupNorm;
  readonly conv2: Conv2d;
  readonly convShortcut: Conv2d | null;

  constructor(inChannels: number, outChannels: number, groups: number, eps = VAE_NORM_EPS) {
    super();
    this.norm1 = this.add("norm1", new GroupNorm(groups, inChannels, eps));
    this.conv1 = this.add("conv1", new Conv2d(inChannels, outChannels, 3, 1, 1));
    this.norm2 = this.add("norm2", new GroupNorm(groups, outChannels, eps));
    this.conv2 = this.add("conv2", new Conv2d(outChannels, outChannels, 3, 1, 1));
    this.convShortcut = inChannels !== outChannels ? this.add("conv_shortcut", new Conv2d(inChannels, outChannels, 1)) : null;
  }

  call(x: tf.Tensor4D, ctx: ForwardContext): tf.Tensor4D {
    let h = this.conv1.call(silu(this.norm1.call(x)) as tf.Tensor4D, ctx);
    h = this.conv2.call(silu(this.norm2.call(h)) as tf.Tensor4D, ctx);
    const shortcut = this.convShortcut ? this.convShortcut.call(x, ctx) : x;
    const out = tf.add(shortcut, h) as tf.Tensor4D;
    emitFeature(this, out, ctx);
    return out;
  }
}

const fastDefault = defaultAttentionProcessor();

/**
 * The VAE's spatial self-attention (diffusers' Attention built by
 * UNetMidBlock2D with heads = 1, dim_head = channels, bias=True,
 * residual_connection=True, rescale_output_factor 1): group_norm over the
 * feature map, the H·W positions as tokens, to_q/to_k/to_v/to_out.0, plus the
 * input. An `attention` hook point (kind "self"): processors and observers see
 * the normalized tokens [B, H·W, C].
 */
export class VAEAttention extends Module {
  readonly kind = "self" as const;
  readonly heads = 1;
  readonly groupNorm: GroupNorm;
  readonly toQ: Linear;
  readonly toK: Linear;
  readonly toV: Linear;
  readonly toOut: Linear;

  constructor(
    readonly channels: number,
    groups: number,
    eps = VAE_NORM_EPS,
  ) {
    super();
    this.groupNorm = this.add("group_norm", new GroupNorm(groups, channels, eps));
    this.toQ = this.add("to_q", new Linear(channels, channels, true));
    this.toK = this.add("to_k", new Linear(channels, channels, true));
    this.toV = this.add("to_v", new Linear(channels, channels, true));
    // to_out is a ModuleList [Linear, Dropout]: only index 0 has parameters.
    this.toOut = this.add("to_out", new Container()).set("0", new Linear(channels, channels, true));
  }

  /** x NHWC [B, H, W, C] → NHWC, the attention output plus x. */
  call(x: tf.Tensor4D, ctx: ForwardContext): tf.Tensor4D {
    const [b, h, w, c] = x.shape;
    const tokens = tf.reshape(this.groupNorm.call(x), [b, h * w, c]);
    const custom = ctx.hooks.processorFor(this.path);
    const observers = ctx.hooks.attentionObserversFor(this.path);
    const processor = custom ?? (observers.length ? defaultAttentionProcessor(observers) : fastDefault);
    const out = processor({
      path: this.path,
      kind: this.kind,
      hidden: tokens,
      context: tokens,
      heads: this.heads,
      temb: ctx.temb,
      projections: {
        toQ: (t) => this.toQ.call(t, ctx),
        toK: (t) => this.toK.call(t, ctx),
        toV: (t) => this.toV.call(t, ctx),
        toOut: (t) => this.toOut.call(t, ctx),
      },
    });
    return tf.add(tf.reshape(out, [b, h, w, c]), x) as tf.Tensor4D;
  }
}

/** DownEncoderBlock2D: `layers` resnets, then a stride-2 conv (padding 0, diffusers pads (0,1,0,1)) unless last. */
export class DownEncoderBlock2D extends Module implements FeaturePoint {
  readonly featurePoint = true;
  readonly resnets: VAEResnetBlock2D[] = [];
  readonly downsampler: Downsample2D | null;

  constructor(inChannels: number, outChannels: number, layers: number, groups: number, addDownsample: boolean) {
    super();
    const resnets = this.add("resnets", new Container());
    for (let i = 0; i < layers; i++) this.resnets.push(resnets.set(String(i), new VAEResnetBlock2D(i === 0 ? inChannels : outChannels, outChannels, groups)));
    this.downsampler = addDownsample ? this.add("downsamplers", new Container()).set("0", new Downsample2D(outChannels, 0)) : null;
  }

  call(x: tf.Tensor4D, ctx: ForwardContext): tf.Tensor4D {
    for (const resnet of this.resnets) x = resnet.call(x, ctx);
    if (this.downsampler) x = this.downsampler.call(x, ctx);
    emitFeature(this, x, ctx);
    return x;
  }
}

/** UpDecoderBlock2D: `layers` resnets (no skip connections), then nearest 2× + conv unless last. */
export class UpDecoderBlock2D extends Module implements FeaturePoint {
  readonly featurePoint = true;
  readonly resnets: VAEResnetBlock2D[] = [];
  readonly upsampler: Upsample2D | null;

  constructor(inChannels: number, outChannels: number, layers: number, groups: number, addUpsample: boolean) {
    super();
    const resnets = this.add("resnets", new Container());
    for (let i = 0; i < layers; i++) this.resnets.push(resnets.set(String(i), new VAEResnetBlock2D(i === 0 ? inChannels : outChannels, outChannels, groups)));
    this.upsampler = addUpsample ? this.add("upsamplers", new Container()).set("0", new Upsample2D(outChannels)) : null;
  }

  call(x: tf.Tensor4D, ctx: ForwardContext): tf.Tensor4D {
    for (const resnet of this.resnets) x = resnet.call(x, ctx);
    if (this.upsampler) x = this.upsampler.call(x, ctx);
    emitFeature(this, x, ctx);
    return x;
  }
}

/** UNetMidBlock2D as the VAE builds it: resnets.0, attentions.0 (optional), resnets.1; no time embedding. */
export class VAEMidBlock2D extends Module implements FeaturePoint {
  readonly featurePoint = true;
  readonly resnets: VAEResnetBlock2D[] = [];
  readonly attention: VAEAttention | null;

  constructor(channels: number, groups: number, addAttention: boolean) {
    super();
    const resnets = this.add("resnets", new Container());
    this.resnets.push(resnets.set("0", new VAEResnetBlock2D(channels, channels, groups)));
    this.attention = addAttention ? this.add("attentions", new Container()).set("0", new VAEAttention(channels, groups)) : null;
    this.resnets.push(resnets.set("1", new VAEResnetBlock2D(channels, channels, groups)));
  }

  call(x: tf.Tensor4D, ctx: ForwardContext): tf.Tensor4D {
    x = this.resnets[0]!.call(x, ctx);
    if (this.attention) x = this.attention.call(x, ctx);
    x = this.resnets[1]!.call(x, ctx);
    emitFeature(this, x, ctx);
    return x;
  }
}

export interface VAEStackOptions {
  blockOutChannels: number[];
  layersPerBlock: number;
  groups: number;
  midBlockAddAttention: boolean;
}

/** diffusers' vae.Encoder (double_z): conv_in, down blocks, mid block, conv_norm_out, SiLU, conv_out → 2·latent channels. */
export class VAEEncoder extends Module {
  readonly convIn: Conv2d;
  readonly downBlocks: DownEncoderBlock2D[] = [];
  readonly midBlock: VAEMidBlock2D;
  readonly convNormOut: GroupNorm;
  readonly convOut: Conv2d;

  constructor(inChannels: number, latentChannels: number, o: VAEStackOptions) {
    super();
    const ch = o.blockOutChannels;
    const n = ch.length;
    this.convIn = this.add("conv_in", new Conv2d(inChannels, ch[0]!, 3, 1, 1));
    const downs = this.add("down_blocks", new Container());
    let out = ch[0]!;
    for (let i = 0; i < n; i++) {
      const input = out;
      out = ch[i]!;
      this.downBlocks.push(downs.set(String(i), new DownEncoderBlock2D(input, out, o.layersPerBlock, o.groups, i < n - 1)));
    }
    this.midBlock = this.add("mid_block", new VAEMidBlock2D(ch[n - 1]!, o.groups, o.midBlockAddAttention));
    this.convNormOut = this.add("conv_norm_out", new GroupNorm(o.groups, ch[n - 1]!, VAE_NORM_EPS));
    this.convOut = this.add("conv_out", new Conv2d(ch[n - 1]!, 2 * latentChannels, 3, 1, 1));
  }

  call(x: tf.Tensor4D, ctx: ForwardContext): tf.Tensor4D {
    x = this.convIn.call(x, ctx);
    for (const block of this.downBlocks) x = block.call(x, ctx);
    x = this.midBlock.call(x, ctx);
    return this.convOut.call(silu(this.convNormOut.call(x)) as tf.Tensor4D, ctx);
  }
}

/** diffusers' vae.Decoder (norm_type "group"): conv_in, mid block, up blocks (layers_per_block + 1 resnets each), conv_norm_out, SiLU, conv_out. */
export class VAEDecoder extends Module {
  readonly convIn: Conv2d;
  readonly midBlock: VAEMidBlock2D;
  readonly upBlocks: UpDecoderBlock2D[] = [];
  readonly convNormOut: GroupNorm;
  readonly convOut: Conv2d;

  constructor(latentChannels: number, outChannels: number, o: VAEStackOptions) {
    super();
    const ch = o.blockOutChannels;
    const n = ch.length;
    const rch = [...ch].reverse();
    this.convIn = this.add("conv_in", new Conv2d(latentChannels, ch[n - 1]!, 3, 1, 1));
    this.midBlock = this.add("mid_block", new VAEMidBlock2D(ch[n - 1]!, o.groups, o.midBlockAddAttention));
    const ups = this.add("up_blocks", new Container());
    let out = rch[0]!;
    for (let i = 0; i < n; i++) {
      const prev = out;
      out = rch[i]!;
      this.upBlocks.push(ups.set(String(i), new UpDecoderBlock2D(prev, out, o.layersPerBlock + 1, o.groups, i < n - 1)));
    }
    this.convNormOut = this.add("conv_norm_out", new GroupNorm(o.groups, ch[0]!, VAE_NORM_EPS));
    this.convOut = this.add("conv_out", new Conv2d(ch[0]!, outChannels, 3, 1, 1));
  }

  call(z: tf.Tensor4D, ctx: ForwardContext): tf.Tensor4D {
    let x = this.convIn.call(z, ctx);
    x = this.midBlock.call(x, ctx);
    for (const block of this.upBlocks) x = block.call(x, ctx);
    return this.convOut.call(silu(this.convNormOut.call(x)) as tf.Tensor4D, ctx);
  }
}
