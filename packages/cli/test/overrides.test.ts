/** `--set` overrides (validated like the file), `--backend`, and what `--dry-run` prints. */
import { describe, expect, it } from "vitest";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { baseConfig, conceptImages, DUMMY_MODEL, fakePluginPackage, makeProject, runCli } from "./helpers.js";
import { applyOverrides, parseOverride } from "../src/config/overrides.js";

function project(config: Record<string, unknown> = baseConfig()) {
  const dir = makeProject({ ...DUMMY_MODEL, ...conceptImages(), ".aptrc.json": JSON.stringify(config) });
  fakePluginPackage(dir, "@apt/method-lora");
  return dir;
}

describe("--set", () => {
  it("parses paths and JSON values", () => {
    expect(parseOverride("train.steps=10")).toMatchObject({ path: ["train", "steps"], value: 10 });
    expect(parseOverride("methods[1][1].rank=8")).toMatchObject({ path: ["methods", 1, 1, "rank"], value: 8 });
    expect(parseOverride('task.prompt=a photo of "sks"')).toMatchObject({ path: ["task", "prompt"], value: 'a photo of "sks"' });
    expect(parseOverride('sample.prompts=["a","b"]')).toMatchObject({ value: ["a", "b"] });
    expect(parseOverride('x["odd key"]=true')).toMatchObject({ path: ["x", "odd key"], value: true });
    expect(() => parseOverride("=3")).toThrow(/expected <path>=<value>/);
    const plugin = { name: "p" };
    const c = { methods: [plugin, ["lora", { rank: 4 }]] };
    const out = applyOverrides(c, [parseOverride("methods[1][1].rank=8"), parseOverride("train.steps=3")]) as { methods: unknown[]; train: unknown };
    expect(out).toEqual({ methods: [plugin, ["lora", { rank: 8 }]], train: { steps: 3 } });
    expect(out.methods[0]).toBe(plugin); // plugin objects are not copied
    expect(c.methods[1]).toEqual(["lora", { rank: 4 }]); // the loaded config is not changed
  });

  it("overrides file values in the resolved config", () => {
    const dir = project(baseConfig({ methods: [["lora", { rank: 2 }]], train: { steps: 100 } }));
    const r = runCli(["--dry-run", "--set", "train.steps=10", "--set", "methods[0][1].rank=8", "--set", "task.prompt=a photo of sks dog", "--backend", "cpu"], dir);
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { backend: string; train: { steps: number; samplePrompts: string[] }; methods: { options: { rank: number } }[]; overrides: string[]; concepts: { prompt: string }[] };
    expect(out.train.steps).toBe(10);
    expect(out.methods[0]!.options.rank).toBe(8);
    expect(out.concepts[0]!.prompt).toBe("a photo of sks dog");
    expect(out.train.samplePrompts).toEqual(["a photo of sks dog", "a photo of a star"]);
    expect(out.backend).toBe("cpu");
    expect(out.overrides).toEqual(["train.steps=10", "methods[0][1].rank=8", "task.prompt=a photo of sks dog", "backend=cpu"]);
  });

  it("validates overridden values like the file's and names --set as their source", () => {
    const dir = project();
    const r = runCli(["--set", "train.steps=ten", "--set", "train.batchsize=2", "--backend", "tpu"], dir);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--set › train.steps: expected number, received "ten"');
    expect(r.stderr).toMatch(/--set › train\.batchsize: unknown key "batchsize"\. Did you mean "batchSize"\?/);
    expect(r.stderr).toMatch(/--set › backend: "tpu" is not allowed/);
    expect(existsSync(join(dir, "runs"))).toBe(false);
  });
});

describe("--dry-run", () => {
  it("prints the resolved config and writes nothing", () => {
    const dir = project(baseConfig({ sample: { every: 50, prompts: ["a sks star on a beach"] }, train: { steps: 200, lrSchedule: "cosine" } }));
    const r = runCli(["--dry-run"], dir);
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as Record<string, unknown>;
    expect(out).toEqual({
      configFile: join(dir, ".aptrc.json"),
      backend: "auto",
      model: { spec: "./model", dir: join(dir, "model") },
      task: "personalize",
      concepts: [{ name: "concept", prompt: "a photo of sks star", classPrompt: "a photo of a star", images: "./concept/*.png", files: [0, 1, 2].map((i) => join(dir, "concept", `${i}.png`)), sizes: ["8x8"] }],
      train: expect.objectContaining({ steps: 200, lrSchedule: "cosine", batchSize: 4, sampleEvery: 50, samplePrompts: ["a sks star on a beach"] }),
      methods: [{ name: "lora", plugin: "lora", package: "@apt/method-lora", version: "1.2.3", file: join(dir, "node_modules", "@apt", "method-lora", "index.js"), options: { rank: 4, alpha: 4, targets: ["to_q"] } }],
      output: join(dir, "runs", "sks"),
    });
    expect(existsSync(join(dir, "runs"))).toBe(false);
  });

  it("reports a value set twice (sample.every and train.sampleEvery)", () => {
    const dir = project(baseConfig({ sample: { every: 50 }, train: { sampleEvery: 10 } }));
    const r = runCli(["--dry-run"], dir);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("sample.every: set twice: sample.every and train.sampleEvery say the same thing");
  });
});
