/**
 * Checkpoints: one folder per step, `checkpoints/checkpoint-<step>/`, written
 * into a temporary folder first and renamed into place, so a kill during a
 * write leaves every earlier checkpoint intact and never a half-written one
 * under a real name. Contents:
 *   trainable.safetensors   trainable variables by name
 *   optimizer.safetensors   AdamW moments (`<name>.m`, `<name>.v`)
 *   plugins.safetensors     tensors of plugin states (`<plugin>/<key>`)
 *   ema.safetensors         the weights' moving average by trainable name (only with emaDecay > 0)
 *   state.json              step, task, RNG state, data order, optimizer step
 *                           counts, plugin scalars, the resolved config
 */
import * as tf from "@tensorflow/tfjs-core";
import { mkdir, readdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { AptError } from "../errors.js";
import { readSafetensors, writeSafetensors } from "../safetensors/index.js";
import type { PluginState } from "../method.js";

export const CHECKPOINT_VERSION = 1;

export interface DataOrder {
  epoch: number;
  cursor: number;
  permutation: number[];
}

export interface CheckpointState {
  version: number;
  step: number;
  task: number;
  /** Step within the current task. */
  taskStep: number;
  rng: number[];
  data: DataOrder;
  optimizerSteps: number[];
  plugins: Record<string, Record<string, number | string | number[]>>;
  config: unknown;
}

export interface CheckpointContents {
  state: CheckpointState;
  trainable: Record<string, tf.Tensor>;
  optimizer: Record<string, tf.Tensor>;
  plugins: Record<string, PluginState>;
  /** The trainable weights' moving average (emaDecay > 0); empty without one. */
  ema?: Record<string, tf.Tensor>;
}

const NAME = /^checkpoint-(\d+)$/;

export function checkpointDir(runDir: string, step: number): string {
  return join(runDir, "checkpoints", `checkpoint-${step}`);
}

/** Complete checkpoints of a run, oldest first. */
export async function listCheckpoints(runDir: string): Promise<{ step: number; path: string }[]> {
  const dir = join(runDir, "checkpoints");
  if (!existsSync(dir)) return [];
  const out: { step: number; path: string }[] = [];
  for (const name of await readdir(dir)) {
    const m = NAME.exec(name);
    if (m && existsSync(join(dir, name, "state.json"))) out.push({ step: Number(m[1]), path: join(dir, name) });
  }
  return out.sort((a, b) => a.step - b.step);
}

/** "latest" → the newest complete checkpoint; a path → that folder. */
export async function resolveCheckpoint(runDir: string, resume: string): Promise<string> {
  if (resume === "latest") {
    const all = await listCheckpoints(runDir);
    const last = all[all.length - 1];
    if (!last) throw new AptError("BAD_INPUT", `--resume latest: no checkpoint in ${join(runDir, "checkpoints")}; start without --resume`);
    return last.path;
  }
  if (!existsSync(join(resume, "state.json"))) throw new AptError("BAD_INPUT", `--resume ${resume}: not a checkpoint folder (no state.json)`);
  return resume;
}

export async function writeCheckpoint(runDir: string, c: CheckpointContents, keepLast = 0): Promise<string> {
  const final = checkpointDir(runDir, c.state.step);
  const tmp = `${final}.tmp-${process.pid}`;
  await rm(tmp, { recursive: true, force: true });
  await mkdir(tmp, { recursive: true });
  const pluginTensors: Record<string, tf.Tensor> = {};
  const pluginScalars: CheckpointState["plugins"] = {};
  for (const [plugin, state] of Object.entries(c.plugins)) {
    pluginScalars[plugin] = {};
    for (const [key, value] of Object.entries(state)) {
      if (value instanceof tf.Tensor) pluginTensors[`${plugin}/${key}`] = value;
      else pluginScalars[plugin]![key] = value;
    }
  }
  await writeSafetensors(join(tmp, "trainable.safetensors"), c.trainable, { format: "pt" });
  await writeSafetensors(join(tmp, "optimizer.safetensors"), c.optimizer);
  await writeSafetensors(join(tmp, "plugins.safetensors"), pluginTensors);
  if (c.ema && Object.keys(c.ema).length) await writeSafetensors(join(tmp, "ema.safetensors"), c.ema, { format: "pt" });
  // state.json last: its presence marks a complete checkpoint.
  await writeFile(join(tmp, "state.json"), `${JSON.stringify({ ...c.state, plugins: pluginScalars }, null, 1)}\n`);
  if (existsSync(final)) await rm(final, { recursive: true, force: true });
  await rename(tmp, final);
  if (keepLast > 0) {
    const all = await listCheckpoints(runDir);
    for (const old of all.slice(0, Math.max(0, all.length - keepLast))) await rm(old.path, { recursive: true, force: true });
  }
  return final;
}

export async function readCheckpoint(path: string): Promise<CheckpointContents> {
  let state: CheckpointState;
  try {
    state = JSON.parse(await readFile(join(path, "state.json"), "utf8")) as CheckpointState;
  } catch (e) {
    throw new AptError("BAD_INPUT", `${join(path, "state.json")}: cannot read the checkpoint state (${(e as Error).message})`);
  }
  if (state.version !== CHECKPOINT_VERSION) throw new AptError("BAD_INPUT", `${path}: checkpoint format ${state.version}, this @apt/core reads ${CHECKPOINT_VERSION}`);
  const toTensors = async (file: string) => {
    const { tensors } = await readSafetensors(join(path, file));
    const out: Record<string, tf.Tensor> = {};
    for (const [name, t] of Object.entries(tensors)) out[name] = tf.tensor(t.data as Float32Array, t.shape, t.dtype === "I32" ? "int32" : "float32");
    return out;
  };
  const plugins: Record<string, PluginState> = {};
  for (const [plugin, scalars] of Object.entries(state.plugins)) plugins[plugin] = { ...scalars };
  for (const [key, t] of Object.entries(await toTensors("plugins.safetensors"))) {
    const slash = key.indexOf("/");
    const plugin = key.slice(0, slash);
    (plugins[plugin] ??= {})[key.slice(slash + 1)] = t;
  }
  const ema = existsSync(join(path, "ema.safetensors")) ? await toTensors("ema.safetensors") : {};
  return { state, trainable: await toTensors("trainable.safetensors"), optimizer: await toTensors("optimizer.safetensors"), plugins, ema };
}
