#!/usr/bin/env node
// Pretrains the ShapeWorld base model from scratch through @apt/core's engine
// (a "pretrain" run: every UNet weight trainable under a text encoder trained
// first and frozen, batches rendered on the fly from the seeded world, held-out
// shape × colour pairs never shown). Resumes from its latest checkpoint; writes
// the diffusers folder at the end. `pnpm --filter @apt/shapes pretrain` runs
// scripts/train-text-encoder.mjs first (into <run>/text-encoder), then this.
//
//   node scripts/pretrain.mjs [--steps 8000] [--batch 16] [--run pretrain-run] [--out models/base]
//        [--unet shapes-t] [--beta-schedule linear] [--object-weight 3] [--edge-weight 0] [--workers 2] [--high-noise 0] [--snr-gamma 0]
//        [--weighting-scheme none|logit_normal|mode] [--logit-mean 0] [--logit-std 1] [--mode-scale 1.29]
//        [--lr 1e-3] [--lr-scheduler cosine|linear|constant] [--lr-warmup-steps 100] [--resolution 32|16]
//        [--pretrained <diffusers pipeline folder> --seed 1]   (start the UNet from its weights; the encoder defaults to its text_encoder)
//        [--vae <AutoencoderKL folder> --unet shapes-l]   (a latent model)
//        [--text-encoder <CLIPTextModel folder>|joint]   (default <run>/text-encoder, frozen, as SD under CLIP;
//                                                   joint: trained from scratch with the UNet, as the v3 model)
//   node scripts/pretrain.mjs --export latest|<checkpoint folder> [--out dir] [--dtype float16] [--weights average|last]   (export only)
// The shipped model (v14) is two runs: a coarse one at 16×16 (--resolution 16 --batch 16 --lr-scheduler
// constant --steps 14000), then the defaults at 32×32 from its weights (--pretrained <first run's folder>
// --seed 1 --batch 8); package.json's "pretrain" runs the encoder and both.
import { existsSync } from "node:fs";
import { appendFile, mkdir } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { tf, DEFAULT_TRAIN_OPTIONS, listCheckpoints, readCheckpoint, resolveCheckpoint, train } from "@apt/core";
import { BETA_SCHEDULES, DDIMScheduler, SAVE_DTYPES, UNet2DConditionModel } from "@apt/diffusion";
import { renderBatch, sampleAttributes, samplePrompt } from "../dist/index.js";
import createBaseModel, { UNET_VARIANTS, schedulerConfig } from "./base-model.mjs";
import { numberFlag } from "./training-helpers.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const { values: args } = parseArgs({
  args: process.argv.slice(2).filter((a) => a !== "--"), // pnpm passes a literal "--" through
  options: {
    steps: { type: "string", default: "8000" },
    batch: { type: "string", default: "16" },
    lr: { type: "string", default: "1e-3" },
    // The learning rate after warm-up (diffusers' --lr_scheduler / --lr_warmup_steps; the engine's lrSchedule):
    // cosine to 0 at the last step (the shipped recipe), linear to 0, or constant.
    "lr-scheduler": { type: "string", default: "cosine" },
    "lr-warmup-steps": { type: "string", default: "100" },
    run: { type: "string", default: join(here, "..", "pretrain-run") },
    out: { type: "string", default: join(here, "..", "models", "base") },
    export: { type: "string" },
    // The UNet, by name in base-model.mjs's UNET_VARIANTS.
    unet: { type: "string", default: "shapes-t" },
    // The noise schedule's beta_schedule (diffusers' names; see base-model.mjs for cosine's measurement):
    // default linear, or Stable Diffusion's scaled_linear with --vae.
    "beta-schedule": { type: "string" },
    // Share of each batch whose timestep is drawn from [400, 999] instead of [0, 999]
    // (0 = uniform, as the shipped model).
    "high-noise": { type: "string", default: "0" },
    // How timesteps are drawn (diffusers' SD3 training scripts' `weighting_scheme`, `logit_mean`, `logit_std`,
    // `mode_scale`; Esser et al. 2024): "none" uniform over [0, 999] (the shipped model); "logit_normal" t = 1000 ·
    // sigmoid(N(logit_mean, logit_std)), most draws in the middle of the schedule, where the shape is decided
    // (v8 kept a render's shape when denoised from t = 200 but not from 600); "mode" 1000 · (1 − u −
    // mode_scale · (cos²(πu/2) − 1 + u)) for uniform u.
    "weighting-scheme": { type: "string", default: "none" },
    "logit-mean": { type: "string", default: "0" },
    "logit-std": { type: "string", default: "1" },
    "mode-scale": { type: "string", default: "1.29" },
    // Loss weight of object pixels relative to background ones, 1 + K · coverage
    // (kohya's masked loss with the renderer's mask): the object is 10–35% of a
    // 32×32 image, the background is learned first; 0 = plain MSE.
    "object-weight": { type: "string", default: "3" },
    // Extra loss weight K on the object's outline, + K · (max − min of the mask over a 3×3
    // window; about 13% of a batch's pixels): what tells a cross or a square from a round
    // blob is where the edge runs (0 = none, as the shipped model).
    "edge-weight": { type: "string", default: "0" },
    // A diffusers pipeline folder (e.g. models/base) whose UNet weights the run starts from instead of a random
    // initialisation: diffusers' --pretrained_model_name_or_path, for training on from a finished run with a fresh
    // optimizer and learning-rate schedule. Its unet config must be the --unet variant's; --text-encoder defaults
    // to its text_encoder (the encoder that UNet was trained under).
    pretrained: { type: "string" },
    // The run's seed (the engine's train.seed: which images, captions, noise and timesteps it draws). A run that
    // trains on from --pretrained takes another seed than the run that made it, so it sees new images.
    seed: { type: "string", default: "0" },
    // A trained AutoencoderKL folder (scripts/train-vae.mjs): the UNet then denoises its latents (--unet shapes-l).
    vae: { type: "string" },
    // A text encoder trained first (scripts/train-text-encoder.mjs), kept frozen while the UNet trains.
    // Default <run>/text-encoder (where train-text-encoder.mjs writes it); "joint" trains a fresh one with the UNet.
    "text-encoder": { type: "string" },
    // diffusers' EMAModel decay for the exported weights (0: the last weights, as v3 and v7).
    "ema-decay": { type: "string", default: "0.999" },
    // γ of min-SNR-γ loss weighting (the engine's train.snrGamma; 0: off, as the shipped model).
    "snr-gamma": { type: "string", default: "0" },
    // With --export, from a run with --ema-decay: its weight average (what a finished run leaves) or the last weights.
    weights: { type: "string", default: "average" },
    // The dtype of the exported weights (float16 halves the files; the model computes in float32).
    dtype: { type: "string", default: "float32" },
    // The training images' side in pixels: 32 (the renders), or 16 (each 2×2 block averaged, masks too): a quarter
    // of the pixels for a coarse first stage, as Stable Diffusion trained at 256² before 512² (the UNet is fully
    // convolutional; its attention then runs at 4×4). Train on at 32 with --pretrained <this run's folder>.
    resolution: { type: "string", default: "32" },
    // Threads that share each batch (tfjs's WASM backend uses one core each): 2 on this machine.
    workers: { type: "string", default: "2" },
  },
});

if (args.pretrained !== undefined && !existsSync(join(args.pretrained, "unet", "config.json"))) {
  console.error(`--pretrained: ${args.pretrained} holds no unet/config.json; give a diffusers pipeline folder such as models/base`);
  process.exit(2);
}
args["text-encoder"] ??= args.pretrained !== undefined ? join(args.pretrained, "text_encoder") : join(args.run, "text-encoder");
if (args["text-encoder"] === "joint") args["text-encoder"] = undefined;
// Folders of models trained before the UNet: the flag, what it holds, the script that makes it.
for (const [flag, model, script] of [["vae", "AutoencoderKL", "train-vae.mjs"], ["text-encoder", "CLIPTextModel", "train-text-encoder.mjs"]]) {
  const dir = args[flag];
  if (dir !== undefined && !existsSync(join(dir, "config.json"))) {
    console.error(`--${flag}: ${dir} holds no ${model} (config.json); train one first (node scripts/${script} --out ${dir})`);
    process.exit(2);
  }
}
if (!UNET_VARIANTS[args.unet]) {
  console.error(`--unet: "${args.unet}" is not one of ${Object.keys(UNET_VARIANTS).join(", ")}`);
  process.exit(2);
}
args["beta-schedule"] ??= args.vae ? "scaled_linear" : "linear";
if (!BETA_SCHEDULES.includes(args["beta-schedule"])) {
  console.error(`--beta-schedule: "${args["beta-schedule"]}" is not one of ${BETA_SCHEDULES.join(", ")}`);
  process.exit(2);
}
const highNoise = Number(args["high-noise"]);
if (!(highNoise >= 0 && highNoise <= 1)) {
  console.error(`--high-noise: ${args["high-noise"]} is not a share in [0, 1]`);
  process.exit(2);
}
const WEIGHTING_SCHEMES = ["none", "logit_normal", "mode"];
if (!WEIGHTING_SCHEMES.includes(args["weighting-scheme"])) {
  console.error(`--weighting-scheme: "${args["weighting-scheme"]}" is not one of ${WEIGHTING_SCHEMES.join(", ")}`);
  process.exit(2);
}
const logitMean = numberFlag(args, "logit-mean");
const logitStd = numberFlag(args, "logit-std", { min: 0 });
const modeScale = numberFlag(args, "mode-scale");
if (args["weighting-scheme"] !== "none" && highNoise > 0) {
  console.error("--weighting-scheme and --high-noise both choose the timesteps; give one of them");
  process.exit(2);
}
const objectWeight = Number(args["object-weight"]);
if (!(objectWeight >= 0)) {
  console.error(`--object-weight: ${args["object-weight"]} is not a number ≥ 0`);
  process.exit(2);
}
const edgeWeight = numberFlag(args, "edge-weight", { min: 0 });
const emaDecay = Number(args["ema-decay"]);
if (!(emaDecay >= 0 && emaDecay < 1)) {
  console.error(`--ema-decay: ${args["ema-decay"]} is not in [0, 1)`);
  process.exit(2);
}
const snrGamma = numberFlag(args, "snr-gamma", { min: 0 });
const seed = numberFlag(args, "seed", { integer: true, min: 0 });
const resolution = Number(args.resolution);
if (![32, 16].includes(resolution)) {
  console.error(`--resolution: ${args.resolution} is not 32 (the renders) or 16 (2×2 averaged)`);
  process.exit(2);
}
const LR_SCHEDULERS = ["cosine", "linear", "constant"];
if (!LR_SCHEDULERS.includes(args["lr-scheduler"])) {
  console.error(`--lr-scheduler: "${args["lr-scheduler"]}" is not one of ${LR_SCHEDULERS.join(", ")}`);
  process.exit(2);
}
const warmupSteps = numberFlag(args, "lr-warmup-steps", { integer: true, min: 0 });
if (!SAVE_DTYPES.includes(args.dtype)) {
  console.error(`--dtype: "${args.dtype}" is not one of ${SAVE_DTYPES.join(", ")}`);
  process.exit(2);
}
if (!["average", "last"].includes(args.weights)) {
  console.error(`--weights: "${args.weights}" is not one of average, last`);
  process.exit(2);
}
const workers = Number(args.workers);
if (!(Number.isInteger(workers) && workers >= 1)) {
  console.error(`--workers: ${args.workers} is not a positive integer`);
  process.exit(2);
}
let model;
try {
  model = await createBaseModel({ unet: args.unet, betaSchedule: args["beta-schedule"], vae: args.vae, textEncoder: args["text-encoder"] });
} catch (e) {
  console.error(`--unet/--vae/--text-encoder: ${e.message}`);
  process.exit(2);
}
if (args.pretrained !== undefined) {
  // Weights only: a checkpoint of this run, when there is one, replaces them on resume.
  const unetDir = join(args.pretrained, "unet");
  const start = await UNet2DConditionModel.fromPretrained(unetDir);
  const [want, have] = [model.unet.toConfig(), start.toConfig()];
  const differs = Object.keys({ ...want, ...have }).filter((k) => JSON.stringify(want[k]) !== JSON.stringify(have[k]));
  if (differs.length > 0) {
    console.error(`--pretrained: ${unetDir}/config.json differs from --unet ${args.unet} in ${differs.join(", ")}; pass the --unet variant it was trained as`);
    process.exit(2);
  }
  const weights = start.namedParameters();
  for (const [name, v] of model.unet.namedParameters()) v.assign(weights.get(name));
  start.dispose();
  console.log(`UNet weights from ${unetDir}`);
}

/**
 * Each step's batch: fresh renders of attributes drawn from the run's Rng
 * (held-out shape × colour pairs never drawn), captioned by the grammar; 10%
 * empty captions (classifier-free guidance) and 30% in the "a photo of …"
 * form that personalization prompts use, so "photo" and "of" are known words.
 */
const data = (n, info) => {
  const attrs = Array.from({ length: n }, () => sampleAttributes({}, info.rng, { excludeHeldOut: true }));
  const prompts = attrs.map((a) => (info.rng.uniform() < 0.1 ? "" : samplePrompt(a, info.rng, { photoProbability: 0.3 })));
  const r = downsampled(renderBatch(attrs, info.rng.nextUint32(), { masks: objectWeight > 0 || edgeWeight > 0 }), 32 / resolution);
  const images = tf.tidy(() => tf.sub(tf.mul(tf.tensor4d(r.images, r.shape), 2), 1));
  const items = prompts.map((prompt) => ({ prompt, kind: "instance", weight: 1 }));
  if (!r.masks) return { images, items };
  const [b, h, w] = r.shape;
  const weights = new Float32Array(r.masks.length);
  const edges = edgeWeight > 0 ? outline(r.masks, b, h, w) : undefined;
  for (let i = 0; i < weights.length; i++) weights[i] = 1 + objectWeight * r.masks[i] + (edges ? edgeWeight * edges[i] : 0);
  return { images, items, lossWeights: tf.tensor4d(weights, [b, h, w, 1]) };
};

/** The batch with every f×f block of pixels (and of masks) averaged: box-filtered, so edges stay anti-aliased. */
function downsampled(r, f) {
  if (f === 1) return r;
  const [b, h, w, c] = r.shape;
  const [oh, ow] = [h / f, w / f];
  const pool = (src, channels) => {
    const out = new Float32Array(b * oh * ow * channels);
    for (let n = 0; n < b; n++) for (let y = 0; y < oh; y++) for (let x = 0; x < ow; x++) for (let k = 0; k < channels; k++) {
      let sum = 0;
      for (let dy = 0; dy < f; dy++) for (let dx = 0; dx < f; dx++) sum += src[((n * h + y * f + dy) * w + x * f + dx) * channels + k];
      out[((n * oh + y) * ow + x) * channels + k] = sum / (f * f);
    }
    return out;
  };
  return { ...r, shape: [b, oh, ow, c], images: pool(r.images, c), ...(r.masks ? { masks: pool(r.masks, 1) } : {}) };
}

/** Per pixel, max − min of the mask over the 3×3 window around it: 1 on the object's outline, 0 inside and outside. */
function outline(masks, b, h, w) {
  const out = new Float32Array(masks.length);
  for (let n = 0; n < b; n++) {
    const o = n * h * w;
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
      let lo = 1, hi = 0;
      for (let dy = -1; dy <= 1; dy++) {
        const yy = y + dy;
        if (yy < 0 || yy >= h) continue;
        for (let dx = -1; dx <= 1; dx++) {
          const xx = x + dx;
          if (xx < 0 || xx >= w) continue;
          const m = masks[o + yy * w + xx];
          if (m < lo) lo = m;
          if (m > hi) hi = m;
        }
      }
      out[o + y * w + x] = hi - lo;
    }
  }
  return out;
}

/** A method plugin (the engine's `timesteps` hook) that draws each sample's timestep with `draw(rng)`. */
const timestepPlugin = (name, draw) => ({
  apiVersion: 1,
  name,
  options: { "~standard": { version: 1, vendor: "apt", validate: (v) => ({ value: v ?? {} }) } },
  create: () => ({ timesteps: (n, info) => Int32Array.from({ length: n }, () => draw(info.rng)) }),
});

/** A `highNoise` share from [400, 999], the rest from [0, 999]. */
const highNoiseTimesteps = timestepPlugin("high-noise-timesteps", (rng) => (rng.uniform() < highNoise ? 400 + rng.int(600) : rng.int(1000)));

/** By --weighting-scheme (diffusers' compute_density_for_timestep_sampling). */
const densityTimesteps = timestepPlugin("density-timesteps", (rng) => {
  let u;
  if (args["weighting-scheme"] === "logit_normal") u = 1 / (1 + Math.exp(-(logitMean + logitStd * rng.normal())));
  else {
    const v = rng.uniform();
    u = 1 - v - modeScale * (Math.cos((Math.PI * v) / 2) ** 2 - 1 + v);
  }
  return Math.min(999, Math.max(0, Math.floor(u * 1000)));
});

/** Saves the pipeline for sampling: same noise schedule, DDIM. */
async function savePipeline(out) {
  model.scheduler = new DDIMScheduler(schedulerConfig(args["beta-schedule"]));
  await model.savePretrained(out, { dtype: args.dtype });
  console.log(`wrote ${out}`);
}

if (args.export !== undefined) {
  // Export only: the weights of a checkpoint (a folder, or "latest") as a diffusers folder.
  const path = await resolveCheckpoint(args.run, args.export || "latest");
  const ck = await readCheckpoint(path);
  // A run with --ema-decay exports its weight average (what the finished run leaves in the model) unless --weights last.
  const averaged = args.weights === "average" && Object.keys(ck.ema ?? {}).length > 0;
  const weights = averaged ? ck.ema : ck.trainable;
  for (const [name, v] of model.unet.namedParameters()) v.assign(weights[name]);
  // A run under a frozen --text-encoder checkpointed none of it: the loaded encoder stays.
  if (args["text-encoder"] === undefined) for (const [name, v] of model.textEncoder.namedParameters()) v.assign(weights[`text_encoder.${name}`]);
  console.log(`checkpoint ${path} (step ${ck.state.step}${averaged ? ", the weight average" : ""})`);
  await savePipeline(args.out);
  process.exit(0);
}

const runDir = args.run;
await mkdir(runDir, { recursive: true });
const log = join(runDir, "pretrain.log");
const resume = (await listCheckpoints(runDir)).length ? "latest" : undefined;
const started = Date.now();
await train({
  model,
  task: "pretrain",
  concepts: [],
  data,
  train: {
    ...DEFAULT_TRAIN_OPTIONS,
    steps: Number(args.steps), batchSize: Number(args.batch), lr: Number(args.lr), lrSchedule: args["lr-scheduler"], warmupSteps,
    weightDecay: 1e-2, maxGradNorm: 1, emaDecay, snrGamma, seed, checkpointEvery: 50, checkpointsTotalLimit: 2,
    // A pretrained --text-encoder stays frozen; otherwise it trains with the UNet (the engine's pretrain default).
    ...(args["text-encoder"] !== undefined ? { trainTextEncoder: false } : {}),
  },
  // No method chooses trainable weights: every UNet weight trains, and the text encoder unless it is a frozen --text-encoder.
  ...(workers > 1 ? { replicas: { count: workers - 1, module: new URL("./base-model.mjs", import.meta.url), args: { unet: args.unet, betaSchedule: args["beta-schedule"], vae: args.vae, textEncoder: args["text-encoder"] } } } : {}),
  methods: [
    ...(highNoise > 0 ? [{ plugin: highNoiseTimesteps, options: {}, name: highNoiseTimesteps.name }] : []),
    ...(args["weighting-scheme"] !== "none" ? [{ plugin: densityTimesteps, options: {}, name: densityTimesteps.name }] : []),
  ],
  runDir,
  resume,
  onEvent: (e) => {
    if (e.type === "step" && (e.step % 10 === 0 || e.step < 5)) {
      const line = `step ${e.step} loss ${e.loss.toFixed(4)} lr ${e.lr.toExponential(2)} ${e.itPerSec.toFixed(2)} it/s elapsed ${((Date.now() - started) / 1000).toFixed(0)}s`;
      console.log(line);
      void appendFile(log, `${line}\n`);
    } else if (e.type === "checkpoint" || e.type === "start" || e.type === "end") {
      console.log(JSON.stringify(e));
      void appendFile(log, `${JSON.stringify(e)}\n`);
    }
  },
});
await savePipeline(args.out);
process.exit(0);
