/**
 * `apt-run [train]`: config → checks → backend → model → run folder → engine.
 * Nothing is written before every check passed: a bad config exits 2 with no
 * run folder created.
 */
import { basename, join, resolve } from "node:path";
import { existsSync, readdirSync } from "node:fs";
import { AptError, train, type TrainEvent, type TrainRun } from "@apt/core";
import { loadConfigFile } from "../config/load.js";
import { parseOverride } from "../config/overrides.js";
import { describeResolved, resolveConfig, type ResolvedConfig } from "../config/resolve.js";
import { imagesToTensor } from "../images.js";
import { writeImageGrid } from "../png.js";
import { MetricsWriter, ProgressReporter } from "../progress.js";
import { isDirectory, writeFileAtomicSync } from "../util/fs.js";
import { startBackend } from "../backend.js";
import { loadPipeline, modelResolution } from "./model.js";
import type { Io } from "./io.js";

export interface TrainCommandOptions {
  config?: string;
  set?: string[];
  backend?: string;
  resume?: string;
  dryRun?: boolean;
  logEvery?: number;
  /** Force (true) or forbid (false) the terminal progress bar; default: stdout is a TTY. */
  tty?: boolean;
}

export async function prepare(o: TrainCommandOptions, io: Io): Promise<ResolvedConfig> {
  const overrides = (o.set ?? []).map(parseOverride);
  if (o.backend !== undefined) overrides.push({ text: `backend=${o.backend}`, path: ["backend"], value: o.backend });
  const loaded = await loadConfigFile({ cwd: io.cwd, configPath: o.config, env: { command: o.dryRun ? "dry-run" : "train" } });
  return resolveConfig(loaded, { overrides, cwd: io.cwd });
}

/** Checks --resume before any work (the engine would find the same problems after creating the run folder). */
function resumeTarget(resume: string | undefined, cwd: string, runDir: string): string | undefined {
  if (resume === undefined) return undefined;
  if (resume === "latest") {
    const dir = join(runDir, "checkpoints");
    const any = existsSync(dir) && readdirSync(dir).some((d) => /^checkpoint-\d+$/.test(d));
    if (!any) throw new AptError("BAD_INPUT", `--resume latest: no checkpoint in ${dir}\n  fix: start without --resume`, { exitCode: 2 });
    return resume;
  }
  const dir = resolve(cwd, resume);
  if (!isDirectory(dir) || !existsSync(join(dir, "state.json"))) {
    throw new AptError("BAD_INPUT", `--resume ${resume}: not a checkpoint folder (no ${join(dir, "state.json")})\n  fix: --resume latest, or the path of a checkpoint-<step> folder`, { exitCode: 2 });
  }
  return dir;
}

export async function trainCommand(o: TrainCommandOptions, io: Io): Promise<number> {
  const r = await prepare(o, io);
  const resume = resumeTarget(o.resume, io.cwd, r.output);
  if (o.dryRun) {
    io.stdout.write(`${JSON.stringify(describeResolved(r, resume ? { resume } : {}), null, 2)}\n`);
    return 0;
  }

  const { backend, report } = await startBackend(r.backend, r.configDir);
  io.stdout.write(`${report}\n`);
  const pipeline = await loadPipeline(r.model.dir);
  const { size } = modelResolution(pipeline);
  const concepts = r.concepts.map((k) => {
    const { tensor, resized } = imagesToTensor(k.images, size);
    if (resized) io.stdout.write(`${k.name}: ${resized} of ${k.images.length} images brought to ${size}×${size} (centre crop + box filter)\n`);
    return { images: tensor, prompt: k.prompt, name: k.name, ...(k.classPrompt ? { classPrompt: k.classPrompt } : {}), ...(k.trigger ? { trigger: k.trigger } : {}) };
  });

  const runDir = r.output;
  if (!resume && existsSync(join(runDir, "checkpoints")) && readdirSync(join(runDir, "checkpoints")).length > 0) {
    io.stderr.write(`note: ${runDir} already has checkpoints; this run starts from step 0 and writes beside them (to continue from them: --resume latest)\n`);
  }
  const resolvedJson = describeResolved(r, { backendUsed: backend.info().name, device: backend.info().device, ...(resume ? { resume } : {}), startedAt: new Date().toISOString() });
  const metrics = new MetricsWriter(join(runDir, "metrics.jsonl"));
  const progress = new ProgressReporter({ stream: io.stdout, logEvery: o.logEvery ?? 10, ...(o.tty !== undefined ? { tty: o.tty } : {}) });
  const onEvent = (e: TrainEvent) => {
    // The engine has checked the method set and created the run folder when it says "start".
    if (e.type === "start") writeFileAtomicSync(join(runDir, "resolved-config.json"), `${JSON.stringify(resolvedJson, null, 2)}\n`);
    metrics.write(e);
    progress.onEvent(e);
  };

  const run: TrainRun = {
    model: pipeline,
    task: r.task,
    concepts,
    train: r.train,
    methods: r.methods.map(({ plugin, options, name }) => ({ plugin, options, name })),
    runDir,
    resolvedConfig: resolvedJson,
    ...(resume ? { resume } : {}),
    onEvent,
    writeImages: (images, path) => writeImageGrid(images, path),
  };
  try {
    const summary = await train(run);
    io.stdout.write(
      [
        `run folder:  ${runDir}`,
        `metrics:     ${join(runDir, "metrics.jsonl")}`,
        `samples:     ${summary.samples.length ? `${join(runDir, "samples")} (${summary.samples.length} grid${summary.samples.length === 1 ? "" : "s"}, last ${basename(summary.samples[summary.samples.length - 1]!)})` : "none (no sample prompts)"}`,
        `checkpoint:  ${summary.checkpoint || "none"}`,
        `exported:    ${summary.exports.length ? summary.exports.join(", ") : "nothing"}`,
        `final loss:  ${summary.finalLoss.toFixed(4)} after ${summary.steps} steps`,
      ].join("\n") + "\n",
    );
  } finally {
    progress.stop();
    metrics.close();
    for (const k of concepts) if (!k.images.isDisposed) k.images.dispose();
    pipeline.dispose();
    await backend.dispose?.();
  }
  return 0;
}
