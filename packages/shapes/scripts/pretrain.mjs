#!/usr/bin/env node
// Pretrains the ShapeWorld base model from scratch through @apt/core's engine
// (a "pretrain" run: every UNet and text-encoder weight trainable, batches
// rendered on the fly from the seeded world, held-out shape × colour pairs never
// shown). Resumes from its latest checkpoint; writes the diffusers folder at the end.
//
//   node scripts/pretrain.mjs [--steps 2500] [--batch 16] [--run pretrain-run] [--out models/base]
//   node scripts/pretrain.mjs --export latest|<checkpoint folder> [--out dir]   (export only)
//   [--unet shapes-s|shapes-s-attn8] [--high-noise 0.5]   (the shipped model: the defaults)
import { existsSync } from "node:fs";
import { appendFile, mkdir } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { tf, DEFAULT_TRAIN_OPTIONS, listCheckpoints, readCheckpoint, resolveCheckpoint, train } from "@apt/core";
import { backend } from "@apt/backend-cpu";
import { CLIPTextModel, DDIMScheduler, DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel } from "@apt/diffusion";
import { createTokenizer, renderBatch, sampleAttributes, samplePrompt, vocabulary } from "../dist/index.js";

const here = dirname(fileURLToPath(import.meta.url));
const { values: args } = parseArgs({
  args: process.argv.slice(2).filter((a) => a !== "--"), // pnpm passes a literal "--" through
  options: {
    steps: { type: "string", default: "2500" },
    batch: { type: "string", default: "16" },
    lr: { type: "string", default: "1e-3" },
    run: { type: "string", default: join(here, "..", "pretrain-run") },
    out: { type: "string", default: join(here, "..", "models", "base") },
    export: { type: "string" },
    // The UNet: "shapes-s" (the shipped model's) or "shapes-s-attn8" (cross-attention
    // only at 8×8 and in the middle: 1.8× cheaper a step on backend-cpu).
    unet: { type: "string", default: "shapes-s" },
    // Share of each batch whose timestep is drawn from [400, 999] instead of [0, 999]
    // (composition is learned at high noise; 0 = uniform, as the shipped model).
    "high-noise": { type: "string", default: "0" },
  },
});

// shapes-s (../shared/bench) sized for the 2-core budget: the 32×32 level has no attention.
export const UNET_CONFIG = {
  sample_size: 32, in_channels: 3, out_channels: 3,
  down_block_types: ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
  mid_block_type: "UNetMidBlock2DCrossAttn",
  up_block_types: ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
  block_out_channels: [32, 64, 64], layers_per_block: 1, attention_head_dim: 4, cross_attention_dim: 64,
  norm_num_groups: 8, norm_eps: 1e-5, act_fn: "silu", flip_sin_to_cos: true, freq_shift: 0,
  use_linear_projection: true, transformer_layers_per_block: 1,
};
const UNET_VARIANTS = {
  "shapes-s": UNET_CONFIG,
  "shapes-s-attn8": {
    ...UNET_CONFIG,
    down_block_types: ["DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D"],
    up_block_types: ["CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D"],
  },
};
const unetConfig = UNET_VARIANTS[args.unet];
if (!unetConfig) {
  console.error(`--unet: "${args.unet}" is not one of ${Object.keys(UNET_VARIANTS).join(", ")}`);
  process.exit(2);
}
const highNoise = Number(args["high-noise"]);
if (!(highNoise >= 0 && highNoise <= 1)) {
  console.error(`--high-noise: ${args["high-noise"]} is not a share in [0, 1]`);
  process.exit(2);
}
const vocab = vocabulary();
export const TEXT_CONFIG = {
  vocab_size: Math.max(...Object.values(vocab)) + 1, max_position_embeddings: 16, hidden_size: 64,
  intermediate_size: 128, num_hidden_layers: 2, num_attention_heads: 4, hidden_act: "quick_gelu", layer_norm_eps: 1e-5,
};
// Zero terminal SNR + v-prediction: backgrounds are the low-frequency mean a
// model with residual signal at t = T never learns (DESIGN.md's evidence).
export const SCHEDULER_CONFIG = {
  num_train_timesteps: 1000, beta_schedule: "linear", beta_start: 0.0001, beta_end: 0.02,
  prediction_type: "v_prediction", rescale_betas_zero_snr: true, timestep_spacing: "trailing", clip_sample: false,
};

await backend.init();
const model = new StableDiffusionPipeline({
  unet: UNet2DConditionModel.fromConfig(unetConfig, { seed: 1 }),
  textEncoder: CLIPTextModel.fromConfig(TEXT_CONFIG, { seed: 2 }),
  tokenizer: createTokenizer(),
  scheduler: new DDPMScheduler(SCHEDULER_CONFIG),
});

/**
 * Each step's batch: fresh renders of attributes drawn from the run's Rng
 * (held-out shape × colour pairs never drawn), captioned by the grammar; 10%
 * empty captions (classifier-free guidance) and 30% in the "a photo of …"
 * form that personalization prompts use, so "photo" and "of" are known words.
 */
const data = (n, info) => {
  const attrs = Array.from({ length: n }, () => sampleAttributes({}, info.rng, { excludeHeldOut: true }));
  const prompts = attrs.map((a) => (info.rng.uniform() < 0.1 ? "" : samplePrompt(a, info.rng, { photoProbability: 0.3 })));
  const r = renderBatch(attrs, info.rng.nextUint32());
  const images = tf.tidy(() => tf.sub(tf.mul(tf.tensor4d(r.images, r.shape), 2), 1));
  return { images, items: prompts.map((prompt) => ({ prompt, kind: "instance", weight: 1 })) };
};

/** Timesteps from the run's Rng: a `highNoise` share from [400, 999], the rest from [0, 999]. */
const highNoiseTimesteps = {
  apiVersion: 1,
  name: "high-noise-timesteps",
  options: { "~standard": { version: 1, vendor: "apt", validate: (v) => ({ value: v ?? {} }) } },
  create: () => ({
    timesteps: (n, info) =>
      Int32Array.from({ length: n }, () => (info.rng.uniform() < highNoise ? 400 + info.rng.int(600) : info.rng.int(1000))),
  }),
};

/** Saves the pipeline for sampling: same noise schedule, DDIM. */
async function savePipeline(out) {
  model.scheduler = new DDIMScheduler(SCHEDULER_CONFIG);
  await model.savePretrained(out);
  console.log(`wrote ${out}`);
}

if (args.export !== undefined) {
  // Export only: the weights of a checkpoint (a folder, or "latest") as a diffusers folder.
  const path = await resolveCheckpoint(args.run, args.export || "latest");
  const ck = await readCheckpoint(path);
  for (const [name, v] of model.unet.namedParameters()) v.assign(ck.trainable[name]);
  for (const [name, v] of model.textEncoder.namedParameters()) v.assign(ck.trainable[`text_encoder.${name}`]);
  console.log(`checkpoint ${path} (step ${ck.state.step})`);
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
    steps: Number(args.steps), batchSize: Number(args.batch), lr: Number(args.lr), lrSchedule: "cosine", warmupSteps: 100,
    weightDecay: 1e-2, maxGradNorm: 1, seed: 0, checkpointEvery: 50, checkpointsTotalLimit: 2,
  },
  // No method chooses trainable weights: every UNet and text-encoder weight trains.
  methods: highNoise > 0 ? [{ plugin: highNoiseTimesteps, options: {}, name: highNoiseTimesteps.name }] : [],
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
