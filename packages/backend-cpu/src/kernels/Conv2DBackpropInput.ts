/**
 * Conv2DBackpropInput (dx of conv2d, and conv2dTranspose) on the wasm backend,
 * as stride-1 forward convolutions run by the stock XNNPACK Conv2D kernel.
 *
 * tfjs-backend-wasm has its own Conv2DBackpropInput, a scalar C++ loop that
 * measured ~10x slower than the forward conv of the same shape. Here:
 *
 *   dx[i] = Σ_k dy[o]·W[k]  over  i = o·s + k − padTop.
 *
 * For each output phase r = i mod s (s² phases for stride s, one for stride 1)
 * only the taps k ≡ r + padTop (mod s) contribute, and over q = (i − r)/s they
 * form a stride-1 correlation of dy with those taps flipped and with the
 * filter's in/out channels swapped. So dx is s² small convolutions whose
 * outputs interleave (sub-pixel decomposition): the same multiply-adds as the
 * forward conv, none spent on the zeros a dilated-dy formulation would add.
 */
import { backend_util, Conv2DBackpropInput } from "@tensorflow/tfjs-core";
import type { Conv2DBackpropInputAttrs, KernelConfig, KernelFunc, TensorInfo } from "@tensorflow/tfjs-core";
import { asWasm, assertNHWC, f32, release, runKernel, zeros, type WasmBackend } from "../wasm.js";

/** One spatial dimension of one output phase. */
interface Phase {
  /** First filter tap of this phase. */
  k0: number;
  /** Number of taps (k0, k0+s, ... < kernel size); 0 means the phase gets no gradient. */
  taps: number;
  /** Padding of dy before/after for the stride-1 correlation (never negative). */
  padBefore: number;
  padAfter: number;
  /** dy rows dropped at the start/end (where the padding formula went negative). */
  cropBefore: number;
  cropAfter: number;
  /** Output positions of this phase: r, r+s, ... < inSize. */
  count: number;
}

function phase(r: number, s: number, pad: number, kernel: number, inSize: number, outSize: number): Phase {
  const count = inSize > r ? Math.ceil((inSize - r) / s) : 0;
  const k0 = (r + pad) % s;
  const taps = k0 < kernel ? Math.ceil((kernel - k0) / s) : 0;
  const c = (r + pad - k0) / s;
  // dx_r[q] = Σ_j' dy[q − before + j'] · Wflip[j'], j' < taps
  let before = taps - 1 - c;
  let after = count + taps - 1 - before - outSize;
  const cropBefore = Math.max(0, -before);
  const cropAfter = Math.max(0, -after);
  before = Math.max(0, before);
  after = Math.max(0, after);
  return { k0, taps, padBefore: before, padAfter: after, cropBefore, cropAfter, count };
}

/**
 * The sub-filter of a phase, flipped and with channels swapped:
 *   Wp[jh, jw, co, ci] = W[k0h + (th−1−jh)·sh, k0w + (tw−1−jw)·sw, ci, co].
 */
function phaseFilter(backend: WasmBackend, filter: TensorInfo, ph: Phase, pw: Phase, sh: number, sw: number): TensorInfo {
  const [, kw, ci, co] = filter.shape as [number, number, number, number];
  const th = ph.taps;
  const tw = pw.taps;
  const out = backend.makeOutput([th, tw, co, ci], "float32");
  const src = f32(backend, filter);
  const dst = f32(backend, out);
  for (let jh = 0; jh < th; jh++) {
    const kh = ph.k0 + (th - 1 - jh) * sh;
    for (let jw = 0; jw < tw; jw++) {
      const kwi = pw.k0 + (tw - 1 - jw) * sw;
      const srcBase = (kh * kw + kwi) * ci * co;
      const dstBase = (jh * tw + jw) * co * ci;
      for (let i = 0; i < ci; i++) {
        const s = srcBase + i * co;
        for (let o = 0; o < co; o++) dst[dstBase + o * ci + i] = src[s + o]!;
      }
    }
  }
  return out;
}

/** The stride-1 convolution of one phase: [B, countH, countW, CI], or undefined when it is all zeros. */
/** True when the phase has output positions but no dy value reaches them. */
function isEmpty(p: Phase, outSize: number): boolean {
  return p.count > 0 && (p.taps === 0 || outSize - p.cropBefore - p.cropAfter <= 0);
}

function phaseConv(backend: WasmBackend, dy: TensorInfo, filter: TensorInfo, ph: Phase, pw: Phase, sh: number, sw: number): TensorInfo | undefined {
  const [batch, outH, outW, outC] = dy.shape as [number, number, number, number];
  if (ph.count === 0 || pw.count === 0 || isEmpty(ph, outH) || isEmpty(pw, outW)) return undefined;
  const rows = outH - ph.cropBefore - ph.cropAfter;
  const cols = outW - pw.cropBefore - pw.cropAfter;
  let input = dy;
  if (rows !== outH || cols !== outW) {
    input = runKernel(backend, "Slice", { x: dy }, { begin: [0, ph.cropBefore, pw.cropBefore, 0], size: [batch, rows, cols, outC] });
  }
  const w = phaseFilter(backend, filter, ph, pw, sh, sw);
  try {
    return runKernel(backend, "Conv2D", { x: input, filter: w }, {
      strides: [1, 1],
      pad: [[0, 0], [ph.padBefore, ph.padAfter], [pw.padBefore, pw.padAfter], [0, 0]],
      dataFormat: "NHWC",
      dilations: [1, 1],
    });
  } finally {
    release(backend, w, input === dy ? undefined : input);
  }
}

export function conv2DBackpropInputWasm(
  backend: WasmBackend,
  dy: TensorInfo,
  filter: TensorInfo,
  convInfo: backend_util.Conv2DInfo,
): TensorInfo {
  const { batchSize, inHeight, inWidth, inChannels, outHeight, outWidth, strideHeight: sh, strideWidth: sw } = convInfo;
  const { filterHeight, filterWidth } = convInfo;
  const { top, left } = convInfo.padInfo;

  if (sh === 1 && sw === 1) {
    const ph = phase(0, 1, top, filterHeight, inHeight, outHeight);
    const pw = phase(0, 1, left, filterWidth, inWidth, outWidth);
    return phaseConv(backend, dy, filter, ph, pw, 1, 1) ?? zeros(backend, [batchSize, inHeight, inWidth, inChannels]);
  }

  const phasesH = Array.from({ length: sh }, (_, r) => phase(r, sh, top, filterHeight, inHeight, outHeight));
  const phasesW = Array.from({ length: sw }, (_, r) => phase(r, sw, left, filterWidth, inWidth, outWidth));
  const dx = backend.makeOutput([batchSize, inHeight, inWidth, inChannels], "float32");
  // Positions of phases that no tap reaches (e.g. a kernel smaller than the stride) get zero gradient.
  if (phasesH.some((ph) => isEmpty(ph, outHeight)) || phasesW.some((pw) => isEmpty(pw, outWidth))) f32(backend, dx).fill(0);
  for (let ry = 0; ry < sh; ry++) {
    const ph = phasesH[ry]!;
    for (let rx = 0; rx < sw; rx++) {
      const pw = phasesW[rx]!;
      const part = phaseConv(backend, dy, filter, ph, pw, sh, sw);
      if (!part) continue;
      // Interleave: dx[b, qh·sh + ry, qw·sw + rx, :] = part[b, qh, qw, :].
      const src = f32(backend, part);
      const dst = f32(backend, dx);
      const c = inChannels;
      for (let b = 0; b < batchSize; b++) {
        for (let qh = 0; qh < ph.count; qh++) {
          const srcRow = (b * ph.count + qh) * pw.count * c;
          const dstRow = (b * inHeight + qh * sh + ry) * inWidth * c;
          for (let qw = 0; qw < pw.count; qw++) {
            const s = srcRow + qw * c;
            dst.set(src.subarray(s, s + c), dstRow + (qw * sw + rx) * c);
          }
        }
      }
      release(backend, part);
    }
  }
  return dx;
}

function conv2DBackpropInput(args: { inputs: { dy: TensorInfo; filter: TensorInfo }; backend: unknown; attrs: Conv2DBackpropInputAttrs }): TensorInfo {
  const backend = asWasm(args.backend);
  const { dy, filter } = args.inputs;
  const { strides, pad, dataFormat, dimRoundingMode, inputShape } = args.attrs;
  assertNHWC(Conv2DBackpropInput, dataFormat);
  const convInfo = backend_util.computeConv2DInfo(
    inputShape,
    filter.shape as [number, number, number, number],
    strides,
    1,
    pad,
    dimRoundingMode,
    false,
    "channelsLast",
  );
  return conv2DBackpropInputWasm(backend, dy, filter, convInfo);
}

export const conv2DBackpropInputConfig: KernelConfig = {
  kernelName: Conv2DBackpropInput,
  backendName: "wasm",
  kernelFunc: conv2DBackpropInput as unknown as KernelFunc,
};
