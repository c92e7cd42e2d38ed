/**
 * The base of every diffusers-format model here: a module tree that implements
 * the HookedModel contract of @apt/core, loads and saves diffusers' folder
 * layout (config.json + safetensors with diffusers' names and layouts), and
 * builds the ForwardContext each forward passes down.
 */
import * as tf from "@tensorflow/tfjs-core";
import { mkdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import {
  AptError,
  SafetensorsReader,
  writeSafetensors,
  writeFileAtomic,
  type HookedModel,
  type HookPoint,
  type HookPointKind,
  type ModuleAdapter,
  type TargetModules,
  matchesTargetModules,
  type AttentionObserver,
  type AttentionProcessor,
  type FeatureObserver,
} from "@apt/core";
import { HookRegistry } from "./hooks.js";
import { AdaptableModule, Conv2d, Linear } from "./layers.js";
import { Module, diffusersShape, fromDiffusersLayout, toDiffusersLayout, type ForwardContext } from "./module.js";

/** Reads and parses a JSON file, with errors that name it. */
export async function readJson(path: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (e) {
    const code = (e as { code?: string }).code;
    throw new AptError("BAD_INPUT", code === "ENOENT" ? `${path} does not exist: a diffusers model folder needs its config.json` : `${path}: cannot read (${(e as Error).message})`);
  }
  try {
    const value = JSON.parse(text) as unknown;
    if (typeof value !== "object" || value === null || Array.isArray(value)) throw new Error("not a JSON object");
    return value as Record<string, unknown>;
  } catch (e) {
    throw new AptError("BAD_INPUT", `${path}: invalid JSON (${(e as Error).message})`);
  }
}

interface AttentionLike extends Module {
  readonly kind: "self" | "cross";
  readonly heads: number;
}

function isAttention(m: Module): m is AttentionLike {
  return "kind" in m && "heads" in m && typeof (m as { call?: unknown }).call === "function" && m.children.has("to_q");
}

function isFeaturePoint(m: Module): boolean {
  return (m as { featurePoint?: boolean }).featurePoint === true;
}

export interface LoadOptions {
  /** Names in the file that are fine to ignore (e.g. transformers' `position_ids` buffer). */
  ignore?: (name: string) => boolean;
}

/** The dtypes weights can be written in; every load reads them back as float32. */
export const SAVE_DTYPES = ["float32", "float16", "bfloat16"] as const;
export type SaveDtype = (typeof SAVE_DTYPES)[number];

export interface SaveOptions {
  /**
   * The dtype of the weights in the file (diffusers: a model cast with
   * `.to(torch.float16)` before `save_pretrained`). float16 halves the file;
   * training and inference here stay float32. Default float32.
   */
  dtype?: SaveDtype;
  /** Extra `__metadata__` entries of the safetensors file. */
  metadata?: Record<string, string>;
}

const SAFETENSORS_DTYPE = { float16: "F16", bfloat16: "BF16" } as const;

export { writeFileAtomic };

export abstract class DiffusersModel extends Module implements HookedModel {
  readonly hooks = new HookRegistry();
  private adaptersOn = true;
  private mask: number[] | tf.Tensor | null = null;
  private adapterNames = new Map<AdaptableModule, ModuleAdapter[]>();

  /** The diffusers config (config.json contents) this model was built from. */
  abstract toConfig(): Record<string, unknown>;
  /** The weights file name in a diffusers folder. */
  abstract readonly weightsName: string;

  /** The per-forward context; call inside the forward's tidy scope. */
  protected forwardContext(): ForwardContext {
    let adapterMask: tf.Tensor | null = null;
    if (Array.isArray(this.mask)) adapterMask = tf.tensor1d(this.mask, "float32");
    else if (this.mask) adapterMask = this.mask;
    return { adaptersEnabled: this.adaptersOn, adapterMask, temb: null, hooks: this.hooks };
  }

  // ---------------------------------------------------------------- HookedModel
  hookPoints(kind?: HookPointKind): HookPoint[] {
    const points: HookPoint[] = [];
    for (const m of this.modules()) {
      if (m === this) continue;
      if (isAttention(m)) points.push({ path: m.path, kind: "attention", attention: m.kind, heads: m.heads });
      else if (m instanceof Linear) points.push({ path: m.path, kind: "linear", inFeatures: m.inFeatures, outFeatures: m.outFeatures });
      else if (m instanceof Conv2d) {
        points.push({
          path: m.path,
          kind: "conv",
          inFeatures: m.inFeatures,
          outFeatures: m.outFeatures,
          kernelSize: [m.kernelSize, m.kernelSize],
          stride: [m.stride, m.stride],
          padding: [m.padding, m.padding],
        });
      }
      if (isFeaturePoint(m)) points.push({ path: m.path, kind: "feature" });
    }
    return kind ? points.filter((p) => p.kind === kind) : points;
  }

  private matched(kind: HookPointKind | HookPointKind[], target: TargetModules, what: string): HookPoint[] {
    const kinds = Array.isArray(kind) ? kind : [kind];
    const points = this.hookPoints().filter((p) => kinds.includes(p.kind) && matchesTargetModules(p.path, target));
    if (points.length === 0) {
      const some = this.hookPoints().filter((p) => kinds.includes(p.kind)).slice(0, 4).map((p) => p.path);
      throw new AptError("BAD_INPUT", `${what}: target ${JSON.stringify(target)} matches no ${kinds.join("/")} module; examples of paths: ${some.join(", ")}`);
    }
    return points;
  }

  setAttentionProcessor(target: TargetModules, processor: AttentionProcessor): string[] {
    const points = this.matched("attention", target, "setAttentionProcessor");
    for (const p of points) this.hooks.setProcessor(p.path, processor);
    return points.map((p) => p.path);
  }

  resetAttentionProcessors(): void {
    this.hooks.resetProcessors();
  }

  observeAttention(target: TargetModules, observer: AttentionObserver): () => void {
    this.matched("attention", target, "observeAttention");
    return this.hooks.addAttentionObserver(target, observer);
  }

  observeFeatures(target: TargetModules, observer: FeatureObserver): () => void {
    this.matched("feature", target, "observeFeatures");
    return this.hooks.addFeatureObserver(target, observer);
  }

  addAdapter(target: TargetModules, make: (point: HookPoint) => ModuleAdapter): Record<string, tf.Variable> {
    const added: Record<string, tf.Variable> = {};
    const byPath = new Map<string, Module>();
    for (const m of this.modules()) byPath.set(m.path, m);
    for (const point of this.matched(["linear", "conv"], target, "addAdapter")) {
      const module = byPath.get(point.path) as AdaptableModule;
      const adapter = make(point);
      module.adapters.push(adapter);
      const list = this.adapterNames.get(module) ?? [];
      list.push(adapter);
      this.adapterNames.set(module, list);
      for (const [name, v] of Object.entries(adapter.variables())) added[`${point.path}.${name}`] = v;
    }
    return added;
  }

  removeAdapters(name?: string): void {
    for (const [module, list] of this.adapterNames) {
      const keep = list.filter((a) => name !== undefined && a.name !== name);
      for (const a of list) {
        if (keep.includes(a)) continue;
        if (a.dispose) a.dispose();
        else for (const v of Object.values(a.variables())) v.dispose();
      }
      module.adapters.splice(0, module.adapters.length, ...keep);
      this.adapterNames.set(module, keep);
    }
  }

  setAdapterMask(mask: boolean | null | number[] | tf.Tensor): void {
    this.adaptersOn = mask !== false;
    this.mask = typeof mask === "boolean" || mask === null ? null : mask;
  }

  /** Captures the adapter mask; the returned function restores it. */
  protected adapterMaskState(): () => void {
    const saved = { on: this.adaptersOn, mask: this.mask };
    return () => {
      this.adaptersOn = saved.on;
      this.mask = saved.mask;
    };
  }

  /** Runs `fn` with adapters off (the pretrained model, same weights), then restores the mask. */
  withAdaptersOff<T>(fn: () => T): T {
    const restore = this.adapterMaskState();
    this.setAdapterMask(false);
    try {
      return fn();
    } finally {
      restore();
    }
  }

  // ----------------------------------------------------------- loading, saving
  /** Loads every parameter from a diffusers safetensors file, checking names and shapes against the config. */
  async loadWeights(file: string, opts: LoadOptions = {}): Promise<void> {
    const reader = await SafetensorsReader.open(file);
    try {
      const specs = this.namedParamSpecs();
      const problems: string[] = [];
      for (const [name, spec] of specs) {
        const want = diffusersShape(spec.shape, spec.layout);
        if (!reader.has(name)) {
          problems.push(`missing tensor "${name}" (expected shape [${want}])`);
          continue;
        }
        const got = reader.entry(name).shape;
        if (got.length !== want.length || got.some((d, i) => d !== want[i])) {
          problems.push(`tensor "${name}" has shape [${got}] in the file but the config gives [${want}]`);
        }
      }
      for (const name of reader.names()) {
        if (!specs.has(name) && !opts.ignore?.(name)) problems.push(`unexpected tensor "${name}" [${reader.entry(name).shape}] (not part of this config)`);
      }
      if (problems.length) {
        const shown = problems.slice(0, 12);
        if (problems.length > shown.length) shown.push(`… and ${problems.length - shown.length} more`);
        throw new AptError("BAD_INPUT", `${file} does not match the model config (${problems.length} problem${problems.length > 1 ? "s" : ""}):\n  ${shown.join("\n  ")}\nIs the config.json beside it the one these weights were saved with?`);
      }
      for (const [name, spec] of specs) {
        const raw = await reader.readTensor(name);
        // F16/BF16 arrive as float32 already; integer tensors are cast. A
        // "plain" layout returns `raw` itself, so only intermediates are freed.
        const value = tf.tidy(() => fromDiffusersLayout(raw.dtype === "float32" ? raw : tf.cast(raw, "float32"), spec.layout));
        if (value !== raw) raw.dispose();
        spec.variable?.dispose();
        spec.variable = tf.variable(value, true);
        value.dispose();
      }
    } finally {
      await reader.close();
    }
  }

  /** Writes config.json and the weights (diffusers names and layouts, in `opts.dtype`) into `dir`. */
  async savePretrained(dir: string, opts: SaveOptions = {}): Promise<void> {
    const dtype = opts.dtype ?? "float32";
    if (!SAVE_DTYPES.includes(dtype)) throw new AptError("BAD_INPUT", `savePretrained: dtype ${JSON.stringify(dtype)} is not one of ${SAVE_DTYPES.join(", ")}`);
    await mkdir(dir, { recursive: true });
    const tensors: Record<string, tf.Tensor> = {};
    for (const [name, spec] of this.namedParamSpecs()) {
      if (!spec.variable) throw new AptError("INTERNAL", `cannot save: parameter ${name} is not initialised`);
      tensors[name] = toDiffusersLayout(spec.variable, spec.layout);
    }
    try {
      // Half precision is encoded from float32 (rounded to nearest even) by the writer.
      const toWrite = dtype === "float32" ? tensors : Object.fromEntries(Object.entries(tensors).map(([name, t]) => [name, { dtype: SAFETENSORS_DTYPE[dtype], shape: [...t.shape], data: t.dataSync() as Float32Array }]));
      await writeSafetensors(join(dir, this.weightsName), toWrite, { format: "pt", ...opts.metadata });
    } finally {
      for (const [name, spec] of this.namedParamSpecs()) if (tensors[name] !== spec.variable) tensors[name]!.dispose();
    }
    await writeFileAtomic(join(dir, "config.json"), `${JSON.stringify(this.toConfig(), null, 2)}\n`);
  }
}

/** Config value readers that fail with the file and field named. */
export class ConfigReader {
  constructor(
    readonly source: string,
    readonly raw: Record<string, unknown>,
  ) {}

  /** Throws an AptError naming the source and the field. */
  fail(field: string, message: string): never {
    throw new AptError("BAD_INPUT", `${this.source}: field "${field}" ${message}`);
  }

  number(field: string, fallback?: number, opts: { integer?: boolean; min?: number } = {}): number {
    const v = this.raw[field] ?? fallback;
    if (typeof v !== "number" || !Number.isFinite(v)) this.fail(field, `must be a number, got ${JSON.stringify(v)}`);
    if (opts.integer && !Number.isInteger(v)) this.fail(field, `must be an integer, got ${v}`);
    if (opts.min !== undefined && v < opts.min) this.fail(field, `must be ≥ ${opts.min}, got ${v}`);
    return v;
  }

  bool(field: string, fallback: boolean): boolean {
    const v = this.raw[field] ?? fallback;
    if (typeof v !== "boolean") this.fail(field, `must be true or false, got ${JSON.stringify(v)}`);
    return v;
  }

  string<T extends string>(field: string, allowed: readonly T[], fallback?: T): T {
    const v = this.raw[field] ?? fallback;
    if (typeof v !== "string" || !allowed.includes(v as T)) this.fail(field, `is ${JSON.stringify(v)}; supported: ${allowed.map((a) => JSON.stringify(a)).join(", ")}`);
    return v as T;
  }

  numberList(field: string, length: number, fallback?: number | number[]): number[] {
    const v = this.raw[field] ?? fallback;
    const list = typeof v === "number" ? new Array<number>(length).fill(v) : v;
    if (!Array.isArray(list) || list.length !== length || list.some((x) => typeof x !== "number" || !Number.isInteger(x) || x < 1)) {
      this.fail(field, `must be a positive integer or a list of ${length} of them, got ${JSON.stringify(v)}`);
    }
    return list as number[];
  }

  stringList<T extends string>(field: string, allowed: readonly T[], fallback?: T[]): T[] {
    const v = this.raw[field] ?? fallback;
    if (!Array.isArray(v) || v.length === 0) this.fail(field, `must be a non-empty list, got ${JSON.stringify(v)}`);
    v.forEach((x, i) => {
      if (!allowed.includes(x as T)) this.fail(field, `entry ${i} is ${JSON.stringify(x)}; supported: ${allowed.map((a) => JSON.stringify(a)).join(", ")}`);
    });
    return v as T[];
  }

  /** Fails when a field has a value other than the ones supported (e.g. features not implemented). */
  only(field: string, allowed: unknown[]): void {
    if (!(field in this.raw)) return;
    const v = this.raw[field];
    if (!allowed.some((a) => JSON.stringify(a) === JSON.stringify(v))) {
      this.fail(field, `is ${JSON.stringify(v)}; @apt/diffusion supports only ${allowed.map((a) => JSON.stringify(a)).join(" or ")}`);
    }
  }
}
