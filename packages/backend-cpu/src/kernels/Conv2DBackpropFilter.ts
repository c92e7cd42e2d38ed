/**
 * Conv2DBackpropFilter (dW of conv2d), which tfjs-backend-wasm lacks, as one
 * forward convolution run by the stock XNNPACK Conv2D kernel:
 *
 *   dW[kh, kw, ci, co] = Σ_{b, y, x} x[b, y·sh + kh − pt, x·sw + kw − pl, ci] · dy[b, y, x, co]
 *
 * is a convolution in which batch and channels swap roles: CI "images" of x,
 * filtered by dy as a (huge) filter dilated by the stride, giving a [CI, KH, KW, CO]
 * result that transposes to HWIO. Two layouts of it (see `dilated` and
 * `foldedWidth`), chosen by shape. On x=[8,32,32,64], W=[3,3,64,64] this beat
 * im2col + matmul (27 ms vs 43 ms: the im2col buffer and the transposes
 * XNNPACK's matmul needs cost more than the conv's indirection).
 */
import { backend_util, Conv2DBackpropFilter } from "@tensorflow/tfjs-core";
import type { Conv2DBackpropFilterAttrs, KernelConfig, KernelFunc, TensorInfo } from "@tensorflow/tfjs-core";
import { asWasm, assertNHWC, f32, release, reshaped, runKernel, zeros, type WasmBackend } from "../wasm.js";

function conv2DBackpropFilter(args: { inputs: { x: TensorInfo; dy: TensorInfo }; backend: unknown; attrs: Conv2DBackpropFilterAttrs }): TensorInfo {
  const backend = asWasm(args.backend);
  const { x, dy } = args.inputs;
  const { strides, pad, dataFormat, dimRoundingMode, filterShape } = args.attrs;
  assertNHWC(Conv2DBackpropFilter, dataFormat);
  const info = backend_util.computeConv2DInfo(
    x.shape as [number, number, number, number],
    filterShape,
    strides,
    1,
    pad,
    dimRoundingMode,
    false,
    "channelsLast",
  );
  const { inHeight, inWidth, inChannels, outHeight, outWidth, outChannels, filterHeight, filterWidth } = info;
  const { strideHeight: sh, strideWidth: sw } = info;
  const { top, left } = info.padInfo;

  // Padding after x so that the dilated dy window yields exactly KH x KW outputs;
  // negative means trailing rows/columns of x that no output touched: cropped.
  const bottom = filterHeight + (outHeight - 1) * sh - inHeight - top;
  const right = filterWidth + (outWidth - 1) * sw - inWidth - left;
  const rows = inHeight + Math.min(0, bottom);
  const cols = inWidth + Math.min(0, right);
  if (outHeight <= 0 || outWidth <= 0 || rows <= 0 || cols <= 0) {
    return zeros(backend, [filterHeight, filterWidth, inChannels, outChannels]);
  }

  const crop = { rows, cols, bottom, right };
  // Measured (README): the dilated form wins while the batch gives it channels
  // to contract over; with a small batch and wide inputs the folded one does
  // (x=[1,64,64,320]: 1.75x the forward conv instead of 2.4x).
  const folded = sw === 1 && inChannels >= 64 * info.batchSize;
  return folded ? foldedWidth(backend, x, dy, info, crop) : dilated(backend, x, dy, info, crop);
}

interface Crop {
  /** Rows/columns of x that reach some output (x is cropped to them). */
  rows: number;
  cols: number;
  /** Padding below/right of x that the convolution needs (negative: cropped instead). */
  bottom: number;
  right: number;
}

function cropX(backend: WasmBackend, x: TensorInfo, info: backend_util.Conv2DInfo, crop: Crop): TensorInfo {
  if (crop.rows === info.inHeight && crop.cols === info.inWidth) return x;
  return runKernel(backend, "Slice", { x }, { begin: [0, 0, 0, 0], size: [info.batchSize, crop.rows, crop.cols, info.inChannels] });
}

/**
 * Any stride. "input" x^T [CI, H, W, B], "filter" dy^T [OH, OW, B, CO]
 * dilated by the stride. The contraction has only B channels per filter tap,
 * which XNNPACK runs at about half its forward-conv rate.
 */
function dilated(backend: WasmBackend, x: TensorInfo, dy: TensorInfo, info: backend_util.Conv2DInfo, crop: Crop): TensorInfo {
  const { strideHeight: sh, strideWidth: sw } = info;
  const { top, left } = info.padInfo;
  const { eh, ew } = oddPadding(info.outHeight, info.outWidth, info.batchSize);
  const xc = cropX(backend, x, info, crop);
  const xT = runKernel(backend, "Transpose", { x: xc }, { perm: [3, 1, 2, 0] });
  const dyT = transposeDy(backend, dy, eh, ew);
  let dW: TensorInfo | undefined;
  try {
    dW = runKernel(backend, "Conv2D", { x: xT, filter: dyT }, {
      strides: [1, 1],
      pad: [[0, 0], [top, Math.max(0, crop.bottom) + eh * sh], [left, Math.max(0, crop.right) + ew * sw], [0, 0]],
      dataFormat: "NHWC",
      dilations: [sh, sw],
    });
    return runKernel(backend, "Transpose", { x: dW }, { perm: [1, 2, 0, 3] });
  } finally {
    release(backend, xT, dyT, dW, xc === x ? undefined : xc);
  }
}

/**
 * Horizontal stride 1. The width folds into the contraction channels: the
 * "input" is x^T [CI, H, 1, Wp·B] (each padded row of Wp = OW + KW − 1 columns
 * is one pixel), and the "filter" F[y, 0, (w', b), (kw, co)] = dy[b, y, w' − kw, co]
 * (zero off the row) carries every kw in its output channels:
 *
 *   out[ci, kh, 0, (kw, co)] = Σ_{y, w', b} x^T[ci, y·sh + kh, w', b] · F[y, (w', b), (kw, co)]
 *
 * Wp·B channels per tap (instead of B) run at XNNPACK's full rate, for
 * (KW − 1)/OW more multiply-adds on the zeros of F.
 */
function foldedWidth(backend: WasmBackend, x: TensorInfo, dy: TensorInfo, info: backend_util.Conv2DInfo, crop: Crop): TensorInfo {
  const { batchSize: B, inChannels: CI, outHeight: OH, outWidth: OW, outChannels: CO, filterHeight: KH, filterWidth: KW } = info;
  const sh = info.strideHeight;
  const { top, left } = info.padInfo;
  const wp = OW + KW - 1;
  const { eh, ew } = oddPadding(OH, wp, B);
  const width = wp + ew;

  const xc = cropX(backend, x, info, crop);
  let xT: TensorInfo | undefined;
  let xP: TensorInfo | undefined;
  let f: TensorInfo | undefined;
  let dW: TensorInfo | undefined;
  try {
    xT = runKernel(backend, "Transpose", { x: xc }, { perm: [3, 1, 2, 0] });
    xP = runKernel(backend, "PadV2", { x: xT }, { paddings: [[0, 0], [0, 0], [left, width - left - crop.cols], [0, 0]], constantValue: 0 });
    f = foldedFilter(backend, dy, OH + eh, width, KW);
    dW = runKernel(backend, "Conv2D", { x: reshaped(xP, [CI, crop.rows, 1, width * B]), filter: f }, {
      strides: [1, 1],
      pad: [[0, 0], [top, Math.max(0, crop.bottom) + eh * sh], [0, 0], [0, 0]],
      dataFormat: "NHWC",
      dilations: [sh, 1],
    });
    return runKernel(backend, "Transpose", { x: reshaped(dW, [CI, KH, KW, CO]) }, { perm: [1, 2, 0, 3] });
  } finally {
    release(backend, xT, xP, f, dW, xc === x ? undefined : xc);
  }
}

/** F[y, 0, (w', b), (kw, co)] = dy[b, y, w' − kw, co], zero where w' − kw is off the row or y ≥ OH. */
function foldedFilter(backend: WasmBackend, dy: TensorInfo, height: number, width: number, kw: number): TensorInfo {
  const [b, oh, ow, co] = dy.shape as [number, number, number, number];
  const out = backend.makeOutput([height, 1, width * b, kw * co], "float32");
  const dst = f32(backend, out);
  const src = f32(backend, dy);
  dst.fill(0);
  for (let y = 0; y < oh; y++) {
    for (let w = 0; w < width; w++) {
      for (let i = 0; i < b; i++) {
        const row = ((y * width + w) * b + i) * kw * co;
        for (let k = 0; k < kw; k++) {
          const xcol = w - k;
          if (xcol < 0 || xcol >= ow) continue;
          const from = ((i * oh + y) * ow + xcol) * co;
          dst.set(src.subarray(from, from + co), row + k * co);
        }
      }
    }
  }
  return out;
}

function twos(n: number): number {
  let k = 0;
  while (n > 0 && n % 2 === 0 && k < 31) {
    n /= 2;
    k++;
  }
  return k;
}

/**
 * Extra zero rows/columns (0 or 1 each) of the dy filter that minimise the
 * power of two in OH·OW·B. XNNPACK's conv packs its filter with a
 * [rows, n] -> [n, rows] transpose, rows = OH·OW·B here, and that transpose
 * runs 20-40x slower when rows is a multiple of a large power of two
 * (cache-set conflicts), as it is for most shapes. Zero taps appended to the
 * filter (with x padded by as much more) keep the result and make rows
 * odd-ish, for a few percent more multiply-adds (x=[8,32,32,64]: 26 ms
 * instead of 31 ms).
 */
function oddPadding(oh: number, ow: number, b: number): { eh: number; ew: number } {
  let best = { eh: 0, ew: 0 };
  let bestKey = [Infinity, Infinity];
  for (const eh of [0, 1]) {
    for (const ew of [0, 1]) {
      const size = (oh + eh) * (ow + ew);
      // Up to 2^5 the transpose is fast; beyond that, fewer factors of two first, then fewer extra taps.
      const key = [Math.max(5, twos(size * b)), size];
      if (key[0]! < bestKey[0]! || (key[0] === bestKey[0] && key[1]! < bestKey[1]!)) {
        best = { eh, ew };
        bestKey = key;
      }
    }
  }
  return best;
}

/** dy [B, OH, OW, CO] -> [OH+eh, OW+ew, B, CO] (zeros in the extra row/column), copying CO-float runs. */
function transposeDy(backend: WasmBackend, dy: TensorInfo, eh: number, ew: number): TensorInfo {
  const [b, oh, ow, co] = dy.shape as [number, number, number, number];
  if (eh === 0 && ew === 0) return runKernel(backend, "Transpose", { x: dy }, { perm: [1, 2, 0, 3] });
  const out = backend.makeOutput([oh + eh, ow + ew, b, co], "float32");
  const dst = f32(backend, out);
  const src = f32(backend, dy);
  dst.fill(0);
  for (let y = 0; y < oh; y++) {
    for (let x = 0; x < ow; x++) {
      const to = (y * (ow + ew) + x) * b * co;
      for (let i = 0; i < b; i++) {
        const from = ((i * oh + y) * ow + x) * co;
        dst.set(src.subarray(from, from + co), to + i * co);
      }
    }
  }
  return out;
}

export const conv2DBackpropFilterConfig: KernelConfig = {
  kernelName: Conv2DBackpropFilter,
  backendName: "wasm",
  kernelFunc: conv2DBackpropFilter as unknown as KernelFunc,
};
