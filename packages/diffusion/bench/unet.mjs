#!/usr/bin/env node
// Times the shapes-s UNet + text encoder on @apt/backend-cpu and, in the same
// run, the PyTorch reference (../shared/bench/torch_reference.py) on the same
// configs, and prints both with the ratio (ours / torch; < 1 means faster).
//
//   node bench/unet.mjs [--batch 8] [--steps 3] [--torch-threads 2] [--json]
//
// Modes, as torch_reference.py defines them:
//   sample  text encoder + one UNet forward (no gradients), batch B
//   full    one training step: frozen text encoder, UNet forward + backward +
//           AdamW over every UNet parameter, epsilon loss
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { tf, AdamW } from "@apt/core";
import { backend } from "@apt/backend-cpu";
import { CLIPTextModel, UNet2DConditionModel } from "../dist/index.js";

const { values: args } = parseArgs({
  options: {
    batch: { type: "string", default: "8" },
    steps: { type: "string", default: "3" },
    warmup: { type: "string", default: "1" },
    "torch-threads": { type: "string", default: "2" },
    json: { type: "boolean", default: false },
  },
});
const B = Number(args.batch);
const STEPS = Number(args.steps);
const WARMUP = Number(args.warmup);
const here = dirname(fileURLToPath(import.meta.url));
const benchDir = join(here, "..", "..", "..", "..", "shared", "bench");
const unetConfig = JSON.parse(readFileSync(join(benchDir, "shapes-s.unet.json"), "utf8"));
const textConfig = JSON.parse(readFileSync(join(benchDir, "shapes-s.text.json"), "utf8"));

await backend.init();
const unet = UNet2DConditionModel.fromConfig(unetConfig, { seed: 0 });
const text = CLIPTextModel.fromConfig(textConfig, { seed: 1 });
const s = unetConfig.sample_size;
const x0 = tf.randomNormal([B, s, s, unetConfig.in_channels], 0, 1, "float32", 2);
const ids = tf.randomUniform([B, textConfig.max_position_embeddings], 0, textConfig.vocab_size, "int32", 3);
const alphas = tf.tensor1d(Array.from({ length: 1000 }, (_, i) => i).reduce((acc, i) => {
  acc.push((acc[i - 1] ?? 1) * (1 - (1e-4 + ((0.02 - 1e-4) * i) / 999)));
  return acc;
}, []));
const params = Object.fromEntries(unet.namedParameters());
const opt = new AdamW(params, { lr: 1e-4 });

function sampleStep() {
  tf.tidy(() => {
    const ctx = text.forward(ids);
    unet.forward(x0, tf.fill([B], 500, "int32"), ctx).dataSync();
  });
}

function fullStep() {
  tf.tidy(() => {
    const ctx = text.forward(ids);
    const t = tf.randomUniform([B], 0, 1000, "int32");
    const noise = tf.randomNormal(x0.shape);
    const a = tf.reshape(tf.gather(alphas, t), [B, 1, 1, 1]);
    const xt = tf.add(tf.mul(tf.sqrt(a), x0), tf.mul(tf.sqrt(tf.sub(1, a)), noise));
    const { value, grads } = tf.variableGrads(() => tf.mean(tf.square(tf.sub(unet.forward(xt, t, ctx), noise))), Object.values(params));
    const byName = {};
    for (const [name, v] of Object.entries(params)) byName[name] = grads[v.name];
    opt.apply(byName);
    value.dataSync();
  });
}

function time(fn) {
  for (let i = 0; i < WARMUP; i++) fn();
  const before = tf.memory().numTensors;
  const ms = [];
  for (let i = 0; i < STEPS; i++) {
    const t0 = performance.now();
    fn();
    ms.push(performance.now() - t0);
  }
  ms.sort((a, b) => a - b);
  return { median: ms[Math.floor(ms.length / 2)], min: ms[0], leaked: tf.memory().numTensors - before };
}

function torch(mode) {
  const py = "/usr/bin/python3";
  if (!existsSync(py)) return { skipped: "no /usr/bin/python3" };
  try {
    execFileSync(py, ["-c", "import torch"], { stdio: "ignore" });
  } catch {
    return { skipped: "PyTorch missing: apt-get install -y python3-torch libopenblas0-pthread" };
  }
  const out = execFileSync(py, [join(benchDir, "torch_reference.py"), "--unet", join(benchDir, "shapes-s.unet.json"), "--text", join(benchDir, "shapes-s.text.json"), "--mode", mode, "--batch", String(B), "--steps", String(Math.max(STEPS, 5)), "--warmup", "2", "--threads", args["torch-threads"]], { encoding: "utf8" });
  return JSON.parse(out.trim().split("\n").pop());
}

const results = [];
for (const [mode, fn] of [["sample", sampleStep], ["full", fullStep]]) {
  const ours = time(fn);
  const ref = torch(mode);
  results.push({ mode, batch: B, ours_ms: Math.round(ours.median), ours_min_ms: Math.round(ours.min), leaked_tensors: ours.leaked, torch_ms: ref.step_ms_median, torch_threads: Number(args["torch-threads"]), ratio: ref.step_ms_median ? +(ours.median / ref.step_ms_median).toFixed(2) : null, torch_note: ref.skipped, torch_unet_params: ref.unet_params, torch_text_params: ref.text_params });
}
const info = { backend: backend.info().device, unet_params: unet.numParameters(), text_params: text.numParameters(), results };
if (args.json) console.log(JSON.stringify(info));
else {
  console.log(`## shapes-s UNet on @apt/backend-cpu (${info.backend}) vs PyTorch ${args["torch-threads"]} thread(s), same machine, same run`);
  console.log(`parameters: UNet ${info.unet_params} (torch ${results[0].torch_unet_params ?? "?"}), text encoder ${info.text_params} (torch ${results[0].torch_text_params ?? "?"})\n`);
  console.log("| mode | batch | @apt ms (median) | PyTorch ms (median) | ratio @apt/PyTorch | tensors leaked per step |");
  console.log("|---|--:|--:|--:|--:|--:|");
  for (const r of results) console.log(`| ${r.mode} | ${r.batch} | ${r.ours_ms} | ${r.torch_ms ?? r.torch_note} | ${r.ratio ?? "n/a"} | ${r.leaked_tensors} |`);
}
process.exit(0);
