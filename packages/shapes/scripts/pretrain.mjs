#!/usr/bin/env node
// Pretrains the ShapeWorld base model from scratch through @apt/core's engine
// (a "pretrain" run: every UNet and text-encoder weight trainable, batches
// rendered on the fly from the seeded world, held-out shape × colour pairs never
// shown). Resumes from its latest checkpoint; writes the diffusers folder at the end.
//
//   node scripts/pretrain.mjs [--steps 3000] [--batch 16] [--run pretrain-run] [--out models/base]
import { existsSync } from "node:fs";
import { appendFile, mkdir } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { tf, DEFAULT_TRAIN_OPTIONS, listCheckpoints, train } from "@apt/core";
import { backend } from "@apt/backend-cpu";
import { CLIPTextModel, DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel } from "@apt/diffusion";
import { createTokenizer, renderBatch, sampleAttributes, samplePrompt, vocabulary } from "../dist/index.js";

const here = dirname(fileURLToPath(import.meta.url));
const { values: args } = parseArgs({
  options: {
    steps: { type: "string", default: "3000" },
    batch: { type: "string", default: "16" },
    lr: { type: "string", default: "1e-3" },
    run: { type: "string", default: join(here, "..", "pretrain-run") },
    out: { type: "string", default: join(here, "..", "models", "base") },
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
  unet: UNet2DConditionModel.fromConfig(UNET_CONFIG, { seed: 1 }),
  textEncoder: CLIPTextModel.fromConfig(TEXT_CONFIG, { seed: 2 }),
  tokenizer: createTokenizer(),
  scheduler: new DDPMScheduler(SCHEDULER_CONFIG),
});

const options = { "~standard": { version: 1, vendor: "apt", validate: (v) => ({ value: v ?? {} }) } };
/** Trains everything on freshly rendered, captioned images (10% empty captions for guidance). */
const pretrain = {
  apiVersion: 1,
  name: "pretrain",
  options,
  create: () => ({
    trainable: (m) => ({
      ...Object.fromEntries(m.unet.namedParameters()),
      ...Object.fromEntries([...m.textEncoder.namedParameters()].map(([n, v]) => [`text_encoder.${n}`, v])),
    }),
    augment: (batch, s) => {
      const n = batch.items.length;
      const attrs = Array.from({ length: n }, () => sampleAttributes({}, s.rng, { excludeHeldOut: true }));
      // 10% empty captions (classifier-free guidance); 30% in the "a photo of …" form
      // that personalization prompts use, so "photo" and "of" are known words.
      const prompts = attrs.map((a) => (s.rng.uniform() < 0.1 ? "" : samplePrompt(a, s.rng, { photoProbability: 0.3 })));
      const r = renderBatch(attrs, s.rng.nextUint32());
      const images = tf.tidy(() => tf.sub(tf.mul(tf.tensor4d(r.images, r.shape), 2), 1));
      return { images, items: prompts.map((prompt) => ({ prompt, kind: "instance", weight: 1 })) };
    },
  }),
};

const runDir = args.run;
await mkdir(runDir, { recursive: true });
const log = join(runDir, "pretrain.log");
const resume = (await listCheckpoints(runDir)).length ? "latest" : undefined;
const started = Date.now();
await train({
  model,
  task: "personalize",
  concepts: [{ images: tf.zeros([1, 32, 32, 3]), prompt: "" }],
  train: {
    ...DEFAULT_TRAIN_OPTIONS,
    steps: Number(args.steps), batchSize: Number(args.batch), lr: Number(args.lr), lrSchedule: "cosine", warmupSteps: 100,
    weightDecay: 1e-2, maxGradNorm: 1, seed: 0, checkpointEvery: 50, checkpointsTotalLimit: 2,
  },
  methods: [{ plugin: pretrain, options: {}, name: "pretrain" }],
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
await model.savePretrained(args.out);
console.log(`wrote ${args.out}`);
process.exit(0);
