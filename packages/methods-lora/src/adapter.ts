/**
 * The LoRA adapter on one linear module (peft's `lora.Linear`):
 *
 *   y = base(x) + (x · A · B) · scale,   scale = alpha / rank (× a load-time multiplier)
 *
 * A is lora_A, B is lora_B. Inside, tfjs layouts: A [in, r], B [r, out], so
 * `x [..., in] · A · B` needs no transpose; the files hold torch's layouts
 * lora_A.weight [r, in] and lora_B.weight [out, r] (see ./format.ts).
 */
import * as tf from "@tensorflow/tfjs-core";
import { AptError, type AdapterContext, type ModuleAdapter, type Rng } from "@apt/core";

export type LoraInit = "gaussian" | "kaiming";

export interface LoraAdapterSpec {
  /** Adapter name on the model (`removeAdapters(name)`). */
  name: string;
  /** The diffusers path of the wrapped linear module. */
  path: string;
  inFeatures: number;
  outFeatures: number;
  rank: number;
  alpha: number;
  /** lora_A in tfjs layout [in, r]; copied into a variable (the caller keeps ownership). */
  A: tf.Tensor;
  /** lora_B in tfjs layout [r, out]; copied into a variable. */
  B: tf.Tensor;
  /** Whether the variables are trainable (false for adapters loaded for sampling). */
  trainable: boolean;
  /** Multiplies alpha / rank (diffusers' `lora_scale`, kohya's multiplier). Default 1. */
  multiplier?: number;
}

export class LoraAdapter implements ModuleAdapter {
  readonly name: string;
  readonly path: string;
  readonly inFeatures: number;
  readonly outFeatures: number;
  readonly rank: number;
  readonly alpha: number;
  readonly multiplier: number;
  /** lora_A, [in, r]. */
  readonly A: tf.Variable;
  /** lora_B, [r, out]. */
  readonly B: tf.Variable;

  constructor(spec: LoraAdapterSpec) {
    const { path, inFeatures, outFeatures, rank } = spec;
    const want = (t: tf.Tensor, shape: number[], what: string) => {
      if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
        throw new AptError("BAD_INPUT", `LoRA on ${path}: ${what} has shape [${t.shape}] but the module (in ${inFeatures}, out ${outFeatures}) at rank ${rank} needs [${shape}]`);
      }
    };
    want(spec.A, [inFeatures, rank], "lora_A (tfjs layout [in, r])");
    want(spec.B, [rank, outFeatures], "lora_B (tfjs layout [r, out])");
    this.name = spec.name;
    this.path = path;
    this.inFeatures = inFeatures;
    this.outFeatures = outFeatures;
    this.rank = rank;
    this.alpha = spec.alpha;
    this.multiplier = spec.multiplier ?? 1;
    // No variable names: two models (or a trained and a loaded adapter) may coexist.
    this.A = tf.variable(spec.A, spec.trainable);
    this.B = tf.variable(spec.B, spec.trainable);
  }

  /** alpha / rank × multiplier. */
  get scale(): number {
    return (this.alpha / this.rank) * this.multiplier;
  }

  variables(): Record<string, tf.Variable> {
    return { "lora_A.weight": this.A, "lora_B.weight": this.B };
  }

  /** x [..., in] → (x · A · B) · scale, [..., out]. */
  forward(x: tf.Tensor, _ctx?: AdapterContext): tf.Tensor {
    const flat = x.rank === 2 ? (x as tf.Tensor2D) : tf.reshape(x, [-1, this.inFeatures]);
    let y: tf.Tensor = tf.matMul(tf.matMul(flat, this.A as tf.Tensor2D), this.B as tf.Tensor2D);
    const scale = this.scale;
    if (scale !== 1) y = tf.mul(y, tf.scalar(scale, "float32"));
    return x.rank === 2 ? y : tf.reshape(y, [...x.shape.slice(0, -1), this.outFeatures]);
  }

  dispose(): void {
    this.A.dispose();
    this.B.dispose();
  }
}

/**
 * lora_A's initial values in tfjs layout [in, r], drawn from `rng` in torch's
 * row-major order of lora_A.weight [r, in]:
 * - "gaussian": N(0, (1/rank)²), peft's `init_lora_weights="gaussian"`;
 * - "kaiming": U(-1/√in, 1/√in), peft's default (`kaiming_uniform_` with a = √5 on [r, in]).
 */
export function initLoraA(inFeatures: number, rank: number, init: LoraInit, rng: Rng): tf.Tensor2D {
  const data = new Float32Array(inFeatures * rank);
  const bound = 1 / Math.sqrt(inFeatures);
  for (let k = 0; k < rank; k++) {
    for (let i = 0; i < inFeatures; i++) {
      data[i * rank + k] = init === "gaussian" ? rng.normal() / rank : (rng.uniform() * 2 - 1) * bound;
    }
  }
  return tf.tensor2d(data, [inFeatures, rank], "float32");
}
