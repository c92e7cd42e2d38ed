/**
 * DepthwiseConv2dNativeBackpropFilter (dW of depthwiseConv2d), which
 * tfjs-backend-wasm lacks. Plain loops over the heap (see
 * DepthwiseConv2dNativeBackpropInput for why), accumulated in float64 because
 * each filter tap sums B·OH·OW products.
 *
 *   dW[kh, kw, c, q] = Σ_{b, o, p} x[b, o·sh + kh·dh − pt, p·sw + kw·dw − pl, c] · dy[b, o, p, c·M + q]
 */
import { backend_util, DepthwiseConv2dNativeBackpropFilter } from "@tensorflow/tfjs-core";
import type { DepthwiseConv2dNativeBackpropFilterAttrs, KernelConfig, KernelFunc, TensorInfo } from "@tensorflow/tfjs-core";
import { asWasm, f32 } from "../wasm.js";

function depthwiseConv2dNativeBackpropFilter(args: {
  inputs: { x: TensorInfo; dy: TensorInfo };
  backend: unknown;
  attrs: DepthwiseConv2dNativeBackpropFilterAttrs;
}): TensorInfo {
  const backend = asWasm(args.backend);
  const { x, dy } = args.inputs;
  const { strides, dilations, pad, dimRoundingMode, filterShape } = args.attrs;
  const info = backend_util.computeConv2DInfo(
    x.shape as [number, number, number, number],
    filterShape,
    strides,
    dilations,
    pad,
    dimRoundingMode,
    true,
  );
  const { batchSize: B, inHeight: H, inWidth: W, inChannels: C, outHeight: OH, outWidth: OW, outChannels: CM } = info;
  const { filterHeight: KH, filterWidth: KW, strideHeight: sh, strideWidth: sw, dilationHeight: dh, dilationWidth: dw } = info;
  const { top, left } = info.padInfo;
  const M = CM / C;

  const acc = new Float64Array(KH * KW * CM);
  const xs = f32(backend, x);
  const g = f32(backend, dy);
  for (let b = 0; b < B; b++) {
    for (let o = 0; o < OH; o++) {
      for (let p = 0; p < OW; p++) {
        const gBase = ((b * OH + o) * OW + p) * CM;
        for (let kh = 0; kh < KH; kh++) {
          const i = o * sh + kh * dh - top;
          if (i < 0 || i >= H) continue;
          for (let kw = 0; kw < KW; kw++) {
            const j = p * sw + kw * dw - left;
            if (j < 0 || j >= W) continue;
            const xBase = ((b * H + i) * W + j) * C;
            const wBase = (kh * KW + kw) * CM;
            if (M === 1) {
              for (let c = 0; c < C; c++) acc[wBase + c]! += xs[xBase + c]! * g[gBase + c]!;
            } else {
              for (let c = 0; c < C; c++) {
                const xv = xs[xBase + c]!;
                for (let q = 0; q < M; q++) acc[wBase + c * M + q]! += xv * g[gBase + c * M + q]!;
              }
            }
          }
        }
      }
    }
  }
  const dW = backend.makeOutput([KH, KW, C, M], "float32");
  f32(backend, dW).set(acc);
  return dW;
}

export const depthwiseConv2dNativeBackpropFilterConfig: KernelConfig = {
  kernelName: DepthwiseConv2dNativeBackpropFilter,
  backendName: "wasm",
  kernelFunc: depthwiseConv2dNativeBackpropFilter as unknown as KernelFunc,
};
