/**
 * The UNet's text-to-time conditioning (diffusers' `addition_embed_type: "text"`,
 * the DeepFloyd IF design): the text embeddings are attention-pooled into one
 * vector that is added to the time embedding, so every ResNet block sees the
 * whole prompt, not only the blocks with cross-attention. diffusers' names:
 * `add_embedding.{norm1,pool.{positional_embedding,q_proj,k_proj,v_proj},proj,norm2}`.
 */
import * as tf from "@tensorflow/tfjs-core";
import { LayerNorm, Linear } from "../nn/layers.js";
import { Module, type ForwardContext } from "../nn/module.js";

/**
 * diffusers' AttentionPooling: a class token (the mean of the tokens plus a
 * learned embedding) attends, per head, over itself and the tokens; its output
 * is the pooled vector. Padding tokens are pooled too, as in diffusers.
 */
export class AttentionPooling extends Module {
  readonly qProj: Linear;
  readonly kProj: Linear;
  readonly vProj: Linear;

  constructor(
    readonly heads: number,
    readonly dim: number,
  ) {
    super();
    this.declare("positional_embedding", [1, dim], "plain", { kind: "normal", std: 1 / Math.sqrt(dim) });
    this.kProj = this.add("k_proj", new Linear(dim, dim));
    this.qProj = this.add("q_proj", new Linear(dim, dim));
    this.vProj = this.add("v_proj", new Linear(dim, dim));
  }

  /** x [B, N, dim] → [B, dim]. */
  call(x: tf.Tensor3D, ctx?: ForwardContext): tf.Tensor2D {
    const [b, n] = x.shape;
    const h = this.heads;
    const d = this.dim / h;
    const classToken = tf.add(tf.mean(x, 1, true), this.p("positional_embedding")) as tf.Tensor3D; // [B, 1, dim]
    const tokens = tf.concat([classToken, x], 1); // [B, N+1, dim]
    const heads = (t: tf.Tensor, len: number) => tf.transpose(tf.reshape(t, [b, len, h, d]), [0, 2, 1, 3]); // [B, h, len, d]
    // diffusers scales q and k by d^-1/4 each (float16 stability); the product is the usual d^-1/2.
    const q = heads(this.qProj.call(classToken, ctx), 1);
    const k = heads(this.kProj.call(tokens, ctx), n + 1);
    const v = heads(this.vProj.call(tokens, ctx), n + 1);
    const weights = tf.softmax(tf.mul(tf.matMul(q, k, false, true), 1 / Math.sqrt(d))); // [B, h, 1, N+1]
    return tf.reshape(tf.matMul(weights, v), [b, this.dim]) as tf.Tensor2D; // heads outer, as diffusers' reshape
  }
}

/** diffusers' TextTimeEmbedding: LayerNorm → AttentionPooling → Linear → LayerNorm, [B, N, Cctx] → [B, Ctemb]. */
export class TextTimeEmbedding extends Module {
  readonly norm1: LayerNorm;
  readonly pool: AttentionPooling;
  readonly proj: Linear;
  readonly norm2: LayerNorm;

  constructor(encoderDim: number, timeEmbedDim: number, heads: number) {
    super();
    this.norm1 = this.add("norm1", new LayerNorm(encoderDim));
    this.pool = this.add("pool", new AttentionPooling(heads, encoderDim));
    this.proj = this.add("proj", new Linear(encoderDim, timeEmbedDim));
    this.norm2 = this.add("norm2", new LayerNorm(timeEmbedDim));
  }

  call(encoderHiddenStates: tf.Tensor3D, ctx?: ForwardContext): tf.Tensor2D {
    const pooled = this.pool.call(this.norm1.call(encoderHiddenStates) as tf.Tensor3D, ctx);
    return this.norm2.call(this.proj.call(pooled, ctx)) as tf.Tensor2D;
  }
}
