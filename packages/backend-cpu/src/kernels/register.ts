/**
 * The kernels @apt/backend-cpu adds to tfjs-backend-wasm, and their registration.
 *
 * "missing": wasm has no such kernel, and a training op's gradient calls it
 * (found by running tf.grad through the ops the models use; see README).
 * "replaces": wasm has one, but too slow for training; ours is registered in
 * its place.
 * "fused": a kernel @apt/core defines (not a tfjs one) that does in one pass
 * what core otherwise composes from many tfjs kernels.
 */
import { getKernel, registerKernel, unregisterKernel } from "@tensorflow/tfjs-core";
import type { KernelConfig } from "@tensorflow/tfjs-core";
import { batchMatMulConfig } from "./BatchMatMul.js";
import { conv2DBackpropFilterConfig } from "./Conv2DBackpropFilter.js";
import { conv2DBackpropInputConfig } from "./Conv2DBackpropInput.js";
import { depthwiseConv2dNativeBackpropFilterConfig } from "./DepthwiseConv2dNativeBackpropFilter.js";
import { depthwiseConv2dNativeBackpropInputConfig } from "./DepthwiseConv2dNativeBackpropInput.js";
import { einsumConfig } from "./Einsum.js";
import { fusedAdamWConfig } from "./FusedAdamW.js";
import { fusedEmaConfig } from "./FusedEma.js";
import { groupNormConfig, groupNormGradConfig } from "./GroupNorm.js";
import { splitVConfig } from "./SplitV.js";
import { unsortedSegmentSumConfig } from "./UnsortedSegmentSum.js";

export interface CustomKernel {
  config: KernelConfig;
  kind: "missing" | "replaces" | "fused";
  /** Why it is here, for info() and the README. */
  why: string;
}

export const customKernels: readonly CustomKernel[] = [
  { config: conv2DBackpropFilterConfig, kind: "missing", why: "gradient of conv2d w.r.t. the filter" },
  { config: conv2DBackpropInputConfig, kind: "replaces", why: "gradient of conv2d w.r.t. the input; stock kernel ~10x slower than the forward conv" },
  { config: depthwiseConv2dNativeBackpropInputConfig, kind: "missing", why: "gradient of depthwiseConv2d w.r.t. the input" },
  { config: depthwiseConv2dNativeBackpropFilterConfig, kind: "missing", why: "gradient of depthwiseConv2d w.r.t. the filter" },
  { config: unsortedSegmentSumConfig, kind: "missing", why: "gradient of gather (embeddings)" },
  { config: einsumConfig, kind: "missing", why: "tf.einsum" },
  { config: batchMatMulConfig, kind: "replaces", why: "batched and transposed matmuls (attention, every matMul gradient) ran a scalar loop" },
  { config: fusedAdamWConfig, kind: "fused", why: "@apt/core's AdamW update in one pass instead of 14 kernels per parameter" },
  { config: fusedEmaConfig, kind: "fused", why: "@apt/core's weight-average (EMA) update in one pass instead of 3 kernels and a scalar upload per tensor" },
  { config: groupNormConfig, kind: "fused", why: "@apt/core's groupNorm in three passes instead of ~10 kernels, most of them broadcasting over 5-D views" },
  { config: groupNormGradConfig, kind: "fused", why: "groupNorm's gradient (x, gamma, beta) in two passes instead of ~25 kernels" },
  { config: splitVConfig, kind: "replaces", why: "split (the gradient of concat, fused projections) copied row by row through new typed arrays" },
];

/**
 * Registers the custom kernels for "wasm"; returns the names now served by
 * ours. Idempotent. A missing kernel that something else registered meanwhile
 * is left alone. Call after the wasm backend is initialised: replacing a stock
 * kernel before that would skip the stock kernel's setup.
 */
export function registerCustomKernels(): string[] {
  const active: string[] = [];
  for (const { config, kind } of customKernels) {
    const current = getKernel(config.kernelName, "wasm");
    if (current?.kernelFunc === config.kernelFunc) {
      active.push(config.kernelName);
      continue;
    }
    if (current && kind !== "replaces") continue;
    if (current) unregisterKernel(config.kernelName, "wasm");
    registerKernel(config);
    active.push(config.kernelName);
  }
  return active;
}
