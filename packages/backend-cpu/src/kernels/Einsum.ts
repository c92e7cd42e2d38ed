/**
 * Einsum, which tfjs-backend-wasm lacks. A direct loop over the index space
 * (output labels outer, summed labels inner), accumulated in float64; einsum is
 * not on a hot path here, and a direct loop needs no broadcast intermediates
 * (tfjs's JS cpu backend multiplies broadcast operands, O(all labels) memory).
 *
 * Accepts what numpy.einsum accepts for one or more operands: explicit output
 * ("ij,jk->ik") or implicit ("ij,jk": labels seen once, in alphabetical
 * order), summed labels, repeated labels within an operand (diagonals, "ii->i",
 * "ii"), and "..." for broadcast leading axes. tfjs's own kernels accept a
 * subset (an arrow, at most two operands, no repeats, no ellipsis).
 */
import { Einsum, util } from "@tensorflow/tfjs-core";
import type { DataType, EinsumAttrs, KernelConfig, KernelFunc, TensorInfo } from "@tensorflow/tfjs-core";
import { asWasm } from "../wasm.js";

const TERM = /^[a-zA-Z]*(\.\.\.)?[a-zA-Z]*$/;

export interface EinsumPlan {
  /** Labels of the output axes, then the summed labels; ellipsis axes are ".0", ".1", ... */
  labels: string[];
  outRank: number;
  sizes: number[];
  /** strides[operand][label]: element stride of that label in that operand (0 if absent or broadcast). */
  strides: number[][];
}

function termLabels(term: string, rank: number, ellipsisRank: number, where: string): string[] {
  if (!TERM.test(term)) throw new Error(`Einsum: invalid subscripts "${term}" in ${where} (letters and one "..." only)`);
  const dots = term.indexOf("...");
  if (dots < 0) {
    if (term.length !== rank) throw new Error(`Einsum: subscripts "${term}" name ${term.length} axes, the operand has rank ${rank}`);
    return [...term];
  }
  const before = [...term.slice(0, dots)];
  const after = [...term.slice(dots + 3)];
  const own = rank - before.length - after.length;
  if (own < 0) throw new Error(`Einsum: subscripts "${term}" name more axes than the operand's rank ${rank}`);
  const ell = Array.from({ length: own }, (_, k) => `.${ellipsisRank - own + k}`);
  return [...before, ...ell, ...after];
}

/** Parses an equation against operand shapes; throws on anything numpy would reject. */
export function planEinsum(equation: string, shapes: number[][]): EinsumPlan {
  const eq = equation.replace(/\s/g, "");
  const sides = eq.split("->");
  if (sides.length > 2) throw new Error(`Einsum: equation "${equation}" has more than one "->"`);
  const terms = sides[0]!.split(",");
  if (terms.length !== shapes.length) {
    throw new Error(`Einsum: equation "${equation}" expects ${terms.length} operands, received ${shapes.length}`);
  }
  // Broadcast (ellipsis) rank: the most axes any operand gives to "...".
  let ellipsisRank = 0;
  terms.forEach((t, i) => {
    if (t.includes("...")) ellipsisRank = Math.max(ellipsisRank, shapes[i]!.length - t.replace("...", "").length);
  });
  const operandLabels = terms.map((t, i) => termLabels(t, shapes[i]!.length, ellipsisRank, `operand ${i}`));

  const sizes = new Map<string, number>();
  operandLabels.forEach((labels, i) => {
    labels.forEach((label, axis) => {
      const size = shapes[i]![axis]!;
      const known = sizes.get(label);
      if (known === undefined || (label.startsWith(".") && known === 1)) sizes.set(label, size);
      else if (known !== size && !(label.startsWith(".") && size === 1)) {
        throw new Error(
          `Einsum: label "${label.startsWith(".") ? "..." : label}" has size ${known} and ${size} ` +
            `(operand ${i} shaped ${JSON.stringify(shapes[i])}, axis ${axis})`,
        );
      }
    });
  });

  const ellipsisLabels = Array.from({ length: ellipsisRank }, (_, k) => `.${k}`);
  let outLabels: string[];
  if (sides.length === 2) {
    const out = sides[1]!;
    if (!TERM.test(out)) throw new Error(`Einsum: invalid output subscripts "${out}"`);
    const dots = out.indexOf("...");
    outLabels = dots < 0 ? [...out] : [...out.slice(0, dots), ...ellipsisLabels, ...out.slice(dots + 3)];
    const seen = new Set<string>();
    for (const l of outLabels) {
      if (seen.has(l)) throw new Error(`Einsum: output label "${l}" appears more than once`);
      if (!sizes.has(l)) throw new Error(`Einsum: output label "${l}" is not in the inputs`);
      seen.add(l);
    }
  } else {
    const counts = new Map<string, number>();
    for (const l of operandLabels.flat()) if (!l.startsWith(".")) counts.set(l, (counts.get(l) ?? 0) + 1);
    const once = [...counts].filter(([, n]) => n === 1).map(([l]) => l).sort();
    outLabels = [...ellipsisLabels, ...once];
  }
  const summed = [...sizes.keys()].filter((l) => !outLabels.includes(l));
  const labels = [...outLabels, ...summed];

  const strides = operandLabels.map((opLabels, i) => {
    const shape = shapes[i]!;
    const axisStrides = util.computeStrides(shape);
    const st = labels.map(() => 0);
    opLabels.forEach((l, axis) => {
      const li = labels.indexOf(l);
      // A size-1 ellipsis axis broadcasts: stride 0. A repeated label adds its strides (diagonal).
      if (shape[axis] === 1 && sizes.get(l) !== 1) return;
      st[li]! += axis === shape.length - 1 ? 1 : axisStrides[axis]!;
    });
    return st;
  });
  return { labels, outRank: outLabels.length, sizes: labels.map((l) => sizes.get(l)!), strides };
}

/** Evaluates a plan over flat operand arrays into a float64 array of the output's size. */
export function evalEinsum(plan: EinsumPlan, data: ArrayLike<number>[]): Float64Array {
  const { sizes, strides, outRank } = plan;
  const L = sizes.length;
  const outSize = util.sizeFromShape(sizes.slice(0, outRank));
  const acc = new Float64Array(outSize);
  if (sizes.some((s) => s === 0)) return acc;
  const nOps = data.length;
  // Output strides over the label space (summed labels have stride 0).
  const outStrides = sizes.map(() => 0);
  for (let d = outRank - 1, s = 1; d >= 0; d--) {
    outStrides[d] = s;
    s *= sizes[d]!;
  }
  if (L === 0) {
    let p = 1;
    for (let k = 0; k < nOps; k++) p *= data[k]![0]!;
    acc[0] = p;
    return acc;
  }
  const last = L - 1;
  const n = sizes[last]!;
  const so = outStrides[last]!;
  const lastStride = strides.map((st) => st[last]!);
  const offs = new Array<number>(nOps).fill(0);
  const idx = new Array<number>(L).fill(0);
  let outOff = 0;
  for (;;) {
    // Innermost label as a plain strided loop.
    if (nOps === 1) {
      const a = data[0]!;
      const sa = lastStride[0]!;
      for (let t = 0, ia = offs[0]!; t < n; t++, ia += sa) acc[outOff + t * so]! += a[ia]!;
    } else if (nOps === 2) {
      const a = data[0]!;
      const b = data[1]!;
      const sa = lastStride[0]!;
      const sb = lastStride[1]!;
      if (so === 0) {
        let sum = 0;
        for (let t = 0, ia = offs[0]!, ib = offs[1]!; t < n; t++, ia += sa, ib += sb) sum += a[ia]! * b[ib]!;
        acc[outOff]! += sum;
      } else {
        for (let t = 0, ia = offs[0]!, ib = offs[1]!; t < n; t++, ia += sa, ib += sb) acc[outOff + t * so]! += a[ia]! * b[ib]!;
      }
    } else {
      for (let t = 0; t < n; t++) {
        let p = 1;
        for (let k = 0; k < nOps; k++) p *= data[k]![offs[k]! + t * lastStride[k]!]!;
        acc[outOff + t * so]! += p;
      }
    }
    // Odometer over the other labels.
    let d = last - 1;
    for (; d >= 0; d--) {
      idx[d]!++;
      outOff += outStrides[d]!;
      for (let k = 0; k < nOps; k++) offs[k]! += strides[k]![d]!;
      if (idx[d]! < sizes[d]!) break;
      const wrap = sizes[d]!;
      idx[d] = 0;
      outOff -= outStrides[d]! * wrap;
      for (let k = 0; k < nOps; k++) offs[k]! -= strides[k]![d]! * wrap;
    }
    if (d < 0) break;
  }
  return acc;
}

function einsum(args: { inputs: TensorInfo[]; backend: unknown; attrs: EinsumAttrs }): TensorInfo {
  const backend = asWasm(args.backend);
  const operands = Array.from(args.inputs);
  const plan = planEinsum(args.attrs.equation, operands.map((t) => t.shape));
  const dtype: DataType = operands.some((t) => t.dtype === "float32") ? "float32" : "int32";
  const result = evalEinsum(plan, operands.map((t) => backend.typedArrayFromHeap(t)));
  const out = backend.makeOutput(plan.sizes.slice(0, plan.outRank), dtype);
  (backend.typedArrayFromHeap(out) as Float32Array | Int32Array).set(result);
  return out;
}

export const einsumConfig: KernelConfig = {
  kernelName: Einsum,
  backendName: "wasm",
  kernelFunc: einsum as unknown as KernelFunc,
};
