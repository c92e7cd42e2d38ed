/**
 * `model`: a diffusers pipeline folder (model_index.json inside).
 *
 * - A path ("./model", "../x", "/abs", or any name that is a folder next to
 *   the config) is taken relative to the config file's folder.
 * - Otherwise it is a package export, "<package>[/<name>]", resolved from the
 *   config file's folder: the package's package.json may name its models in a
 *   `diffusers` field, either one folder (`"diffusers": "./model"`) or several
 *   (`"diffusers": { "base": "./models/base" }`, with "." or "default" for the
 *   one used when no name is given); without the field, `<name>` is a
 *   sub-folder of the package (or the package root is the model folder).
 */
import { isAbsolute, join, resolve } from "node:path";
import { isDirectory, isFile } from "../util/fs.js";
import { findPackageDir, readPackageJson, resolveFrom, splitPackageSpec } from "../util/packages.js";

export type ModelResolution = { ok: true; dir: string; package?: string } | { ok: false; message: string; fix?: string };

function checkFolder(dir: string, spec: string): ModelResolution {
  if (!isDirectory(dir)) return { ok: false, message: `model folder ${dir} does not exist`, fix: `a local folder is relative to the config file's folder; for a package write its name ("@apt/shapes/base")` };
  if (!isFile(join(dir, "model_index.json"))) return { ok: false, message: `${dir} is not a diffusers pipeline folder (no model_index.json)`, fix: `point "${spec}" at the folder holding model_index.json, unet/, text_encoder/, tokenizer/ and scheduler/` };
  return { ok: true, dir };
}

export function resolveModel(spec: string, configDir: string): ModelResolution {
  const local = resolve(configDir, spec);
  if (spec.startsWith(".") || isAbsolute(spec) || isDirectory(local)) return checkFolder(local, spec);
  const { name, subpath } = splitPackageSpec(spec);
  let dir = findPackageDir(name, configDir);
  if (!dir) {
    const pj = resolveFrom(configDir, `${name}/package.json`);
    if (pj) dir = resolve(pj, "..");
  }
  if (!dir) {
    return { ok: false, message: `model package "${name}" is not installed (looked from ${configDir}), and ${local} is not a folder`, fix: `pnpm add ${name}; or, for a local folder, write "./${spec}"` };
  }
  const pkg = readPackageJson(dir) ?? {};
  const field = pkg.diffusers;
  let rel: string | undefined;
  if (typeof field === "string") {
    if (!subpath) rel = field;
  } else if (field && typeof field === "object") {
    const map = field as Record<string, unknown>;
    const key = subpath ? [subpath, `./${subpath}`] : [".", "default"];
    const hit = key.map((k) => map[k]).find((v) => typeof v === "string");
    if (typeof hit === "string") rel = hit;
  }
  if (rel) return { ...checkFolder(join(dir, rel), spec), ...(pkg.name ? { package: pkg.name } : {}) } as ModelResolution;
  const fallback = subpath ? join(dir, subpath) : dir;
  if (isFile(join(fallback, "model_index.json"))) return { ok: true, dir: fallback, package: name };
  const named = field && typeof field === "object" ? Object.keys(field as object) : typeof field === "string" ? ["(the package itself)"] : [];
  return {
    ok: false,
    message: `package "${name}" has no model "${subpath || "."}"${named.length ? ` (its package.json names: ${named.join(", ")})` : ` (no "diffusers" field in its package.json and no model_index.json in ${fallback})`}`,
    fix: named.length && typeof field === "object" ? `use one of ${named.map((n) => `"${name}/${n}"`).join(", ")}` : undefined,
  };
}
