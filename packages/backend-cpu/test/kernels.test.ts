/**
 * The custom kernels against tfjs's pure-JS cpu backend (the reference), on
 * seeded random inputs: each case runs once on "cpu" and once on "wasm" (our
 * kernels), and must agree to a stated relative error
 *   max|wasm − cpu| / max|cpu|
 * while leaving tf.memory().numTensors and the wasm backend's data ids
 * unchanged (no leaked intermediates).
 */
import { describe, it, expect, beforeAll } from "vitest";
import * as tf from "@tensorflow/tfjs-core";
import "@tensorflow/tfjs-backend-cpu";
import { AptError, FUSED_ADAMW, FUSED_GROUP_NORM, FUSED_GROUP_NORM_GRAD, Rng, adamwUpdate, groupNorm } from "@apt/core";
import { backend, cpuBackend, customKernels } from "../src/index.js";
import { planEinsum } from "../src/kernels/Einsum.js";

/** Float32 convolutions accumulate ~KH·KW·C products in a different order than the reference. */
const CONV_TOL = 1e-4;
const TOL = 1e-5;

interface Input {
  shape: number[];
  dtype?: "float32" | "int32";
  /** Explicit values (ids); otherwise standard normal draws. */
  values?: number[];
}

let seed = 1;
function draw(input: Input): Float32Array | Int32Array {
  if (input.values) return input.dtype === "int32" ? Int32Array.from(input.values) : Float32Array.from(input.values);
  const rng = new Rng(seed++);
  const n = input.shape.reduce((a, b) => a * b, 1);
  return input.dtype === "int32" ? Int32Array.from({ length: n }, () => rng.int(5)) : Float32Array.from({ length: n }, () => rng.normal());
}

interface Run {
  shape: number[];
  values: Float32Array | Int32Array;
}

/** Runs `fn` on fresh tensors on one backend; checks it leaks nothing there. */
async function runOn(name: string, inputs: Input[], data: (Float32Array | Int32Array)[], fn: (xs: tf.Tensor[]) => tf.Tensor | tf.Tensor[]): Promise<Run[]> {
  await tf.setBackend(name);
  const tensorsBefore = tf.memory().numTensors;
  const idsBefore = tf.backend().numDataIds();
  const xs = inputs.map((inp, i) => tf.tensor(data[i]!, inp.shape, inp.dtype ?? "float32"));
  // tidy: reference compositions make intermediates; kernels' own intermediates show in numDataIds.
  const out = tf.tidy(() => fn(xs));
  const outs = Array.isArray(out) ? out : [out];
  const runs = await Promise.all(outs.map(async (t) => ({ shape: t.shape, values: (await t.data()) as Float32Array | Int32Array })));
  tf.dispose([...xs, ...outs]);
  expect(tf.memory().numTensors, `tensors leaked on ${name}`).toBe(tensorsBefore);
  expect(tf.backend().numDataIds(), `data ids leaked on ${name}`).toBe(idsBefore);
  return runs;
}

function relError(got: Run, ref: Run): number {
  expect(got.shape).toEqual(ref.shape);
  let maxDiff = 0;
  let maxRef = 0;
  for (let i = 0; i < ref.values.length; i++) {
    maxDiff = Math.max(maxDiff, Math.abs(got.values[i]! - ref.values[i]!));
    maxRef = Math.max(maxRef, Math.abs(ref.values[i]!));
  }
  return maxRef === 0 ? maxDiff : maxDiff / maxRef;
}

/**
 * Runs on cpu (or `reference`, also on cpu) and on wasm; returns the worst
 * relative error over the outputs.
 */
async function compare(
  inputs: Input[],
  fn: (xs: tf.Tensor[]) => tf.Tensor | tf.Tensor[],
  reference: (xs: tf.Tensor[]) => tf.Tensor | tf.Tensor[] = fn,
): Promise<number> {
  const data = inputs.map(draw);
  const ref = await runOn("cpu", inputs, data, reference);
  const got = await runOn("wasm", inputs, data, fn);
  await tf.setBackend("wasm");
  return Math.max(...got.map((g, i) => relError(g, ref[i]!)));
}

type Pad = "same" | "valid" | number | [[number, number], [number, number], [number, number], [number, number]];
const explicit = (t: number, b: number, l: number, r: number): Pad => [[0, 0], [t, b], [l, r], [0, 0]];

// [x shape, filter shape, strides, pad]
const convCases: [number[], number[], number | [number, number], Pad][] = [
  [[2, 8, 8, 16], [3, 3, 16, 8], 1, "same"],
  [[2, 9, 11, 5], [3, 3, 5, 7], 1, "valid"],
  [[2, 9, 11, 5], [3, 3, 5, 7], 2, "same"],
  [[2, 9, 11, 5], [3, 2, 5, 7], 2, "valid"],
  [[3, 10, 10, 4], [3, 3, 4, 6], 2, explicit(1, 2, 0, 1)],
  [[1, 7, 9, 3], [3, 3, 3, 5], 1, 1],
  [[1, 6, 6, 2], [3, 3, 2, 2], 1, explicit(3, 4, 0, 5)],
  [[2, 7, 7, 3], [1, 1, 3, 4], 2, "valid"],
  [[1, 10, 12, 2], [5, 5, 2, 3], 3, "same"],
  [[2, 9, 8, 4], [3, 3, 4, 4], [1, 2], "same"],
  [[4, 16, 16, 8], [4, 4, 8, 8], 2, "same"],
  // Channels >= 64 x batch with horizontal stride 1: Conv2DBackpropFilter's width-folded layout.
  [[1, 7, 9, 64], [3, 3, 64, 8], 1, "same"],
  [[1, 9, 10, 64], [3, 2, 64, 4], [2, 1], "valid"],
  [[2, 6, 7, 128], [3, 3, 128, 4], 1, explicit(3, 0, 2, 4)],
  [[1, 5, 12, 96], [2, 5, 96, 3], [1, 1], explicit(0, 1, 0, 0)],
];
/** Output shape of a conv (what dy must be shaped). */
function convShape(xs: number[], ws: number[], strides: number | [number, number], pad: Pad, depthwise = false): number[] {
  const x4 = xs as [number, number, number, number];
  const w4 = ws as [number, number, number, number];
  return tf.backend_util.computeConv2DInfo(x4, w4, strides, 1, pad, undefined, depthwise).outShape;
}
const label = (c: unknown[]) => JSON.stringify(c).replace(/"/g, "");

beforeAll(async () => {
  await backend.init();
}, 120_000);

describe("backend", () => {
  it("init is idempotent, re-activates wasm, and info describes the backend", async () => {
    await backend.init();
    await tf.setBackend("cpu");
    await backend.init();
    expect(tf.getBackend()).toBe("wasm");
    expect(cpuBackend).toBe(backend);
    const info = backend.info();
    expect(info.name).toBe("cpu");
    expect(info.tfjsBackend).toBe("wasm");
    expect(info.software).toBe(false);
    expect(info.details.simd).toBe(true);
    expect(info.details.threads).toBe(1);
    expect(info.device).toBe("WASM SIMD, 1 thread");
    expect(info.details.tfjsCore).toBe(tf.version_core);
    expect([...info.customKernels].sort()).toEqual(customKernels.map((k) => k.config.kernelName).sort());
    for (const name of info.customKernels) {
      const ours = customKernels.find((k) => k.config.kernelName === name)!;
      expect(tf.getKernel(name, "wasm")?.kernelFunc).toBe(ours.config.kernelFunc);
    }
  });

  it("probe and isAvailable report WebAssembly SIMD", async () => {
    expect(await backend.probe()).toEqual({ available: true, reason: "WebAssembly SIMD" });
    expect(await backend.isAvailable()).toBe(true);
  });

  it("rejects bad options, and options that would change the loaded WASM build", async () => {
    await expect(backend.init({ threads: 0 })).rejects.toSatisfy((e) => AptError.isInstance(e) && e.code === "BAD_INPUT");
    await expect(backend.init({ simd: "yes" })).rejects.toThrow(/simd must be/);
    await expect(backend.init({ simd: false })).rejects.toThrow(/cannot change/);
    await backend.init({ simd: true });
  });
});

describe("Conv2DBackpropInput", () => {
  for (const [xs, ws, strides, pad] of convCases) {
    it(`matches cpu: x ${label(xs)} W ${label(ws)} strides ${label([strides])} pad ${label([pad])}`, async () => {
      const dyShape = convShape(xs, ws, strides, pad);
      const err = await compare([{ shape: dyShape }, { shape: ws }], ([dy, w]) =>
        tf.engine().runKernel("Conv2DBackpropInput", { dy: dy!, filter: w! }, { strides, pad, dataFormat: "NHWC", inputShape: xs }) as tf.Tensor,
      );
      expect(err).toBeLessThan(CONV_TOL);
    });
  }

  it("serves conv2dTranspose (stride 2, same)", async () => {
    const err = await compare([{ shape: [2, 5, 5, 8] }, { shape: [3, 3, 4, 8] }], ([x, w]) =>
      tf.conv2dTranspose(x as tf.Tensor4D, w as tf.Tensor4D, [2, 10, 10, 4], 2, "same"),
    );
    expect(err).toBeLessThan(CONV_TOL);
  });

  it("rejects NCHW", () => {
    tf.tidy(() => {
      expect(() =>
        tf.engine().runKernel("Conv2DBackpropInput", { dy: tf.zeros([1, 2, 4, 4]), filter: tf.zeros([3, 3, 2, 2]) }, {
          strides: 1,
          pad: "same",
          dataFormat: "NCHW",
          inputShape: [1, 2, 4, 4],
        }),
      ).toThrow(/NHWC/);
    });
  });
});

describe("Conv2DBackpropFilter", () => {
  for (const [xs, ws, strides, pad] of convCases) {
    it(`matches cpu: x ${label(xs)} W ${label(ws)} strides ${label([strides])} pad ${label([pad])}`, async () => {
      const dyShape = convShape(xs, ws, strides, pad);
      const err = await compare([{ shape: xs }, { shape: dyShape }], ([x, dy]) =>
        tf.engine().runKernel("Conv2DBackpropFilter", { x: x!, dy: dy! }, { strides, pad, dataFormat: "NHWC", filterShape: ws }) as tf.Tensor,
      );
      expect(err).toBeLessThan(CONV_TOL);
    });
  }

  it("rejects NCHW", () => {
    tf.tidy(() => {
      expect(() =>
        tf.engine().runKernel("Conv2DBackpropFilter", { x: tf.zeros([1, 2, 4, 4]), dy: tf.zeros([1, 2, 4, 4]) }, {
          strides: 1,
          pad: "same",
          dataFormat: "NCHW",
          filterShape: [3, 3, 2, 2],
        }),
      ).toThrow(/NHWC/);
    });
  });

  it("gives tf.grads of conv2d (both inputs) as on cpu", async () => {
    for (const [xs, ws, strides, pad] of [convCases[0]!, convCases[2]!, convCases[4]!]) {
      const err = await compare([{ shape: xs }, { shape: ws }], ([x, w]) =>
        tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.square(tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, strides, pad))))([x!, w!]),
      );
      expect(err).toBeLessThan(CONV_TOL);
    }
  });
});

describe("DepthwiseConv2dNative backprop", () => {
  const cases: [number[], number[], number, Pad][] = [
    [[2, 9, 11, 5], [3, 3, 5, 1], 1, "same"],
    [[2, 9, 11, 4], [3, 3, 4, 3], 2, "valid"],
    [[1, 8, 8, 3], [5, 5, 3, 2], 2, "same"],
    [[2, 7, 6, 2], [3, 3, 2, 1], 1, explicit(2, 0, 1, 1)],
  ];
  for (const [xs, ws, s, pad] of cases) {
    it(`input and filter match cpu: x ${label(xs)} W ${label(ws)} stride ${s} pad ${label([pad])}`, async () => {
      const dyShape = convShape(xs, ws, s, pad, true);
      const attrs = { strides: [s, s], dilations: [1, 1], pad };
      const errIn = await compare([{ shape: dyShape }, { shape: ws }], ([dy, w]) =>
        tf.engine().runKernel("DepthwiseConv2dNativeBackpropInput", { dy: dy!, filter: w! }, { ...attrs, inputShape: xs }) as tf.Tensor,
      );
      const errFilter = await compare([{ shape: xs }, { shape: dyShape }], ([x, dy]) =>
        tf.engine().runKernel("DepthwiseConv2dNativeBackpropFilter", { x: x!, dy: dy! }, { ...attrs, filterShape: ws }) as tf.Tensor,
      );
      expect(errIn).toBeLessThan(TOL);
      expect(errFilter).toBeLessThan(TOL);
    });
  }

  it("gives tf.grads of depthwiseConv2d as on cpu", async () => {
    const err = await compare([{ shape: [2, 8, 8, 3] }, { shape: [3, 3, 3, 2] }], ([x, w]) =>
      tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.square(tf.depthwiseConv2d(a as tf.Tensor4D, b as tf.Tensor4D, 1, "same"))))([x!, w!]),
    );
    expect(err).toBeLessThan(CONV_TOL);
  });
});

describe("UnsortedSegmentSum", () => {
  it("matches cpu for float32 and int32, dropping out-of-range ids", async () => {
    const ids = { shape: [6], dtype: "int32" as const, values: [0, 2, 2, -1, 1, 7] };
    const f = await compare([{ shape: [6, 3, 4] }, ids], ([x, s]) => tf.unsortedSegmentSum(x!, s as tf.Tensor1D, 4));
    const i = await compare([{ shape: [6, 5], dtype: "int32" }, ids], ([x, s]) => tf.unsortedSegmentSum(x!, s as tf.Tensor1D, 3));
    expect(f).toBeLessThan(TOL);
    expect(i).toBe(0);
  });

  it("takes segment ids of rank 2 (a prefix of x's shape)", async () => {
    const ids = { shape: [2, 3], dtype: "int32" as const, values: [0, 1, 0, 2, 2, 1] };
    const err = await compare(
      [{ shape: [2, 3, 4] }, ids],
      ([x, s]) => tf.engine().runKernel("UnsortedSegmentSum", { x: x!, segmentIds: s! }, { numSegments: 3 }) as tf.Tensor,
      // tfjs's cpu kernel takes rank-1 ids only: flatten the prefix there.
      ([x, s]) => tf.unsortedSegmentSum(tf.reshape(x!, [6, 4]), tf.reshape(s!, [6]) as tf.Tensor1D, 3),
    );
    expect(err).toBeLessThan(TOL);
  });

  it("gives the gradient of gather (embedding rows) as on cpu", async () => {
    const ids = { shape: [2, 5], dtype: "int32" as const, values: [3, 1, 3, 0, 9, 9, 9, 2, 0, 1] };
    const err = await compare([{ shape: [10, 6] }, ids, { shape: [2, 5, 6] }], ([table, s, dy]) =>
      tf.grad((t: tf.Tensor) => tf.sum(tf.mul(tf.gather(t, s!), dy!)))(table!),
    );
    expect(err).toBeLessThan(TOL);
  });

  it("is O(n): 50k ids into 100k segments of 64 floats", async () => {
    const n = 50_000;
    const rows = 100_000;
    const width = 64;
    const rng = new Rng(7);
    const idValues = Int32Array.from({ length: n }, () => rng.int(rows));
    const before = tf.memory().numTensors;
    const x = tf.ones([n, width]);
    const s = tf.tensor1d(idValues, "int32");
    const t0 = performance.now();
    const out = tf.unsortedSegmentSum(x, s, rows);
    const values = await out.data();
    const ms = performance.now() - t0;
    const expected = new Float64Array(rows);
    for (const id of idValues) expected[id]! += 1;
    for (let r = 0; r < rows; r += 997) expect(values[r * width + 5]).toBe(expected[r]);
    tf.dispose([x, s, out]);
    expect(tf.memory().numTensors).toBe(before);
    // O(n·segments) would be 5·10^9 row comparisons; O(n) is a few ms.
    expect(ms).toBeLessThan(2000);
  });
});

describe("Einsum", () => {
  // [equation, shapes, reference with tf ops on cpu (default: tf.einsum itself, for what tfjs's cpu backend accepts)]
  const cases: [string, number[][], ((xs: tf.Tensor[]) => tf.Tensor)?][] = [
    ["ij,jk->ik", [[3, 4], [4, 5]]],
    ["bij,bjk->bik", [[2, 3, 4], [2, 4, 5]]],
    ["bhqd,bhkd->bhqk", [[2, 3, 4, 5], [2, 3, 6, 5]]],
    ["ij->ji", [[3, 4]]],
    ["ijk->kji", [[2, 3, 4]]],
    ["i,j->ij", [[3], [4]]],
    ["ij->", [[3, 4]]],
    ["ij->j", [[3, 4]]],
    ["ij,ij->i", [[3, 4], [3, 4]]],
    ["i,i->", [[7], [7]]],
    ["ij,jk", [[3, 4], [4, 5]], ([a, b]) => tf.matMul(a!, b!)],
    ["ba", [[3, 4]], ([a]) => tf.transpose(a!)],
    ["ii->i", [[4, 4]], ([a]) => tf.sum(tf.mul(a!, tf.eye(4)), 1)],
    ["ii", [[4, 4]], ([a]) => tf.sum(tf.mul(a!, tf.eye(4)))],
    ["...ij,...jk->...ik", [[2, 3, 4, 5], [3, 5, 2]], ([a, b]) => tf.matMul(a!, tf.broadcastTo(b!, [2, 3, 5, 2]))],
    ["ij,jk,kl->il", [[2, 3], [3, 4], [4, 5]], ([a, b, c]) => tf.matMul(tf.matMul(a!, b!), c!)],
  ];
  for (const [eq, shapes, ref] of cases) {
    it(`${eq} on ${label(shapes)} matches cpu`, async () => {
      const err = await compare(shapes.map((shape) => ({ shape })), (xs) => tf.einsum(eq, ...xs), ref);
      expect(err).toBeLessThan(TOL);
    });
  }

  it("rejects malformed equations and mismatched sizes", () => {
    expect(() => planEinsum("ij,jk->ik", [[3, 4], [5, 6]])).toThrow(/size 4 and 5/);
    expect(() => planEinsum("ij->ik", [[3, 4]])).toThrow(/not in the inputs/);
    expect(() => planEinsum("ij,jk->ik", [[3, 4]])).toThrow(/expects 2 operands/);
    expect(() => planEinsum("ij->ii", [[3, 3]])).toThrow(/more than once/);
    expect(() => planEinsum("i1->i", [[3, 3]])).toThrow(/invalid subscripts/);
    expect(() => planEinsum("ijk->i", [[3, 3]])).toThrow(/rank 2/);
  });
});

describe("BatchMatMul", () => {
  // [a shape, b shape, transposeA, transposeB]; references broadcast explicitly (the cpu kernel does not for mixed batches).
  const cases: [number[], number[], boolean, boolean][] = [
    [[33, 47], [47, 21], false, false],
    [[47, 33], [47, 21], true, false],
    [[33, 47], [21, 47], false, true],
    [[47, 33], [21, 47], true, true],
    [[4, 40, 50], [4, 50, 20], false, false],
    [[4, 40, 50], [4, 20, 50], false, true],
    [[4, 50, 40], [4, 50, 20], true, false],
    [[2, 3, 16, 24], [2, 3, 16, 24], false, true],
    [[2, 1, 40, 50], [3, 20, 50], false, true],
    [[5, 40, 50], [50, 20], false, false],
    [[64, 3, 4], [64, 4, 2], false, false],
  ];
  for (const [as, bs, ta, tb] of cases) {
    it(`a ${label(as)} b ${label(bs)} transposeA ${ta} transposeB ${tb} matches cpu`, async () => {
      const outer = tf.broadcast_util.assertAndGetBroadcastShape(as.slice(0, -2), bs.slice(0, -2));
      const full = (t: tf.Tensor) => tf.broadcastTo(t, [...outer, ...t.shape.slice(-2)]);
      const err = await compare(
        [{ shape: as }, { shape: bs }],
        ([a, b]) => tf.matMul(a!, b!, ta, tb),
        ([a, b]) => tf.matMul(full(a!), full(b!), ta, tb),
      );
      expect(err).toBeLessThan(TOL);
    });
  }

  it("gives tf.grads of a batched attention product as on cpu", async () => {
    const err = await compare([{ shape: [2, 16, 8] }, { shape: [2, 16, 8] }], ([q, k]) =>
      tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.square(tf.softmax(tf.matMul(a, b, false, true)))))([q!, k!]),
    );
    expect(err).toBeLessThan(TOL);
  });
});

describe("SplitV", () => {
  // [x shape, sizes or count, axis]
  const cases: [number[], number | number[], number][] = [
    [[4, 6, 6, 10], [3, 7], 3],
    [[4, 6, 6, 10], [3, -1], -1],
    [[2, 5, 3, 4, 6], [1, 2, 2], 1],
    [[6, 5], 3, 0],
    [[3, 4, 8], [0, 8], 2],
  ];
  for (const [xs, split, axis] of cases) {
    it(`matches cpu: x ${label(xs)} split ${JSON.stringify(split)} axis ${axis}`, async () => {
      const err = await compare([{ shape: xs }], ([x]) => tf.split(x!, split, axis));
      expect(err).toBe(0);
    });
  }

  it("splits int32 exactly", async () => {
    const err = await compare([{ shape: [3, 4, 5], dtype: "int32" }], ([x]) => tf.split(x!, [2, 3], 2));
    expect(err).toBe(0);
  });

  it("gives the gradient of concat (a UNet skip connection) as on cpu", async () => {
    const err = await compare([{ shape: [2, 4, 4, 3] }, { shape: [2, 4, 4, 5] }, { shape: [2, 4, 4, 8] }], ([a, b, dy]) =>
      tf.grads((p: tf.Tensor, q: tf.Tensor) => tf.sum(tf.mul(tf.concat([p, q], 3), dy!)))([a!, b!]),
    );
    expect(err).toBe(0);
  });
});

describe("FusedAdamW (@apt/core's FUSED_ADAMW)", () => {
  it("three chained AdamW updates match tfjs ops on cpu, with and without weight decay", async () => {
    for (const weightDecay of [0, 0.1]) {
      const err = await compare([{ shape: [5, 3, 4] }, { shape: [5, 3, 4] }], ([p0, g]) => {
        let p = p0!;
        let m = tf.zerosLike(p);
        let v = tf.zerosLike(p);
        for (let step = 1; step <= 3; step++) {
          const attrs = { beta1: 0.9, beta2: 0.999, eps: 1e-8, decay: 1 - 1e-2 * weightDecay, stepSize: 1e-2 / (1 - 0.9 ** step), sqrtBc2: Math.sqrt(1 - 0.999 ** step) };
          ({ param: p, m, v } = adamwUpdate(p, tf.mul(g!, step), m, v, attrs));
        }
        return [p, m, v];
      });
      expect(err).toBeLessThan(TOL);
    }
  });

  it("is registered, so AdamW on this backend runs one kernel per parameter", () => {
    expect(tf.getKernel(FUSED_ADAMW, "wasm")).toBeDefined();
  });
});

describe("GroupNorm (@apt/core's FUSED_GROUP_NORM and its gradient)", () => {
  const cases: [number[], number][] = [
    [[2, 8, 8, 32], 8],
    [[3, 5, 7, 12], 4],
    [[1, 4, 4, 6], 1],
  ];
  for (const [xs, groups] of cases) {
    it(`y and the gradients of x, gamma, beta match tfjs's moments on cpu: x ${label(xs)} groups ${groups}`, async () => {
      const c = xs[3]!;
      const err = await compare([{ shape: xs }, { shape: [c] }, { shape: [c] }, { shape: xs }], ([x, gamma, beta, dy]) => {
        const f = (a: tf.Tensor, g: tf.Tensor, b: tf.Tensor) => groupNorm(a as tf.Tensor4D, g as tf.Tensor1D, b as tf.Tensor1D, groups, 1e-5);
        return [f(x!, gamma!, beta!), ...tf.grads((a: tf.Tensor, g: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(f(a, g, b), dy!)))([x!, gamma!, beta!])];
      });
      expect(err).toBeLessThan(CONV_TOL);
    });
  }

  it("is registered both ways", () => {
    expect(tf.getKernel(FUSED_GROUP_NORM, "wasm")).toBeDefined();
    expect(tf.getKernel(FUSED_GROUP_NORM_GRAD, "wasm")).toBeDefined();
  });
});
