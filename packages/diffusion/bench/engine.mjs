#!/usr/bin/env node
// Engine overhead: the same full training step (shapes-s UNet, batch B, ε-MSE,
// AdamW over every UNet weight, grad clipping off) written by hand, and run by
// @apt/core's `train` with no method plugins. Prints both and the overhead.
//
//   node bench/engine.mjs [--batch 8] [--steps 6]
import { readFileSync } from "node:fs";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { tf, AdamW, DEFAULT_TRAIN_OPTIONS, Rng, train } from "@apt/core";
import { backend } from "@apt/backend-cpu";
import { CLIPTextModel, DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel, WordLevelTokenizer } from "../dist/index.js";

const { values: args } = parseArgs({ options: { batch: { type: "string", default: "8" }, steps: { type: "string", default: "6" } } });
const B = Number(args.batch);
const STEPS = Number(args.steps);
const here = dirname(fileURLToPath(import.meta.url));
const benchDir = join(here, "..", "..", "..", "..", "shared", "bench");
const unetConfig = JSON.parse(readFileSync(join(benchDir, "shapes-s.unet.json"), "utf8"));
const textConfig = JSON.parse(readFileSync(join(benchDir, "shapes-s.text.json"), "utf8"));

await backend.init();
const vocab = { "<pad>": 0, "<bos>": 1, "<eos>": 2, "<unk>": 3 };
for (let i = 4; i < textConfig.vocab_size; i++) vocab[`w${i - 3}`] = i;
const pipe = new StableDiffusionPipeline({
  unet: UNet2DConditionModel.fromConfig(unetConfig, { seed: 0 }),
  textEncoder: CLIPTextModel.fromConfig(textConfig, { seed: 1 }),
  tokenizer: new WordLevelTokenizer({ vocab, modelMaxLength: textConfig.max_position_embeddings, bosToken: "<bos>", eosToken: "<eos>", padToken: "<pad>", unkToken: "<unk>" }),
  scheduler: new DDPMScheduler({}),
});
const s = unetConfig.sample_size;
const images = tf.tidy(() => tf.tanh(tf.randomNormal([B, s, s, 3], 0, 1, "float32", 3)));
const prompt = "w1 w2 w3 w4";

// Bare: what a user would write by hand for the same step.
const params = Object.fromEntries(pipe.unet.namedParameters());
const varList = Object.values(params);
const opt = new AdamW(params, { lr: 1e-5 });
const rng = new Rng(0);
function bareStep() {
  tf.tidy(() => {
    const t = Int32Array.from({ length: B }, () => rng.int(1000));
    const noiseData = new Float32Array(images.size);
    for (let i = 0; i < noiseData.length; i++) noiseData[i] = rng.normal();
    const noise = tf.tensor(noiseData, images.shape);
    const { value, grads } = tf.variableGrads(() => {
      const xt = pipe.scheduler.addNoise(images, noise, t);
      const ctx = pipe.encodePrompt(new Array(B).fill(prompt));
      return tf.mean(tf.square(tf.sub(pipe.unet.forward(xt, tf.tensor1d(t, "int32"), ctx), noise)));
    }, varList);
    value.dataSync();
    opt.apply(Object.fromEntries(Object.entries(params).map(([n, v]) => [n, grads[v.name]])));
  });
}
const bare = [];
function runBare() {
  for (let i = 0; i < STEPS + 1; i++) {
    const t0 = performance.now();
    bareStep();
    if (i > 0) bare.push(performance.now() - t0);
  }
}
runBare();

// Engine: the same work through train(), timed from its step events.
const engine = [];
let last = performance.now();
await train({
  model: pipe,
  task: "personalize",
  concepts: [{ images, prompt }],
  train: { ...DEFAULT_TRAIN_OPTIONS, steps: STEPS + 1, batchSize: B, lr: 1e-5, maxGradNorm: 0, checkpointEvery: 0 },
  methods: [],
  runDir: mkdtempSync(join(tmpdir(), "apt-engine-bench-")),
  onEvent: (e) => {
    if (e.type === "start") last = performance.now();
    if (e.type === "step") {
      const now = performance.now();
      if (e.step > 1) engine.push(now - last);
      last = now;
    }
  },
});
// Bare again after the engine, so both see the same warm state (the machine drifts).
runBare();
opt.dispose();
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const mb = median(bare);
const me = median(engine);
console.log(`| step | batch | ms (median) |\n|---|--:|--:|\n| bare (hand-written) | ${B} | ${mb.toFixed(0)} |\n| @apt/core train() | ${B} | ${me.toFixed(0)} |`);
console.log(`engine overhead: ${(((me - mb) / mb) * 100).toFixed(1)}% (the final checkpoint and export are outside the step timings)`);
process.exit(0);
