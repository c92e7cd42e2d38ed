/**
 * AdamW with torch.optim.AdamW's semantics (decoupled weight decay, bias
 * correction as torch computes it), over named tfjs variables. tfjs ships Adam
 * without weight decay. State (step count, first and second moments) is
 * exposed by name so checkpoints can store and restore it exactly.
 *
 * One parameter's update is 14 elementwise kernels when composed from tfjs
 * ops, each a pass over memory and a kernel dispatch: for a UNet of ~250
 * small tensors that is ~3,500 dispatches a step. A backend may instead
 * register the whole update as one kernel, `FUSED_ADAMW` (the contract below);
 * `adamwUpdate` uses it when the active backend has it, the composition
 * otherwise. The conformance suite checks either against float64.
 */
import * as tf from "@tensorflow/tfjs-core";
import type { NamedAttrMap } from "@tensorflow/tfjs-core";
import { AptError } from "../errors.js";

/**
 * Name of the optional fused AdamW kernel (tfjs `registerKernel` for a backend).
 * Inputs `{ param, grad, m, v }` (float32, one shape); attributes
 * `AdamWUpdateAttrs`; outputs `[param, m, v]`, new tensors (inputs unchanged):
 *
 *   m' = β₁·m + (1 − β₁)·g        v' = β₂·v + (1 − β₂)·g²
 *   param' = decay·param − stepSize · m' / (√v' / sqrtBc2 + eps)
 */
export const FUSED_ADAMW = "AptFusedAdamW";

export interface AdamWUpdateAttrs {
  beta1: number;
  beta2: number;
  eps: number;
  /** 1 − lr · weightDecay (decoupled weight decay). */
  decay: number;
  /** lr / (1 − β₁ᵗ). */
  stepSize: number;
  /** √(1 − β₂ᵗ). */
  sqrtBc2: number;
}

/** One AdamW update of one parameter: the backend's `FUSED_ADAMW` kernel when it has one, else tfjs ops. */
export function adamwUpdate(
  param: tf.Tensor,
  grad: tf.Tensor,
  m: tf.Tensor,
  v: tf.Tensor,
  attrs: AdamWUpdateAttrs,
): { param: tf.Tensor; m: tf.Tensor; v: tf.Tensor } {
  if (tf.getKernel(FUSED_ADAMW, tf.getBackend())) {
    const [p1, m1, v1] = tf.engine().runKernel(FUSED_ADAMW, { param, grad, m, v }, attrs as unknown as NamedAttrMap) as tf.Tensor[];
    return { param: p1!, m: m1!, v: v1! };
  }
  return tf.tidy(() => {
    const m1 = tf.add(tf.mul(m, attrs.beta1), tf.mul(grad, 1 - attrs.beta1));
    const v1 = tf.add(tf.mul(v, attrs.beta2), tf.mul(tf.square(grad), 1 - attrs.beta2));
    const decayed = attrs.decay === 1 ? param : tf.mul(param, attrs.decay);
    const denom = tf.add(tf.div(tf.sqrt(v1), attrs.sqrtBc2), attrs.eps);
    return { param: tf.sub(decayed, tf.mul(tf.div(m1, denom), attrs.stepSize)), m: m1, v: v1 };
  });
}

export interface AdamWOptions {
  lr: number;
  betas?: [number, number];
  eps?: number;
  weightDecay?: number;
}

export interface AdamWState {
  step: number;
  /** Per variable name: first moment (m) and second moment (v). */
  moments: Record<string, { m: tf.Tensor; v: tf.Tensor }>;
}

export class AdamW {
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly weightDecay: number;
  lr: number;
  private stepCount = 0;
  private readonly m = new Map<string, tf.Variable>();
  private readonly v = new Map<string, tf.Variable>();

  constructor(
    readonly params: Record<string, tf.Variable>,
    opts: AdamWOptions,
  ) {
    this.lr = opts.lr;
    [this.beta1, this.beta2] = opts.betas ?? [0.9, 0.999];
    this.eps = opts.eps ?? 1e-8;
    this.weightDecay = opts.weightDecay ?? 1e-2;
    for (const [name, p] of Object.entries(params)) {
      this.m.set(name, tf.variable(tf.zerosLike(p), false));
      this.v.set(name, tf.variable(tf.zerosLike(p), false));
    }
  }

  get step(): number {
    return this.stepCount;
  }

  /** Applies one update from `grads` (by parameter name; a missing gradient leaves that parameter as it is). */
  apply(grads: Record<string, tf.Tensor>, lr = this.lr): void {
    this.stepCount++;
    const bc1 = 1 - this.beta1 ** this.stepCount;
    const bc2 = 1 - this.beta2 ** this.stepCount;
    const attrs: AdamWUpdateAttrs = {
      beta1: this.beta1,
      beta2: this.beta2,
      eps: this.eps,
      decay: 1 - lr * this.weightDecay,
      stepSize: lr / bc1,
      sqrtBc2: Math.sqrt(bc2),
    };
    tf.tidy(() => {
      for (const [name, g] of Object.entries(grads)) {
        const p = this.params[name];
        if (!p) throw new AptError("INTERNAL", `AdamW: gradient for "${name}", which is not one of its parameters`);
        const m = this.m.get(name)!;
        const v = this.v.get(name)!;
        const next = adamwUpdate(p, g, m, v, attrs);
        m.assign(next.m);
        v.assign(next.v);
        p.assign(next.param);
      }
    });
  }

  getState(): AdamWState {
    const moments: AdamWState["moments"] = {};
    for (const name of this.m.keys()) moments[name] = { m: this.m.get(name)!, v: this.v.get(name)! };
    return { step: this.stepCount, moments };
  }

  setState(state: AdamWState): void {
    for (const [name, { m, v }] of Object.entries(state.moments)) {
      const mv = this.m.get(name);
      const vv = this.v.get(name);
      if (!mv || !vv) throw new AptError("BAD_INPUT", `optimizer state has moments for "${name}", which this run does not train`);
      mv.assign(m);
      vv.assign(v);
    }
    this.stepCount = state.step;
  }

  dispose(): void {
    for (const t of [...this.m.values(), ...this.v.values()]) t.dispose();
    this.m.clear();
    this.v.clear();
  }
}
