/**
 * @apt/core's group norm (`FUSED_GROUP_NORM`, `FUSED_GROUP_NORM_GRAD`; the
 * contract is in core's `ops/group-norm.ts`), each direction in a few passes
 * over the heap. Composed from tfjs ops a group norm is ~10 wasm kernels
 * forward and ~25 backward, most of them broadcasting over 5-D views (the
 * stock broadcast path computes an index per element), for every norm of
 * every ResnetBlock2D and transformer block.
 *
 * NHWC: element (b, p, c) of x viewed as [B, P = H·W, C] belongs to group
 * c / (C / G) of sample b; sums accumulate in float64.
 */
import { util } from "@tensorflow/tfjs-core";
import type { KernelConfig, KernelFunc, TensorInfo } from "@tensorflow/tfjs-core";
import { FUSED_GROUP_NORM, FUSED_GROUP_NORM_GRAD } from "@apt/core";
import { asWasm, f32 } from "../wasm.js";

interface Geometry {
  batch: number;
  positions: number;
  channels: number;
  groups: number;
  /** Elements per (sample, group). */
  count: number;
  /** Group of each channel. */
  groupOf: Int32Array;
}

function geometry(kernel: string, x: TensorInfo, gamma: TensorInfo, groups: number): Geometry {
  if (x.shape.length !== 4) throw new Error(`${kernel}: x must be NHWC [B, H, W, C], got shape ${JSON.stringify(x.shape)}`);
  const [batch, h, w, channels] = x.shape as [number, number, number, number];
  if (!(Number.isInteger(groups) && groups > 0 && channels % groups === 0)) {
    throw new Error(`${kernel}: ${channels} channels are not divisible into ${groups} groups`);
  }
  if (!util.arraysEqual(gamma.shape, [channels])) throw new Error(`${kernel}: gamma has shape ${JSON.stringify(gamma.shape)}, expected [${channels}]`);
  const per = channels / groups;
  return { batch, positions: h * w, channels, groups, count: h * w * per, groupOf: Int32Array.from({ length: channels }, (_, c) => Math.floor(c / per)) };
}

function assertFloat32(kernel: string, tensors: Record<string, TensorInfo>): void {
  for (const [name, t] of Object.entries(tensors)) {
    if (t.dtype !== "float32") throw new Error(`${kernel}: ${name} must be float32, got ${t.dtype}`);
  }
}

function groupNormForward(args: {
  inputs: { x: TensorInfo; gamma: TensorInfo; beta: TensorInfo };
  backend: unknown;
  attrs: { groups: number; eps: number };
}): TensorInfo[] {
  const backend = asWasm(args.backend);
  const { x, gamma, beta } = args.inputs;
  assertFloat32(FUSED_GROUP_NORM, { x, gamma, beta });
  const { batch, positions, channels, groups, count, groupOf } = geometry(FUSED_GROUP_NORM, x, gamma, args.attrs.groups);
  const out = backend.makeOutput(x.shape.slice(), "float32");
  const meanOut = backend.makeOutput([batch, groups], "float32");
  const rstdOut = backend.makeOutput([batch, groups], "float32");
  // Heap views after the last allocation (an allocation may grow the heap and detach earlier views).
  const xs = f32(backend, x);
  const g = f32(backend, gamma);
  const bt = f32(backend, beta);
  const y = f32(backend, out);
  const meanV = f32(backend, meanOut);
  const rstdV = f32(backend, rstdOut);
  const sum = new Float64Array(groups);
  const mean = new Float64Array(groups);
  const rstd = new Float64Array(groups);
  for (let b = 0; b < batch; b++) {
    const base = b * positions * channels;
    const end = base + positions * channels;
    sum.fill(0);
    for (let i = base, c = 0; i < end; i++) {
      sum[groupOf[c]!]! += xs[i]!;
      if (++c === channels) c = 0;
    }
    for (let k = 0; k < groups; k++) mean[k] = sum[k]! / count;
    // Two passes: Σ(x − mean)², not Σx² − n·mean², which cancels in float for large means.
    sum.fill(0);
    for (let i = base, c = 0; i < end; i++) {
      const d = xs[i]! - mean[groupOf[c]!]!;
      sum[groupOf[c]!]! += d * d;
      if (++c === channels) c = 0;
    }
    for (let k = 0; k < groups; k++) {
      rstd[k] = 1 / Math.sqrt(sum[k]! / count + args.attrs.eps);
      meanV[b * groups + k] = mean[k]!;
      rstdV[b * groups + k] = rstd[k]!;
    }
    for (let i = base, c = 0; i < end; i++) {
      const k = groupOf[c]!;
      y[i] = (xs[i]! - mean[k]!) * rstd[k]! * g[c]! + bt[c]!;
      if (++c === channels) c = 0;
    }
  }
  return [out, meanOut, rstdOut];
}

function groupNormBackward(args: {
  inputs: { dy: TensorInfo; x: TensorInfo; gamma: TensorInfo; mean: TensorInfo; rstd: TensorInfo };
  backend: unknown;
  attrs: { groups: number };
}): TensorInfo[] {
  const backend = asWasm(args.backend);
  const { dy, x, gamma, mean, rstd } = args.inputs;
  assertFloat32(FUSED_GROUP_NORM_GRAD, { dy, x, gamma, mean, rstd });
  const { batch, positions, channels, groups, count, groupOf } = geometry(FUSED_GROUP_NORM_GRAD, x, gamma, args.attrs.groups);
  if (!util.arraysEqual(dy.shape, x.shape)) throw new Error(`${FUSED_GROUP_NORM_GRAD}: dy has shape ${JSON.stringify(dy.shape)}, x ${JSON.stringify(x.shape)}`);
  const dxOut = backend.makeOutput(x.shape.slice(), "float32");
  const dgOut = backend.makeOutput([channels], "float32");
  const dbOut = backend.makeOutput([channels], "float32");
  const xs = f32(backend, x);
  const dys = f32(backend, dy);
  const g = f32(backend, gamma);
  const meanV = f32(backend, mean);
  const rstdV = f32(backend, rstd);
  const dx = f32(backend, dxOut);
  const dgamma = new Float64Array(channels);
  const dbeta = new Float64Array(channels);
  // Per group: Σ dy·γ and Σ dy·γ·x̂ over its elements.
  const sumDg = new Float64Array(groups);
  const sumDgXhat = new Float64Array(groups);
  for (let b = 0; b < batch; b++) {
    const base = b * positions * channels;
    const end = base + positions * channels;
    const m = meanV.subarray(b * groups, (b + 1) * groups);
    const r = rstdV.subarray(b * groups, (b + 1) * groups);
    sumDg.fill(0);
    sumDgXhat.fill(0);
    for (let i = base, c = 0; i < end; i++) {
      const k = groupOf[c]!;
      const xhat = (xs[i]! - m[k]!) * r[k]!;
      const d = dys[i]!;
      dbeta[c]! += d;
      dgamma[c]! += d * xhat;
      const dg = d * g[c]!;
      sumDg[k]! += dg;
      sumDgXhat[k]! += dg * xhat;
      if (++c === channels) c = 0;
    }
    for (let k = 0; k < groups; k++) {
      sumDg[k]! /= count;
      sumDgXhat[k]! /= count;
    }
    // dx = rstd · (dy·γ − mean(dy·γ) − x̂ · mean(dy·γ·x̂))
    for (let i = base, c = 0; i < end; i++) {
      const k = groupOf[c]!;
      const xhat = (xs[i]! - m[k]!) * r[k]!;
      dx[i] = r[k]! * (dys[i]! * g[c]! - sumDg[k]! - xhat * sumDgXhat[k]!);
      if (++c === channels) c = 0;
    }
  }
  f32(backend, dgOut).set(dgamma);
  f32(backend, dbOut).set(dbeta);
  return [dxOut, dgOut, dbOut];
}

export const groupNormConfig: KernelConfig = {
  kernelName: FUSED_GROUP_NORM,
  backendName: "wasm",
  kernelFunc: groupNormForward as unknown as KernelFunc,
};

export const groupNormGradConfig: KernelConfig = {
  kernelName: FUSED_GROUP_NORM_GRAD,
  backendName: "wasm",
  kernelFunc: groupNormBackward as unknown as KernelFunc,
};
