/**
 * `apt-run sample`: a grid of images from a model folder (optionally with a
 * LoRA file loaded through @apt/method-lora's `loadLoraWeights`).
 */
import { dirname, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { AptError } from "@apt/core";
import type { StableDiffusionPipeline } from "@apt/diffusion";
import { startBackend } from "../backend.js";
import { resolveModel } from "../config/resolve-model.js";
import { writeImageGrid } from "../png.js";
import { isFile } from "../util/fs.js";
import { resolveFrom } from "../util/packages.js";
import { loadPipeline } from "./model.js";
import type { Io } from "./io.js";

export interface SampleCommandOptions {
  model: string;
  prompt: string[];
  seed: number;
  steps: number;
  guidance: number;
  num: number;
  out: string;
  lora?: string;
  backend: string;
}

type LoadLora = (model: StableDiffusionPipeline, file: string) => unknown;

/** `loadLoraWeights` of @apt/method-lora, from the user's folder (then the CLI's install). */
export async function importLoadLora(cwd: string): Promise<LoadLora> {
  const file = resolveFrom(cwd, "@apt/method-lora") ?? resolveFrom(dirname(fileURLToPath(import.meta.url)), "@apt/method-lora");
  if (!file) throw new AptError("BAD_INPUT", "--lora needs @apt/method-lora, which is not installed here\n  fix: pnpm add @apt/method-lora", { exitCode: 2 });
  const mod = (await import(pathToFileURL(file).href)) as { loadLoraWeights?: LoadLora };
  if (typeof mod.loadLoraWeights !== "function") throw new AptError("BAD_INPUT", `@apt/method-lora (${file}) has no loadLoraWeights export; upgrade it`, { exitCode: 2 });
  return mod.loadLoraWeights;
}

export async function sampleCommand(o: SampleCommandOptions, io: Io): Promise<number> {
  if (o.prompt.length === 0) throw new AptError("BAD_INPUT", "sample: give at least one --prompt", { exitCode: 2 });
  const m = resolveModel(o.model, io.cwd);
  if (!m.ok) throw new AptError("BAD_INPUT", `--model ${o.model}: ${m.message}${m.fix ? `\n  fix: ${m.fix}` : ""}`, { exitCode: 2 });
  const lora = o.lora ? resolve(io.cwd, o.lora) : undefined;
  if (lora && !isFile(lora)) throw new AptError("BAD_INPUT", `--lora ${o.lora}: no such file (${lora})`, { exitCode: 2 });
  const loadLora = lora ? await importLoadLora(io.cwd) : undefined;

  const { backend, report } = await startBackend(o.backend, io.cwd);
  io.stdout.write(`${report}\n`);
  const pipe = await loadPipeline(m.dir);
  try {
    if (loadLora && lora) {
      await loadLora(pipe, lora);
      io.stdout.write(`LoRA: ${lora}\n`);
    }
    const t0 = performance.now();
    const { images } = await pipe.generate({ prompt: o.prompt, numImagesPerPrompt: o.num, numInferenceSteps: o.steps, guidanceScale: o.guidance, seed: o.seed });
    try {
      const out = resolve(io.cwd, o.out);
      await writeImageGrid(images, out, { cols: o.num });
      io.stdout.write(`${images.shape[0]} images (${o.prompt.length} prompt${o.prompt.length === 1 ? "" : "s"} × ${o.num}, one row each) in ${((performance.now() - t0) / 1000).toFixed(1)} s: ${out}\n`);
    } finally {
      images.dispose();
    }
  } finally {
    pipe.dispose();
    await backend.dispose?.();
  }
  return 0;
}
