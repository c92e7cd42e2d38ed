#!/usr/bin/env node
// Trains ShapeWorld's text encoder on its own, before the UNet, as Stable
// Diffusion's UNet trains under a CLIP text encoder that was trained first and
// stays frozen. Trained jointly from scratch with the UNet, the encoder put
// prompts that differ only in the shape word at cosine 0.84 (v3; colour words
// 0.60): the UNet never used the shape word, so nothing kept shapes apart. Here
// a linear head per attribute kind reads the last position (causal attention:
// it sees the whole prompt) and predicts each stated value, or "not stated",
// for prompts drawn from the grammar (the pretraining mix: 10% empty, 30% in the
// photo form). The heads are dropped; the encoder is written as a diffusers
// CLIPTextModel folder, with its accuracy on fresh prompts and how far apart it
// puts prompts that differ in one word (the shape word, the colour word).
//
// The first stage of the shipped recipe (`pnpm --filter @apt/shapes pretrain`
// runs it, then pretrain.mjs, whose --text-encoder defaults to the same folder);
// a folder that already holds an encoder is kept, so the recipe resumes.
//
//   node scripts/train-text-encoder.mjs [--steps 1500] [--batch 64] [--out pretrain-run/text-encoder]
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { tf, AdamW, Rng } from "@apt/core";
import { backend } from "@apt/backend-cpu";
import { CLIPTextModel } from "@apt/diffusion";
import { ATTRIBUTE_KINDS, ATTRIBUTE_VALUES, COLORS, SHAPES, createTokenizer, parsePrompt, sampleAttributes, samplePrompt } from "../dist/index.js";
import { TEXT_CONFIG } from "./base-model.mjs";
import { numberFlag, warmupCosine } from "./training-helpers.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const { values: args } = parseArgs({
  args: process.argv.slice(2).filter((a) => a !== "--"),
  options: {
    steps: { type: "string", default: "1500" },
    batch: { type: "string", default: "64" },
    lr: { type: "string", default: "1e-3" },
    seed: { type: "string", default: "2" },
    out: { type: "string", default: join(here, "..", "pretrain-run", "text-encoder") },
  },
});
if (existsSync(join(args.out, "config.json")) && existsSync(join(args.out, "model.safetensors"))) {
  console.log(`${args.out} already holds a trained text encoder; kept (delete the folder to train it again)`);
  process.exit(0);
}
const num = (name, opts) => numberFlag(args, name, opts);
const steps = num("steps", { integer: true, min: 1 });
const batchSize = num("batch", { integer: true, min: 1 });
const peakLr = num("lr", { min: 0 });
const seed = num("seed", { integer: true, min: 0 });

await backend.init();
const tokenizer = createTokenizer();
const encoder = CLIPTextModel.fromConfig(TEXT_CONFIG, { seed });
const width = TEXT_CONFIG.hidden_size;
const maxLength = TEXT_CONFIG.max_position_embeddings;
// One head per kind: its values, then "not stated".
const heads = Object.fromEntries(
  ATTRIBUTE_KINDS.map((kind, k) => {
    const classes = ATTRIBUTE_VALUES[kind].length + 1;
    const init = new Rng(1000 + k);
    const w = Float32Array.from({ length: width * classes }, () => init.normal() / Math.sqrt(width));
    return [kind, { w: tf.variable(tf.tensor2d(w, [width, classes]), true, `head.${kind}.weight`), b: tf.variable(tf.zeros([classes]), true, `head.${kind}.bias`) }];
  }),
);
const params = Object.fromEntries([...encoder.namedParameters(), ...ATTRIBUTE_KINDS.flatMap((k) => [[`head.${k}.weight`, heads[k].w], [`head.${k}.bias`, heads[k].b]])]);
const optimizer = new AdamW(params, { lr: peakLr, weightDecay: 1e-2 });
const learningRate = warmupCosine({ peak: peakLr, min: peakLr / 100, warmup: 100, steps });
const byVariable = new Map(Object.entries(params).map(([name, v]) => [v.name, name]));

/** Prompts from the pretraining mix and, per kind, the index of the stated value (or "not stated"). */
function promptBatch(rng, n) {
  const prompts = Array.from({ length: n }, () => {
    const attrs = sampleAttributes({}, rng, { excludeHeldOut: true });
    return rng.uniform() < 0.1 ? "" : samplePrompt(attrs, rng, { photoProbability: 0.3 });
  });
  const labels = Object.fromEntries(
    ATTRIBUTE_KINDS.map((kind) => {
      const values = ATTRIBUTE_VALUES[kind];
      return [kind, Int32Array.from(prompts, (p) => { const v = p === "" ? undefined : parsePrompt(p)[kind]; return v === undefined ? values.length : values.indexOf(v); })];
    }),
  );
  return { prompts, labels };
}
const tokens = (prompts) => {
  const t = tokenizer.call(prompts, { padding: "max_length", truncation: true, maxLength });
  return tf.tensor2d(t.inputIds, t.shape, "int32");
};
/** Per-kind logits from the last position's hidden state. */
const logits = (ids) => {
  const hidden = encoder.forward(ids);
  const last = tf.squeeze(tf.slice(hidden, [0, maxLength - 1, 0], [-1, 1, -1]), [1]);
  return Object.fromEntries(ATTRIBUTE_KINDS.map((k) => [k, tf.add(tf.matMul(last, heads[k].w), heads[k].b)]));
};

const rng = new Rng(seed);
const started = performance.now();
for (let step = 0; step < steps; step++) {
  const { prompts, labels } = promptBatch(rng, batchSize);
  const ids = tokens(prompts);
  const { value, grads } = tf.variableGrads(() => {
    const out = logits(ids);
    const losses = ATTRIBUTE_KINDS.map((k) => tf.losses.softmaxCrossEntropy(tf.oneHot(tf.tensor1d(labels[k], "int32"), out[k].shape[1]), out[k]));
    return tf.addN(losses);
  }, Object.values(params));
  const named = {};
  for (const [varName, g] of Object.entries(grads)) named[byVariable.get(varName)] = g;
  optimizer.apply(named, learningRate(step));
  if ((step + 1) % 100 === 0) console.log(`step ${step + 1}/${steps} loss ${value.dataSync()[0].toFixed(4)} ${((performance.now() - started) / 1000).toFixed(0)} s`);
  tf.dispose([ids, value, ...Object.values(grads)]);
}

// Accuracy on fresh prompts of another seed, stated values only.
const test = promptBatch(new Rng(seed + 7919), 2000);
const predicted = tf.tidy(() => { const out = logits(tokens(test.prompts)); return Object.fromEntries(ATTRIBUTE_KINDS.map((k) => [k, tf.argMax(out[k], 1).dataSync()])); });
const accuracy = ATTRIBUTE_KINDS.map((kind) => {
  let right = 0, n = 0;
  test.labels[kind].forEach((label, i) => { n++; right += predicted[kind][i] === label; });
  return `${kind} ${((100 * right) / n).toFixed(1)}%`;
});
console.log(`accuracy on 2,000 fresh prompts (the value or "not stated"): ${accuracy.join("  ")}`);

// How far apart the encoder puts "a <colour> <shape>" prompts that differ in one word.
const grid = SHAPES.flatMap((s) => COLORS.map((c) => `a ${c} ${s}`));
const cosines = tf.tidy(() => {
  const e = encoder.forward(tokens(grid));
  const unit = (x) => tf.div(x, tf.norm(x, 2, 1, true));
  const whole = unit(tf.reshape(e, [grid.length, -1]));
  return tf.matMul(whole, whole, false, true).arraySync();
});
const pairs = { shape: [], colour: [] };
for (let i = 0; i < grid.length; i++)
  for (let j = i + 1; j < grid.length; j++) {
    const [si, ci, sj, cj] = [Math.floor(i / 8), i % 8, Math.floor(j / 8), j % 8];
    if (ci === cj) pairs.shape.push(cosines[i][j]);
    if (si === sj) pairs.colour.push(cosines[i][j]);
  }
const mean = (a) => (a.reduce((x, y) => x + y, 0) / a.length).toFixed(3);
console.log(`cosine of the encoder's outputs (whole sequence): prompts differing in the shape word ${mean(pairs.shape)}, in the colour word ${mean(pairs.colour)}`);
console.log(`trained in ${((performance.now() - started) / 1000).toFixed(0)} s`);
await encoder.savePretrained(args.out);
console.log(`wrote ${args.out}`);
