/**
 * `apt-run bench step`: times the work of one training (or sampling) step on
 * random-weight networks built from diffusers / transformers config.json
 * files, the same work as ../shared/bench/torch_reference.py, and optionally
 * runs that reference on the same configs for the ratio ours / torch.
 *
 *   sample  text encoder + one UNet forward at t = 500, no gradients
 *   full    text encoder frozen; UNet forward + backward + AdamW (lr 1e-4) over
 *           every UNet parameter; ε-MSE with t ~ U[0, 1000), x_t from linear
 *           betas 1e-4..0.02
 *   lora    the same with the UNet frozen and LoRA (rank r, alpha r; A ~ N(0, 1/r),
 *           B = 0) on every attention's to_q, to_k, to_v, to_out.0
 *
 * The LoRA here is a local adapter added with `unet.addAdapter` (the model-hook
 * contract), not @apt/method-lora: the benchmark measures the networks and
 * the engine-free step, and has no plugin dependency.
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { AdamW, AptError, tf, type ModuleAdapter } from "@apt/core";
import { CLIPTextModel, UNet2DConditionModel } from "@apt/diffusion";
import { startBackend } from "../backend.js";
import { isFile } from "../util/fs.js";
import type { Io } from "./io.js";

export type BenchMode = "lora" | "full" | "sample";

export interface BenchOptions {
  unet: string;
  text: string;
  mode: BenchMode;
  batch: number;
  steps: number;
  warmup: number;
  rank: number;
  backend: string;
  json?: boolean;
  compare?: boolean;
  torchReference: string;
  threads: number;
}

export interface BenchResult {
  mode: BenchMode;
  batch: number;
  unet_params: number;
  text_params: number;
  trainable_params: number;
  step_ms_median: number;
  step_ms_min: number;
  backend: string;
  device: string;
  tfjs: string;
  leaked_tensors: number;
  torch?: Record<string, unknown>;
  torch_skipped?: string;
  ratio?: number;
}

function readConfig(file: string, cwd: string, flag: string): Record<string, unknown> {
  const path = resolve(cwd, file);
  if (!isFile(path)) throw new AptError("BAD_INPUT", `${flag} ${file}: no such file (${path})`, { exitCode: 2 });
  try {
    return JSON.parse(readFileSync(path, "utf8")) as Record<string, unknown>;
  } catch (e) {
    throw new AptError("BAD_INPUT", `${flag} ${file}: not valid JSON (${e instanceof Error ? e.message : String(e)})`, { exitCode: 2 });
  }
}

/** LoRA as in torch_reference.py: delta = (x A) B · alpha / r, A ~ N(0, (1/r)²), B = 0. */
function loraAdapter(inFeatures: number, outFeatures: number, rank: number, alpha: number, seed: number): ModuleAdapter {
  const a = tf.variable(tf.randomNormal([inFeatures, rank], 0, 1 / rank, "float32", seed), true);
  const b = tf.variable(tf.zeros([rank, outFeatures]), true);
  const scale = alpha / rank;
  return {
    name: "lora",
    variables: () => ({ "lora_A.weight": a, "lora_B.weight": b }),
    forward: (x) => {
      const lead = x.shape.slice(0, -1);
      const flat = x.rank === 2 ? (x as tf.Tensor2D) : tf.reshape(x, [-1, inFeatures]) as tf.Tensor2D;
      const y = tf.mul(tf.matMul(tf.matMul(flat, a), b), scale);
      return x.rank === 2 ? y : tf.reshape(y, [...lead, outFeatures]);
    },
  };
}

function median(xs: number[]): number {
  const s = [...xs].sort((p, q) => p - q);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

const round2 = (x: number) => Math.round(x * 100) / 100;

export async function runBench(o: BenchOptions, io: Io): Promise<BenchResult> {
  if (!["lora", "full", "sample"].includes(o.mode)) throw new AptError("BAD_INPUT", `--mode ${o.mode}: expected lora, full or sample`, { exitCode: 2 });
  for (const [k, v] of [["--batch", o.batch], ["--steps", o.steps], ["--rank", o.rank]] as const) {
    if (!Number.isInteger(v) || v < 1) throw new AptError("BAD_INPUT", `${k} ${v}: expected a positive integer`, { exitCode: 2 });
  }
  if (!Number.isInteger(o.warmup) || o.warmup < 0) throw new AptError("BAD_INPUT", `--warmup ${o.warmup}: expected an integer ≥ 0`, { exitCode: 2 });
  const unetConfig = readConfig(o.unet, io.cwd, "--unet");
  const textConfig = readConfig(o.text, io.cwd, "--text");
  const torchScript = o.compare ? resolve(io.cwd, o.torchReference) : undefined;
  if (torchScript && !isFile(torchScript)) throw new AptError("BAD_INPUT", `--torch-reference ${o.torchReference}: no such file (${torchScript})`, { exitCode: 2 });

  const { backend } = await startBackend(o.backend, io.cwd);
  const unet = UNet2DConditionModel.fromConfig(unetConfig, { seed: 0 });
  const text = CLIPTextModel.fromConfig(textConfig, { seed: 1 });
  const B = o.batch;
  const s = unet.config.sample_size;
  const x0 = tf.randomNormal([B, s, s, unet.config.in_channels], 0, 1, "float32", 2) as tf.Tensor4D;
  const seqLen = text.config.max_position_embeddings;
  const ids = tf.randomUniform([B, seqLen], 0, text.config.vocab_size, "int32", 3) as tf.Tensor2D;
  const alphasCumprod: number[] = [];
  for (let i = 0, acc = 1; i < 1000; i++) {
    acc *= 1 - (1e-4 + ((0.02 - 1e-4) * i) / 999);
    alphasCumprod.push(acc);
  }
  const alphas = tf.tensor1d(alphasCumprod);

  let trainable: Record<string, tf.Variable> = {};
  if (o.mode === "full") trainable = Object.fromEntries(unet.namedParameters());
  if (o.mode === "lora") {
    let seed = 10;
    trainable = unet.addAdapter(["to_q", "to_k", "to_v", "to_out.0"], (p) => loraAdapter(p.inFeatures!, p.outFeatures!, o.rank, o.rank, seed++));
  }
  const trainableParams = o.mode === "sample" ? 0 : Object.values(trainable).reduce((n, v) => n + v.size, 0);
  const opt = o.mode === "sample" ? undefined : new AdamW(trainable, { lr: 1e-4 });
  const varList = Object.values(trainable);

  const step = () => {
    tf.tidy(() => {
      const ctx = text.forward(ids);
      if (o.mode === "sample") {
        unet.forward(x0, tf.fill([B], 500, "int32") as tf.Tensor1D, ctx).dataSync();
        return;
      }
      const t = tf.randomUniform([B], 0, 1000, "int32") as tf.Tensor1D;
      const noise = tf.randomNormal(x0.shape);
      const a = tf.reshape(tf.gather(alphas, t), [B, 1, 1, 1]);
      const xt = tf.add(tf.mul(tf.sqrt(a), x0), tf.mul(tf.sqrt(tf.sub(1, a)), noise)) as tf.Tensor4D;
      const { value, grads } = tf.variableGrads(() => tf.mean(tf.square(tf.sub(unet.forward(xt, t, ctx), noise))) as tf.Scalar, varList);
      const byName: Record<string, tf.Tensor> = {};
      for (const [name, v] of Object.entries(trainable)) if (grads[v.name]) byName[name] = grads[v.name]!;
      opt!.apply(byName);
      value.dataSync();
    });
  };

  for (let i = 0; i < o.warmup; i++) step();
  const before = tf.memory().numTensors;
  const times: number[] = [];
  for (let i = 0; i < o.steps; i++) {
    const t0 = performance.now();
    step();
    times.push(performance.now() - t0);
  }
  const leaked = tf.memory().numTensors - before;
  const info = backend.info();
  const result: BenchResult = {
    mode: o.mode,
    batch: B,
    unet_params: unet.numParameters(),
    text_params: text.numParameters(),
    trainable_params: trainableParams,
    step_ms_median: round2(median(times)),
    step_ms_min: round2(Math.min(...times)),
    backend: info.name,
    device: info.device,
    tfjs: tf.version_core,
    leaked_tensors: leaked,
  };
  unet.dispose();
  text.dispose();
  tf.dispose([x0, ids, alphas]);
  await backend.dispose?.();

  if (torchScript) {
    const torch = runTorch(torchScript, o, io.cwd);
    if ("skipped" in torch) result.torch_skipped = torch.skipped;
    else {
      result.torch = torch.result;
      const ms = Number(torch.result.step_ms_median);
      if (ms > 0) result.ratio = round2(result.step_ms_median / ms);
    }
  }
  return result;
}

const PYTHON = "/usr/bin/python3";

function runTorch(script: string, o: BenchOptions, cwd: string): { result: Record<string, unknown> } | { skipped: string } {
  try {
    execFileSync(PYTHON, ["-c", "import torch"], { stdio: "ignore" });
  } catch {
    return { skipped: `PyTorch is not importable by ${PYTHON} (Debian: apt-get install -y python3-torch libopenblas0-pthread)` };
  }
  const args = [script, "--unet", resolve(cwd, o.unet), "--text", resolve(cwd, o.text), "--mode", o.mode, "--batch", String(o.batch), "--steps", String(o.steps), "--warmup", String(o.warmup), "--threads", String(o.threads), "--rank", String(o.rank)];
  const out = execFileSync(PYTHON, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
  const last = out.trim().split("\n").pop() ?? "";
  return { result: JSON.parse(last) as Record<string, unknown> };
}

export function formatBench(r: BenchResult): string {
  let s = `bench ${r.mode} batch ${r.batch} on ${r.backend} (${r.device}, tfjs ${r.tfjs}): median ${r.step_ms_median.toFixed(1)} ms, min ${r.step_ms_min.toFixed(1)} ms per step; UNet ${r.unet_params.toLocaleString("en-US")} params, text encoder ${r.text_params.toLocaleString("en-US")}, trainable ${r.trainable_params.toLocaleString("en-US")}`;
  if (r.leaked_tensors) s += `; ${r.leaked_tensors} tensors leaked per ${r.leaked_tensors > 0 ? "run" : "run"}`;
  if (r.torch) s += `\ntorch ${String(r.torch.torch ?? "")} (${String(r.torch.unet_params ?? "?")} UNet params): median ${String(r.torch.step_ms_median)} ms, min ${String(r.torch.step_ms_min)} ms; ratio ours/torch ${r.ratio ?? "n/a"}`;
  if (r.torch_skipped) s += `\ntorch comparison skipped: ${r.torch_skipped}`;
  return `${s}\n`;
}

export async function benchStepCommand(o: BenchOptions, io: Io): Promise<number> {
  const r = await runBench(o, io);
  io.stdout.write(o.json ? `${JSON.stringify(r)}\n` : formatBench(r));
  return 0;
}
