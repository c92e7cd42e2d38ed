/**
 * diffusers' Attention module (`to_q`, `to_k`, `to_v`, `to_out.0`) with
 * swappable processors, and the attention computation the processors share.
 */
import * as tf from "@tensorflow/tfjs-core";
import type { AttentionCall, AttentionObserver, AttentionProcessor } from "@apt/core";
import { Container, Linear } from "../nn/layers.js";
import { Module, type ForwardContext } from "../nn/module.js";

/** [B, N, heads·d] → [B·heads, N, d] (diffusers' head_to_batch_dim). */
export function headsToBatch(x: tf.Tensor, heads: number): tf.Tensor3D {
  const [b, n, c] = x.shape as [number, number, number];
  return tf.reshape(tf.transpose(tf.reshape(x, [b, n, heads, c / heads]), [0, 2, 1, 3]), [b * heads, n, c / heads]);
}

/** [B·heads, N, d] → [B, N, heads·d]. */
export function batchToHeads(x: tf.Tensor, heads: number): tf.Tensor3D {
  const [bh, n, d] = x.shape as [number, number, number];
  const b = bh / heads;
  return tf.reshape(tf.transpose(tf.reshape(x, [b, heads, n, d]), [0, 2, 1, 3]), [b, n, heads * d]);
}

/**
 * softmax(q·kᵀ/√d + mask)·v over heads, from already projected q [B, Nq, C],
 * k, v [B, Nk, C]. Observers get the probabilities and logits [B·heads, Nq, Nk].
 */
export function scaledDotProductAttention(
  q: tf.Tensor,
  k: tf.Tensor,
  v: tf.Tensor,
  heads: number,
  opts: { mask?: tf.Tensor; observe?: (probs: tf.Tensor, logits: tf.Tensor) => void } = {},
): tf.Tensor3D {
  const dHead = q.shape[2]! / heads;
  const qh = headsToBatch(q, heads);
  const kh = headsToBatch(k, heads);
  const vh = headsToBatch(v, heads);
  let logits = tf.mul(tf.matMul(qh, kh, false, true), 1 / Math.sqrt(dHead));
  if (opts.mask) logits = tf.add(logits, opts.mask);
  const probs = tf.softmax(logits);
  opts.observe?.(probs, logits);
  return batchToHeads(tf.matMul(probs, vh), heads);
}

/** The default processor: diffusers' AttnProcessor (explicit softmax), calling observers if any. */
export function defaultAttentionProcessor(observers: AttentionObserver[] = []): AttentionProcessor {
  return (call: AttentionCall) => {
    const { projections: p, hidden, context, heads } = call;
    const out = scaledDotProductAttention(p.toQ(hidden), p.toK(context), p.toV(context), heads, {
      observe: observers.length
        ? (probs, logits) => {
            for (const o of observers) o({ path: call.path, kind: call.kind, heads, batch: hidden.shape[0]!, probs, logits });
          }
        : undefined,
    });
    return p.toOut(out);
  };
}

const fastDefault = defaultAttentionProcessor();

export class Attention extends Module {
  readonly toQ: Linear;
  readonly toK: Linear;
  readonly toV: Linear;
  readonly toOut: Linear;
  readonly kind: "self" | "cross";

  constructor(
    readonly queryDim: number,
    crossAttentionDim: number | null,
    readonly heads: number,
    dimHead: number,
  ) {
    super();
    const inner = heads * dimHead;
    this.kind = crossAttentionDim === null ? "self" : "cross";
    const kvDim = crossAttentionDim ?? queryDim;
    this.toQ = this.add("to_q", new Linear(queryDim, inner, false));
    this.toK = this.add("to_k", new Linear(kvDim, inner, false));
    this.toV = this.add("to_v", new Linear(kvDim, inner, false));
    // to_out is a ModuleList [Linear, Dropout]: only index 0 has parameters.
    this.toOut = this.add("to_out", new Container()).set("0", new Linear(inner, queryDim, true));
  }

  /** hidden [B, Nq, C]; context [B, Nk, Cctx] for cross-attention, null for self-attention. */
  call(hidden: tf.Tensor, context: tf.Tensor | null, ctx: ForwardContext): tf.Tensor {
    const custom = ctx.hooks.processorFor(this.path);
    const observers = ctx.hooks.attentionObserversFor(this.path);
    const processor = custom ?? (observers.length ? defaultAttentionProcessor(observers) : fastDefault);
    return processor({
      path: this.path,
      kind: this.kind,
      hidden,
      context: context ?? hidden,
      heads: this.heads,
      temb: ctx.temb,
      projections: {
        toQ: (x) => this.toQ.call(x, ctx),
        toK: (x) => this.toK.call(x, ctx),
        toV: (x) => this.toV.call(x, ctx),
        toOut: (x) => this.toOut.call(x, ctx),
      },
    });
  }
}
