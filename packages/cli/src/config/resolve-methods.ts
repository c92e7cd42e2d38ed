/**
 * Resolving the `methods` of a config into plugin instances with validated
 * options, gathering every problem.
 *
 * Names (the conventions of Babel's and ESLint's plugin names):
 * - `"cat"`            → `@apt/method-cat`, then `apt-method-cat`, then `cat`;
 * - `"@apt/foo"`       → `@apt/method-foo`, then `@apt/foo`;
 * - `"@scope/foo"`     → `@scope/apt-method-foo`, then `@scope/foo`;
 *   (names already carrying the prefix are taken as they are);
 * - `"module:x"`       → exactly `x`;
 * - `"./x"`, `"../x"`, `"/x"` → a file, from the config file's folder.
 *
 * Everything resolves from the config file's folder (the user's project), not
 * from the CLI: `createRequire(<configDir>/noop.js).resolve(name)`, then
 * `import()`. The module's default export is the plugin (or an export named
 * after the method, e.g. `cat` or `customDiffusion`).
 */
import { pathToFileURL } from "node:url";
import { isAbsolute, resolve } from "node:path";
import { checkMethodSet, METHOD_API_VERSION, type MethodPlugin, type ResolvedMethod } from "@apt/core";
import type { PathSegment, Problems } from "./problems.js";
import { addIssue, describeValue, type IssueLike } from "./schema.js";
import { isFile } from "../util/fs.js";
import { findPackageDir, readPackageJson, resolveFrom, scanMethodPackages, shortMethodName, splitPackageSpec } from "../util/packages.js";
import { suggest } from "../util/suggest.js";

/** Method names the project documents (shared/METHODS.md): "did you mean" and install hints know them. */
export const KNOWN_METHODS = ["lora", "dreambooth", "cat", "apt", "gta", "a3fta", "bnn", "dcs", "clora", "custom-diffusion", "textual-inversion"] as const;

export interface MethodSource {
  /** Index in `methods`. */
  index: number;
  /** The name as written, or null for a plugin object. */
  spec: string | null;
  /** Package that provided it (when resolved by name). */
  package?: string;
  version?: string;
  /** The module file imported. */
  file?: string;
}

export interface ResolvedMethodEntry extends ResolvedMethod {
  source: MethodSource;
}

export interface CandidateList {
  kind: "file" | "exact" | "package";
  candidates: string[];
}

/** The module names a method name stands for, in the order they are tried. */
export function methodCandidates(spec: string, configDir: string): CandidateList {
  if (spec.startsWith("module:")) return { kind: "exact", candidates: [spec.slice("module:".length)] };
  if (spec.startsWith("./") || spec.startsWith("../") || isAbsolute(spec)) return { kind: "file", candidates: [resolve(configDir, spec)] };
  if (spec.startsWith("@")) {
    const parts = spec.split("/");
    if (parts.length === 2 && parts[1]) {
      const [scope, name] = parts as [string, string];
      if (scope === "@apt") return { kind: "package", candidates: name.startsWith("method-") ? [spec] : [`@apt/method-${name}`, spec] };
      return { kind: "package", candidates: name.startsWith("apt-method-") ? [spec] : [`${scope}/apt-method-${name}`, spec] };
    }
    return { kind: "package", candidates: [spec] };
  }
  if (spec.includes("/") || spec.startsWith("apt-method-")) return { kind: "package", candidates: [spec] };
  return { kind: "package", candidates: [`@apt/method-${spec}`, `apt-method-${spec}`, spec] };
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function looksLikePlugin(v: unknown): boolean {
  return isRecord(v) && ("create" in v || "apiVersion" in v || "options" in v);
}

/** What is missing for `v` to be a MethodPlugin (empty when it is one, whatever its apiVersion). */
export function pluginShapeProblems(v: unknown): string[] {
  if (!isRecord(v)) return ["not an object"];
  const missing: string[] = [];
  if (!("apiVersion" in v)) missing.push("apiVersion");
  if (typeof v.name !== "string" || !v.name) missing.push("name (a string)");
  const std = isRecord(v.options) || typeof v.options === "function" ? (v.options as Record<string, unknown>)["~standard"] : undefined;
  if (!isRecord(std) || typeof std.validate !== "function") missing.push('options (a Standard Schema with "~standard".validate, e.g. a zod schema)');
  if (typeof v.create !== "function") missing.push("create (a function)");
  return missing;
}

function camel(name: string): string {
  return name.replace(/[-_]+([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

/** The plugin among a module's exports: default (unwrapping CJS interop), or an export named after the method. */
function pickExport(mod: Record<string, unknown>, shortName: string): unknown {
  const candidates: unknown[] = [mod.default, isRecord(mod.default) ? mod.default.default : undefined, mod[shortName], mod[camel(shortName)], mod.plugin];
  return candidates.find(looksLikePlugin) ?? mod.default;
}

interface ParsedEntry {
  ref: string | Record<string, unknown>;
  options: unknown;
  hasOptions: boolean;
  instance?: string;
}

const ENTRY_FORMS = '"name", ["name", {options}], ["name", {options}, "unique name"], a plugin object or [plugin, {options}, "name"?]';

function parseEntry(entry: unknown, path: PathSegment[], problems: Problems): ParsedEntry | undefined {
  if (typeof entry === "string") {
    if (!entry.trim()) {
      problems.add(path, "empty method name", `write one of ${ENTRY_FORMS}`);
      return undefined;
    }
    return { ref: entry, options: undefined, hasOptions: false };
  }
  if (Array.isArray(entry)) {
    const [ref, options, instance] = entry as unknown[];
    let ok = true;
    if (entry.length < 1 || entry.length > 3) {
      problems.add(path, `a method tuple has 1 to 3 entries, found ${entry.length}`, `write one of ${ENTRY_FORMS}`);
      return undefined;
    }
    if (!(typeof ref === "string" && ref.trim()) && !isRecord(ref)) {
      problems.add([...path, 0], `expected a method name or a plugin object, received ${describeValue(ref)}`);
      ok = false;
    }
    if (options !== undefined && options !== null && !isRecord(options)) {
      problems.add([...path, 1], `options must be an object, received ${describeValue(options)}`, `write ["${typeof ref === "string" ? ref : "name"}", { ...options }]`);
      ok = false;
    }
    if (entry.length === 3 && (typeof instance !== "string" || !instance.trim())) {
      problems.add([...path, 2], `the instance name must be a non-empty string, received ${describeValue(instance)}`);
      ok = false;
    }
    if (!ok) return undefined;
    return { ref: ref as string | Record<string, unknown>, options: options ?? undefined, hasOptions: entry.length >= 2, ...(typeof instance === "string" ? { instance } : {}) };
  }
  if (isRecord(entry)) return { ref: entry, options: undefined, hasOptions: false };
  problems.add(path, `expected a method, received ${describeValue(entry)}`, `write one of ${ENTRY_FORMS}`);
  return undefined;
}

interface Loaded {
  plugin: unknown;
  source: MethodSource;
}

interface Context {
  configDir: string;
  problems: Problems;
  installed: () => string[];
}

async function loadByName(spec: string, index: number, path: PathSegment[], ctx: Context): Promise<Loaded | undefined> {
  const { kind, candidates } = methodCandidates(spec, ctx.configDir);
  const source: MethodSource = { index, spec };
  let file: string | undefined;
  let found: string | undefined;
  for (const c of candidates) {
    file = kind === "file" ? (isFile(c) ? c : undefined) : resolveFrom(ctx.configDir, c);
    if (file) {
      found = c;
      break;
    }
  }
  if (!file || !found) {
    if (kind === "file") {
      ctx.problems.add(path, `method file ${spec} not found (resolved to ${candidates[0]})`, "paths starting with ./ or ../ are relative to the config file's folder");
      return undefined;
    }
    const tried = `tried ${candidates.join(", ")} from ${ctx.configDir}`;
    const short = kind === "package" ? shortMethodName(candidates[0]!) : spec;
    const known = (KNOWN_METHODS as readonly string[]).includes(short) && candidates[0] === `@apt/method-${short}`;
    if (known) {
      ctx.problems.add(path, `method "${spec}" is not installed (${tried})`, `pnpm add ${candidates[0]}`);
      return undefined;
    }
    const installed = ctx.installed();
    const pool = [...new Set([...installed, ...KNOWN_METHODS])];
    const hints = suggest(spec.replace(/^module:/, ""), pool);
    const hint = hints.length ? ` Did you mean ${hints.map((h) => `"${h}"`).join(" or ")}?` : "";
    const installHint = hints.length ? hints.map((h) => (installed.includes(h) ? `"${h}" (installed)` : `"${h}" (pnpm add @apt/method-${h})`)).join(" or ") : "";
    const fix = hints.length
      ? `use ${installHint}`
      : `install it (pnpm add ${candidates[0]}), or for a package of another name write "module:<package>"; installed methods: ${installed.length ? installed.join(", ") : "none"}`;
    ctx.problems.add(path, `method "${spec}" not found (${tried}).${hint}`, fix);
    return undefined;
  }
  source.file = file;
  if (kind !== "file") {
    const pkgName = splitPackageSpec(found).name;
    const dir = findPackageDir(pkgName, ctx.configDir);
    const pkg = dir ? readPackageJson(dir) : undefined;
    source.package = pkgName;
    if (pkg?.version) source.version = pkg.version;
  }
  let mod: Record<string, unknown>;
  try {
    mod = (await import(pathToFileURL(file).href)) as Record<string, unknown>;
  } catch (e) {
    const msg = e instanceof Error ? e.message.split("\n")[0] : String(e);
    ctx.problems.add(path, `${source.package ?? file} was found but could not be loaded: ${msg}`, "reinstall it (pnpm install), or check that its dependencies are installed");
    return undefined;
  }
  const short = kind === "file" ? spec.replace(/^.*[\\/]/, "").replace(/\.[cm]?[jt]s$/, "") : shortMethodName(splitPackageSpec(found).name);
  return { plugin: pickExport(mod, short), source };
}

/** Keys of a zod object schema (unwrapping default/optional/pipe wrappers), or [] when not introspectable. */
export function schemaKeys(schema: unknown): string[] {
  let s = schema as { _zod?: { def?: Record<string, unknown> }; shape?: unknown } | undefined;
  for (let i = 0; i < 8 && s; i++) {
    const def = s._zod?.def;
    if (!def) return [];
    if (def.type === "object" && isRecord(def.shape)) return Object.keys(def.shape);
    s = (def.innerType ?? def.in ?? def.schema) as typeof s;
  }
  return [];
}

/** Validates options through the plugin's Standard Schema; issues become problems under `path`. */
async function validateOptions(plugin: MethodPlugin<unknown>, raw: unknown, path: PathSegment[], ctx: Context): Promise<{ ok: true; value: unknown } | { ok: false }> {
  let result: Awaited<ReturnType<MethodPlugin<unknown>["options"]["~standard"]["validate"]>>;
  try {
    result = await plugin.options["~standard"].validate(raw);
  } catch (e) {
    ctx.problems.add(path, `the options schema of "${plugin.name}" threw: ${e instanceof Error ? e.message : String(e)}`);
    return { ok: false };
  }
  if (result.issues) {
    const keys = schemaKeys(plugin.options);
    for (const issue of result.issues) {
      addIssue(ctx.problems, issue as IssueLike, raw, path, (p) => (p.length === 0 ? keys : []), `option of "${plugin.name}"`);
    }
    return { ok: false };
  }
  return { ok: true, value: result.value };
}

/**
 * Resolves `methods` (the raw config array). Problems are added to
 * `problems`; the methods that resolved are returned. When every entry
 * resolved, core's `checkMethodSet` (requires/provides) runs too.
 */
export async function resolveMethods(methods: unknown[], configDir: string, problems: Problems): Promise<ResolvedMethodEntry[]> {
  let installedCache: string[] | undefined;
  const ctx: Context = {
    configDir,
    problems,
    installed: () => (installedCache ??= scanMethodPackages(configDir).map((p) => shortMethodName(p.name))),
  };
  const before = problems.size;
  const resolved: ResolvedMethodEntry[] = [];
  const names = new Map<string, number>();
  let failed = 0;
  for (let i = 0; i < methods.length; i++) {
    const path: PathSegment[] = ["methods", i];
    const entry = parseEntry(methods[i], path, problems);
    if (!entry) {
      failed++;
      continue;
    }
    const refPath = Array.isArray(methods[i]) ? [...path, 0] : path;
    let loaded: Loaded | undefined;
    if (typeof entry.ref === "string") loaded = await loadByName(entry.ref, i, refPath, ctx);
    else loaded = { plugin: entry.ref, source: { index: i, spec: null } };
    if (!loaded) {
      failed++;
      continue;
    }
    const what = loaded.source.package ?? loaded.source.file ?? "the plugin object";
    const shape = pluginShapeProblems(loaded.plugin);
    if (shape.length) {
      const why = isRecord(loaded.plugin) ? `missing ${shape.join(", ")}` : `its default export is ${describeValue(loaded.plugin)}`;
      problems.add(refPath, `${what} does not export a method plugin (${why})`, `a method plugin's default export is { apiVersion: ${METHOD_API_VERSION}, name, options, create } (see @apt/core's MethodPlugin)`);
      failed++;
      continue;
    }
    const plugin = loaded.plugin as MethodPlugin<unknown>;
    let ok = true;
    if (plugin.apiVersion !== METHOD_API_VERSION) {
      const v = plugin.apiVersion as unknown;
      const newer = typeof v === "number" && v > METHOD_API_VERSION;
      problems.add(
        refPath,
        `method "${plugin.name}" (${what}${loaded.source.version ? `@${loaded.source.version}` : ""}) targets method API version ${JSON.stringify(v)}; this @apt/cli supports version ${METHOD_API_VERSION}`,
        newer ? "upgrade @apt/cli and @apt/core, or install a release of the plugin written for API version 1" : "upgrade the plugin to a release written for API version 1",
      );
      ok = false;
    }
    const name = entry.instance ?? plugin.name;
    const first = names.get(name);
    if (first !== undefined) {
      problems.add(
        path,
        `duplicate method "${name}" (also methods[${first}]). To use two separate instances of a plugin, they need separate names`,
        `e.g. methods: [["${plugin.name}", {}], ["${plugin.name}", {}, "${plugin.name}-2"]]`,
      );
      ok = false;
    } else names.set(name, i);
    const optionsPath = entry.hasOptions ? [...path, 1] : path;
    const options = await validateOptions(plugin, entry.options ?? {}, optionsPath, ctx);
    if (!options.ok) ok = false;
    if (!ok) {
      failed++;
      continue;
    }
    resolved.push({ plugin, options: (options as { value: unknown }).value, name, source: loaded.source });
  }
  if (failed === 0 && problems.size === before) {
    for (const p of checkMethodSet(resolved)) problems.add(["methods"], p);
  }
  return resolved;
}
