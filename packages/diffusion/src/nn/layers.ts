/** Leaf modules with diffusers' parameter names: Linear, Conv2d, GroupNorm, LayerNorm, Embedding. */
import * as tf from "@tensorflow/tfjs-core";
import { groupNorm, type ModuleAdapter } from "@apt/core";
import { Module, type ForwardContext } from "./module.js";
import { perSample } from "./functional.js";

/** Modules that adapters can wrap (linear and conv). */
export abstract class AdaptableModule extends Module {
  readonly adapters: ModuleAdapter[] = [];
  abstract readonly inFeatures: number;
  abstract readonly outFeatures: number;

  /** Adds each adapter's output, times the per-sample adapter mask, to the base output. */
  protected applyAdapters(x: tf.Tensor, y: tf.Tensor, ctx: ForwardContext | undefined): tf.Tensor {
    if (this.adapters.length === 0 || ctx?.adaptersEnabled === false) return y;
    const adapterCtx = { mask: ctx?.adapterMask ?? null, temb: ctx?.temb ?? null };
    for (const a of this.adapters) {
      let delta = a.forward(x, adapterCtx);
      if (adapterCtx.mask) delta = tf.mul(delta, perSample(adapterCtx.mask, delta.rank));
      y = tf.add(y, delta);
    }
    return y;
  }
}

export class Linear extends AdaptableModule {
  constructor(
    readonly inFeatures: number,
    readonly outFeatures: number,
    readonly bias = true,
  ) {
    super();
    const bound = 1 / Math.sqrt(inFeatures);
    this.declare("weight", [inFeatures, outFeatures], "linear", { kind: "uniform", bound });
    if (bias) this.declare("bias", [outFeatures], "plain", { kind: "uniform", bound });
  }

  /** The base projection without adapters: x [..., in] → [..., out]. */
  base(x: tf.Tensor): tf.Tensor {
    const lead = x.shape.slice(0, -1);
    let y = tf.matMul(x.rank === 2 ? (x as tf.Tensor2D) : tf.reshape(x, [-1, this.inFeatures]), this.p("weight") as tf.Tensor2D);
    if (this.bias) y = tf.add(y, this.p("bias"));
    return x.rank === 2 ? y : tf.reshape(y, [...lead, this.outFeatures]);
  }

  call(x: tf.Tensor, ctx?: ForwardContext): tf.Tensor {
    return this.applyAdapters(x, this.base(x), ctx);
  }
}

export class Conv2d extends AdaptableModule {
  private readonly pad: "valid" | [[0, 0], [number, number], [number, number], [0, 0]];

  /** `padding` is torch's: zeros added on every side. */
  constructor(
    readonly inFeatures: number,
    readonly outFeatures: number,
    readonly kernelSize: number,
    readonly stride = 1,
    readonly padding = 0,
    readonly bias = true,
  ) {
    super();
    const bound = 1 / Math.sqrt(inFeatures * kernelSize * kernelSize);
    this.declare("weight", [kernelSize, kernelSize, inFeatures, outFeatures], "conv", { kind: "uniform", bound });
    if (bias) this.declare("bias", [outFeatures], "plain", { kind: "uniform", bound });
    this.pad = padding === 0 ? "valid" : [[0, 0], [padding, padding], [padding, padding], [0, 0]];
  }

  base(x: tf.Tensor4D): tf.Tensor4D {
    let y = tf.conv2d(x, this.p("weight") as tf.Tensor4D, this.stride, this.pad);
    if (this.bias) y = tf.add(y, this.p("bias"));
    return y;
  }

  /** x NHWC. */
  call(x: tf.Tensor4D, ctx?: ForwardContext): tf.Tensor4D {
    return this.applyAdapters(x, this.base(x), ctx) as tf.Tensor4D;
  }
}

/** torch.nn.GroupNorm over NHWC: statistics per sample and group over H, W and the group's channels. */
export class GroupNorm extends Module {
  constructor(
    readonly groups: number,
    readonly channels: number,
    readonly eps = 1e-5,
  ) {
    super();
    this.declare("weight", [channels], "plain", { kind: "ones" });
    this.declare("bias", [channels], "plain", { kind: "zeros" });
  }

  call(x: tf.Tensor4D): tf.Tensor4D {
    // core's op: one fused kernel each way where the backend has them, tfjs's moments otherwise.
    return groupNorm(x, this.p("weight") as tf.Tensor1D, this.p("bias") as tf.Tensor1D, this.groups, this.eps);
  }
}

export class LayerNorm extends Module {
  constructor(
    readonly channels: number,
    readonly eps = 1e-5,
  ) {
    super();
    this.declare("weight", [channels], "plain", { kind: "ones" });
    this.declare("bias", [channels], "plain", { kind: "zeros" });
  }

  call(x: tf.Tensor): tf.Tensor {
    const { mean, variance } = tf.moments(x, -1, true);
    const normed = tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, this.eps)));
    return tf.add(tf.mul(normed, this.p("weight")), this.p("bias"));
  }
}

export class Embedding extends Module {
  constructor(
    readonly count: number,
    readonly dim: number,
  ) {
    super();
    this.declare("weight", [count, dim], "plain", { kind: "normal", std: 1 });
  }

  /** ids int32 [...] → [..., dim]. */
  call(ids: tf.Tensor): tf.Tensor {
    return tf.gather(this.p("weight"), ids);
  }

  get weight(): tf.Variable {
    return this.p("weight");
  }
}

/** A container with no parameters of its own (ModuleList / plain nn.Module). */
export class Container extends Module {
  set<M extends Module>(name: string, child: M): M {
    return this.add(name, child);
  }
}
