/**
 * LoRA files: writing and reading the two namings in use.
 *
 * diffusers / PEFT (`pytorch_lora_weights.safetensors`, what
 * `pipe.load_lora_weights` reads):
 *   unet.<module path>.lora_A.weight            [r, in]     (conv: [r, in, kh, kw])
 *   unet.<module path>.lora_B.weight            [out, r]    (conv: [out, r, 1, 1])
 *   text_encoder.<module path>.lora_A.weight    (text encoder paths start with "text_model.")
 *   __metadata__.lora_adapter_metadata          JSON {"unet.r", "unet.lora_alpha", "unet.target_modules", …}
 *
 * kohya (sd-scripts, A1111, ComfyUI; diffusers' `convert_state_dict_to_kohya`):
 *   lora_unet_<path with "." → "_">.lora_down.weight   [r, in]
 *   lora_unet_<…>.lora_up.weight                      [out, r]
 *   lora_unet_<…>.alpha                               scalar
 *   lora_te1_<text encoder path with "." → "_">…      (lora_te_ is read too)
 *
 * Inside, A is [in, r] (conv: [kh, kw, in, r]) and B [r, out] (tfjs
 * layouts): the files hold the transposes.
 */
import * as tf from "@tensorflow/tfjs-core";
import { AptError, readSafetensors, writeSafetensors, type DecodedTensor, type HookedModel, type HookPoint, type TensorToWrite } from "@apt/core";
import { LoraAdapter, convGeometry, type ConvGeometry } from "./adapter.js";

export type LoraComponent = "unet" | "text_encoder";
export type LoraFormat = "diffusers" | "kohya";

/** The adapters of a model, by component. */
export interface LoraLayers {
  unet?: readonly LoraAdapter[];
  textEncoder?: readonly LoraAdapter[];
}

/** The models LoRA weights are loaded into. */
export interface LoraTargetModels {
  unet: HookedModel;
  textEncoder?: HookedModel;
}

export interface LoadLoraOptions {
  /** Multiplies every module's alpha / rank (diffusers' `lora_scale`, kohya's multiplier). Default 1. */
  scale?: number;
  /** The adapter name on the model, for `removeAdapters(name)`. Default "lora". */
  adapterName?: string;
}

export interface SaveLoraOptions {
  format: LoraFormat;
  /** `__metadata__` entries (strings); "format": "pt" is always written. */
  metadata?: Record<string, string>;
}

/** diffusers' file name for LoRA weights. */
export const DIFFUSERS_LORA_FILE = "pytorch_lora_weights.safetensors";
/** diffusers' metadata key for the per-component peft LoraConfig (JSON). */
export const LORA_ADAPTER_METADATA_KEY = "lora_adapter_metadata";

const KOHYA_PREFIX: Record<LoraComponent, string> = { unet: "lora_unet_", text_encoder: "lora_te1_" };

/** The kohya module name: `lora_unet_down_blocks_1_…_to_out_0`. */
export function kohyaModuleName(component: LoraComponent, path: string): string {
  return `${KOHYA_PREFIX[component]}${path.replaceAll(".", "_")}`;
}

/** The tensor names of one module in a format, in file order. */
export function loraKeys(format: LoraFormat, component: LoraComponent, path: string): { A: string; B: string; alpha?: string } {
  if (format === "diffusers") return { A: `${component}.${path}.lora_A.weight`, B: `${component}.${path}.lora_B.weight` };
  const m = kohyaModuleName(component, path);
  return { A: `${m}.lora_down.weight`, B: `${m}.lora_up.weight`, alpha: `${m}.alpha` };
}

function components(layers: LoraLayers): [LoraComponent, readonly LoraAdapter[]][] {
  return [
    ["unet", layers.unet ?? []],
    ["text_encoder", layers.textEncoder ?? []],
  ];
}

/** torch's shapes of lora_A and lora_B for a module: [r, in] and [out, r], or for a conv [r, in, kh, kw] and [out, r, 1, 1]. */
export function torchLoraShapes(inFeatures: number, outFeatures: number, rank: number, conv?: ConvGeometry): { A: number[]; B: number[] } {
  if (!conv) return { A: [rank, inFeatures], B: [outFeatures, rank] };
  return { A: [rank, inFeatures, conv.kernelSize[0], conv.kernelSize[1]], B: [outFeatures, rank, 1, 1] };
}

/** The tensors of a LoRA file in torch layouts (lora_A [r, in] or [r, in, kh, kw], lora_B [out, r] or [out, r, 1, 1]) and the format's names. */
export async function loraStateDict(layers: LoraLayers, format: LoraFormat): Promise<Record<string, TensorToWrite>> {
  const out: Record<string, TensorToWrite> = {};
  for (const [component, adapters] of components(layers)) {
    for (const a of adapters) {
      const keys = loraKeys(format, component, a.path);
      const shapes = torchLoraShapes(a.inFeatures, a.outFeatures, a.rank, a.conv);
      // HWIO → OIHW for a conv's lora_A; lora_B's [r, out] → [out, r] (the trailing 1×1 of a conv is a reshape).
      const [A, B] = tf.tidy(() => [a.conv ? tf.transpose(a.A, [3, 2, 0, 1]) : tf.transpose(a.A), tf.transpose(a.B)]);
      try {
        out[keys.A] = { dtype: "F32", shape: shapes.A, data: (await A!.data()) as Float32Array };
        out[keys.B] = { dtype: "F32", shape: shapes.B, data: (await B!.data()) as Float32Array };
      } finally {
        tf.dispose([A!, B!]);
      }
      if (keys.alpha) out[keys.alpha] = { dtype: "F32", shape: [], data: Float32Array.of(a.alpha) };
    }
  }
  return out;
}

/** diffusers' `lora_adapter_metadata`: the peft LoraConfig of each component, keys prefixed "unet." / "text_encoder.". */
function adapterMetadata(layers: LoraLayers): string | undefined {
  const packed: Record<string, unknown> = {};
  for (const [component, adapters] of components(layers)) {
    if (adapters.length === 0) continue;
    const { rank, alpha } = adapters[0]!;
    // One r and lora_alpha per component (how this package trains); otherwise leave it to the shapes (alpha = rank).
    if (adapters.some((a) => a.rank !== rank || a.alpha !== alpha)) continue;
    packed[`${component}.r`] = rank;
    packed[`${component}.lora_alpha`] = alpha;
    packed[`${component}.target_modules`] = adapters.map((a) => a.path);
  }
  if (Object.keys(packed).length === 0) return undefined;
  const sorted = Object.fromEntries(Object.keys(packed).sort().map((k) => [k, packed[k]]));
  return JSON.stringify(sorted, null, 2);
}

/** Writes the adapters to `file` (atomically) in diffusers/PEFT or kohya naming. */
export async function saveLoraWeights(file: string, layers: LoraLayers, opts: SaveLoraOptions): Promise<void> {
  const tensors = await loraStateDict(layers, opts.format);
  if (Object.keys(tensors).length === 0) throw new AptError("BAD_INPUT", `${file}: no LoRA adapters to save`);
  const metadata: Record<string, string> = { ...opts.metadata, format: "pt" };
  if (opts.format === "diffusers") {
    const packed = adapterMetadata(layers);
    if (packed !== undefined) metadata[LORA_ADAPTER_METADATA_KEY] = packed;
  }
  await writeSafetensors(file, tensors, metadata);
}

// ------------------------------------------------------------------- loading

interface ParsedKey {
  component: LoraComponent;
  path: string;
  part: "A" | "B" | "alpha";
}

interface ModuleWeights {
  component: LoraComponent;
  path: string;
  A?: { key: string; t: DecodedTensor };
  B?: { key: string; t: DecodedTensor };
  alpha?: { key: string; t: DecodedTensor };
}

const KOHYA_KEY = /^(lora_unet|lora_te1|lora_te)_(.+)\.(lora_down\.weight|lora_up\.weight|alpha)$/;
const DIFFUSERS_KEY = /^(unet|text_encoder)\.(.+)\.(lora_A\.weight|lora_B\.weight|alpha)$/;
const PART: Record<string, ParsedKey["part"]> = {
  "lora_down.weight": "A",
  "lora_up.weight": "B",
  "lora_A.weight": "A",
  "lora_B.weight": "B",
  alpha: "alpha",
};
const SUPPORTED =
  'supported names: "unet.<module>.lora_A.weight" / ".lora_B.weight" (diffusers/PEFT) or "lora_unet_<module>.lora_down.weight" / ".lora_up.weight" / ".alpha" (kohya), and the same for the text encoder ("text_encoder." / "lora_te1_")';

const COMPONENT_NAME: Record<LoraComponent, string> = { unet: "UNet", text_encoder: "text encoder" };

/** Levenshtein distance (error messages only). */
function editDistance(a: string, b: string): number {
  let row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const next = [i];
    for (let j = 1; j <= b.length; j++) next[j] = Math.min(row[j]! + 1, next[j - 1]! + 1, row[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    row = next;
  }
  return row[b.length]!;
}

function closest(name: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const c of candidates) {
    const d = editDistance(name, c);
    if (d < bestD) {
      best = c;
      bestD = d;
    }
  }
  return best;
}

/** The linear and conv points of one component, by dotted path and by kohya's underscore form. */
class ComponentIndex {
  readonly modules: Map<string, HookPoint>;
  private readonly underscored = new Map<string, string | null>(); // null: two paths share the form

  constructor(
    readonly component: LoraComponent,
    readonly model: HookedModel,
  ) {
    const points = model.hookPoints();
    this.modules = new Map(points.filter((p) => p.kind === "linear" || p.kind === "conv").map((p) => [p.path, p]));
    for (const path of this.modules.keys()) {
      const u = path.replaceAll(".", "_");
      this.underscored.set(u, this.underscored.has(u) ? null : path);
    }
  }

  /** Resolves a kohya underscore path; undefined when no linear or conv module has it. */
  fromKohya(file: string, key: string, u: string): string | undefined {
    const path = this.underscored.get(u);
    if (path === null) {
      const options = [...this.modules.keys()].filter((p) => p.replaceAll(".", "_") === u);
      throw new AptError("BAD_INPUT", `${file}: tensor "${key}": the kohya name "${u}" is ambiguous in this ${COMPONENT_NAME[this.component]} (${options.join(", ")})`);
    }
    return path;
  }

  unknownModule(file: string, key: string, path: string, kohya: boolean): AptError {
    const where = `${file}: tensor "${key}"`;
    const what = COMPONENT_NAME[this.component];
    const paths = [...this.modules.keys()];
    if (paths.length === 0) return new AptError("BAD_INPUT", `${where} names module "${path}" but the ${what} has no linear or conv modules`);
    let hint: string;
    if (kohya) {
      const near = closest(path, paths.map((p) => p.replaceAll(".", "_")))!;
      const dotted = paths.find((p) => p.replaceAll(".", "_") === near)!;
      hint = `the closest module is "${dotted}" (kohya name "${KOHYA_PREFIX[this.component]}${near}")`;
    } else {
      hint = `the closest module is "${closest(path, paths)}"`;
    }
    return new AptError("BAD_INPUT", `${where} names module "${path}", which is not a linear or conv module of the ${what}; ${hint}. Was the LoRA trained for another model?`);
  }
}

function parseKey(file: string, key: string, indexOf: (c: LoraComponent, key: string) => ComponentIndex): ParsedKey {
  const k = KOHYA_KEY.exec(key);
  if (k) {
    const component: LoraComponent = k[1] === "lora_unet" ? "unet" : "text_encoder";
    const index = indexOf(component, key);
    const path = index.fromKohya(file, key, k[2]!);
    if (path === undefined) throw index.unknownModule(file, key, k[2]!, true);
    return { component, path, part: PART[k[3]!]! };
  }
  const d = DIFFUSERS_KEY.exec(key);
  if (d) {
    const component = d[1] as LoraComponent;
    const index = indexOf(component, key);
    if (!index.modules.has(d[2]!)) throw index.unknownModule(file, key, d[2]!, false);
    return { component, path: d[2]!, part: PART[d[3]!]! };
  }
  if (/(^|\.)(lora_magnitude_vector|dora_scale)/.test(key)) {
    throw new AptError("BAD_INPUT", `${file}: tensor "${key}" is a DoRA magnitude: DoRA is not supported`);
  }
  throw new AptError("BAD_INPUT", `${file}: tensor "${key}" is not a LoRA weight this loader knows; ${SUPPORTED}`);
}

function scalarOf(t: DecodedTensor): number {
  const v = t.data[0];
  return typeof v === "bigint" ? Number(v) : (v as number);
}

/** peft LoraConfig values from diffusers' `lora_adapter_metadata`, per component. */
function metadataAlpha(file: string, metadata: Record<string, string>): Partial<Record<LoraComponent, number>> {
  const raw = metadata[LORA_ADAPTER_METADATA_KEY];
  if (raw === undefined) return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch (e) {
    throw new AptError("BAD_INPUT", `${file}: metadata "${LORA_ADAPTER_METADATA_KEY}" is not valid JSON (${(e as Error).message})`);
  }
  const out: Partial<Record<LoraComponent, number>> = {};
  if (typeof parsed !== "object" || parsed === null) return out;
  for (const c of ["unet", "text_encoder"] as const) {
    const alpha = (parsed as Record<string, unknown>)[`${c}.lora_alpha`];
    if (typeof alpha === "number" && Number.isFinite(alpha)) out[c] = alpha;
  }
  return out;
}

/**
 * Reads a LoRA file in either naming (diffusers/PEFT or kohya, detected per
 * tensor by its prefix) and installs each module as a non-trainable adapter on
 * `model`, for sampling. alpha comes from kohya's `.alpha`, else diffusers'
 * `lora_adapter_metadata` (`<component>.lora_alpha`), else equals the rank
 * (scale 1). Every name is checked before anything is installed: a module the
 * model does not have fails naming the tensor and the closest module.
 */
export async function loadLoraWeights(model: LoraTargetModels, file: string, opts: LoadLoraOptions = {}): Promise<{ modules: number }> {
  const multiplier = opts.scale ?? 1;
  if (!Number.isFinite(multiplier)) throw new AptError("BAD_INPUT", `loadLoraWeights: scale must be a finite number, got ${multiplier}`);
  const adapterName = opts.adapterName ?? "lora";
  const { metadata, tensors } = await readSafetensors(file);
  const indexes = new Map<LoraComponent, ComponentIndex>();
  const indexOf = (c: LoraComponent, key: string): ComponentIndex => {
    let index = indexes.get(c);
    if (!index) {
      const m = c === "unet" ? model.unet : model.textEncoder;
      if (!m) throw new AptError("BAD_INPUT", `${file}: tensor "${key}" is for the text encoder, but no text encoder was given to loadLoraWeights`);
      index = new ComponentIndex(c, m);
      indexes.set(c, index);
    }
    return index;
  };

  const modules = new Map<string, ModuleWeights>();
  for (const [key, t] of Object.entries(tensors)) {
    const { component, path, part } = parseKey(file, key, indexOf);
    const id = `${component}:${path}`;
    const m = modules.get(id) ?? { component, path };
    const previous = m[part];
    if (previous) throw new AptError("BAD_INPUT", `${file}: tensors "${previous.key}" and "${key}" are the same weight of ${path}: the file mixes two namings of one module`);
    m[part] = { key, t };
    modules.set(id, m);
  }
  if (modules.size === 0) throw new AptError("BAD_INPUT", `${file}: no LoRA tensors in the file; ${SUPPORTED}`);

  const fromMetadata = metadataAlpha(file, metadata);
  const plans: { component: LoraComponent; path: string; point: HookPoint; conv?: ConvGeometry; rank: number; alpha: number; A: DecodedTensor; B: DecodedTensor }[] = [];
  for (const m of modules.values()) {
    const point = indexes.get(m.component)!.modules.get(m.path)!;
    const some = (m.A ?? m.B ?? m.alpha)!.key;
    if (!m.A || !m.B) {
      throw new AptError("BAD_INPUT", `${file}: module ${m.path} (tensor "${some}") has ${m.A ? "lora_A/lora_down but no lora_B/lora_up" : "no lora_A/lora_down"} weight`);
    }
    const [A, B] = [m.A.t, m.B.t];
    const conv = convGeometry(point, file);
    const rank = A.shape[0] ?? 0;
    const inF = point.inFeatures!;
    const outF = point.outFeatures!;
    const want = torchLoraShapes(inF, outF, rank, conv);
    const same = (got: readonly number[], need: number[]) => got.length === need.length && got.every((d, i) => d === need[i]);
    if (rank < 1 || !same(A.shape, want.A) || !same(B.shape, want.B)) {
      const [module, needs] = conv
        ? [`conv ${conv.kernelSize.join("×")}, in ${inF}, out ${outF}`, `lora_A [r, ${inF}, ${conv.kernelSize.join(", ")}] and lora_B [${outF}, r, 1, 1]`]
        : [`linear, in ${inF}, out ${outF}`, `lora_A [r, ${inF}] and lora_B [${outF}, r]`];
      throw new AptError("BAD_INPUT", `${file}: module ${m.path} (${module}) needs ${needs}; "${m.A.key}" is [${A.shape}] and "${m.B.key}" is [${B.shape}]`);
    }
    if (!(A.data instanceof Float32Array) || !(B.data instanceof Float32Array)) {
      throw new AptError("BAD_INPUT", `${file}: module ${m.path}: LoRA weights must be floating point (F32, F16 or BF16)`);
    }
    if (m.alpha && m.alpha.t.data.length !== 1) {
      throw new AptError("BAD_INPUT", `${file}: tensor "${m.alpha.key}" has shape [${m.alpha.t.shape}]; alpha must be a single number`);
    }
    const alpha = m.alpha ? scalarOf(m.alpha.t) : (fromMetadata[m.component] ?? rank);
    plans.push({ component: m.component, path: m.path, point, conv, rank, alpha, A, B });
  }

  for (const component of ["unet", "text_encoder"] as const) {
    const mine = plans.filter((p) => p.component === component);
    if (mine.length === 0) continue;
    const byPath = new Map(mine.map((p) => [p.path, p]));
    const target = exactTarget(mine.map((p) => p.path));
    const hooked = component === "unet" ? model.unet : model.textEncoder!;
    hooked.addAdapter(target, (point) => {
      const p = byPath.get(point.path);
      if (!p) throw new AptError("INTERNAL", `loadLoraWeights: addAdapter matched ${point.path}, which is not in the file`);
      const shapes = torchLoraShapes(p.point.inFeatures!, p.point.outFeatures!, p.rank, p.conv);
      // torch → tfjs: a conv's lora_A OIHW → HWIO; lora_B [out, r(, 1, 1)] → [r, out].
      const [A, B] = tf.tidy(() => {
        const a = tf.tensor(p.A.data as Float32Array, shapes.A);
        return [p.conv ? tf.transpose(a, [2, 3, 1, 0]) : tf.transpose(a), tf.transpose(tf.tensor2d(p.B.data as Float32Array, [p.point.outFeatures!, p.rank]))];
      });
      try {
        return new LoraAdapter({
          name: adapterName,
          path: point.path,
          inFeatures: p.point.inFeatures!,
          outFeatures: p.point.outFeatures!,
          conv: p.conv,
          rank: p.rank,
          alpha: p.alpha,
          A: A!,
          B: B!,
          trainable: false,
          multiplier,
        });
      } finally {
        tf.dispose([A!, B!]);
      }
    });
  }
  return { modules: plans.length };
}

/** A target (peft string rule: a regex matching the whole path) that selects exactly these paths. */
export function exactTarget(paths: readonly string[]): string {
  return `(?:${paths.map((p) => p.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")).join("|")})`;
}
