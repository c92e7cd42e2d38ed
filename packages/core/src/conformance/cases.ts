/**
 * The conformance cases: every op the diffusion models use, through tfjs's
 * public API, next to a float64 reference. Tolerances are per case and are the
 * normalised max error  max|tfjs − ref| / max|ref|  for the forward output and
 * for each input's gradient (float32 backend vs float64 reference; gradients
 * of the reference by central finite differences in float64).
 */
import type * as tfc from "@tensorflow/tfjs-core";
import { emaUpdate } from "../engine/ema.js";
import { groupNorm } from "../ops/group-norm.js";
import { adamwUpdate, type AdamWUpdateAttrs } from "../optim/adamw.js";
import * as R from "./reference.js";
import type { F64Array, Padding } from "./reference.js";

type Tf = typeof tfc;
type T = tfc.Tensor;

export interface CaseInput {
  shape: number[];
  /** int32 inputs (ids) are drawn from [0, intMax) and never differentiated. */
  dtype?: "float32" | "int32";
  intMax?: number;
  /** Draw |normal| + 0.5 (for log, sqrt, rsqrt, variances). */
  positive?: boolean;
  /** Multiplies the normal draws (e.g. attention logits). */
  scale?: number;
  /** No gradient is checked for this input. */
  constant?: boolean;
}

export interface ConformanceCase {
  /** "<op>/<variant>", the key of exclusion lists. */
  id: string;
  op: string;
  inputs: Record<string, CaseInput>;
  run(tf: Tf, x: Record<string, T>): T;
  reference(x: Record<string, F64Array>): F64Array;
  tolerance: { forward: number; gradient: number };
  /** False for ops only used without gradient (e.g. timestep embeddings). */
  gradient?: boolean;
}

const TOL = { forward: 1e-5, gradient: 1e-4 };

// The third step of AdamW at lr 1e-2 with weight decay 0.1 (torch's bias corrections).
const ADAMW_STEP: AdamWUpdateAttrs = {
  beta1: 0.9,
  beta2: 0.999,
  eps: 1e-8,
  decay: 1 - 1e-2 * 0.1,
  stepSize: 1e-2 / (1 - 0.9 ** 3),
  sqrtBc2: Math.sqrt(1 - 0.999 ** 3),
};
const TOL_ACC = { forward: 2e-5, gradient: 2e-4 }; // long accumulations (convs, norms)

function tfPad(p: Padding): "same" | "valid" | [[0, 0], [number, number], [number, number], [0, 0]] {
  return typeof p === "string" ? p : [[0, 0], p[0], p[1], [0, 0]];
}

function conv(id: string, x: number[], w: number[], stride: number, pad: Padding): ConformanceCase {
  return {
    id: `conv2d/${id}`,
    op: "conv2d",
    inputs: { x: { shape: x }, w: { shape: w } },
    run: (tf, v) => tf.conv2d(v.x as tfc.Tensor4D, v.w as tfc.Tensor4D, stride, tfPad(pad)),
    reference: (v) => R.conv2d(v.x!, v.w!, stride, pad),
    tolerance: TOL_ACC,
  };
}

function unary(id: string, tfFn: (tf: Tf, x: T) => T, ref: (v: number) => number, positive = false, tolerance = TOL): ConformanceCase {
  return {
    id: `elementwise/${id}`,
    op: "elementwise",
    inputs: { x: { shape: [3, 4, 5], positive } },
    run: (tf, v) => tfFn(tf, v.x!),
    reference: (v) => R.map(v.x!, ref),
    tolerance,
  };
}

const SQRT1_2 = Math.SQRT1_2;
const GELU_C = Math.sqrt(2 / Math.PI);

export const conformanceCases: ConformanceCase[] = [
  // Convolutions: 3x3 "same" (resnet blocks), stride-2 downsampling (diffusers'
  // Downsample2D pads 1 explicitly), 1x1 (projections, shortcuts), valid.
  conv("3x3-s1-same", [2, 7, 7, 3], [3, 3, 3, 4], 1, "same"),
  conv("3x3-s2-same", [2, 8, 8, 3], [3, 3, 3, 5], 2, "same"),
  conv("3x3-s2-valid", [1, 9, 9, 2], [3, 3, 2, 3], 2, "valid"),
  conv("3x3-s1-explicit", [1, 6, 6, 4], [3, 3, 4, 2], 1, [[1, 1], [1, 1]]),
  conv("3x3-s2-explicit", [2, 8, 8, 3], [3, 3, 3, 4], 2, [[1, 1], [1, 1]]),
  conv("3x3-s2-pad-0101", [1, 7, 7, 3], [3, 3, 3, 4], 2, [[0, 1], [0, 1]]), // Downsample2D with padding=0
  conv("3x3-s1-same-wide", [2, 8, 8, 16], [3, 3, 16, 16], 1, "same"), // enough channels for fast paths
  conv("1x1", [2, 5, 5, 6], [1, 1, 6, 4], 1, "valid"),
  {
    id: "conv2d/bias-add",
    op: "conv2d",
    inputs: { x: { shape: [1, 5, 5, 3] }, w: { shape: [3, 3, 3, 4] }, b: { shape: [4] } },
    run: (tf, v) => tf.add(tf.conv2d(v.x as tfc.Tensor4D, v.w as tfc.Tensor4D, 1, "same"), v.b!),
    reference: (v) => R.add(R.conv2d(v.x!, v.w!, 1, "same"), v.b!),
    tolerance: TOL_ACC,
  },

  // Matrix products: linear layers on tokens, attention scores and values.
  {
    id: "matMul/2d",
    op: "matMul",
    inputs: { a: { shape: [5, 7] }, b: { shape: [7, 3] } },
    run: (tf, v) => tf.matMul(v.a!, v.b!),
    reference: (v) => R.matMul(v.a!, v.b!),
    tolerance: TOL,
  },
  {
    id: "matMul/transposeA",
    op: "matMul",
    inputs: { a: { shape: [7, 5] }, b: { shape: [7, 3] } },
    run: (tf, v) => tf.matMul(v.a!, v.b!, true, false),
    reference: (v) => R.matMul(v.a!, v.b!, true, false),
    tolerance: TOL,
  },
  {
    id: "matMul/transposeB",
    op: "matMul",
    inputs: { a: { shape: [5, 7] }, b: { shape: [3, 7] } },
    run: (tf, v) => tf.matMul(v.a!, v.b!, false, true),
    reference: (v) => R.matMul(v.a!, v.b!, false, true),
    tolerance: TOL,
  },
  {
    id: "matMul/linear-tokens",
    op: "matMul",
    inputs: { x: { shape: [2, 5, 8] }, w: { shape: [8, 6] }, b: { shape: [6] } },
    run: (tf, v) => tf.add(tf.reshape(tf.matMul(tf.reshape(v.x!, [10, 8]), v.w!), [2, 5, 6]), v.b!),
    reference: (v) => R.add(R.matMul(v.x!, v.w!), v.b!),
    tolerance: TOL,
  },
  {
    id: "batchMatMul/3d",
    op: "batchMatMul",
    inputs: { a: { shape: [3, 5, 4] }, b: { shape: [3, 4, 6] } },
    run: (tf, v) => tf.matMul(v.a!, v.b!),
    reference: (v) => R.matMul(v.a!, v.b!),
    tolerance: TOL,
  },
  {
    id: "batchMatMul/attention-scores",
    op: "batchMatMul",
    inputs: { q: { shape: [4, 6, 8] }, k: { shape: [4, 5, 8] } },
    run: (tf, v) => tf.mul(tf.matMul(v.q!, v.k!, false, true), 1 / Math.sqrt(8)),
    reference: (v) => R.map(R.matMul(v.q!, v.k!, false, true), (s) => s / Math.sqrt(8)),
    tolerance: TOL,
  },
  {
    id: "batchMatMul/broadcast-4d",
    op: "batchMatMul",
    inputs: { a: { shape: [2, 3, 4, 5] }, b: { shape: [2, 3, 5, 2] } },
    run: (tf, v) => tf.matMul(v.a!, v.b!),
    reference: (v) => R.matMul(v.a!, v.b!),
    tolerance: TOL,
  },

  // Softmax over keys (attention probabilities).
  {
    id: "softmax/last-axis",
    op: "softmax",
    inputs: { x: { shape: [2, 3, 7], scale: 3 } },
    run: (tf, v) => tf.softmax(v.x!),
    reference: (v) => R.softmax(v.x!),
    tolerance: TOL,
  },
  {
    id: "softmax/attention",
    op: "softmax",
    inputs: { q: { shape: [2, 5, 4] }, k: { shape: [2, 6, 4] }, v: { shape: [2, 6, 3] } },
    run: (tf, x) => tf.matMul(tf.softmax(tf.mul(tf.matMul(x.q!, x.k!, false, true), 0.5)), x.v!),
    reference: (x) => R.matMul(R.softmax(R.map(R.matMul(x.q!, x.k!, false, true), (s) => s * 0.5)), x.v!),
    tolerance: TOL,
  },

  // Normalisation building blocks: tfjs has no layer/group-norm op; they are
  // composed from moments, as the models compose them.
  {
    id: "norm/moments",
    op: "norm",
    inputs: { x: { shape: [2, 5, 8] } },
    run: (tf, v) => {
      const { mean, variance } = tf.moments(v.x!, -1, true);
      return tf.concat([mean, variance], -1);
    },
    reference: (v) => {
      const mean = R.reduce(v.x!, [-1], "mean", true);
      const variance = R.reduce(R.map(R.sub(v.x!, mean), (d) => d * d), [-1], "mean", true);
      return R.concat([mean, variance], -1);
    },
    tolerance: TOL_ACC,
  },
  {
    id: "norm/layer-norm",
    op: "norm",
    inputs: { x: { shape: [2, 5, 8] }, gamma: { shape: [8] }, beta: { shape: [8] } },
    run: (tf, v) => {
      const { mean, variance } = tf.moments(v.x!, -1, true);
      return tf.add(tf.mul(tf.mul(tf.sub(v.x!, mean), tf.rsqrt(tf.add(variance, 1e-5))), v.gamma!), v.beta!);
    },
    reference: (v) => R.add(R.mul(R.normalize(v.x!, [-1], 1e-5), v.gamma!), v.beta!),
    tolerance: TOL_ACC,
  },
  {
    id: "norm/group-norm",
    op: "norm",
    inputs: { x: { shape: [2, 4, 4, 8] }, gamma: { shape: [8] }, beta: { shape: [8] } },
    // core's groupNorm: the backend's fused kernels (FUSED_GROUP_NORM and its gradient) when it has them.
    run: (_tf, v) => groupNorm(v.x as tfc.Tensor4D, v.gamma as tfc.Tensor1D, v.beta as tfc.Tensor1D, 4, 1e-6),
    reference: (v) => {
      const g = R.reshape(v.x!, [2, 4, 4, 4, 2]);
      return R.add(R.mul(R.reshape(R.normalize(g, [1, 2, 4], 1e-6), [2, 4, 4, 8]), v.gamma!), v.beta!);
    },
    tolerance: TOL_ACC,
  },

  // Activations. tfjs has no gelu/silu ops: they are composed as the models do.
  {
    id: "activation/gelu-erf",
    op: "activation",
    inputs: { x: { shape: [3, 4, 5], scale: 2 } },
    run: (tf, v) => tf.mul(tf.mul(v.x!, 0.5), tf.add(tf.erf(tf.mul(v.x!, SQRT1_2)), 1)),
    reference: (v) => R.map(v.x!, (x) => 0.5 * x * (1 + R.erf(x * SQRT1_2))),
    tolerance: TOL,
  },
  {
    id: "activation/gelu-tanh",
    op: "activation",
    inputs: { x: { shape: [3, 4, 5], scale: 2 } },
    run: (tf, v) => {
      const x = v.x!;
      const inner = tf.mul(tf.add(x, tf.mul(tf.pow(x, 3), 0.044715)), GELU_C);
      return tf.mul(tf.mul(x, 0.5), tf.add(tf.tanh(inner), 1));
    },
    reference: (v) => R.map(v.x!, (x) => 0.5 * x * (1 + Math.tanh(GELU_C * (x + 0.044715 * x ** 3)))),
    tolerance: TOL,
  },
  {
    id: "activation/quick-gelu",
    op: "activation",
    inputs: { x: { shape: [3, 4, 5], scale: 2 } },
    run: (tf, v) => tf.mul(v.x!, tf.sigmoid(tf.mul(v.x!, 1.702))),
    reference: (v) => R.map(v.x!, (x) => x * R.sigmoid(1.702 * x)),
    tolerance: TOL,
  },
  {
    id: "activation/silu",
    op: "activation",
    inputs: { x: { shape: [3, 4, 5], scale: 2 } },
    run: (tf, v) => tf.mul(v.x!, tf.sigmoid(v.x!)),
    reference: (v) => R.map(v.x!, (x) => x * R.sigmoid(x)),
    tolerance: TOL,
  },
  {
    id: "activation/geglu",
    op: "activation",
    inputs: { x: { shape: [2, 3, 8] } },
    run: (tf, v) => {
      const [h, gate] = tf.split(v.x!, 2, -1) as [T, T];
      return tf.mul(h, tf.mul(tf.mul(gate, 0.5), tf.add(tf.erf(tf.mul(gate, SQRT1_2)), 1)));
    },
    reference: (v) => {
      const h = R.slice(v.x!, [0, 0, 0], [2, 3, 4]);
      const gate = R.slice(v.x!, [0, 0, 4], [2, 3, 4]);
      return R.mul(h, R.map(gate, (x) => 0.5 * x * (1 + R.erf(x * SQRT1_2))));
    },
    tolerance: TOL,
  },

  // Upsampling (diffusers' Upsample2D: nearest, factor 2).
  {
    id: "upsample/nearest-2x",
    op: "upsample",
    inputs: { x: { shape: [2, 3, 4, 5] } },
    run: (tf, v) => tf.image.resizeNearestNeighbor(v.x as tfc.Tensor4D, [6, 8]),
    reference: (v) => R.resizeNearest(v.x!, 6, 8),
    tolerance: TOL,
  },

  // Shape ops.
  {
    id: "shape/concat-channels",
    op: "shape",
    inputs: { a: { shape: [2, 3, 3, 3] }, b: { shape: [2, 3, 3, 5] } },
    run: (tf, v) => tf.concat([v.a!, v.b!], -1),
    reference: (v) => R.concat([v.a!, v.b!], -1),
    tolerance: TOL,
  },
  {
    id: "shape/concat-tokens",
    op: "shape",
    inputs: { a: { shape: [2, 3, 4] }, b: { shape: [2, 5, 4] } },
    run: (tf, v) => tf.concat([v.a!, v.b!], 1),
    reference: (v) => R.concat([v.a!, v.b!], 1),
    tolerance: TOL,
  },
  {
    id: "shape/slice",
    op: "shape",
    inputs: { x: { shape: [2, 6, 5] } },
    run: (tf, v) => tf.slice(v.x!, [0, 1, 2], [2, 3, 3]),
    reference: (v) => R.slice(v.x!, [0, 1, 2], [2, 3, 3]),
    tolerance: TOL,
  },
  {
    id: "shape/split-heads",
    op: "shape",
    inputs: { x: { shape: [2, 5, 8] } },
    run: (tf, v) => tf.reshape(tf.transpose(tf.reshape(v.x!, [2, 5, 2, 4]), [0, 2, 1, 3]), [4, 5, 4]),
    reference: (v) => R.reshape(R.transpose(R.reshape(v.x!, [2, 5, 2, 4]), [0, 2, 1, 3]), [4, 5, 4]),
    tolerance: TOL,
  },
  {
    id: "shape/nhwc-to-tokens",
    op: "shape",
    inputs: { x: { shape: [2, 3, 4, 6] } },
    run: (tf, v) => tf.transpose(tf.reshape(v.x!, [2, 12, 6]), [0, 2, 1]),
    reference: (v) => R.transpose(R.reshape(v.x!, [2, 12, 6]), [0, 2, 1]),
    tolerance: TOL,
  },
  {
    id: "shape/pad",
    op: "shape",
    inputs: { x: { shape: [1, 3, 4, 2] } },
    run: (tf, v) => tf.pad(v.x!, [[0, 0], [0, 1], [1, 0], [0, 0]]),
    reference: (v) => {
      const x = v.x!;
      return R.make([1, 4, 5, 2], (i) => {
        const c = i % 2;
        const xx = Math.floor(i / 2) % 5;
        const y = Math.floor(i / 10) % 4;
        return y < 3 && xx >= 1 ? x.data[(y * 4 + (xx - 1)) * 2 + c]! : 0;
      });
    },
    tolerance: TOL,
  },

  // Embedding lookup; ids repeat so the gradient must accumulate (UnsortedSegmentSum).
  {
    id: "gather/embedding",
    op: "gather",
    inputs: { table: { shape: [6, 5] }, ids: { shape: [2, 7], dtype: "int32", intMax: 6 } },
    run: (tf, v) => tf.gather(v.table!, v.ids!),
    reference: (v) => R.gather(v.table!, v.ids!),
    tolerance: TOL,
  },

  // Elementwise and reductions used by losses, schedulers and blocks.
  {
    id: "elementwise/add-broadcast",
    op: "elementwise",
    inputs: { x: { shape: [2, 3, 3, 4] }, b: { shape: [4] } },
    run: (tf, v) => tf.add(v.x!, v.b!),
    reference: (v) => R.add(v.x!, v.b!),
    tolerance: TOL,
  },
  {
    id: "elementwise/mul-sub-div",
    op: "elementwise",
    inputs: { a: { shape: [2, 3, 4] }, b: { shape: [2, 1, 4] }, c: { shape: [3, 1], positive: true } },
    run: (tf, v) => tf.div(tf.sub(tf.mul(v.a!, v.b!), v.b!), v.c!),
    reference: (v) => R.div(R.sub(R.mul(v.a!, v.b!), v.b!), v.c!),
    tolerance: TOL,
  },
  unary("exp", (tf, x) => tf.exp(x), Math.exp),
  unary("log", (tf, x) => tf.log(x), Math.log, true),
  unary("sqrt", (tf, x) => tf.sqrt(x), Math.sqrt, true),
  unary("rsqrt", (tf, x) => tf.rsqrt(x), (v) => 1 / Math.sqrt(v), true),
  unary("square", (tf, x) => tf.square(x), (v) => v * v),
  unary("tanh", (tf, x) => tf.tanh(x), Math.tanh),
  unary("sigmoid", (tf, x) => tf.sigmoid(x), R.sigmoid),
  unary("neg-abs", (tf, x) => tf.neg(tf.abs(tf.add(x, 0.05))), (v) => -Math.abs(v + 0.05)),
  {
    id: "reduce/sum-mean",
    op: "reduce",
    inputs: { x: { shape: [2, 3, 4, 5] } },
    run: (tf, v) => tf.add(tf.sum(v.x!, [1, 2]), tf.mean(v.x!, [1, 2])),
    reference: (v) => R.add(R.reduce(v.x!, [1, 2], "sum"), R.reduce(v.x!, [1, 2], "mean")),
    tolerance: TOL,
  },
  {
    id: "loss/mse-per-sample",
    op: "loss",
    inputs: { pred: { shape: [3, 4, 4, 2] }, target: { shape: [3, 4, 4, 2] } },
    run: (tf, v) => tf.mean(tf.square(tf.sub(v.pred!, v.target!)), [1, 2, 3]),
    reference: (v) => R.reduce(R.map(R.sub(v.pred!, v.target!), (d) => d * d), [1, 2, 3], "mean"),
    tolerance: TOL,
  },

  // The optimizer step: the backend's fused AdamW kernel when it registers one (core's FUSED_ADAMW), else the
  // tfjs composition; the new parameter, first and second moments, flattened and concatenated.
  {
    id: "optim/adamw-update",
    op: "optim",
    inputs: {
      param: { shape: [3, 7], scale: 0.1 },
      grad: { shape: [3, 7], scale: 0.1 },
      m: { shape: [3, 7], scale: 0.01 },
      // The second moment is the square of this draw: small, so that the update is far above the tolerance.
      sqrtV: { shape: [3, 7], scale: 0.01 },
    },
    gradient: false,
    run: (tf, v) => {
      const next = adamwUpdate(v.param!, v.grad!, v.m!, tf.square(v.sqrtV!), ADAMW_STEP);
      return tf.concat([next.param, next.m, next.v].map((t) => tf.reshape(t, [-1])));
    },
    reference: (v) => {
      const { beta1, beta2, eps, decay, stepSize, sqrtBc2 } = ADAMW_STEP;
      const n = v.param!.data.length;
      return R.make([3 * n], (i) => {
        const j = i % n;
        const g = v.grad!.data[j]!;
        const m = beta1 * v.m!.data[j]! + (1 - beta1) * g;
        const s = beta2 * v.sqrtV!.data[j]! ** 2 + (1 - beta2) * g * g;
        if (i >= 2 * n) return s;
        if (i >= n) return m;
        return decay * v.param!.data[j]! - (stepSize * m) / (Math.sqrt(s) / sqrtBc2 + eps);
      });
    },
    tolerance: TOL,
  },

  // The weight average's step (diffusers' EMAModel at decay 0.99): the backend's FUSED_EMA kernel, else tfjs ops.
  {
    id: "optim/ema-update",
    op: "optim",
    inputs: { average: { shape: [4, 9] }, weights: { shape: [4, 9] } },
    gradient: false,
    run: (_tf, v) => emaUpdate(v.average!, v.weights!, 0.01),
    reference: (v) => R.sub(v.average!, R.mul(R.sub(v.average!, v.weights!), R.scalar(0.01))),
    tolerance: TOL,
  },

  // Sinusoidal timestep embedding (forward only: timesteps are not trained).
  {
    id: "embedding/timestep-sinusoidal",
    op: "embedding",
    inputs: { t: { shape: [3], positive: true, scale: 100, constant: true } },
    gradient: false,
    run: (tf, v) => {
      const half = 4;
      const freqs = tf.exp(tf.mul(tf.range(0, half, 1, "float32"), -Math.log(10000) / half));
      const args = tf.mul(tf.expandDims(v.t!, 1), tf.expandDims(freqs, 0));
      return tf.concat([tf.sin(args), tf.cos(args)], -1);
    },
    reference: (v) => {
      const t = v.t!;
      return R.make([3, 8], (i) => {
        const row = Math.floor(i / 8);
        const j = i % 8;
        const f = Math.exp((-Math.log(10000) * (j % 4)) / 4);
        const a = t.data[row]! * Math.fround(f);
        return j < 4 ? Math.sin(a) : Math.cos(a);
      });
    },
    // Arguments reach ~300 rad: float32 rounding of the argument dominates.
    tolerance: { forward: 2e-4, gradient: 0 },
  },
];
