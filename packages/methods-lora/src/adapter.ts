/**
 * The LoRA adapter on one linear or conv module (peft's `lora.Linear` and
 * `lora.Conv2d`; kohya's LoCon for convs):
 *
 *   linear: y = base(x) + (x · A · B) · scale
 *   conv:   y = base(x) + conv1x1(conv(x, A), B) · scale
 *   scale = alpha / rank (× a load-time multiplier)
 *
 * A is lora_A, B is lora_B. For a conv, lora_A is a conv with the base conv's
 * kernel size, stride and padding and `rank` output channels, and lora_B a 1×1
 * conv from `rank` to the base conv's output channels (peft), so the delta has
 * the base output's size. Inside, tfjs layouts: A is [in, r] (linear) or
 * [kh, kw, in, r] (conv, HWIO); B is [r, out] for both (a 1×1 conv is a matmul
 * over channels). The files hold torch's layouts (see ./format.ts):
 * lora_A.weight [r, in] or [r, in, kh, kw], lora_B.weight [out, r] or [out, r, 1, 1].
 */
import * as tf from "@tensorflow/tfjs-core";
import { AptError, type AdapterContext, type HookPoint, type ModuleAdapter, type Rng } from "@apt/core";

export type LoraInit = "gaussian" | "kaiming";

/** A conv's geometry, as torch.nn.Conv2d's attributes (and the conv hook point's): each [height, width]. */
export interface ConvGeometry {
  kernelSize: [number, number];
  stride: [number, number];
  padding: [number, number];
}

export interface LoraAdapterSpec {
  /** Adapter name on the model (`removeAdapters(name)`). */
  name: string;
  /** The diffusers path of the wrapped module. */
  path: string;
  inFeatures: number;
  outFeatures: number;
  /** Set for a conv module: lora_A is then a conv of this geometry. */
  conv?: ConvGeometry;
  rank: number;
  alpha: number;
  /** lora_A in tfjs layout, [in, r] or (conv) [kh, kw, in, r]; copied into a variable (the caller keeps ownership). */
  A: tf.Tensor;
  /** lora_B in tfjs layout [r, out]; copied into a variable. */
  B: tf.Tensor;
  /** Whether the variables are trainable (false for adapters loaded for sampling). */
  trainable: boolean;
  /** Multiplies alpha / rank (diffusers' `lora_scale`, kohya's multiplier). Default 1. */
  multiplier?: number;
}

/**
 * A hook point's conv geometry (undefined for a linear point); a conv point that does not report it is an error
 * that names the module, `where` saying who asks (the method, or the file being loaded).
 */
export function convGeometry(point: HookPoint, where: string): ConvGeometry | undefined {
  if (point.kind !== "conv") return undefined;
  const { kernelSize, stride, padding } = point;
  if (!kernelSize || !stride || !padding) {
    throw new AptError(
      "BAD_INPUT",
      `${where}: conv module ${point.path} does not report its kernelSize, stride and padding, which conv LoRA needs; update the model package (a current @apt/diffusion reports them) or leave the module out`,
    );
  }
  return { kernelSize, stride, padding };
}

/** lora_A's tfjs shape for a module: [in, r], or [kh, kw, in, r] for a conv. */
export function loraAShape(inFeatures: number, rank: number, conv?: ConvGeometry): number[] {
  return conv ? [conv.kernelSize[0], conv.kernelSize[1], inFeatures, rank] : [inFeatures, rank];
}

export class LoraAdapter implements ModuleAdapter {
  readonly name: string;
  readonly path: string;
  readonly inFeatures: number;
  readonly outFeatures: number;
  readonly conv: ConvGeometry | undefined;
  readonly rank: number;
  readonly alpha: number;
  readonly multiplier: number;
  /** lora_A, [in, r] or (conv) [kh, kw, in, r]. */
  readonly A: tf.Variable;
  /** lora_B, [r, out]. */
  readonly B: tf.Variable;
  private readonly pad: "valid" | [[0, 0], [number, number], [number, number], [0, 0]];

  constructor(spec: LoraAdapterSpec) {
    const { path, inFeatures, outFeatures, rank, conv } = spec;
    const module = conv ? `conv ${conv.kernelSize.join("×")}, in ${inFeatures}, out ${outFeatures}` : `in ${inFeatures}, out ${outFeatures}`;
    const want = (t: tf.Tensor, shape: number[], what: string) => {
      if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
        throw new AptError("BAD_INPUT", `LoRA on ${path}: ${what} has shape [${t.shape}] but the module (${module}) at rank ${rank} needs [${shape}]`);
      }
    };
    want(spec.A, loraAShape(inFeatures, rank, conv), conv ? "lora_A (tfjs layout [kh, kw, in, r])" : "lora_A (tfjs layout [in, r])");
    want(spec.B, [rank, outFeatures], "lora_B (tfjs layout [r, out])");
    this.name = spec.name;
    this.path = path;
    this.inFeatures = inFeatures;
    this.outFeatures = outFeatures;
    this.conv = conv;
    this.rank = rank;
    this.alpha = spec.alpha;
    this.multiplier = spec.multiplier ?? 1;
    const [ph, pw] = conv?.padding ?? [0, 0];
    this.pad = ph === 0 && pw === 0 ? "valid" : [[0, 0], [ph, ph], [pw, pw], [0, 0]];
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

  /** Linear: x [..., in] → [..., out]. Conv: x NHWC [B, H, W, in] → [B, H', W', out] (the base conv's output size). */
  forward(x: tf.Tensor, _ctx?: AdapterContext): tf.Tensor {
    // Both kinds end in the same matmul with B: the linear's x · A, or the conv's r-channel map, flattened to [-1, r].
    let down: tf.Tensor;
    if (this.conv) down = tf.conv2d(x as tf.Tensor4D, this.A as tf.Tensor4D, this.conv.stride, this.pad);
    else down = x.rank === 2 ? tf.matMul(x as tf.Tensor2D, this.A as tf.Tensor2D) : tf.matMul(tf.reshape(x, [-1, this.inFeatures]), this.A as tf.Tensor2D);
    const lead = this.conv ? down.shape.slice(0, -1) : x.shape.slice(0, -1);
    let y: tf.Tensor = tf.matMul(down.rank === 2 ? (down as tf.Tensor2D) : tf.reshape(down, [-1, this.rank]), this.B as tf.Tensor2D);
    const scale = this.scale;
    if (scale !== 1) y = tf.mul(y, tf.scalar(scale, "float32"));
    return lead.length === 1 ? y : tf.reshape(y, [...lead, this.outFeatures]);
  }

  dispose(): void {
    this.A.dispose();
    this.B.dispose();
  }
}

/**
 * lora_A's initial values in tfjs layout ([in, r], or [kh, kw, in, r] for a
 * conv), drawn from `rng` in torch's row-major order of lora_A.weight
 * ([r, in] or [r, in, kh, kw]):
 * - "gaussian": N(0, (1/rank)²), peft's `init_lora_weights="gaussian"`;
 * - "kaiming": U(-1/√fan_in, 1/√fan_in) with fan_in = in·kh·kw, peft's default
 *   (`kaiming_uniform_` with a = √5).
 */
export function initLoraA(inFeatures: number, rank: number, init: LoraInit, rng: Rng, conv?: ConvGeometry): tf.Tensor {
  const [kh, kw] = conv?.kernelSize ?? [1, 1];
  const data = new Float32Array(inFeatures * kh * kw * rank);
  const bound = 1 / Math.sqrt(inFeatures * kh * kw);
  for (let k = 0; k < rank; k++) {
    for (let i = 0; i < inFeatures; i++) {
      for (let y = 0; y < kh; y++) {
        for (let x = 0; x < kw; x++) {
          data[((y * kw + x) * inFeatures + i) * rank + k] = init === "gaussian" ? rng.normal() / rank : (rng.uniform() * 2 - 1) * bound;
        }
      }
    }
  }
  return tf.tensor(data, loraAShape(inFeatures, rank, conv), "float32");
}
