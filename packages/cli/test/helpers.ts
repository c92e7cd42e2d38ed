/** Temporary projects, fake plugin packages, PNG fixtures and a CLI runner for the tests. */
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { pathToFileURL } from "node:url";
import { PNG } from "pngjs";

export const CLI_DIR = join(import.meta.dirname, "..");
export const BIN = join(CLI_DIR, "dist", "bin.js");
/** zod as the fake plugins import it (a file URL: the temporary projects have no node_modules/zod). */
export const ZOD_URL = pathToFileURL(join(CLI_DIR, "node_modules", "zod", "index.js")).href;

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function runCli(args: string[], cwd: string, env: Record<string, string> = {}): CliResult {
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd, encoding: "utf8", env: { ...process.env, NO_COLOR: "1", ...env }, timeout: 120_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** A fresh folder with these files (paths relative to it; Buffers written as they are). */
export function makeProject(files: Record<string, string | Uint8Array> = {}): string {
  const dir = mkdtempSync(join(tmpdir(), "apt-cli-"));
  writeFiles(dir, files);
  return dir;
}

export function writeFiles(dir: string, files: Record<string, string | Uint8Array>): void {
  for (const [rel, content] of Object.entries(files)) {
    const path = join(dir, rel);
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, content);
  }
}

/** Links node_modules/<name> of `project` to a workspace package folder. */
export function linkPackage(project: string, name: string, target: string): void {
  const path = join(project, "node_modules", name);
  mkdirSync(dirname(path), { recursive: true });
  symlinkSync(target, path, "dir");
}

/** A PNG of one colour (RGBA when alpha < 255 is given). */
export function solidPng(width: number, height: number, rgb: [number, number, number] = [200, 30, 30], alpha = 255): Buffer {
  const png = new PNG({ width, height });
  for (let i = 0; i < width * height; i++) {
    png.data[i * 4] = rgb[0];
    png.data[i * 4 + 1] = rgb[1];
    png.data[i * 4 + 2] = rgb[2];
    png.data[i * 4 + 3] = alpha;
  }
  return PNG.sync.write(png);
}

export interface FakePluginOptions {
  /** The plugin's `name` (default: from the package name). */
  name?: string;
  apiVersion?: number;
  description?: string;
  /** "zod": a strict zod object { rank: int = 4, alpha: number = 4, targets: string[] }; "standard": a hand-written Standard Schema. */
  schema?: "zod" | "standard";
  /** Method hooks to implement (e.g. ["timesteps"]); each does nothing useful. */
  hooks?: string[];
  provides?: string[];
  requires?: string[];
  /** Extra text of the module (e.g. a marker export). */
  extra?: string;
  /** "default" (export default), "named" (export const <name>), "cjs" (module.exports = plugin). */
  exportStyle?: "default" | "named" | "cjs";
}

export function pluginSource(o: FakePluginOptions & { name: string }): string {
  const schema =
    o.schema === "standard"
      ? `{ "~standard": { version: 1, vendor: "fake", validate(v) {
          const issues = [];
          if (v === null || typeof v !== "object") return { issues: [{ message: "expected an object" }] };
          if ("level" in v && typeof v.level !== "number") issues.push({ message: "level must be a number", path: ["level"] });
          return issues.length ? { issues } : { value: { level: 1, ...v } };
        } } }`
      : `z.strictObject({ rank: z.number().int().min(1).default(4).describe("LoRA rank"), alpha: z.number().default(4), targets: z.array(z.string()).default(["to_q"]) })`;
  const hooks = (o.hooks ?? []).map((h) => (h === "timesteps" ? `timesteps(b) { return new Int32Array(b).fill(500); }` : `${h}() {}`)).join(", ");
  const body = `{
    apiVersion: ${o.apiVersion ?? 1},
    name: ${JSON.stringify(o.name)},
    description: ${JSON.stringify(o.description ?? `fake ${o.name} plugin`)},
    provides: ${JSON.stringify(o.provides ?? [])},
    requires: ${JSON.stringify(o.requires ?? [])},
    options: ${schema},
    create(options, ctx) { return { ${hooks} }; },
  }`;
  if (o.exportStyle === "cjs") return `module.exports = ${body};\n`;
  const head = o.schema === "standard" ? "" : `import { z } from ${JSON.stringify(ZOD_URL)};\n`;
  const exp = o.exportStyle === "named" ? `export const ${o.name.replace(/-([a-z])/g, (_, c) => c.toUpperCase())} = ${body};\n` : `export default ${body};\n`;
  return `${head}${exp}${o.extra ?? ""}`;
}

/** Writes node_modules/<pkg> in `project`: package.json and index.js (ESM, or CJS for exportStyle "cjs"). */
export function fakePluginPackage(project: string, pkg: string, o: FakePluginOptions = {}): void {
  const name = o.name ?? pkg.replace(/^@[^/]+\//, "").replace(/^(apt-)?method-/, "");
  const cjs = o.exportStyle === "cjs";
  writeFiles(join(project, "node_modules", pkg), {
    "package.json": JSON.stringify({ name: pkg, version: "1.2.3", description: `fake ${pkg}`, type: cjs ? "commonjs" : "module", main: "index.js", exports: { ".": "./index.js", "./package.json": "./package.json" } }),
    "index.js": pluginSource({ ...o, name }),
  });
}

/** A folder that passes the model check of --dry-run (model_index.json only). */
export const DUMMY_MODEL = { "model/model_index.json": JSON.stringify({ _class_name: "StableDiffusionPipeline" }) };

export function baseConfig(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    model: "./model",
    task: { kind: "personalize", images: "./concept/*.png", prompt: "a photo of sks star", classPrompt: "a photo of a star" },
    methods: ["lora"],
    output: "runs/sks",
    ...extra,
  };
}

export function conceptImages(n = 3, size = 8): Record<string, Buffer> {
  const files: Record<string, Buffer> = {};
  for (let i = 0; i < n; i++) files[`concept/${i}.png`] = solidPng(size, size, [40 * i, 100, 200]);
  return files;
}
