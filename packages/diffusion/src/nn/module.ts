/**
 * A small module tree, the shape of torch.nn.Module: every module has a path
 * (diffusers' dotted module path), children and parameters. Parameters are
 * declared with a shape and a layout and created later, either randomly
 * (seeded, torch's default init) or from a diffusers state dict, so that
 * loading a checkpoint never pays for a random init first.
 *
 * Layouts: tfjs wants linear weights [in, out] and conv filters HWIO; diffusers
 * stores [out, in] and OIHW. Each parameter records its layout so the state
 * dict is converted at the load/save boundary only, keeping diffusers' names.
 */
import * as tf from "@tensorflow/tfjs-core";
import { AptError, type Rng } from "@apt/core";

export type ParamLayout = "linear" | "conv" | "plain";

export type ParamInit =
  | { kind: "zeros" }
  | { kind: "ones" }
  /** U(-bound, bound), torch's default for Linear/Conv weights and biases (bound = 1/√fan_in). */
  | { kind: "uniform"; bound: number }
  | { kind: "normal"; std: number };

export interface ParamSpec {
  /** Shape in tfjs layout. */
  shape: number[];
  layout: ParamLayout;
  init: ParamInit;
  variable?: tf.Variable;
}

/** The module state that flows through one forward: adapter mask, time embedding, hooks. */
export interface ForwardContext {
  /** False: adapters off for every sample (skipped entirely). */
  adaptersEnabled: boolean;
  /** [B] 0/1 per sample, or null (adapters on for every sample). */
  adapterMask: tf.Tensor | null;
  /** The time embedding of this forward, [B, Ctemb], or null. */
  temb: tf.Tensor | null;
  hooks: import("./hooks.js").HookRegistry;
}

export class Module {
  private _path = "";
  readonly children = new Map<string, Module>();
  readonly params = new Map<string, ParamSpec>();

  get path(): string {
    return this._path;
  }

  /** Registers a child under `name` (a diffusers path segment such as "to_out.0" is split by the caller). */
  protected add<M extends Module>(name: string, child: M): M {
    this.children.set(name, child);
    child.setPath(this._path ? `${this._path}.${name}` : name);
    return child;
  }

  protected declare(name: string, shape: number[], layout: ParamLayout, init: ParamInit): void {
    this.params.set(name, { shape, layout, init });
  }

  /** The variable of a declared parameter; fails if the model has not been initialised or loaded. */
  protected p(name: string): tf.Variable {
    const spec = this.params.get(name);
    if (!spec?.variable) throw new AptError("INTERNAL", `parameter ${this.qualified(name)} used before the model was initialised or loaded`);
    return spec.variable;
  }

  protected has(name: string): boolean {
    return this.params.has(name);
  }

  qualified(name: string): string {
    return this._path ? `${this._path}.${name}` : name;
  }

  private setPath(path: string): void {
    this._path = path;
    for (const [name, child] of this.children) child.setPath(`${path}.${name}`);
  }

  /** Every module below (and including) this one, depth first, in registration order. */
  *modules(): Generator<Module> {
    yield this;
    for (const child of this.children.values()) yield* child.modules();
  }

  /** Every declared parameter by full diffusers name. */
  namedParamSpecs(): Map<string, ParamSpec> {
    const out = new Map<string, ParamSpec>();
    for (const m of this.modules()) for (const [n, spec] of m.params) out.set(m.qualified(n), spec);
    return out;
  }

  /** Every parameter variable by full diffusers name. */
  namedParameters(): Map<string, tf.Variable> {
    const out = new Map<string, tf.Variable>();
    for (const [name, spec] of this.namedParamSpecs()) {
      if (!spec.variable) throw new AptError("INTERNAL", `parameter ${name} is not initialised`);
      out.set(name, spec.variable);
    }
    return out;
  }

  /** Number of scalar parameters. */
  numParameters(): number {
    let n = 0;
    for (const spec of this.namedParamSpecs().values()) n += spec.shape.reduce((a, b) => a * b, 1);
    return n;
  }

  /** Creates every parameter from its init, drawing from `rng` in declaration order. */
  initialize(rng: Rng): void {
    for (const spec of this.namedParamSpecs().values()) {
      spec.variable?.dispose();
      spec.variable = tf.variable(makeInit(spec, rng), true);
    }
  }

  dispose(): void {
    for (const spec of this.namedParamSpecs().values()) {
      spec.variable?.dispose();
      spec.variable = undefined;
    }
  }
}

function makeInit(spec: ParamSpec, rng: Rng): tf.Tensor {
  const n = spec.shape.reduce((a, b) => a * b, 1);
  const init = spec.init;
  if (init.kind === "zeros") return tf.zeros(spec.shape);
  if (init.kind === "ones") return tf.ones(spec.shape);
  const data = new Float32Array(n);
  if (init.kind === "uniform") for (let i = 0; i < n; i++) data[i] = (rng.uniform() * 2 - 1) * init.bound;
  else for (let i = 0; i < n; i++) data[i] = rng.normal() * init.std;
  return tf.tensor(data, spec.shape, "float32");
}

/** diffusers layout → tfjs layout. */
export function fromDiffusersLayout(t: tf.Tensor, layout: ParamLayout): tf.Tensor {
  if (layout === "linear") return tf.transpose(t, [1, 0]);
  if (layout === "conv") return tf.transpose(t, [2, 3, 1, 0]); // OIHW → HWIO
  return t;
}

/** tfjs layout → diffusers layout. */
export function toDiffusersLayout(t: tf.Tensor, layout: ParamLayout): tf.Tensor {
  if (layout === "linear") return tf.transpose(t, [1, 0]);
  if (layout === "conv") return tf.transpose(t, [3, 2, 0, 1]); // HWIO → OIHW
  return t;
}

/** The shape diffusers stores for a parameter of this tfjs shape and layout. */
export function diffusersShape(shape: number[], layout: ParamLayout): number[] {
  if (layout === "linear") return [shape[1]!, shape[0]!];
  if (layout === "conv") return [shape[3]!, shape[2]!, shape[0]!, shape[1]!];
  return shape;
}
