/**
 * The end-to-end case, through `apt-run` as a user runs it: a config
 * mixing lora, dreambooth and cat trains, samples, checkpoints, is killed with
 * SIGKILL mid-run, resumes from the latest checkpoint and ends with adapter
 * weights bit-identical to an uninterrupted run, and exports a kohya-named LoRA.
 */
import { describe, expect, it, beforeAll } from "vitest";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { mkdir, mkdtemp, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PNG } from "pngjs";
import * as tf from "@tensorflow/tfjs-core";
import { readSafetensors } from "@apt/core";
import { backend } from "@apt/backend-cpu";
import { CLIPTextModel, DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel, WordLevelTokenizer } from "@apt/diffusion";

const root = join(import.meta.dirname, "..", "..", "..");
const bin = join(root, "packages", "cli", "dist", "bin.js");
const fixture = join(root, "..", "shared", "fixtures", "shapes-s-parity");

let project: string;

/** A user project: a diffusers model folder, four concept PNGs, the plugins installed (linked from the workspace). */
async function makeProject(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "apt-e2e-"));
  await backend.init();
  const vocab: Record<string, number> = { "<pad>": 0, "<bos>": 1, "<eos>": 2, "<unk>": 3, sks: 4 };
  for (let i = 5; i < 256; i++) vocab[`w${i}`] = i;
  const pipe = new StableDiffusionPipeline({
    unet: await UNet2DConditionModel.fromPretrained(join(fixture, "unet")),
    textEncoder: await CLIPTextModel.fromPretrained(join(fixture, "text_encoder")),
    tokenizer: new WordLevelTokenizer({ vocab, modelMaxLength: 16, bosToken: "<bos>", eosToken: "<eos>", padToken: "<pad>", unkToken: "<unk>" }),
    scheduler: new DDPMScheduler({ num_train_timesteps: 1000 }),
  });
  await pipe.savePretrained(join(dir, "model"));
  pipe.dispose();
  await mkdir(join(dir, "concept"));
  for (let k = 0; k < 4; k++) {
    const png = new PNG({ width: 32, height: 32 });
    for (let i = 0; i < 32 * 32; i++) {
      const inside = Math.abs((i % 32) - 16) < 6 + k && Math.abs(Math.floor(i / 32) - 16) < 6 + k;
      png.data.set(inside ? [220, 40 + 20 * k, 40, 255] : [20, 20, 90, 255], i * 4);
    }
    await writeFile(join(dir, "concept", `img${k}.png`), PNG.sync.write(png));
  }
  await mkdir(join(dir, "node_modules", "@apt"), { recursive: true });
  for (const [name, folder] of [
    ["method-lora", "methods-lora"],
    ["method-cat", "methods-cat"],
    ["method-dreambooth", "methods-dreambooth"],
    ["backend-cpu", "backend-cpu"],
  ]) {
    await symlink(join(root, "packages", folder!), join(dir, "node_modules", "@apt", name!), "dir");
  }
  return dir;
}

function config(output: string) {
  return {
    backend: "cpu",
    model: "./model",
    task: { kind: "personalize", images: "./concept/*.png", prompt: "w10 sks w11", classPrompt: "w10 w11", trigger: "sks" },
    train: { steps: 6, batchSize: 1, lr: 1e-3, checkpointEvery: 2, sampleEvery: 3, sampleSteps: 2, seed: 3 },
    methods: [["dreambooth", { num_class_images: 2, sample_steps: 2 }], ["lora", { rank: 2 }], "cat"],
    output,
  };
}

async function adapterBytes(file: string): Promise<Record<string, Buffer>> {
  const { tensors } = await readSafetensors(file);
  return Object.fromEntries(Object.entries(tensors).map(([k, t]) => [k, Buffer.from(t.data.buffer)]));
}

beforeAll(async () => {
  project = await makeProject();
}, 120_000);

describe("apt-run end to end: lora + dreambooth + cat", () => {
  it("trains, samples, checkpoints, survives SIGKILL and resumes bit-identically, exports kohya LoRA", async () => {
    // Uninterrupted run.
    await writeFile(join(project, "apt.config.json"), JSON.stringify(config("./run-straight")));
    const straight = spawnSync(process.execPath, [bin], { cwd: project, encoding: "utf8", env: { ...process.env, CI: "1" } });
    expect(straight.status, straight.stderr + straight.stdout).toBe(0);
    const runA = join(project, "run-straight");
    expect(readdirSync(join(runA, "checkpoints")).sort()).toEqual(["checkpoint-2", "checkpoint-4", "checkpoint-6"]);
    expect(readdirSync(join(runA, "samples")).length).toBeGreaterThanOrEqual(2);
    const metrics = readFileSync(join(runA, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
    expect(metrics.filter((m) => m.type === "step" || m.step !== undefined).length).toBeGreaterThanOrEqual(6);
    expect(JSON.stringify(metrics)).toMatch(/cat\/cat/);

    // Killed run: SIGKILL once checkpoint-2 exists, then --resume latest.
    await writeFile(join(project, "apt.config.json"), JSON.stringify(config("./run-killed")));
    const runB = join(project, "run-killed");
    const child = spawn(process.execPath, [bin], { cwd: project, stdio: "ignore", env: { ...process.env, CI: "1" } });
    await new Promise<void>((resolve, reject) => {
      const timer = setInterval(() => {
        if (existsSync(join(runB, "checkpoints", "checkpoint-2", "state.json"))) {
          clearInterval(timer);
          child.kill("SIGKILL");
          resolve();
        }
      }, 20);
      child.on("exit", () => {
        clearInterval(timer);
        resolve();
      });
      setTimeout(() => reject(new Error("no checkpoint-2 within 120 s")), 120_000);
    });
    await new Promise((r) => child.once("exit", r).once("close", r) && setTimeout(r, 500));
    expect(existsSync(join(runB, "final"))).toBe(false);
    const resumed = spawnSync(process.execPath, [bin, "--resume", "latest"], { cwd: project, encoding: "utf8", env: { ...process.env, CI: "1" } });
    expect(resumed.status, resumed.stderr + resumed.stdout).toBe(0);

    const a = await adapterBytes(join(runA, "final", "pytorch_lora_weights.safetensors"));
    const b = await adapterBytes(join(runB, "final", "pytorch_lora_weights.safetensors"));
    expect(Object.keys(b).sort()).toEqual(Object.keys(a).sort());
    for (const k of Object.keys(a)) expect(b[k]!.equals(a[k]!), k).toBe(true);

    // kohya names, alpha and metadata.
    const kohya = await readSafetensors(join(runA, "final", "lora.kohya.safetensors"));
    const key = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k";
    expect(kohya.tensors[`${key}.lora_down.weight`]!.shape).toEqual([2, 64]);
    expect(kohya.tensors[`${key}.lora_up.weight`]!.shape).toEqual([64, 2]);
    expect(Array.from(kohya.tensors[`${key}.alpha`]!.data as Float32Array)).toEqual([2]);
    expect(kohya.metadata.ss_network_dim).toBe("2");
    expect(Object.keys(kohya.tensors).filter((k) => k.endsWith(".alpha"))).toHaveLength(14 * 4);
    tf.disposeVariables();
  }, 600_000);
});
