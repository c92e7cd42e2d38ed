/**
 * The config file's shape and `defineConfig`, an identity function that only
 * gives editors the types (as vitest's and eslint's do):
 *
 *   // apt.config.ts
 *   import { defineConfig } from "@apt/cli";
 *   import myMethod from "./my-method.js";
 *   export default defineConfig({
 *     model: "@apt/shapes/base",
 *     task: { kind: "personalize", images: "./concept/*.png", prompt: "a photo of sks star" },
 *     methods: ["lora", ["cat", { weight: 1 }], [myMethod, {}, "mine"]],
 *     output: "runs/sks-star",
 *   });
 */
import type { MethodPlugin, TrainOptions } from "@apt/core";

/** Options of a method entry, as written in the config (validated by the plugin's schema). */
export type MethodOptionsInput = Record<string, unknown>;

/**
 * One entry of `methods`:
 * - `"cat"` (resolved to `@apt/method-cat`, then `apt-method-cat`, then `cat`),
 * - `["cat", { ...options }]`, `["cat", { ...options }, "unique-name"]`,
 * - a plugin object (imported in a JS/TS config), or `[plugin, options, name?]`.
 */
export type MethodEntry =
  | string
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  | MethodPlugin<any>
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  | readonly [string | MethodPlugin<any>]
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  | readonly [string | MethodPlugin<any>, MethodOptionsInput | undefined]
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  | readonly [string | MethodPlugin<any>, MethodOptionsInput | undefined, string];

export interface ConceptConfig {
  /** Name of the concept in logs and reports (continual tasks). */
  name: string;
  /** Glob of PNG files, relative to the config file's folder. */
  images: string;
  /** "a photo of sks star". */
  prompt: string;
  /** "a photo of a star" (prior preservation, base-model comparisons). */
  classPrompt?: string;
  /** The identifier word in the prompt ("sks"). */
  trigger?: string;
}

export interface PersonalizeTaskConfig {
  kind: "personalize";
  images: string;
  prompt: string;
  classPrompt?: string;
  trigger?: string;
}

export interface ContinualTaskConfig {
  kind: "continual";
  /** Learned in order, without replay of earlier concepts' images. */
  concepts: ConceptConfig[];
}

export interface SampleConfig {
  /** Prompts of the sample grids (default: the task's prompt and class prompt). */
  prompts?: string[];
  /** Sample every N steps (and at the end); 0: only at the end. */
  every?: number;
  /** Sampler steps (DDIM). */
  steps?: number;
  /** Classifier-free guidance scale. */
  guidance?: number;
  /** Seed of the sample noise. */
  seed?: number;
}

export type BackendRequest = "auto" | "cpu" | "webgpu" | "cuda";

export interface AptConfig {
  /** Default "auto": cuda, then webgpu (a real adapter), then cpu. */
  backend?: BackendRequest;
  /**
   * A diffusers pipeline folder (relative to the config file's folder), or a
   * package export such as "@apt/shapes/base" (resolved from the config folder).
   */
  model: string;
  task: PersonalizeTaskConfig | ContinualTaskConfig;
  /** Training options over DEFAULT_TRAIN_OPTIONS of @apt/core (camelCase). */
  train?: Partial<TrainOptions>;
  methods: MethodEntry[];
  /** The run folder (relative to the config file's folder). */
  output: string;
  sample?: SampleConfig;
}

/** What a config function receives. */
export interface ConfigEnv {
  /** "train" or "dry-run". */
  command: string;
}

export type AptConfigFn = (env: ConfigEnv) => AptConfig | Promise<AptConfig>;
export type AptConfigExport = AptConfig | Promise<AptConfig> | AptConfigFn;

/** Types the config; returns it unchanged. */
export function defineConfig(config: AptConfig): AptConfig;
export function defineConfig(config: Promise<AptConfig>): Promise<AptConfig>;
export function defineConfig(config: AptConfigFn): AptConfigFn;
export function defineConfig(config: AptConfigExport): AptConfigExport;
export function defineConfig(config: AptConfigExport): AptConfigExport {
  return config;
}
