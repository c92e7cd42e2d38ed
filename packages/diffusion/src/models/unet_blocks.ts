/** The blocks of UNet2DConditionModel, with diffusers' module names. Activations NHWC. */
import * as tf from "@tensorflow/tfjs-core";
import { Attention } from "./attention.js";
import { Container, Conv2d, GroupNorm, LayerNorm, Linear } from "../nn/layers.js";
import { Module, type ForwardContext } from "../nn/module.js";
import { gelu, silu, upsampleNearest2x } from "../nn/functional.js";

/** Hands a block output to the feature observers registered for its path. */
export function emitFeature(m: Module, x: tf.Tensor, ctx: ForwardContext): void {
  for (const o of ctx.hooks.featureObserversFor(m.path)) o(m.path, x);
}

/** Modules whose outputs are `feature` hook points. */
export interface FeaturePoint {
  readonly featurePoint: true;
}

/**
 * How a ResnetBlock2D takes the time embedding (diffusers' `resnet_time_scale_shift`):
 * "default" adds it as a per-channel bias before norm2; "scale_shift" (ADM's
 * adaptive GroupNorm) projects it to a scale and a shift applied after norm2,
 * where the normalization cannot remove it.
 */
export type TimeEmbeddingNorm = "default" | "scale_shift";

export class ResnetBlock2D extends Module implements FeaturePoint {
  readonly featurePoint = true;
  readonly norm1: GroupNorm;
  readonly conv1: Conv2d;
  readonly timeEmbProj: Linear;
  readonly norm2: GroupNorm;
  readonly conv2: Conv2d;
  readonly convShortcut: Conv2d | null;

  constructor(
    inChannels: number,
    outChannels: number,
    tembChannels: number,
    groups: number,
    eps: number,
    readonly timeEmbeddingNorm: TimeEmbeddingNorm = "default",
  ) {
    super();
    this.norm1 = this.add("norm1", new GroupNorm(groups, inChannels, eps));
    this.conv1 = this.add("conv1", new Conv2d(inChannels, outChannels, 3, 1, 1));
    this.timeEmbProj = this.add("time_emb_proj", new Linear(tembChannels, timeEmbeddingNorm === "scale_shift" ? 2 * outChannels : outChannels));
    this.norm2 = this.add("norm2", new GroupNorm(groups, outChannels, eps));
    this.conv2 = this.add("conv2", new Conv2d(outChannels, outChannels, 3, 1, 1));
    this.convShortcut = inChannels !== outChannels ? this.add("conv_shortcut", new Conv2d(inChannels, outChannels, 1)) : null;
  }

  call(x: tf.Tensor4D, temb: tf.Tensor2D, ctx: ForwardContext): tf.Tensor4D {
    let h = this.conv1.call(silu(this.norm1.call(x)) as tf.Tensor4D, ctx);
    const t = this.timeEmbProj.call(silu(temb), ctx);
    const perChannel = tf.reshape(t, [t.shape[0]!, 1, 1, t.shape[1]!]);
    if (this.timeEmbeddingNorm === "scale_shift") {
      // diffusers: scale, shift = temb.chunk(2, dim=1); h = norm2(h) * (1 + scale) + shift
      const [scale, shift] = tf.split(perChannel, 2, -1) as [tf.Tensor4D, tf.Tensor4D];
      h = tf.add(tf.mul(this.norm2.call(h), tf.add(scale, 1)), shift);
    } else {
      h = this.norm2.call(tf.add(h, perChannel));
    }
    h = this.conv2.call(silu(h) as tf.Tensor4D, ctx);
    const shortcut = this.convShortcut ? this.convShortcut.call(x, ctx) : x;
    const out = tf.add(shortcut, h) as tf.Tensor4D;
    emitFeature(this, out, ctx);
    return out;
  }
}

/** GEGLU feed-forward: net.0.proj (C → 2·4C), gate with exact GELU, net.2 (4C → C). */
export class FeedForward extends Module {
  readonly proj: Linear;
  readonly out: Linear;

  constructor(dim: number, mult = 4) {
    super();
    const net = this.add("net", new Container());
    this.proj = net.set("0", new Container()).set("proj", new Linear(dim, dim * mult * 2));
    this.out = net.set("2", new Linear(dim * mult, dim));
  }

  call(x: tf.Tensor, ctx: ForwardContext): tf.Tensor {
    const [h, gate] = tf.split(this.proj.call(x, ctx), 2, -1) as [tf.Tensor, tf.Tensor];
    return this.out.call(tf.mul(h, gelu(gate)), ctx);
  }
}

export class BasicTransformerBlock extends Module {
  readonly norm1: LayerNorm;
  readonly attn1: Attention;
  readonly norm2: LayerNorm;
  readonly attn2: Attention;
  readonly norm3: LayerNorm;
  readonly ff: FeedForward;

  constructor(dim: number, heads: number, dimHead: number, crossAttentionDim: number) {
    super();
    this.norm1 = this.add("norm1", new LayerNorm(dim));
    this.attn1 = this.add("attn1", new Attention(dim, null, heads, dimHead));
    this.norm2 = this.add("norm2", new LayerNorm(dim));
    this.attn2 = this.add("attn2", new Attention(dim, crossAttentionDim, heads, dimHead));
    this.norm3 = this.add("norm3", new LayerNorm(dim));
    this.ff = this.add("ff", new FeedForward(dim));
  }

  call(x: tf.Tensor, context: tf.Tensor, ctx: ForwardContext): tf.Tensor {
    x = tf.add(x, this.attn1.call(this.norm1.call(x), null, ctx));
    x = tf.add(x, this.attn2.call(this.norm2.call(x), context, ctx));
    return tf.add(x, this.ff.call(this.norm3.call(x), ctx));
  }
}

/** Transformer2DModel: group norm, proj_in (linear or 1×1 conv), blocks, proj_out, residual. */
export class Transformer2DModel extends Module implements FeaturePoint {
  readonly featurePoint = true;
  readonly norm: GroupNorm;
  readonly projIn: Linear | Conv2d;
  readonly blocks: BasicTransformerBlock[] = [];
  readonly projOut: Linear | Conv2d;

  constructor(
    channels: number,
    heads: number,
    crossAttentionDim: number,
    groups: number,
    readonly linearProjection: boolean,
    layers: number,
  ) {
    super();
    this.norm = this.add("norm", new GroupNorm(groups, channels, 1e-6));
    const proj = () => (linearProjection ? new Linear(channels, channels) : new Conv2d(channels, channels, 1));
    this.projIn = this.add("proj_in", proj());
    const list = this.add("transformer_blocks", new Container());
    for (let i = 0; i < layers; i++) this.blocks.push(list.set(String(i), new BasicTransformerBlock(channels, heads, channels / heads, crossAttentionDim)));
    this.projOut = this.add("proj_out", proj());
  }

  call(x: tf.Tensor4D, context: tf.Tensor, ctx: ForwardContext): tf.Tensor4D {
    const [b, h, w, c] = x.shape;
    const normed = this.norm.call(x);
    let tokens: tf.Tensor;
    if (this.linearProjection) tokens = (this.projIn as Linear).call(tf.reshape(normed, [b, h * w, c]), ctx);
    else tokens = tf.reshape((this.projIn as Conv2d).call(normed, ctx), [b, h * w, c]);
    for (const block of this.blocks) tokens = block.call(tokens, context, ctx);
    let out: tf.Tensor4D;
    if (this.linearProjection) out = tf.reshape((this.projOut as Linear).call(tokens, ctx), [b, h, w, c]);
    else out = (this.projOut as Conv2d).call(tf.reshape(tokens, [b, h, w, c]), ctx);
    const result = tf.add(out, x) as tf.Tensor4D;
    emitFeature(this, result, ctx);
    return result;
  }
}

export class Downsample2D extends Module {
  readonly conv: Conv2d;
  constructor(channels: number, padding = 1) {
    super();
    this.conv = this.add("conv", new Conv2d(channels, channels, 3, 2, padding));
  }
  call(x: tf.Tensor4D, ctx: ForwardContext): tf.Tensor4D {
    // diffusers pads (0, 1, 0, 1) itself when padding=0.
    if (this.conv.padding === 0) x = tf.pad(x, [[0, 0], [0, 1], [0, 1], [0, 0]]);
    return this.conv.call(x, ctx);
  }
}

export class Upsample2D extends Module {
  readonly conv: Conv2d;
  constructor(channels: number) {
    super();
    this.conv = this.add("conv", new Conv2d(channels, channels, 3, 1, 1));
  }
  call(x: tf.Tensor4D, ctx: ForwardContext): tf.Tensor4D {
    return this.conv.call(upsampleNearest2x(x), ctx);
  }
}

export interface BlockSpec {
  resnets: ResnetBlock2D[];
  attentions: Transformer2DModel[];
}

/** DownBlock2D / CrossAttnDownBlock2D. Returns the output and the skip states it adds. */
export class DownBlock extends Module implements FeaturePoint {
  readonly featurePoint = true;
  readonly resnets: ResnetBlock2D[] = [];
  readonly attentions: Transformer2DModel[] = [];
  readonly downsampler: Downsample2D | null;

  constructor(
    inChannels: number,
    outChannels: number,
    tembChannels: number,
    layers: number,
    groups: number,
    eps: number,
    addDownsample: boolean,
    downsamplePadding: number,
    attention: { heads: number; crossAttentionDim: number; linearProjection: boolean; transformerLayers: number } | null,
    timeEmbeddingNorm: TimeEmbeddingNorm = "default",
  ) {
    super();
    const resnets = this.add("resnets", new Container());
    const attentions = attention ? this.add("attentions", new Container()) : null;
    for (let i = 0; i < layers; i++) {
      this.resnets.push(resnets.set(String(i), new ResnetBlock2D(i === 0 ? inChannels : outChannels, outChannels, tembChannels, groups, eps, timeEmbeddingNorm)));
      if (attention && attentions) {
        this.attentions.push(
          attentions.set(String(i), new Transformer2DModel(outChannels, attention.heads, attention.crossAttentionDim, groups, attention.linearProjection, attention.transformerLayers)),
        );
      }
    }
    this.downsampler = addDownsample ? this.add("downsamplers", new Container()).set("0", new Downsample2D(outChannels, downsamplePadding)) : null;
  }

  call(x: tf.Tensor4D, temb: tf.Tensor2D, context: tf.Tensor, ctx: ForwardContext): { out: tf.Tensor4D; skips: tf.Tensor4D[] } {
    const skips: tf.Tensor4D[] = [];
    this.resnets.forEach((resnet, i) => {
      x = resnet.call(x, temb, ctx);
      const attn = this.attentions[i];
      if (attn) x = attn.call(x, context, ctx);
      skips.push(x);
    });
    if (this.downsampler) {
      x = this.downsampler.call(x, ctx);
      skips.push(x);
    }
    emitFeature(this, x, ctx);
    return { out: x, skips };
  }
}

/** UpBlock2D / CrossAttnUpBlock2D: each resnet takes the running state concatenated with one skip. */
export class UpBlock extends Module implements FeaturePoint {
  readonly featurePoint = true;
  readonly resnets: ResnetBlock2D[] = [];
  readonly attentions: Transformer2DModel[] = [];
  readonly upsampler: Upsample2D | null;

  constructor(
    inChannels: number,
    prevOutputChannels: number,
    outChannels: number,
    tembChannels: number,
    layers: number,
    groups: number,
    eps: number,
    addUpsample: boolean,
    attention: { heads: number; crossAttentionDim: number; linearProjection: boolean; transformerLayers: number } | null,
    timeEmbeddingNorm: TimeEmbeddingNorm = "default",
  ) {
    super();
    const resnets = this.add("resnets", new Container());
    const attentions = attention ? this.add("attentions", new Container()) : null;
    for (let i = 0; i < layers; i++) {
      const skipChannels = i === layers - 1 ? inChannels : outChannels;
      const resnetIn = i === 0 ? prevOutputChannels : outChannels;
      this.resnets.push(resnets.set(String(i), new ResnetBlock2D(resnetIn + skipChannels, outChannels, tembChannels, groups, eps, timeEmbeddingNorm)));
      if (attention && attentions) {
        this.attentions.push(
          attentions.set(String(i), new Transformer2DModel(outChannels, attention.heads, attention.crossAttentionDim, groups, attention.linearProjection, attention.transformerLayers)),
        );
      }
    }
    this.upsampler = addUpsample ? this.add("upsamplers", new Container()).set("0", new Upsample2D(outChannels)) : null;
  }

  /** `skips` is consumed from its end. */
  call(x: tf.Tensor4D, skips: tf.Tensor4D[], temb: tf.Tensor2D, context: tf.Tensor, ctx: ForwardContext): tf.Tensor4D {
    this.resnets.forEach((resnet, i) => {
      x = resnet.call(tf.concat([x, skips.pop()!], -1), temb, ctx);
      const attn = this.attentions[i];
      if (attn) x = attn.call(x, context, ctx);
    });
    if (this.upsampler) x = this.upsampler.call(x, ctx);
    emitFeature(this, x, ctx);
    return x;
  }
}

/** UNetMidBlock2DCrossAttn: resnets.0, attentions.0, resnets.1. */
export class MidBlock extends Module implements FeaturePoint {
  readonly featurePoint = true;
  readonly resnets: ResnetBlock2D[] = [];
  readonly attentions: Transformer2DModel[] = [];

  constructor(
    channels: number,
    tembChannels: number,
    groups: number,
    eps: number,
    attention: { heads: number; crossAttentionDim: number; linearProjection: boolean; transformerLayers: number },
    timeEmbeddingNorm: TimeEmbeddingNorm = "default",
  ) {
    super();
    const resnets = this.add("resnets", new Container());
    const attentions = this.add("attentions", new Container());
    this.resnets.push(resnets.set("0", new ResnetBlock2D(channels, channels, tembChannels, groups, eps, timeEmbeddingNorm)));
    this.attentions.push(
      attentions.set("0", new Transformer2DModel(channels, attention.heads, attention.crossAttentionDim, groups, attention.linearProjection, attention.transformerLayers)),
    );
    this.resnets.push(resnets.set("1", new ResnetBlock2D(channels, channels, tembChannels, groups, eps, timeEmbeddingNorm)));
  }

  call(x: tf.Tensor4D, temb: tf.Tensor2D, context: tf.Tensor, ctx: ForwardContext): tf.Tensor4D {
    x = this.resnets[0]!.call(x, temb, ctx);
    x = this.attentions[0]!.call(x, context, ctx);
    x = this.resnets[1]!.call(x, temb, ctx);
    emitFeature(this, x, ctx);
    return x;
  }
}
