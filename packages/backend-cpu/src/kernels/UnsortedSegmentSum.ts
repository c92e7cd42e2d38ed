/**
 * UnsortedSegmentSum, which tfjs-backend-wasm lacks. The gradient of `gather`
 * (embedding lookups) calls it with one segment per vocabulary row, so it must
 * be O(n): one pass adding each row of x into its segment (tfjs's JS cpu
 * backend instead compares every id against every segment, O(n·segments)).
 *
 *   out[s, ...] = Σ_{i : ids[i] = s} x[i, ...]   (ids of rank r index x's first r axes)
 *
 * Ids outside [0, numSegments) are dropped, as TensorFlow does for negative ids.
 */
import { UnsortedSegmentSum, util } from "@tensorflow/tfjs-core";
import type { KernelConfig, KernelFunc, TensorInfo, UnsortedSegmentSumAttrs } from "@tensorflow/tfjs-core";
import { asWasm, i32 } from "../wasm.js";

function unsortedSegmentSum(args: {
  inputs: { x: TensorInfo; segmentIds: TensorInfo };
  backend: unknown;
  attrs: UnsortedSegmentSumAttrs;
}): TensorInfo {
  const backend = asWasm(args.backend);
  const { x, segmentIds } = args.inputs;
  const { numSegments } = args.attrs;
  if (x.dtype !== "float32" && x.dtype !== "int32") {
    throw new Error(`UnsortedSegmentSum on @apt/backend-cpu supports float32 and int32, got ${x.dtype}`);
  }
  const r = segmentIds.shape.length;
  util.assert(
    util.arraysEqual(x.shape.slice(0, r), segmentIds.shape),
    () => `UnsortedSegmentSum: segmentIds shape ${JSON.stringify(segmentIds.shape)} must be a prefix of x shape ${JSON.stringify(x.shape)}`,
  );
  const innerShape = x.shape.slice(r);
  const inner = util.sizeFromShape(innerShape);
  const n = util.sizeFromShape(segmentIds.shape);

  const out = backend.makeOutput([numSegments, ...innerShape], x.dtype);
  const dst = backend.typedArrayFromHeap(out) as Float32Array | Int32Array;
  const src = backend.typedArrayFromHeap(x) as Float32Array | Int32Array;
  const ids = segmentIds.dtype === "int32" ? i32(backend, segmentIds) : backend.typedArrayFromHeap(segmentIds);
  dst.fill(0);
  for (let i = 0; i < n; i++) {
    const s = ids[i]!;
    if (s < 0 || s >= numSegments) continue;
    const from = i * inner;
    const to = s * inner;
    for (let k = 0; k < inner; k++) dst[to + k]! += src[from + k]!;
  }
  return out;
}

export const unsortedSegmentSumConfig: KernelConfig = {
  kernelName: UnsortedSegmentSum,
  backendName: "wasm",
  kernelFunc: unsortedSegmentSum as unknown as KernelFunc,
};
