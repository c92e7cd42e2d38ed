/**
 * From a loaded config to everything a run needs, checked before any work:
 * overrides applied, the shape validated (zod), the model folder found, the
 * images found and decoded, the methods resolved and their options validated.
 * Every problem is gathered and thrown together (one AptError, exit code 2).
 */
import { resolve } from "node:path";
import { DEFAULT_TRAIN_OPTIONS, type TaskKind, type TrainOptions } from "@apt/core";
import { decodePng, findImages, isPng, type DecodedImage } from "../images.js";
import type { BackendRequest } from "./define.js";
import type { LoadedConfig } from "./load.js";
import { applyOverrides, type Override } from "./overrides.js";
import { Problems, type PathSegment } from "./problems.js";
import { resolveMethods, type ResolvedMethodEntry } from "./resolve-methods.js";
import { resolveModel } from "./resolve-model.js";
import { BACKENDS, validateConfig, valueAt, type ParsedConfig } from "./schema.js";

export interface ResolvedConcept {
  name: string;
  prompt: string;
  classPrompt?: string;
  trigger?: string;
  /** The glob as written, and the files it matched. */
  pattern: string;
  files: string[];
  images: DecodedImage[];
}

export interface ResolvedConfig {
  configFile: string;
  configDir: string;
  backend: BackendRequest;
  model: { spec: string; dir: string; package?: string };
  task: TaskKind;
  concepts: ResolvedConcept[];
  train: TrainOptions;
  methods: ResolvedMethodEntry[];
  /** The run folder (absolute). */
  output: string;
  overrides: string[];
}

export interface ResolveOptions {
  overrides?: readonly Override[];
  cwd?: string;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

async function checkImages(pattern: unknown, path: PathSegment[], dir: string, problems: Problems): Promise<{ files: string[]; images: DecodedImage[] }> {
  const none = { files: [], images: [] };
  if (typeof pattern !== "string" || !pattern) return none;
  const files = await findImages(pattern, dir);
  if (files.length === 0) {
    problems.add(path, `"${pattern}" matched no file (glob ${resolve(dir, pattern)}, relative to the config folder ${dir})`, "check the pattern and that the images are there; patterns are relative to the config file's folder");
    return none;
  }
  const other = files.filter((f) => !isPng(f));
  if (other.length) {
    problems.add(path, `only PNG images are supported; "${pattern}" also matched ${other.map((f) => f.slice(dir.length + 1) || f).join(", ")}`, "convert them to PNG, or narrow the pattern (e.g. *.png)");
  }
  const images: DecodedImage[] = [];
  for (const f of files.filter(isPng)) {
    try {
      images.push(decodePng(f));
    } catch (e) {
      problems.add(path, `${f} is not a readable PNG: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
  return { files, images };
}

/** Training options: DEFAULT_TRAIN_OPTIONS, then `train`, then `sample`; sample prompts default to the task's prompts. */
function mergeTrain(c: ParsedConfig, problems: Problems): TrainOptions {
  const train: TrainOptions = { ...DEFAULT_TRAIN_OPTIONS, ...(c.train ?? {}) } as TrainOptions;
  const s = c.sample ?? {};
  const pairs: [keyof typeof s, keyof TrainOptions][] = [
    ["prompts", "samplePrompts"],
    ["every", "sampleEvery"],
    ["steps", "sampleSteps"],
    ["guidance", "sampleGuidance"],
    ["seed", "sampleSeed"],
  ];
  for (const [from, to] of pairs) {
    if (s[from] === undefined) continue;
    if (c.train?.[to] !== undefined) {
      problems.add(["sample", from], `set twice: sample.${from} and train.${to} say the same thing`, `keep one of them`);
      continue;
    }
    (train as unknown as Record<string, unknown>)[to] = s[from];
  }
  if (train.samplePrompts.length === 0) {
    const prompts = c.task.kind === "personalize" ? [c.task.prompt, c.task.classPrompt] : c.task.concepts.flatMap((k) => [k.prompt, k.classPrompt]);
    train.samplePrompts = [...new Set(prompts.filter((p): p is string => typeof p === "string"))];
  }
  if (train.warmupSteps > train.steps) problems.add(["train", "warmupSteps"], `${train.warmupSteps} warm-up steps for ${train.steps} steps`, "lower train.warmupSteps or raise train.steps");
  return train;
}

export async function resolveConfig(loaded: LoadedConfig, o: ResolveOptions = {}): Promise<ResolvedConfig> {
  const problems = new Problems(loaded.file, o.cwd);
  for (const ov of o.overrides ?? []) problems.markOverridden(ov.path);
  const raw = applyOverrides(loaded.config, o.overrides ?? []);
  if (!isRecord(raw)) {
    problems.add([], `the config must be an object, found ${Array.isArray(raw) ? "an array" : typeof raw}`, "export an object with model, task, methods and output");
    problems.throwIfAny();
  }
  const parsed = validateConfig(raw, problems);
  const dir = loaded.dir;

  // The checks below run on the raw values too, so that one run reports everything.
  let model: ResolvedConfig["model"] | undefined;
  const modelSpec = valueAt(raw, ["model"]);
  if (typeof modelSpec === "string" && modelSpec) {
    const m = resolveModel(modelSpec, dir);
    if (m.ok) model = { spec: modelSpec, dir: m.dir, ...(m.package ? { package: m.package } : {}) };
    else problems.add(["model"], m.message, m.fix);
  }

  const concepts: ResolvedConcept[] = [];
  const task = valueAt(raw, ["task"]);
  if (isRecord(task) && task.kind === "personalize") {
    const found = await checkImages(task.images, ["task", "images"], dir, problems);
    concepts.push({ name: typeof task.trigger === "string" ? task.trigger : "concept", prompt: String(task.prompt), ...optionalPrompts(task), pattern: String(task.images), ...found });
  } else if (isRecord(task) && task.kind === "continual" && Array.isArray(task.concepts)) {
    for (const [i, k] of task.concepts.entries()) {
      if (!isRecord(k)) continue;
      const found = await checkImages(k.images, ["task", "concepts", i, "images"], dir, problems);
      concepts.push({ name: String(k.name ?? `concept-${i}`), prompt: String(k.prompt), ...optionalPrompts(k), pattern: String(k.images), ...found });
    }
  }

  const rawMethods = valueAt(raw, ["methods"]);
  const methods = Array.isArray(rawMethods) ? await resolveMethods(rawMethods, dir, problems) : [];
  if (Array.isArray(rawMethods) && rawMethods.length === 0) problems.add(["methods"], "no method: a run needs at least one (e.g. \"lora\")", 'methods: ["lora"]');

  const train = parsed ? mergeTrain(parsed, problems) : undefined;
  problems.throwIfAny();
  const c = parsed!;
  return {
    configFile: loaded.file,
    configDir: dir,
    backend: c.backend ?? "auto",
    model: model!,
    task: c.task.kind,
    concepts,
    train: train!,
    methods,
    output: resolve(dir, c.output),
    overrides: (o.overrides ?? []).map((ov) => ov.text),
  };
}

function optionalPrompts(t: Record<string, unknown>): { classPrompt?: string; trigger?: string } {
  return {
    ...(typeof t.classPrompt === "string" ? { classPrompt: t.classPrompt } : {}),
    ...(typeof t.trigger === "string" ? { trigger: t.trigger } : {}),
  };
}

/** The resolved config as JSON (what --dry-run prints and resolved-config.json holds). */
export function describeResolved(r: ResolvedConfig, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    configFile: r.configFile,
    backend: r.backend,
    ...extra,
    model: r.model,
    task: r.task,
    concepts: r.concepts.map((k) => ({
      name: k.name,
      prompt: k.prompt,
      ...(k.classPrompt ? { classPrompt: k.classPrompt } : {}),
      ...(k.trigger ? { trigger: k.trigger } : {}),
      images: k.pattern,
      files: k.files,
      sizes: [...new Set(k.images.map((i) => `${i.width}x${i.height}`))],
    })),
    train: r.train,
    methods: r.methods.map((m) => ({
      name: m.name,
      plugin: m.plugin.name,
      ...(m.source.package ? { package: m.source.package } : {}),
      ...(m.source.version ? { version: m.source.version } : {}),
      ...(m.source.file ? { file: m.source.file } : {}),
      ...(m.plugin.provides?.length ? { provides: m.plugin.provides } : {}),
      ...(m.plugin.requires?.length ? { requires: m.plugin.requires } : {}),
      options: toJsonSafe(m.options),
    })),
    output: r.output,
    ...(r.overrides.length ? { overrides: r.overrides } : {}),
  };
}

function toJsonSafe(v: unknown): unknown {
  try {
    return JSON.parse(JSON.stringify(v ?? null, (_k, x: unknown) => (typeof x === "bigint" ? x.toString() : x)));
  } catch {
    return String(v);
  }
}

export { BACKENDS };
