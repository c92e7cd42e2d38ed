#!/usr/bin/env node
// Trains ShapeWorld's VAE from scratch: diffusers' AutoencoderKL with f = 4
// (32×32×3 images ↔ 8×8×C latents, C = --latent-channels), for a latent base
// model (pretrain --vae). C = 4 (SD's) was measured first: after 1,500 steps its
// reconstructions kept shape 92.1% and colour 85.3% by the evaluator, texture
// 30.0% (22.6 dB) — a 4-pixel stripe period is one latent pixel, and a lost
// texture shifts the mean colour — a ceiling under the 80% the base model needs.
// The loss is SD's autoencoder loss without its perceptual and GAN terms: L1
// reconstruction (object pixels weighted 1 + K·coverage, as the UNet's loss)
// plus a small KL to N(0, I) that keeps latents near the origin; the latents'
// scale is then fixed by `scaling_factor` = 1 / std, as SD's 0.18215 was.
// Renders are seeded per step and never show the held-out shape × colour pairs
// (the base model as a whole never sees them).
//
// Resumes from <run>/checkpoint.safetensors (weights, AdamW moments, step). At
// the end it measures, on --eval-count fresh renders of another seed, the
// reconstruction PSNR and the evaluator's accuracy on reconstructions (a VAE
// that loses a shape can never be prompted into one), and writes the diffusers
// folder (config.json + diffusion_pytorch_model.safetensors) to --out.
//
// A finished run (its checkpoint at --steps and the folder written) exits at
// once, so a chain of this and `pretrain.mjs --vae` resumes wherever it stopped.
//
//   node scripts/train-vae.mjs [--steps 2000] [--latent-channels 8] [--batch 16] [--run .scratch/vae-run] [--out .scratch/vae]
import { existsSync } from "node:fs";
import { mkdir, rm } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { tf, AdamW, Rng, SafetensorsReader, writeSafetensors } from "@apt/core";
import { backend } from "@apt/backend-cpu";
import { AutoencoderKL } from "@apt/diffusion";
import { ATTRIBUTE_KINDS, ShapeEvaluator, attributeAccuracy, isHeldOut, itemSeed, renderBatch, sampleAttributes } from "../dist/index.js";
import { hms, loadTrainingState, numberFlag, trainingStateTensors, warmupCosine } from "./training-helpers.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const { values: args } = parseArgs({
  args: process.argv.slice(2).filter((a) => a !== "--"),
  options: {
    steps: { type: "string", default: "2000" },
    "latent-channels": { type: "string", default: "8" },
    batch: { type: "string", default: "16" },
    lr: { type: "string", default: "1e-3" },
    "min-lr": { type: "string", default: "1e-5" },
    warmup: { type: "string", default: "100" },
    "kl-weight": { type: "string", default: "1e-5" },
    "object-weight": { type: "string", default: "3" },
    seed: { type: "string", default: "3" },
    "eval-seed": { type: "string", default: "20251" },
    "eval-count": { type: "string", default: "1000" },
    "checkpoint-every": { type: "string", default: "100" },
    "log-every": { type: "string", default: "25" },
    run: { type: "string", default: join(here, "..", ".scratch", "vae-run") },
    out: { type: "string", default: join(here, "..", ".scratch", "vae") },
    fresh: { type: "boolean", default: false },
  },
});

const num = (name, opts) => numberFlag(args, name, opts);
const steps = num("steps", { integer: true, min: 1 });
const batchSize = num("batch", { integer: true, min: 1 });
const latentChannels = num("latent-channels", { integer: true, min: 1 });
const peakLr = num("lr", { min: 0 });
const minLr = num("min-lr", { min: 0 });
const warmup = num("warmup", { integer: true, min: 0 });
const klWeight = num("kl-weight", { min: 0 });
const objectWeight = num("object-weight", { min: 0 });
const seed = num("seed", { integer: true, min: 0 });
const evalSeed = num("eval-seed", { integer: true, min: 0 });
const evalCount = num("eval-count", { integer: true, min: 1 });
const checkpointEvery = num("checkpoint-every", { integer: true, min: 1 });
const logEvery = num("log-every", { integer: true, min: 1 });
if (evalSeed === seed) {
  console.error("--eval-seed must differ from --seed: reconstructions are measured on renders the training never saw");
  process.exit(2);
}

// f = 4: three levels (32, 16, 8), one ResNet each (two in the decoder), no
// attention (an 8×8 map is seen whole by the decoder's receptive field). Few
// channels at 32×32, where nearly all of its FLOPs are: the VAE's training
// time counts in the base model's 2-hour budget.
const VAE_CONFIG = {
  _class_name: "AutoencoderKL",
  in_channels: 3, out_channels: 3, latent_channels: latentChannels,
  down_block_types: ["DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D"],
  up_block_types: ["UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"],
  block_out_channels: [16, 32, 64], layers_per_block: 1, norm_num_groups: 8, act_fn: "silu",
  sample_size: 32, scaling_factor: 1, mid_block_add_attention: false,
};

const learningRate = warmupCosine({ peak: peakLr, min: minLr, warmup, steps });

/** Batch `step`: seeded by (seed, step) only, so a resumed run sees the same data. */
function trainingBatch(step) {
  const rng = new Rng(itemSeed(seed, step));
  const attrs = Array.from({ length: batchSize }, () => sampleAttributes({}, rng, { excludeHeldOut: true }));
  const r = renderBatch(attrs, rng.nextUint32(), { masks: true });
  const [b, h, w] = r.shape;
  return tf.tidy(() => ({
    images: tf.sub(tf.mul(tf.tensor4d(r.images, r.shape), 2), 1),
    weights: tf.add(tf.mul(tf.tensor4d(r.masks, [b, h, w, 1]), objectWeight), 1),
    noise: tf.tensor4d(Float32Array.from({ length: b * (h / 4) * (w / 4) * latentChannels }, () => rng.normal()), [b, h / 4, w / 4, latentChannels]),
  }));
}

await backend.init();
const checkpointPath = join(args.run, "checkpoint.safetensors");
if (args.fresh) await rm(checkpointPath, { force: true });
const vae = AutoencoderKL.fromConfig(VAE_CONFIG, { seed });
const params = Object.fromEntries(vae.namedParameters());
const optimizer = new AdamW(params, { lr: peakLr, weightDecay: 0 });
let start = 0;
let elapsedBefore = 0;
if (existsSync(checkpointPath)) {
  const reader = await SafetensorsReader.open(checkpointPath);
  try {
    const meta = reader.metadata;
    if (Number(meta.seed) !== seed || Number(meta.batch) !== batchSize || Number(meta.latent_channels ?? 4) !== latentChannels) {
      console.error(`${checkpointPath} was trained with --seed ${meta.seed} --batch ${meta.batch} --latent-channels ${meta.latent_channels ?? 4}; pass those, or --fresh to start over`);
      process.exit(2);
    }
    if (Number(meta.step) >= steps && existsSync(join(args.out, "config.json"))) {
      console.log(`${checkpointPath} finished ${meta.step} steps and ${args.out} is written: nothing to do (--fresh starts over)`);
      process.exit(0);
    }
    await loadTrainingState(reader, params, optimizer);
    start = Number(meta.step);
    elapsedBefore = Number(meta.elapsed_s);
    console.log(`resumed from ${checkpointPath} at step ${start} (${hms(elapsedBefore)} of training so far)`);
  } finally {
    await reader.close();
  }
}
const parameterCount = Object.values(params).reduce((a, v) => a + v.size, 0);
console.log(`vae: ${parameterCount} parameters; steps ${steps}, batch ${batchSize}, lr ${peakLr} → ${minLr}, kl weight ${klWeight}, object weight ${objectWeight}; checkpoints in ${args.run}`);

const t0 = performance.now();
const elapsed = () => elapsedBefore + (performance.now() - t0) / 1000;

async function writeCheckpoint(step) {
  await mkdir(args.run, { recursive: true });
  const tensors = trainingStateTensors(params, optimizer);
  await writeSafetensors(checkpointPath, tensors, { step: String(step), adam_step: String(optimizer.getState().step), elapsed_s: String(elapsed()), seed: String(seed), batch: String(batchSize), latent_channels: String(latentChannels) });
}

const byVariable = new Map(Object.entries(params).map(([name, v]) => [v.name, name]));
let sums = { rec: 0, kl: 0, n: 0 };
let windowStart = performance.now();
for (let step = start; step < steps; step++) {
  const lr = learningRate(step);
  const batch = trainingBatch(step);
  let rec;
  let kl;
  const { value, grads } = tf.variableGrads(() => {
    const posterior = vae.encode(batch.images);
    const decoded = vae.decode(posterior.sample(batch.noise));
    rec = tf.keep(tf.div(tf.sum(tf.mul(batch.weights, tf.abs(tf.sub(decoded, batch.images)))), tf.mul(tf.sum(batch.weights), 3)));
    kl = tf.keep(tf.div(tf.mean(posterior.kl()), batch.noise.size / batchSize));
    return tf.add(rec, tf.mul(kl, klWeight));
  }, Object.values(params));
  const named = {};
  for (const [varName, g] of Object.entries(grads)) named[byVariable.get(varName)] = g;
  optimizer.apply(named, lr);
  sums.rec += rec.dataSync()[0];
  sums.kl += kl.dataSync()[0];
  sums.n++;
  tf.dispose([value, rec, kl, batch.images, batch.weights, batch.noise, ...Object.values(grads)]);
  const done = step + 1;
  if (!Number.isFinite(sums.rec)) {
    console.error(`diverged at step ${done}: reconstruction loss ${sums.rec}; the last checkpoint is ${checkpointPath}`);
    process.exit(1);
  }
  if (done % logEvery === 0 || done === steps) {
    const perStep = (performance.now() - windowStart) / 1000 / sums.n;
    console.log(`step ${done}/${steps} L1 ${(sums.rec / sums.n).toFixed(4)} KL/element ${(sums.kl / sums.n).toFixed(3)} lr ${lr.toExponential(2)} ${perStep.toFixed(2)} s/step elapsed ${hms(elapsed())}`);
    sums = { rec: 0, kl: 0, n: 0 };
    windowStart = performance.now();
  }
  if (done % checkpointEvery === 0 || done === steps) await writeCheckpoint(done);
}
const wall = elapsed();

// Fresh renders of another seed, held-out pairs included (reported apart).
const evalRng = new Rng(evalSeed);
const evalAttrs = Array.from({ length: evalCount }, () => sampleAttributes({}, evalRng));
const evalSet = renderBatch(evalAttrs, itemSeed(evalSeed, 0x5eed));
const chunk = 100;
const recon = new Float32Array(evalSet.images.length);
const latentSums = { s: 0, s2: 0, n: 0 };
const sampleRng = new Rng(evalSeed + 1);
for (let i = 0; i < evalCount; i += chunk) {
  const n = Math.min(chunk, evalCount - i);
  const per = evalSet.images.length / evalCount;
  const [out, z] = tf.tidy(() => {
    const x = tf.sub(tf.mul(tf.tensor4d(evalSet.images.subarray(i * per, (i + n) * per), [n, 32, 32, 3]), 2), 1);
    const posterior = vae.encode(x);
    // Reconstructions from the mode (as the pipeline decodes a denoised latent); the scale from samples (as training encodes).
    return [tf.clipByValue(tf.div(tf.add(vae.decode(posterior.mode()), 1), 2), 0, 1), posterior.sample(sampleRng)];
  });
  recon.set(out.dataSync(), i * per);
  for (const v of z.dataSync()) {
    latentSums.s += v;
    latentSums.s2 += v * v;
    latentSums.n++;
  }
  tf.dispose([out, z]);
}
const mean = latentSums.s / latentSums.n;
const std = Math.sqrt(latentSums.s2 / latentSums.n - mean * mean);
let se = 0;
for (let i = 0; i < recon.length; i++) se += (recon[i] - evalSet.images[i]) ** 2;
const psnr = 10 * Math.log10(1 / (se / recon.length));

const evaluator = await ShapeEvaluator.load(join(here, "..", "models", "evaluator"));
const heldOut = (attrs) => isHeldOut(attrs);
const accuracy = (images, keep) => attributeAccuracy(evaluator.predict(images), evalSet.truths, keep);
const [originals, reconstructions] = [tf.tensor4d(evalSet.images, evalSet.shape), tf.tensor4d(recon, evalSet.shape)];
const fmt = (acc) => ATTRIBUTE_KINDS.map((k) => `${k} ${(100 * acc[k]).toFixed(1)}%`).join("  ");
console.log(`after ${steps} steps (${hms(wall)} of training), ${evalCount} renders of seed ${evalSeed}:`);
console.log(`  PSNR ${psnr.toFixed(2)} dB; latents (posterior samples) mean ${mean.toFixed(3)}, std ${std.toFixed(3)} → scaling_factor ${(1 / std).toFixed(5)}`);
console.log(`  evaluator on the originals       ${fmt(accuracy(originals))}`);
console.log(`  evaluator on the reconstructions ${fmt(accuracy(reconstructions))}`);
console.log(`  … held-out pairs only            ${fmt(accuracy(reconstructions, heldOut))}`);
tf.dispose([originals, reconstructions]);
evaluator.dispose();

// The shipped folder carries the measured scale (diffusers reads it as vae.config.scaling_factor).
const final = AutoencoderKL.fromConfig({ ...VAE_CONFIG, scaling_factor: Number((1 / std).toFixed(5)) });
for (const [name, v] of final.namedParameters()) v.assign(params[name]);
await final.savePretrained(args.out);
console.log(`wrote ${args.out}`);
