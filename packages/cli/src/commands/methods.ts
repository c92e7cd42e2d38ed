/**
 * `apt-run methods`: the method plugins installed where the command runs
 * (node_modules/@apt/method-*, node_modules/apt-method-*,
 * node_modules/@scope/apt-method-*, in this folder and its parents), with
 * their options. Options are described from the schema when it is a zod
 * schema (z.toJSONSchema); other Standard Schemas cannot be introspected.
 */
import { pathToFileURL } from "node:url";
import { z } from "zod";
import type { MethodPlugin } from "@apt/core";
import { pluginShapeProblems } from "../config/resolve-methods.js";
import { resolveFrom, scanMethodPackages, shortMethodName } from "../util/packages.js";
import type { Io } from "./io.js";

export interface OptionInfo {
  name: string;
  type: string;
  default?: unknown;
  description?: string;
  required: boolean;
}

export interface MethodInfo {
  name: string;
  /** The name to write in a config. */
  use: string;
  package: string;
  version?: string;
  description?: string;
  dir: string;
  apiVersion?: unknown;
  provides?: readonly string[];
  requires?: readonly string[];
  /** undefined: the schema cannot be introspected. */
  options?: OptionInfo[];
  error?: string;
}

interface JsonSchema {
  type?: string | string[];
  enum?: unknown[];
  const?: unknown;
  items?: JsonSchema;
  anyOf?: JsonSchema[];
  default?: unknown;
  description?: string;
  properties?: Record<string, JsonSchema>;
  required?: string[];
}

function typeOf(s: JsonSchema): string {
  if (s.enum) return s.enum.map((v) => JSON.stringify(v)).join(" | ");
  if (s.const !== undefined) return JSON.stringify(s.const);
  if (s.anyOf) return s.anyOf.map(typeOf).join(" | ");
  if (s.type === "array") return `${s.items ? typeOf(s.items) : "unknown"}[]`;
  if (Array.isArray(s.type)) return s.type.join(" | ");
  return s.type ?? "any";
}

/** Options of a zod object schema, or undefined when the schema is not zod (or not an object). */
export function describeOptions(schema: unknown): OptionInfo[] | undefined {
  const vendor = (schema as { "~standard"?: { vendor?: string } } | null)?.["~standard"]?.vendor;
  if (vendor !== "zod") return undefined;
  let json: JsonSchema;
  try {
    json = z.toJSONSchema(schema as z.ZodType, { io: "input", unrepresentable: "any" }) as JsonSchema;
  } catch {
    return undefined;
  }
  if (!json.properties) return undefined;
  return Object.entries(json.properties).map(([name, p]) => ({
    name,
    type: typeOf(p),
    ...(p.default !== undefined ? { default: p.default } : {}),
    ...(p.description ? { description: p.description } : {}),
    required: (json.required ?? []).includes(name) && p.default === undefined,
  }));
}

/** The name to write in a config for a package: "@apt/method-x" and "apt-method-x" → "x", "@acme/apt-method-x" → "@acme/x". */
export function configName(pkg: string): string {
  if (pkg.startsWith("@apt/method-") || pkg.startsWith("apt-method-")) return shortMethodName(pkg);
  const m = /^(@[^/]+)\/apt-method-(.+)$/.exec(pkg);
  return m ? `${m[1]}/${m[2]}` : pkg;
}

export async function listMethods(fromDir: string): Promise<MethodInfo[]> {
  const out: MethodInfo[] = [];
  for (const pkg of scanMethodPackages(fromDir)) {
    const info: MethodInfo = { name: shortMethodName(pkg.name), use: configName(pkg.name), package: pkg.name, dir: pkg.dir, ...(pkg.version ? { version: pkg.version } : {}), ...(pkg.description ? { description: pkg.description } : {}) };
    out.push(info);
    try {
      const file = resolveFrom(fromDir, pkg.name);
      if (!file) throw new Error("no entry point");
      const mod = (await import(pathToFileURL(file).href)) as Record<string, unknown>;
      const cand = [mod.default, (mod.default as Record<string, unknown> | undefined)?.default, mod[info.name]].find((v) => pluginShapeProblems(v).length === 0);
      if (!cand) throw new Error("does not export a method plugin");
      const plugin = cand as MethodPlugin<unknown>;
      info.name = plugin.name;
      info.apiVersion = plugin.apiVersion;
      if (plugin.description) info.description = plugin.description;
      if (plugin.provides?.length) info.provides = plugin.provides;
      if (plugin.requires?.length) info.requires = plugin.requires;
      const options = describeOptions(plugin.options);
      if (options) info.options = options;
    } catch (e) {
      info.error = e instanceof Error ? e.message.split("\n")[0] : String(e);
    }
  }
  return out;
}

export function formatMethods(list: MethodInfo[], fromDir: string): string {
  if (list.length === 0) {
    return `no method plugins installed in ${fromDir} (looked for node_modules/@apt/method-*, apt-method-*, @scope/apt-method-*)\n  install one: pnpm add @apt/method-lora\n`;
  }
  const lines: string[] = [];
  for (const m of list) {
    lines.push(`${m.use}  ${m.package}${m.version ? `@${m.version}` : ""}${m.apiVersion !== undefined && m.apiVersion !== 1 ? `  (method API version ${JSON.stringify(m.apiVersion)}; this CLI supports 1)` : ""}`);
    if (m.description) lines.push(`  ${m.description}`);
    if (m.provides) lines.push(`  provides: ${m.provides.join(", ")}`);
    if (m.requires) lines.push(`  requires: ${m.requires.join(", ")}`);
    if (m.error) lines.push(`  could not be loaded: ${m.error}`);
    else if (!m.options) lines.push("  options: schema without introspection");
    else if (m.options.length === 0) lines.push("  options: none");
    else {
      lines.push("  options:");
      for (const o of m.options) {
        const def = o.default !== undefined ? ` = ${JSON.stringify(o.default)}` : o.required ? " (required)" : "";
        lines.push(`    ${o.name}: ${o.type}${def}${o.description ? `  ${o.description}` : ""}`);
      }
    }
    lines.push("");
  }
  return lines.join("\n");
}

export async function methodsCommand(o: { json?: boolean }, io: Io): Promise<number> {
  const list = await listMethods(io.cwd);
  if (o.json) io.stdout.write(`${JSON.stringify(list, null, 2)}\n`);
  else io.stdout.write(formatMethods(list, io.cwd));
  return 0;
}
