/**
 * Float64 reference implementations, in plain JS, of the ops the diffusion
 * models use. They are the ground truth of the conformance suite: slow and
 * obvious on purpose, with no tfjs in them.
 */

export interface F64Array {
  shape: number[];
  data: Float64Array;
}

export function size(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

export function strides(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length).fill(1);
  for (let i = shape.length - 2; i >= 0; i--) s[i] = s[i + 1]! * shape[i + 1]!;
  return s;
}

export function make(shape: number[], fill: (i: number) => number = () => 0): F64Array {
  const data = new Float64Array(size(shape));
  for (let i = 0; i < data.length; i++) data[i] = fill(i);
  return { shape: [...shape], data };
}

export function map(a: F64Array, f: (v: number) => number): F64Array {
  return make(a.shape, (i) => f(a.data[i]!));
}

/** Numpy-style broadcasting of two arrays through `f`. */
export function binary(a: F64Array, b: F64Array, f: (x: number, y: number) => number): F64Array {
  const rank = Math.max(a.shape.length, b.shape.length);
  const pad = (s: number[]) => [...new Array<number>(rank - s.length).fill(1), ...s];
  const as = pad(a.shape);
  const bs = pad(b.shape);
  const out = as.map((d, i) => {
    const e = bs[i]!;
    if (d !== e && d !== 1 && e !== 1) throw new Error(`cannot broadcast [${a.shape}] with [${b.shape}]`);
    return Math.max(d, e);
  });
  const ast = strides(as);
  const bst = strides(bs);
  const ost = strides(out);
  return make(out, (i) => {
    let ai = 0;
    let bi = 0;
    let r = i;
    for (let k = 0; k < rank; k++) {
      const c = Math.floor(r / ost[k]!);
      r -= c * ost[k]!;
      if (as[k] !== 1) ai += c * ast[k]!;
      if (bs[k] !== 1) bi += c * bst[k]!;
    }
    return f(a.data[ai]!, b.data[bi]!);
  });
}

export const add = (a: F64Array, b: F64Array) => binary(a, b, (x, y) => x + y);
export const sub = (a: F64Array, b: F64Array) => binary(a, b, (x, y) => x - y);
export const mul = (a: F64Array, b: F64Array) => binary(a, b, (x, y) => x * y);
export const div = (a: F64Array, b: F64Array) => binary(a, b, (x, y) => x / y);
export const scalar = (v: number): F64Array => make([], () => v);

/** Sum (or mean) over `axes`, keeping them as size-1 dimensions when keepDims. */
export function reduce(a: F64Array, axes: number[], op: "sum" | "mean", keepDims = false): F64Array {
  const rank = a.shape.length;
  const ax = axes.map((x) => (x < 0 ? x + rank : x));
  const kept = a.shape.map((d, i) => (ax.includes(i) ? 1 : d));
  const ost = strides(kept);
  const ist = strides(a.shape);
  const out = make(kept);
  let count = 1;
  for (const x of ax) count *= a.shape[x]!;
  for (let i = 0; i < a.data.length; i++) {
    let r = i;
    let o = 0;
    for (let k = 0; k < rank; k++) {
      const c = Math.floor(r / ist[k]!);
      r -= c * ist[k]!;
      if (!ax.includes(k)) o += c * ost[k]!;
    }
    out.data[o] = out.data[o]! + a.data[i]!;
  }
  if (op === "mean") for (let i = 0; i < out.data.length; i++) out.data[i]! /= count;
  if (!keepDims) out.shape = a.shape.filter((_, i) => !ax.includes(i));
  return out;
}

export function reshape(a: F64Array, shape: number[]): F64Array {
  if (size(shape) !== a.data.length) throw new Error(`reshape [${a.shape}] to [${shape}]`);
  return { shape: [...shape], data: a.data.slice() };
}

export function transpose(a: F64Array, perm: number[]): F64Array {
  const out = perm.map((p) => a.shape[p]!);
  const ist = strides(a.shape);
  const ost = strides(out);
  return make(out, (i) => {
    let r = i;
    let src = 0;
    for (let k = 0; k < out.length; k++) {
      const c = Math.floor(r / ost[k]!);
      r -= c * ost[k]!;
      src += c * ist[perm[k]!]!;
    }
    return a.data[src]!;
  });
}

/** Batched matmul over the last two dims; leading dims broadcast. */
export function matMul(a: F64Array, b: F64Array, transposeA = false, transposeB = false): F64Array {
  const ra = a.shape.length;
  const rb = b.shape.length;
  const A = transposeA ? transpose(a, [...range(ra - 2), ra - 1, ra - 2]) : a;
  const B = transposeB ? transpose(b, [...range(rb - 2), rb - 1, rb - 2]) : b;
  const [m, k] = A.shape.slice(-2) as [number, number];
  const [k2, n] = B.shape.slice(-2) as [number, number];
  if (k !== k2) throw new Error(`matMul inner dims ${k} vs ${k2}`);
  const batchA = A.shape.slice(0, -2);
  const batchB = B.shape.slice(0, -2);
  // Broadcast batch dims through `binary` on index arrays.
  const ia = make(batchA, (i) => i);
  const ib = make(batchB, (i) => i);
  const pairs: Array<[number, number]> = [];
  const batch = binary(ia, ib, (x, y) => pairs.push([x, y]) - 1);
  const out = make([...batch.shape, m, n]);
  pairs.forEach(([pa, pb], bi) => {
    for (let i = 0; i < m; i++)
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let t = 0; t < k; t++) s += A.data[pa * m * k + i * k + t]! * B.data[pb * k * n + t * n + j]!;
        out.data[bi * m * n + i * n + j] = s;
      }
  });
  return out;
}

export type Padding = "same" | "valid" | [[number, number], [number, number]];

/** Pads of a conv as tfjs computes them: [top, bottom, left, right]. */
export function convPads(inH: number, inW: number, kH: number, kW: number, stride: number, pad: Padding): { top: number; left: number; outH: number; outW: number } {
  if (pad === "valid") return { top: 0, left: 0, outH: Math.ceil((inH - kH + 1) / stride), outW: Math.ceil((inW - kW + 1) / stride) };
  if (pad === "same") {
    const outH = Math.ceil(inH / stride);
    const outW = Math.ceil(inW / stride);
    const padH = Math.max(0, (outH - 1) * stride + kH - inH);
    const padW = Math.max(0, (outW - 1) * stride + kW - inW);
    return { top: Math.floor(padH / 2), left: Math.floor(padW / 2), outH, outW };
  }
  const [[t, b], [l, r]] = pad;
  return { top: t, left: l, outH: Math.floor((inH + t + b - kH) / stride) + 1, outW: Math.floor((inW + l + r - kW) / stride) + 1 };
}

/** conv2d, x NHWC, w HWIO. */
export function conv2d(x: F64Array, w: F64Array, stride: number, pad: Padding): F64Array {
  const [B, H, W, C] = x.shape as [number, number, number, number];
  const [KH, KW, C2, O] = w.shape as [number, number, number, number];
  if (C !== C2) throw new Error("conv2d channels");
  const { top, left, outH, outW } = convPads(H, W, KH, KW, stride, pad);
  const out = make([B, outH, outW, O]);
  for (let b = 0; b < B; b++)
    for (let oy = 0; oy < outH; oy++)
      for (let ox = 0; ox < outW; ox++)
        for (let o = 0; o < O; o++) {
          let s = 0;
          for (let ky = 0; ky < KH; ky++) {
            const iy = oy * stride + ky - top;
            if (iy < 0 || iy >= H) continue;
            for (let kx = 0; kx < KW; kx++) {
              const ix = ox * stride + kx - left;
              if (ix < 0 || ix >= W) continue;
              for (let c = 0; c < C; c++) s += x.data[((b * H + iy) * W + ix) * C + c]! * w.data[((ky * KW + kx) * C + c) * O + o]!;
            }
          }
          out.data[((b * outH + oy) * outW + ox) * O + o] = s;
        }
  return out;
}

export function softmax(a: F64Array): F64Array {
  const n = a.shape[a.shape.length - 1]!;
  const out = make(a.shape);
  for (let r = 0; r < a.data.length / n; r++) {
    let m = -Infinity;
    for (let j = 0; j < n; j++) m = Math.max(m, a.data[r * n + j]!);
    let s = 0;
    for (let j = 0; j < n; j++) s += Math.exp(a.data[r * n + j]! - m);
    for (let j = 0; j < n; j++) out.data[r * n + j] = Math.exp(a.data[r * n + j]! - m) / s;
  }
  return out;
}

/** (x - mean) / sqrt(var + eps) over `axes` (biased variance, as torch's norms use). */
export function normalize(x: F64Array, axes: number[], eps: number): F64Array {
  const mean = reduce(x, axes, "mean", true);
  const centered = sub(x, mean);
  const variance = reduce(map(centered, (v) => v * v), axes, "mean", true);
  return div(centered, map(variance, (v) => Math.sqrt(v + eps)));
}

/** erf to double precision (Abramowitz–Stegun 7.1.26 is too coarse for a reference). */
export function erf(x: number): number {
  // Series for small |x|, continued fraction (via erfc) for large |x|.
  const ax = Math.abs(x);
  if (ax < 3) {
    let term = ax;
    let sum = ax;
    for (let n = 1; n < 200; n++) {
      term *= (-ax * ax) / n;
      const add = term / (2 * n + 1);
      sum += add;
      if (Math.abs(add) < 1e-17 * Math.abs(sum)) break;
    }
    return Math.sign(x) * (2 / Math.sqrt(Math.PI)) * sum;
  }
  // erfc(x) = exp(-x^2)/sqrt(pi) * 1/(x + 1/2/(x + 1/(x + 3/2/(x + ...))))
  let f = ax;
  for (let n = 60; n >= 1; n--) f = ax + n / 2 / f;
  const erfc = Math.exp(-ax * ax) / Math.sqrt(Math.PI) / f;
  return Math.sign(x) * (1 - erfc);
}

export const sigmoid = (v: number) => 1 / (1 + Math.exp(-v));

export function gather(table: F64Array, ids: F64Array): F64Array {
  const row = size(table.shape.slice(1));
  const out = make([...ids.shape, ...table.shape.slice(1)]);
  for (let i = 0; i < ids.data.length; i++) {
    const id = ids.data[i]!;
    for (let j = 0; j < row; j++) out.data[i * row + j] = table.data[id * row + j]!;
  }
  return out;
}

/** Nearest-neighbour resize of NHWC as tfjs computes it with alignCorners=false, halfPixelCenters=false. */
export function resizeNearest(x: F64Array, outH: number, outW: number): F64Array {
  const [B, H, W, C] = x.shape as [number, number, number, number];
  return make([B, outH, outW, C], (i) => {
    const c = i % C;
    const ox = Math.floor(i / C) % outW;
    const oy = Math.floor(i / (C * outW)) % outH;
    const b = Math.floor(i / (C * outW * outH));
    const iy = Math.min(H - 1, Math.floor((oy * H) / outH));
    const ix = Math.min(W - 1, Math.floor((ox * W) / outW));
    return x.data[((b * H + iy) * W + ix) * C + c]!;
  });
}

export function concat(arrays: F64Array[], axis: number): F64Array {
  const first = arrays[0]!;
  const rank = first.shape.length;
  const ax = axis < 0 ? axis + rank : axis;
  const outer = size(first.shape.slice(0, ax));
  const shape = [...first.shape];
  shape[ax] = arrays.reduce((s, a) => s + a.shape[ax]!, 0);
  const out = make(shape);
  let o = 0;
  for (let i = 0; i < outer; i++)
    for (const a of arrays) {
      const chunk = size(a.shape.slice(ax));
      out.data.set(a.data.subarray(i * chunk, (i + 1) * chunk), o);
      o += chunk;
    }
  return out;
}

export function slice(a: F64Array, begin: number[], sz: number[]): F64Array {
  const ist = strides(a.shape);
  const ost = strides(sz);
  return make(sz, (i) => {
    let r = i;
    let src = 0;
    for (let k = 0; k < sz.length; k++) {
      const c = Math.floor(r / ost[k]!);
      r -= c * ost[k]!;
      src += (c + begin[k]!) * ist[k]!;
    }
    return a.data[src]!;
  });
}

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}
