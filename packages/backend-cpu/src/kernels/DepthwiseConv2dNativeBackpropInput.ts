/**
 * DepthwiseConv2dNativeBackpropInput (dx of depthwiseConv2d), which
 * tfjs-backend-wasm lacks. Plain loops over the heap: a depthwise conv has
 * KH·KW·M multiply-adds per input element, small next to a full conv, and
 * the stock wasm kernels offer no grouped conv that would reduce over the
 * channel multiplier M.
 *
 *   dx[b, i, j, c] = Σ_{o, p, kh, kw, q} dy[b, o, p, c·M + q] · W[kh, kw, c, q]
 *   over i = o·sh + kh·dh − pt, j = p·sw + kw·dw − pl.
 */
import { backend_util, DepthwiseConv2dNativeBackpropInput } from "@tensorflow/tfjs-core";
import type { DepthwiseConv2dNativeBackpropInputAttrs, KernelConfig, KernelFunc, TensorInfo } from "@tensorflow/tfjs-core";
import { asWasm, f32 } from "../wasm.js";

function depthwiseConv2dNativeBackpropInput(args: {
  inputs: { dy: TensorInfo; filter: TensorInfo };
  backend: unknown;
  attrs: DepthwiseConv2dNativeBackpropInputAttrs;
}): TensorInfo {
  const backend = asWasm(args.backend);
  const { dy, filter } = args.inputs;
  const { strides, dilations, pad, dimRoundingMode, inputShape } = args.attrs;
  const info = backend_util.computeConv2DInfo(
    inputShape,
    filter.shape as [number, number, number, number],
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

  const dx = backend.makeOutput([B, H, W, C], "float32");
  const out = f32(backend, dx);
  const g = f32(backend, dy);
  const w = f32(backend, filter);
  out.fill(0);
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
              for (let c = 0; c < C; c++) out[xBase + c]! += g[gBase + c]! * w[wBase + c]!;
            } else {
              for (let c = 0; c < C; c++) {
                let acc = 0;
                for (let q = 0; q < M; q++) acc += g[gBase + c * M + q]! * w[wBase + c * M + q]!;
                out[xBase + c]! += acc;
              }
            }
          }
        }
      }
    }
  }
  return dx;
}

export const depthwiseConv2dNativeBackpropInputConfig: KernelConfig = {
  kernelName: DepthwiseConv2dNativeBackpropInput,
  backendName: "wasm",
  kernelFunc: depthwiseConv2dNativeBackpropInput as unknown as KernelFunc,
};
