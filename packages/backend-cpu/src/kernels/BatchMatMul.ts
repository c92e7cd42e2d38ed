/**
 * BatchMatMul on the wasm backend, replacing the stock kernel for everything
 * but its fast case.
 *
 * tfjs-backend-wasm runs a matmul through XNNPACK only when both operands are
 * single matrices and neither is transposed; anything else (every batched
 * attention product, and the matmuls in every matMul gradient, which transpose
 * one operand) goes to a scalar C++ loop, measured 5-10x slower. Here the
 * transposed operand is materialised once with the stock Transpose kernel and
 * each batch entry runs through the XNNPACK path on heap views of the
 * operands (no copies), writing straight into its slice of the output.
 */
import { BatchMatMul, broadcast_util, util } from "@tensorflow/tfjs-core";
import type { BatchMatMulAttrs, KernelConfig, KernelFunc, TensorInfo } from "@tensorflow/tfjs-core";
import { asWasm, heapView, release, releaseView, reshaped, runKernel, tensorId, zeros, type WasmBackend } from "../wasm.js";

type MatMulFn = (
  aId: number,
  aShape: Uint8Array,
  aRank: number,
  bId: number,
  bShape: Uint8Array,
  bRank: number,
  transposeA: boolean,
  transposeB: boolean,
  outId: number,
) => void;

// The C++ entry point of the stock kernel, per backend instance (a backend can be re-created).
const matMulFns = new WeakMap<WasmBackend, MatMulFn>();

function wasmMatMul(backend: WasmBackend): MatMulFn {
  let fn = matMulFns.get(backend);
  if (!fn) {
    fn = backend.wasm.cwrap("BatchMatMul", null, [
      "number",
      "array",
      "number",
      "number",
      "array",
      "number",
      "number",
      "number",
      "number",
    ]) as MatMulFn;
    matMulFns.set(backend, fn);
  }
  return fn;
}

/** Below this many multiply-adds per matrix, the per-matrix XNNPACK setup costs more than the scalar loop. */
const MIN_MACS_PER_MATRIX = 8192; // measured: 256 x 16³ is faster stock, 256 x 24³ 2.5x faster here

function shapeBytes(shape: number[]): Uint8Array {
  return new Uint8Array(new Int32Array(shape).buffer);
}

/** Flat batch index of an operand for each flat output batch index (numpy broadcasting of the outer dims). */
function batchIndex(outOuter: number[], opOuter: number[]): Int32Array {
  const total = util.sizeFromShape(outOuter);
  const map = new Int32Array(total);
  const offset = outOuter.length - opOuter.length;
  const opStrides = opOuter.map((_, d) => util.sizeFromShape(opOuter.slice(d + 1)));
  for (let i = 0; i < total; i++) {
    let rest = i;
    let idx = 0;
    for (let d = outOuter.length - 1; d >= 0; d--) {
      const size = outOuter[d]!;
      const coord = rest % size;
      rest = (rest - coord) / size;
      const od = d - offset;
      if (od >= 0 && opOuter[od] !== 1) idx += coord * opStrides[od]!;
    }
    map[i] = idx;
  }
  return map;
}

function batchMatMul(args: { inputs: { a: TensorInfo; b: TensorInfo }; backend: unknown; attrs: BatchMatMulAttrs }): TensorInfo {
  const backend = asWasm(args.backend);
  const { a, b } = args.inputs;
  const { transposeA, transposeB } = args.attrs;
  if (a.dtype !== "float32" || b.dtype !== "float32") {
    throw new Error("BatchMatMul for non non-float32 tensors not yet supported.");
  }
  const aRank = a.shape.length;
  const bRank = b.shape.length;
  const m = transposeA ? a.shape[aRank - 1]! : a.shape[aRank - 2]!;
  const k = transposeA ? a.shape[aRank - 2]! : a.shape[aRank - 1]!;
  const kb = transposeB ? b.shape[bRank - 1]! : b.shape[bRank - 2]!;
  const n = transposeB ? b.shape[bRank - 2]! : b.shape[bRank - 1]!;
  util.assert(
    k === kb,
    () =>
      `Error in matMul: inner shapes (${k}) and (${kb}) of Tensors with shapes ${a.shape} and ${b.shape} ` +
      `and transposeA=${transposeA} and transposeB=${transposeB} must match.`,
  );
  const aOuter = a.shape.slice(0, -2);
  const bOuter = b.shape.slice(0, -2);
  const outOuter = broadcast_util.assertAndGetBroadcastShape(aOuter, bOuter);
  const outShape = [...outOuter, m, n];
  const batchA = util.sizeFromShape(aOuter);
  const batchB = util.sizeFromShape(bOuter);
  const batch = util.sizeFromShape(outOuter);

  if (batch === 0 || m === 0 || n === 0) return backend.makeOutput(outShape, "float32");
  if (k === 0) return zeros(backend, outShape);

  const a3 = reshaped(a, transposeA ? [batchA, k, m] : [batchA, m, k]);
  const b3 = reshaped(b, transposeB ? [batchB, n, k] : [batchB, k, n]);
  const single = batchA === 1 && batchB === 1 && !transposeA && !transposeB;
  if (!single && m * n * k < MIN_MACS_PER_MATRIX) {
    // Tiny matrices: the stock scalar loop is cheaper. It indexes b by a's batch, so broadcast explicitly first.
    return stockBatched(backend, a3, b3, outShape, outOuter, aOuter, bOuter, transposeA, transposeB);
  }

  // Operands as XNNPACK wants them: A_i [m, k], B_i [k, n], row-major.
  const at = transposeA ? runKernel(backend, "Transpose", { x: a3 }, { perm: [0, 2, 1] }) : a3;
  const bt = transposeB ? runKernel(backend, "Transpose", { x: b3 }, { perm: [0, 2, 1] }) : b3;
  const out = backend.makeOutput(outShape, "float32");
  try {
    const matmul = wasmMatMul(backend);
    const aShape = shapeBytes([1, m, k]);
    const bShape = shapeBytes([1, k, n]);
    if (batch === 1) {
      matmul(tensorId(backend, at), aShape, 3, tensorId(backend, bt), bShape, 3, false, false, tensorId(backend, out));
      return out;
    }
    const aIdx = batchIndex(outOuter, aOuter);
    const bIdx = batchIndex(outOuter, bOuter);
    for (let i = 0; i < batch; i++) {
      const av = heapView(backend, at, aIdx[i]! * m * k, [1, m, k]);
      const bv = heapView(backend, bt, bIdx[i]! * k * n, [1, k, n]);
      const ov = heapView(backend, out, i * m * n, [1, m, n]);
      matmul(tensorId(backend, av), aShape, 3, tensorId(backend, bv), bShape, 3, false, false, tensorId(backend, ov));
      releaseView(backend, av);
      releaseView(backend, bv);
      releaseView(backend, ov);
    }
    return out;
  } finally {
    release(backend, at === a3 ? undefined : at, bt === b3 ? undefined : bt);
  }
}

/** The stock scalar path, with both operands broadcast to the full batch first. */
function stockBatched(
  backend: WasmBackend,
  a3: TensorInfo,
  b3: TensorInfo,
  outShape: number[],
  outOuter: number[],
  aOuter: number[],
  bOuter: number[],
  transposeA: boolean,
  transposeB: boolean,
): TensorInfo {
  const batch = util.sizeFromShape(outOuter);
  const full = (t: TensorInfo, outer: number[]): TensorInfo | undefined => {
    if (util.arraysEqual(outer, outOuter)) return undefined;
    const idx = batchIndex(outOuter, outer);
    const [, r, c] = t.shape as [number, number, number];
    const res = backend.makeOutput([batch, r, c], "float32");
    const src = backend.typedArrayFromHeap(t) as Float32Array;
    const dst = backend.typedArrayFromHeap(res) as Float32Array;
    for (let i = 0; i < batch; i++) dst.set(src.subarray(idx[i]! * r * c, (idx[i]! + 1) * r * c), i * r * c);
    return res;
  };
  const af = full(a3, aOuter);
  const bf = full(b3, bOuter);
  try {
    const out = wasmOut(backend, af ?? a3, bf ?? b3, transposeA, transposeB);
    return { ...out, shape: outShape };
  } finally {
    release(backend, af, bf);
  }
}

function wasmOut(backend: WasmBackend, a3: TensorInfo, b3: TensorInfo, transposeA: boolean, transposeB: boolean): TensorInfo {
  const m = transposeA ? a3.shape[2]! : a3.shape[1]!;
  const n = transposeB ? b3.shape[1]! : b3.shape[2]!;
  const out = backend.makeOutput([a3.shape[0]!, m, n], "float32");
  wasmMatMul(backend)(
    tensorId(backend, a3),
    shapeBytes(a3.shape),
    3,
    tensorId(backend, b3),
    shapeBytes(b3.shape),
    3,
    transposeA,
    transposeB,
    tensorId(backend, out),
  );
  return out;
}

export const batchMatMulConfig: KernelConfig = {
  kernelName: BatchMatMul,
  backendName: "wasm",
  kernelFunc: batchMatMul as unknown as KernelFunc,
};
