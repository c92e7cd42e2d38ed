/**
 * @apt/core's fused weight-average update (`FUSED_EMA`): one pass writing
 * average − (1 − decay)·(average − weights) for one weight tensor. Composed, it
 * is three wasm kernels and a scalar upload per tensor, every step, on the
 * thread the replicas wait for.
 */
import { util } from "@tensorflow/tfjs-core";
import type { KernelConfig, KernelFunc, TensorInfo } from "@tensorflow/tfjs-core";
import { FUSED_EMA } from "@apt/core";
import { asWasm, f32 } from "../wasm.js";

function fusedEma(args: { inputs: { average: TensorInfo; weights: TensorInfo }; backend: unknown; attrs: { oneMinusDecay: number } }): TensorInfo {
  const backend = asWasm(args.backend);
  const { average, weights } = args.inputs;
  for (const [name, t] of Object.entries({ average, weights })) {
    if (t.dtype !== "float32") throw new Error(`${FUSED_EMA}: ${name} must be float32, got ${t.dtype}`);
  }
  if (!util.arraysEqual(average.shape, weights.shape)) {
    throw new Error(`${FUSED_EMA}: weights have shape ${JSON.stringify(weights.shape)}, the average ${JSON.stringify(average.shape)}`);
  }
  const k = args.attrs.oneMinusDecay;
  const out = backend.makeOutput(average.shape.slice(), "float32");
  // Heap views after the allocation (it may grow the heap and detach earlier views).
  const a = f32(backend, average);
  const w = f32(backend, weights);
  const o = f32(backend, out);
  for (let i = 0; i < a.length; i++) o[i] = a[i]! - k * (a[i]! - w[i]!);
  return out;
}

export const fusedEmaConfig: KernelConfig = {
  kernelName: FUSED_EMA,
  backendName: "wasm",
  kernelFunc: fusedEma as unknown as KernelFunc,
};
