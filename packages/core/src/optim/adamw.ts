/**
 * AdamW with torch.optim.AdamW's semantics (decoupled weight decay, bias
 * correction as torch computes it), over named tfjs variables. tfjs ships Adam
 * without weight decay. State (step count, first and second moments) is
 * exposed by name so checkpoints can store and restore it exactly.
 */
import * as tf from "@tensorflow/tfjs-core";
import { AptError } from "../errors.js";

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
    const stepSize = lr / bc1;
    const sqrtBc2 = Math.sqrt(bc2);
    tf.tidy(() => {
      for (const [name, g] of Object.entries(grads)) {
        const p = this.params[name];
        if (!p) throw new AptError("INTERNAL", `AdamW: gradient for "${name}", which is not one of its parameters`);
        const m = this.m.get(name)!;
        const v = this.v.get(name)!;
        m.assign(tf.add(tf.mul(m, this.beta1), tf.mul(g, 1 - this.beta1)));
        v.assign(tf.add(tf.mul(v, this.beta2), tf.mul(tf.square(g), 1 - this.beta2)));
        const decayed = this.weightDecay ? tf.mul(p, 1 - lr * this.weightDecay) : p;
        const denom = tf.add(tf.div(tf.sqrt(v), sqrtBc2), this.eps);
        p.assign(tf.sub(decayed, tf.mul(tf.div(m, denom), stepSize)));
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
