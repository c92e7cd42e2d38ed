#!/usr/bin/env node
// Trains the ShapeWorld evaluator (src/evaluator/model.ts) from scratch on an
// infinite, seeded stream of freshly rendered images — every attribute
// combination, the held-out shape × colour pairs included, since the evaluator
// must judge those too — with AdamW (warm-up, then cosine decay) and the
// cross-entropy of the six attribute heads summed, on @apt/backend-cpu.
//
// Batch `step` depends only on (--seed, step), so a run resumes bit-for-bit from
// its checkpoint (<run>/checkpoint.safetensors: weights, AdamW moments, step).
// At the end it measures every attribute's accuracy on --eval-count renders of
// a different seed (overall and on small objects) and, when all reach --target,
// writes config.json + model.safetensors to --out (the shipped models/evaluator).
//
//   pnpm --filter @apt/shapes train-evaluator [-- --steps 3500 --batch 64 --lr 2e-3]
import { existsSync } from "node:fs";
import { mkdir, rm } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { tf, AdamW, Rng, SafetensorsReader, writeSafetensors } from "@apt/core";
import { backend } from "@apt/backend-cpu";
import {
  ATTRIBUTE_KINDS,
  EVALUATOR_CONFIG,
  ShapeEvaluator,
  attributeAccuracy,
  evaluatorTrainStep,
  evaluatorTrainingBatch,
  itemSeed,
  renderBatch,
  sampleAttributes,
} from "../dist/index.js";
import { hms, loadTrainingState, numberFlag, trainingStateTensors, warmupCosine } from "./training-helpers.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const { values: args } = parseArgs({
  options: {
    steps: { type: "string", default: "3500" },
    batch: { type: "string", default: "64" },
    lr: { type: "string", default: "2e-3" },
    "min-lr": { type: "string", default: "2e-5" },
    warmup: { type: "string", default: "100" },
    "weight-decay": { type: "string", default: "0.01" },
    // Pixel noise on a share of the training items (robustness to diffusion samples): "probability,maxSigma".
    noise: { type: "string", default: "0.5,0.04" },
    seed: { type: "string", default: "1" },
    "eval-seed": { type: "string", default: "20250" },
    "eval-count": { type: "string", default: "3000" },
    "eval-every": { type: "string", default: "500" },
    "checkpoint-every": { type: "string", default: "100" },
    "log-every": { type: "string", default: "25" },
    target: { type: "string", default: "0.98" },
    run: { type: "string", default: join(here, "..", ".scratch", "evaluator-run") },
    out: { type: "string", default: join(here, "..", "models", "evaluator") },
    fresh: { type: "boolean", default: false },
    force: { type: "boolean", default: false },
  },
});

const num = (name, opts) => numberFlag(args, name, opts);
const steps = num("steps", { integer: true, min: 1 });
const batchSize = num("batch", { integer: true, min: 1 });
const peakLr = num("lr", { min: 0 });
const minLr = num("min-lr", { min: 0 });
const warmup = num("warmup", { integer: true, min: 0 });
const weightDecay = num("weight-decay", { min: 0 });
const seed = num("seed", { integer: true, min: 0 });
const evalSeed = num("eval-seed", { integer: true, min: 0 });
const evalCount = num("eval-count", { integer: true, min: 1 });
const evalEvery = num("eval-every", { integer: true, min: 1 });
const checkpointEvery = num("checkpoint-every", { integer: true, min: 1 });
const logEvery = num("log-every", { integer: true, min: 1 });
const target = num("target", { min: 0 });
const [noiseProbability, noiseSigma] = args.noise.split(",").map(Number);
if (!(noiseProbability >= 0 && noiseProbability <= 1 && noiseSigma >= 0)) {
  console.error(`--noise must be "probability,maxSigma", got ${args.noise}`);
  process.exit(2);
}
if (evalSeed === seed) {
  console.error("--eval-seed must differ from --seed: the accuracy is measured on renders the training never saw");
  process.exit(2);
}

/** Linear warm-up to the peak, then cosine decay to --min-lr at the last step. */
const learningRate = warmupCosine({ peak: peakLr, min: minLr, warmup, steps });

const pct = (x) => (100 * x).toFixed(2).padStart(6);
const fmtAcc = (acc) => ATTRIBUTE_KINDS.map((k) => `${k} ${pct(acc[k])}`).join("  ");

await backend.init();
console.log(`backend ${tf.getBackend()}; steps ${steps}, batch ${batchSize}, lr ${peakLr} → ${minLr} (warm-up ${warmup}), weight decay ${weightDecay}, noise p ${noiseProbability} σ ≤ ${noiseSigma}`);

// The held-back evaluation set: a different seed from every training batch.
const evalRng = new Rng(evalSeed);
const evalAttrs = Array.from({ length: evalCount }, () => sampleAttributes({}, evalRng));
const evalSet = renderBatch(evalAttrs, itemSeed(evalSeed, 0x5eed));
const evalImages = tf.tensor4d(evalSet.images, evalSet.shape);
const smallCount = evalAttrs.filter((a) => a.size === "small").length;

function evaluate(model) {
  const prediction = model.predict(evalImages);
  return {
    overall: attributeAccuracy(prediction, evalSet.truths),
    small: attributeAccuracy(prediction, evalSet.truths, (a) => a.size === "small"),
  };
}

// Model, optimizer and progress: fresh, or from the run's checkpoint.
const checkpointPath = join(args.run, "checkpoint.safetensors");
if (args.fresh) await rm(checkpointPath, { force: true });
let start = 0;
let elapsedBefore = 0;
let config = EVALUATOR_CONFIG;
let model;
let optimizer;
if (existsSync(checkpointPath)) {
  const reader = await SafetensorsReader.open(checkpointPath);
  try {
    const meta = reader.metadata;
    config = JSON.parse(meta.config);
    if (Number(meta.seed) !== seed || Number(meta.batch) !== batchSize) {
      console.error(`${checkpointPath} was trained with --seed ${meta.seed} --batch ${meta.batch}; pass those, or --fresh to start over`);
      process.exit(2);
    }
    model = ShapeEvaluator.create(config, seed);
    const params = Object.fromEntries(model.namedParameters());
    optimizer = new AdamW(params, { lr: peakLr, weightDecay });
    await loadTrainingState(reader, params, optimizer);
    start = Number(meta.step);
    elapsedBefore = Number(meta.elapsed_s);
    console.log(`resumed from ${checkpointPath} at step ${start} (${hms(elapsedBefore)} of training so far)`);
  } finally {
    await reader.close();
  }
} else {
  model = ShapeEvaluator.create(config, seed);
  optimizer = new AdamW(Object.fromEntries(model.namedParameters()), { lr: peakLr, weightDecay });
}
console.log(`evaluator: ${model.parameterCount} parameters (${(model.parameterCount * 4 / 1e6).toFixed(2)} MB as F32); checkpoints in ${args.run}`);

const t0 = performance.now();
const elapsed = () => elapsedBefore + (performance.now() - t0) / 1000;

async function writeCheckpoint(step) {
  await mkdir(args.run, { recursive: true });
  const tensors = trainingStateTensors(Object.fromEntries(model.namedParameters()), optimizer);
  await writeSafetensors(checkpointPath, tensors, {
    step: String(step),
    adam_step: String(optimizer.getState().step),
    elapsed_s: String(elapsed()),
    seed: String(seed),
    batch: String(batchSize),
    config: JSON.stringify(config),
  });
}

let lossSum = 0;
let lossCount = 0;
let windowStart = performance.now();
let windowSteps = 0;
for (let step = start; step < steps; step++) {
  const lr = learningRate(step);
  const batch = evaluatorTrainingBatch(seed, step, { batchSize, noise: { probability: noiseProbability, maxSigma: noiseSigma } });
  const images = tf.tensor4d(batch.images, batch.shape);
  let loss;
  try {
    loss = evaluatorTrainStep(model, optimizer, images, batch.truths, lr);
  } finally {
    images.dispose();
  }
  lossSum += loss;
  lossCount++;
  windowSteps++;
  const done = step + 1;
  if (done % logEvery === 0 || done === steps) {
    const perStep = (performance.now() - windowStart) / 1000 / windowSteps;
    console.log(
      `step ${done}/${steps} loss ${(lossSum / lossCount).toFixed(4)} lr ${lr.toExponential(2)} ` +
        `${perStep.toFixed(2)} s/step elapsed ${hms(elapsed())} eta ${hms(perStep * (steps - done))}`,
    );
    lossSum = lossCount = windowSteps = 0;
    windowStart = performance.now();
  }
  if (done % checkpointEvery === 0 || done === steps) await writeCheckpoint(done);
  if (done % evalEvery === 0 && done < steps) {
    const t = performance.now();
    const acc = evaluate(model);
    console.log(`eval @ ${done} (${evalCount} renders, seed ${evalSeed}, ${((performance.now() - t) / 1000).toFixed(1)} s)\n  all   ${fmtAcc(acc.overall)}\n  small ${fmtAcc(acc.small)}`);
    windowStart = performance.now();
  }
}

const wall = elapsed();
const acc = evaluate(model);
console.log(`final (${steps} steps, ${hms(wall)} of training) on ${evalCount} renders (seed ${evalSeed}; ${smallCount} small):`);
console.log(`  all   ${fmtAcc(acc.overall)}\n  small ${fmtAcc(acc.small)}`);
const short = ATTRIBUTE_KINDS.filter((k) => !(acc.overall[k] >= target));
if (short.length > 0 && !args.force) {
  console.error(
    `below the ${pct(target).trim()}% target on ${short.join(", ")}: ${args.out} left as it was. ` +
      `Train on with a larger --steps (it resumes from ${checkpointPath}), or pass --force to write anyway.`,
  );
  process.exit(1);
}

const round = (r) => Object.fromEntries(ATTRIBUTE_KINDS.map((k) => [k, Number(r[k].toFixed(4))]));
await model.save(args.out, {
  script: "scripts/train-evaluator.mjs",
  backend: "@apt/backend-cpu",
  steps,
  batch_size: batchSize,
  optimizer: { name: "AdamW", lr: peakLr, min_lr: minLr, warmup, schedule: "cosine", weight_decay: weightDecay },
  noise: { probability: noiseProbability, max_sigma: noiseSigma },
  seed,
  wall_time_s: Math.round(wall),
  eval: { seed: evalSeed, count: evalCount, small_count: smallCount, accuracy: round(acc.overall), accuracy_small: round(acc.small) },
});
model.dispose();

// Read the written folder back and check it gives the same answers.
const shipped = await ShapeEvaluator.load(args.out);
const again = attributeAccuracy(shipped.predict(evalImages), evalSet.truths);
shipped.dispose();
evalImages.dispose();
console.log(`wrote ${args.out} (reloaded: ${fmtAcc(again)})`);
