/**
 * The commands that run a model, on a small real one (the shapes-s parity
 * fixture's UNet and text encoder, a word-level tokenizer, DDPM) with the cpu
 * backend: a short training run (plain progress lines, resolved config,
 * metrics, samples, checkpoint), the engine's refusal of two plugins that
 * both choose the timesteps, `apt-run sample`, and `apt-run bench step`.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { PNG } from "pngjs";
import { DDPMScheduler, WordLevelTokenizer } from "@apt/diffusion";
import { conceptImages, fakePluginPackage, makeProject, runCli } from "./helpers.js";

const shared = join(import.meta.dirname, "..", "..", "..", "..", "shared");
const fixture = join(shared, "fixtures", "shapes-s-parity");
let dir: string;

beforeAll(async () => {
  dir = makeProject({ ...conceptImages(3, 40) }); // 40×40 images: brought to the model's 32×32
  const model = join(dir, "model");
  const vocab: Record<string, number> = { "<pad>": 0, "<bos>": 1, "<eos>": 2, "<unk>": 3, sks: 4, star: 5, a: 6 };
  for (let i = 7; i < 256; i++) vocab[`w${i}`] = i;
  await new WordLevelTokenizer({ vocab, modelMaxLength: 16, unkToken: "<unk>" }).savePretrained(join(model, "tokenizer"));
  await new DDPMScheduler({ num_train_timesteps: 1000 }).savePretrained(join(model, "scheduler"));
  symlinkSync(join(fixture, "unet"), join(model, "unet"), "dir");
  symlinkSync(join(fixture, "text_encoder"), join(model, "text_encoder"), "dir");
  writeFileSync(
    join(model, "model_index.json"),
    JSON.stringify({ _class_name: "StableDiffusionPipeline", unet: ["diffusers", "UNet2DConditionModel"], text_encoder: ["transformers", "CLIPTextModel"], tokenizer: ["transformers", "WordLevelTokenizer"], scheduler: ["diffusers", "DDPMScheduler"], vae: [null, null] }),
  );
  fakePluginPackage(dir, "@apt/method-plain", { schema: "standard" });
  fakePluginPackage(dir, "@apt/method-ta", { schema: "standard", hooks: ["timesteps"] });
  fakePluginPackage(dir, "@apt/method-tb", { schema: "standard", hooks: ["timesteps"] });
});

function config(methods: unknown[], output: string) {
  return {
    backend: "cpu",
    model: "./model",
    task: { kind: "personalize", images: "./concept/*.png", prompt: "a sks star", classPrompt: "a star" },
    train: { steps: 4, batchSize: 1, checkpointEvery: 0 },
    sample: { steps: 1 },
    methods,
    output,
  };
}

describe("apt-run train", () => {
  it("trains: progress lines, resolved config, metrics, samples, checkpoint and a closing summary", () => {
    writeFileSync(join(dir, "apt.config.json"), JSON.stringify(config(["plain"], "runs/plain")));
    const r = runCli(["--log-every", "2"], dir);
    expect(r.code, r.stderr + r.stdout).toBe(0);
    const run = join(dir, "runs", "plain");
    const lines = r.stdout.split("\n");
    expect(lines.some((l) => l.startsWith("cpu: asked for by name"))).toBe(true); // the backend choice and why
    expect(lines.some((l) => l.startsWith("backend: cpu ("))).toBe(true);
    expect(r.stdout).toContain("concept: 3 of 3 images brought to 32×32 (centre crop + box filter)");
    expect(lines.filter((l) => l.startsWith("step "))).toHaveLength(2);
    expect(r.stdout).toMatch(/^step 2\/4 loss \d+\.\d{4} lr 1\.0e-4 \d+\.\d{2} it\/s eta (\d+s|\?)$/m);
    expect(r.stdout).toMatch(/^step 4\/4 loss \d+\.\d{4} lr 1\.0e-4 /m);
    expect(r.stdout).toContain(`metrics:     ${join(run, "metrics.jsonl")}`);
    expect(r.stdout).toContain(`checkpoint:  ${join(run, "checkpoints", "checkpoint-4")}`);
    expect(r.stdout).toContain(`samples:     ${join(run, "samples")} (1 grid, last step-000004.png)`);

    const resolved = JSON.parse(readFileSync(join(run, "resolved-config.json"), "utf8")) as Record<string, unknown>;
    expect(resolved).toMatchObject({ backend: "cpu", backendUsed: "cpu", task: "personalize", methods: [{ name: "plain", package: "@apt/method-plain" }] });
    expect((resolved.train as { samplePrompts: string[] }).samplePrompts).toEqual(["a sks star", "a star"]);
    const metrics = readFileSync(join(run, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as { step: number; loss: number });
    expect(metrics.map((m) => m.step)).toEqual([1, 2, 3, 4]);
    expect(metrics.every((m) => Number.isFinite(m.loss))).toBe(true);
    const grid = PNG.sync.read(readFileSync(join(run, "samples", "step-000004.png")));
    expect([grid.width, grid.height]).toEqual([32 * 2 + 2, 32]); // two prompts side by side
    expect(readdirSync(join(run, "checkpoints"))).toEqual(["checkpoint-4"]);
  });

  it("exits 2 without a run folder when two plugins both choose the timesteps (the engine's check)", () => {
    writeFileSync(join(dir, "apt.config.json"), JSON.stringify(config(["ta", "tb"], "runs/exclusive")));
    const r = runCli([], dir);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toMatch(/methods "ta" and "tb" both implement "timesteps"/);
    expect(existsSync(join(dir, "runs", "exclusive"))).toBe(false);
  });
});

describe("apt-run sample", () => {
  it("writes one grid row per prompt", () => {
    const r = runCli(["sample", "--model", "./model", "--prompt", "a sks star", "--prompt", "w10", "--steps", "1", "--num", "3", "--out", "out/grid.png", "--backend", "cpu"], dir);
    expect(r.code, r.stderr).toBe(0);
    const png = PNG.sync.read(readFileSync(join(dir, "out", "grid.png")));
    expect([png.width, png.height]).toEqual([3 * 32 + 2 * 2, 2 * 32 + 2]);
  });

  it("says how to get LoRA loading when @apt/method-lora is not installed", () => {
    writeFileSync(join(dir, "w.safetensors"), "");
    const r = runCli(["sample", "--model", "./model", "--prompt", "a", "--lora", "w.safetensors"], dir);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("--lora needs @apt/method-lora");
    expect(r.stderr).toContain("pnpm add @apt/method-lora");
  });
});

describe("apt-run bench step", () => {
  let torch = false;
  try {
    execFileSync("/usr/bin/python3", ["-c", "import torch"], { stdio: "ignore" });
    torch = true;
  } catch {
    torch = false;
  }

  it("times a LoRA step with torch_reference.py's fields (and compares when PyTorch is there)", () => {
    const args = ["bench", "step", "--unet", join(shared, "bench", "shapes-s.unet.json"), "--text", join(shared, "bench", "shapes-s.text.json"), "--mode", "lora", "--batch", "1", "--steps", "1", "--warmup", "0", "--backend", "cpu", "--json"];
    if (torch) args.push("--compare", "--torch-reference", join(shared, "bench", "torch_reference.py"), "--threads", "1");
    const r = runCli(args, dir);
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as Record<string, unknown>;
    expect(out).toMatchObject({ mode: "lora", batch: 1, unet_params: 1687075, text_params: 84480, trainable_params: 28672, backend: "cpu", tfjs: "4.22.0", leaked_tensors: 0 });
    expect(out.step_ms_median).toBeGreaterThan(0);
    if (torch) {
      expect(out.torch).toMatchObject({ mode: "lora", unet_params: 1687075, trainable_params: 28672 });
      expect(out.ratio).toBeGreaterThan(0);
    }
  });
});
