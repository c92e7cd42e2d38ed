/**
 * Finding and reading the config file with cosmiconfig 9 (module name "apt").
 *
 * Searched, in each folder from the working folder up to the nearest one with
 * a package.json: package.json ("apt" key), .aptrc (YAML or JSON),
 * .aptrc.{json,yaml,yml,js,ts,mjs,cjs}, .config/aptrc*, apt.config.{js,ts,mjs,cjs,json}.
 * `--config <file>` names one. TypeScript configs are compiled by cosmiconfig
 * with the `typescript` package (a sibling temporary .mjs is written next to
 * the file and removed): they may import JS files and packages, not other .ts.
 *
 * Relative paths in the config (model, images, output, ./plugins) are relative
 * to the config file's folder; for a file in `.config/`, to the project
 * folder that holds `.config/`.
 */
import { cosmiconfig, defaultLoaders, type CosmiconfigResult } from "cosmiconfig";
import { basename, dirname, resolve } from "node:path";
import { AptError } from "@apt/core";
import { isFile } from "../util/fs.js";
import type { ConfigEnv } from "./define.js";

export const MODULE_NAME = "apt";

export const SEARCH_PLACES = [
  "package.json",
  ".aptrc",
  ".aptrc.json",
  ".aptrc.yaml",
  ".aptrc.yml",
  ".aptrc.js",
  ".aptrc.ts",
  ".aptrc.mjs",
  ".aptrc.cjs",
  ".config/aptrc",
  ".config/aptrc.json",
  ".config/aptrc.yaml",
  ".config/aptrc.yml",
  ".config/aptrc.js",
  ".config/aptrc.ts",
  ".config/aptrc.mjs",
  ".config/aptrc.cjs",
  "apt.config.js",
  "apt.config.ts",
  "apt.config.mjs",
  "apt.config.cjs",
  "apt.config.json",
];

export interface LoadedConfig {
  /** Absolute path of the config file. */
  file: string;
  /**
   * The folder relative paths and plugin names resolve from: the config
   * file's folder, or the project folder for a file in `.config/`.
   */
  dir: string;
  /** The exported value (a function export already called, a promise awaited). */
  config: unknown;
}

function explorer() {
  return cosmiconfig(MODULE_NAME, {
    searchPlaces: SEARCH_PLACES,
    searchStrategy: "project",
    cache: false,
    loaders: { ...defaultLoaders },
  });
}

function loadError(file: string, e: unknown): AptError {
  const message = e instanceof Error ? e.message : String(e);
  // cosmiconfig prefixes JSON/YAML/TS errors with "<Kind> Error in <file>:"; keep one mention of the file.
  const body = message.includes(file) ? message : `${file}: ${message}`;
  return new AptError("BAD_INPUT", `could not read the config file: ${body}\n  fix: correct the file's syntax (or name another one with --config <file>)`, { exitCode: 2, cause: e });
}

/** Finds (or, with `configPath`, reads) the config and evaluates it. Throws an AptError (exit code 2) when none is found or it does not parse. */
export async function loadConfigFile(o: { cwd: string; configPath?: string; env?: ConfigEnv }): Promise<LoadedConfig> {
  const ex = explorer();
  let result: CosmiconfigResult;
  if (o.configPath) {
    const file = resolve(o.cwd, o.configPath);
    if (!isFile(file)) throw new AptError("BAD_INPUT", `--config ${o.configPath}: no such file (${file})`, { exitCode: 2 });
    try {
      result = await ex.load(file);
    } catch (e) {
      throw loadError(file, e);
    }
  } else {
    try {
      result = await ex.search(o.cwd);
    } catch (e) {
      const file = (e as { filepath?: string }).filepath ?? o.cwd;
      throw loadError(file, e);
    }
    if (!result) {
      throw new AptError(
        "BAD_INPUT",
        `no apt config found in ${o.cwd} or its parents up to the project root (searched ${SEARCH_PLACES.join(", ")}).\n` +
          `  fix: create apt.config.ts (export default defineConfig({...}) from "@apt/cli"), or name a file with --config <file>`,
        { exitCode: 2 },
      );
    }
  }
  if (!result) throw new AptError("BAD_INPUT", `could not read the config file ${o.configPath}`, { exitCode: 2 });
  const file = result.filepath;
  if (result.isEmpty || result.config === undefined || result.config === null) {
    throw new AptError("BAD_INPUT", `${file}: the config is empty\n  fix: export an object: model, task, methods and output are required`, { exitCode: 2 });
  }
  let config: unknown = result.config;
  try {
    if (typeof config === "function") config = await (config as (env: ConfigEnv) => unknown)(o.env ?? { command: "train" });
    else config = await config;
  } catch (e) {
    throw loadError(file, e);
  }
  const folder = dirname(file);
  return { file, dir: basename(folder) === ".config" ? dirname(folder) : folder, config };
}
