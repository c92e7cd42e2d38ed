/**
 * Runs one conformance case on the active tfjs backend: forward against the
 * float64 reference, and the gradient of  L = Σ out·dy  (dy random) with
 * respect to each float input against central finite differences of the
 * float64 reference.
 */
import * as tf from "@tensorflow/tfjs-core";
import { Rng } from "../random.js";
import type { ConformanceCase } from "./cases.js";
import * as R from "./reference.js";
import type { F64Array } from "./reference.js";

export interface CaseResult {
  id: string;
  seed: number;
  forwardError: number;
  /** Normalised max error of each checked input's gradient. */
  gradientErrors: Record<string, number>;
  /** Tensors alive after the case minus before it (must be 0). */
  leakedTensors: number;
}

/** At most this many elements per input get a finite-difference check. */
const MAX_FD_ELEMENTS = 160;

export function caseSeed(baseSeed: number, id: string): number {
  let h = baseSeed >>> 0;
  for (let i = 0; i < id.length; i++) h = Math.imul(h ^ id.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

/** Random inputs, rounded to float32 so that tfjs and the reference see the same numbers. */
export function makeInputs(c: ConformanceCase, rng: Rng): Record<string, F64Array> {
  const out: Record<string, F64Array> = {};
  for (const [name, spec] of Object.entries(c.inputs)) {
    const scale = spec.scale ?? 1;
    out[name] = R.make(spec.shape, () => {
      if (spec.dtype === "int32") return rng.int(spec.intMax ?? 2);
      const n = rng.normal();
      return Math.fround(spec.positive ? Math.abs(n) * scale + 0.5 : n * scale);
    });
  }
  return out;
}

export function normalisedError(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  if (actual.length !== expected.length) return Infinity;
  let maxDiff = 0;
  let maxRef = 0;
  for (let i = 0; i < expected.length; i++) {
    const d = Math.abs(actual[i]! - expected[i]!);
    if (!(d <= maxDiff)) maxDiff = d; // NaN-propagating max
    maxRef = Math.max(maxRef, Math.abs(expected[i]!));
  }
  return maxDiff / Math.max(maxRef, 1e-12);
}

function shapeEqual(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

export async function checkCase(c: ConformanceCase, baseSeed: number, opts: { gradient?: boolean } = {}): Promise<CaseResult> {
  const seed = caseSeed(baseSeed, c.id);
  const rng = new Rng(seed);
  const ref = makeInputs(c, rng);
  const before = tf.memory().numTensors;

  const names = Object.keys(c.inputs);
  const inputs: Record<string, tf.Tensor> = {};
  for (const n of names) {
    const spec = c.inputs[n]!;
    const a = ref[n]!;
    inputs[n] = spec.dtype === "int32" ? tf.tensor(Int32Array.from(a.data), a.shape, "int32") : tf.tensor(Float32Array.from(a.data), a.shape, "float32");
  }

  const expected = c.reference(ref);
  const out = tf.tidy(() => c.run(tf, inputs));
  if (!shapeEqual(out.shape, expected.shape)) {
    const got = out.shape;
    tf.dispose([out, ...Object.values(inputs)]);
    throw new Error(`${c.id}: output shape [${got}] but the reference has [${expected.shape}]`);
  }
  const forwardError = normalisedError(await out.data<"float32">(), expected.data);
  out.dispose();

  const gradientErrors: Record<string, number> = {};
  const diffNames = names.filter((n) => c.inputs[n]!.dtype !== "int32" && !c.inputs[n]!.constant);
  if (c.gradient !== false && opts.gradient !== false && diffNames.length > 0) {
    const dy = R.make(expected.shape, () => Math.fround(rng.normal()));
    const dyT = tf.tensor(Float32Array.from(dy.data), dy.shape, "float32");
    const grads = tf.tidy(() =>
      tf.grads((...xs: tf.Tensor[]) => {
        const vars = { ...inputs };
        diffNames.forEach((n, i) => (vars[n] = xs[i]!));
        return tf.sum(tf.mul(c.run(tf, vars), dyT));
      })(diffNames.map((n) => inputs[n]!)),
    );
    dyT.dispose();
    const loss = (vars: Record<string, F64Array>) => {
      const o = c.reference(vars);
      let s = 0;
      for (let i = 0; i < o.data.length; i++) s += o.data[i]! * dy.data[i]!;
      return s;
    };
    for (let gi = 0; gi < diffNames.length; gi++) {
      const n = diffNames[gi]!;
      const g = await grads[gi]!.data<"float32">();
      const x = ref[n]!;
      const idx = x.data.length <= MAX_FD_ELEMENTS ? [...Array(x.data.length).keys()] : Array.from({ length: MAX_FD_ELEMENTS }, () => rng.int(x.data.length));
      const fd: number[] = [];
      const got: number[] = [];
      for (const i of idx) {
        const orig = x.data[i]!;
        const h = 1e-5 * Math.max(1, Math.abs(orig));
        x.data[i] = orig + h;
        const up = loss(ref);
        x.data[i] = orig - h;
        const down = loss(ref);
        x.data[i] = orig;
        fd.push((up - down) / (2 * h));
        got.push(g[i]!);
      }
      gradientErrors[n] = normalisedError(got, fd);
    }
    tf.dispose(grads);
  }
  tf.dispose(Object.values(inputs));
  const leakedTensors = tf.memory().numTensors - before;
  return { id: c.id, seed, forwardError, gradientErrors, leakedTensors };
}
