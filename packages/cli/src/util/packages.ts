/** Package lookup as Node does it from a folder: resolution, package folders, method-plugin scans. */
import { readdirSync, readFileSync } from "node:fs";
import { createRequire, isBuiltin } from "node:module";
import { dirname, join } from "node:path";
import { isDirectory, isFile } from "./fs.js";

export interface PackageJson {
  name?: string;
  version?: string;
  description?: string;
  exports?: unknown;
  main?: string;
  [key: string]: unknown;
}

export function readPackageJson(dir: string): PackageJson | undefined {
  try {
    return JSON.parse(readFileSync(join(dir, "package.json"), "utf8")) as PackageJson;
  } catch {
    return undefined;
  }
}

/** Folders Node looks into from `fromDir`: fromDir/node_modules, then each parent's. */
export function nodeModulesDirs(fromDir: string): string[] {
  const dirs: string[] = [];
  let d = fromDir;
  for (;;) {
    if (!d.endsWith("/node_modules")) dirs.push(join(d, "node_modules"));
    const parent = dirname(d);
    if (parent === d) break;
    d = parent;
  }
  return dirs;
}

/** Splits "@scope/name/sub/path" into the package name and the subpath ("" when none). */
export function splitPackageSpec(spec: string): { name: string; subpath: string } {
  const parts = spec.split("/");
  const n = spec.startsWith("@") ? 2 : 1;
  return { name: parts.slice(0, n).join("/"), subpath: parts.slice(n).join("/") };
}

/** The folder of package `name` as seen from `fromDir`, or undefined. */
export function findPackageDir(name: string, fromDir: string): string | undefined {
  for (const nm of nodeModulesDirs(fromDir)) {
    const dir = join(nm, name);
    if (isFile(join(dir, "package.json"))) return dir;
  }
  return undefined;
}

function isNotFound(e: unknown): boolean {
  const code = (e as { code?: string } | null)?.code;
  return code === "MODULE_NOT_FOUND" || code === "ERR_MODULE_NOT_FOUND";
}

/** The entry file of an `exports` target for an ESM import ("import", "node", "default" conditions). */
function exportTarget(exp: unknown, subpath: string): string | undefined {
  if (typeof exp === "string") return subpath === "." ? exp : undefined;
  if (!exp || typeof exp !== "object") return undefined;
  const obj = exp as Record<string, unknown>;
  const keys = Object.keys(obj);
  if (keys.some((k) => k.startsWith("."))) return exportTarget(obj[subpath], ".");
  for (const cond of ["import", "node", "default"]) {
    if (cond in obj) {
      const t = exportTarget(obj[cond], ".");
      if (t) return t;
    }
  }
  return undefined;
}

/**
 * Resolves `spec` as an import from a file in `fromDir` would (the way Babel
 * resolves plugins from the config's folder). Returns the file, or undefined
 * when the package is not installed there. Builtins are never matched.
 */
export function resolveFrom(fromDir: string, spec: string): string | undefined {
  if (isBuiltin(spec)) return undefined;
  // Only the node_modules folders of fromDir and its parents count, as for an
  // ESM import: require.resolve would also look in NODE_PATH (which pnpm's
  // bin shims set to the workspace's hoisted packages).
  const isPath = spec.startsWith(".") || spec.startsWith("/");
  if (!isPath && !findPackageDir(splitPackageSpec(spec).name, fromDir)) return undefined;
  const req = createRequire(join(fromDir, "noop.js"));
  try {
    return req.resolve(spec);
  } catch (e) {
    if (isNotFound(e)) return undefined;
    if ((e as { code?: string }).code !== "ERR_PACKAGE_PATH_NOT_EXPORTED") throw e;
  }
  // An ESM-only package (exports with an "import" condition only): read its exports map.
  const { name, subpath } = splitPackageSpec(spec);
  const dir = findPackageDir(name, fromDir);
  const pkg = dir ? readPackageJson(dir) : undefined;
  const target = pkg ? exportTarget(pkg.exports, subpath ? `./${subpath}` : ".") : undefined;
  return dir && target ? join(dir, target) : undefined;
}

export interface FoundPackage {
  name: string;
  dir: string;
  version?: string;
  description?: string;
}

/** Method-plugin packages visible from `fromDir`: @apt/method-*, apt-method-*, @scope/apt-method-* (the nearest copy of each). */
export function scanMethodPackages(fromDir: string): FoundPackage[] {
  const found = new Map<string, FoundPackage>();
  const add = (name: string, dir: string) => {
    if (found.has(name)) return;
    const pkg = readPackageJson(dir);
    if (!pkg) return;
    found.set(name, { name, dir, version: pkg.version, description: pkg.description });
  };
  const list = (dir: string) => {
    try {
      return readdirSync(dir);
    } catch {
      return [];
    }
  };
  for (const nm of nodeModulesDirs(fromDir)) {
    if (!isDirectory(nm)) continue;
    for (const entry of list(nm)) {
      if (entry.startsWith("apt-method-")) add(entry, join(nm, entry));
      else if (entry.startsWith("@")) {
        for (const sub of list(join(nm, entry))) {
          if ((entry === "@apt" && sub.startsWith("method-")) || sub.startsWith("apt-method-")) add(`${entry}/${sub}`, join(nm, entry, sub));
        }
      }
    }
  }
  return [...found.values()].sort((a, b) => a.name.localeCompare(b.name));
}

/** "@apt/method-cat" → "cat", "apt-method-cat" → "cat", "@acme/apt-method-x" → "x". */
export function shortMethodName(pkg: string): string {
  const base = pkg.startsWith("@") ? pkg.slice(pkg.indexOf("/") + 1) : pkg;
  if (pkg.startsWith("@apt/") && base.startsWith("method-")) return base.slice("method-".length);
  if (base.startsWith("apt-method-")) return base.slice("apt-method-".length);
  return base;
}
