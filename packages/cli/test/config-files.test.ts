/** The config is found and read from every kind of file cosmiconfig 9 knows, and `--config` names one. */
import { describe, expect, it } from "vitest";
import { join } from "node:path";
import { existsSync, readdirSync } from "node:fs";
import { baseConfig, conceptImages, CLI_DIR, DUMMY_MODEL, fakePluginPackage, linkPackage, makeProject, pluginSource, runCli } from "./helpers.js";

function project(files: Record<string, string | Uint8Array>): string {
  const dir = makeProject({ ...DUMMY_MODEL, ...conceptImages(), ...files });
  fakePluginPackage(dir, "@apt/method-lora", { provides: ["adapter"] });
  return dir;
}

function dryRun(dir: string, args: string[] = []) {
  const r = runCli(["--dry-run", ...args], dir);
  expect(r.stderr, r.stderr).toBe("");
  expect(r.code).toBe(0);
  return JSON.parse(r.stdout) as Record<string, unknown> & { configFile: string; methods: { name: string; package?: string; options: Record<string, unknown> }[]; train: Record<string, unknown>; output: string };
}

const yaml = `model: ./model
task:
  kind: personalize
  images: "./concept/*.png"
  prompt: a photo of sks star
methods:
  - [lora, { rank: 8 }]
output: runs/yaml
train:
  steps: 12
`;

describe("config files", () => {
  it("reads .aptrc.json", () => {
    const dir = project({ ".aptrc.json": JSON.stringify(baseConfig({ train: { steps: 7 } })) });
    const out = dryRun(dir);
    expect(out.configFile).toBe(join(dir, ".aptrc.json"));
    expect(out.train.steps).toBe(7);
    expect(out.train.batchSize).toBe(4); // DEFAULT_TRAIN_OPTIONS fill the rest
    expect(out.methods[0]).toMatchObject({ name: "lora", package: "@apt/method-lora", version: "1.2.3", options: { rank: 4, alpha: 4 } });
    expect(out.output).toBe(join(dir, "runs", "sks"));
    expect(out.train.samplePrompts).toEqual(["a photo of sks star", "a photo of a star"]);
  });

  it('reads the "apt" key of package.json', () => {
    const dir = project({ "package.json": JSON.stringify({ name: "p", private: true, apt: baseConfig({ output: "runs/pkg" }) }) });
    expect(dryRun(dir).output).toBe(join(dir, "runs", "pkg"));
  });

  it("reads .aptrc.yaml", () => {
    const dir = project({ ".aptrc.yaml": yaml });
    const out = dryRun(dir);
    expect(out.configFile).toBe(join(dir, ".aptrc.yaml"));
    expect(out.methods[0]!.options.rank).toBe(8);
    expect(out.train.steps).toBe(12);
  });

  it("reads a continual task from .aptrc (YAML without extension)", () => {
    const dir = project({
      ".aptrc": `model: ./model
task:
  kind: continual
  concepts:
    - { name: star, images: "concept/0.png", prompt: a sks star, classPrompt: a star }
    - { name: dog, images: "concept/[12].png", prompt: a qwe dog }
methods: [lora]
output: runs/cl
`,
    });
    const out = dryRun(dir) as unknown as { task: string; concepts: { name: string; files: string[] }[]; train: { samplePrompts: string[] } };
    expect(out.task).toBe("continual");
    expect(out.concepts.map((c) => [c.name, c.files.length])).toEqual([["star", 1], ["dog", 2]]);
    expect(out.train.samplePrompts).toEqual(["a sks star", "a star", "a qwe dog"]);
  });

  it("reads apt.config.ts with defineConfig and an imported plugin object", () => {
    const dir = project({
      "my-method.mjs": pluginSource({ name: "mine", schema: "standard" }),
      "apt.config.ts": `import { defineConfig, type AptConfig } from "@apt/cli";
import mine from "./my-method.mjs";
const steps: number = 9;
export default defineConfig({
  model: "./model",
  task: { kind: "personalize", images: "./concept/*.png", prompt: "a photo of sks star" },
  train: { steps },
  methods: ["lora", [mine, { level: 3 }, "mine-3"], mine],
  output: "runs/ts",
} satisfies AptConfig);
`,
    });
    linkPackage(dir, "@apt/cli", CLI_DIR);
    const out = dryRun(dir);
    expect(out.configFile).toBe(join(dir, "apt.config.ts"));
    expect(out.train.steps).toBe(9);
    expect(out.methods.map((m) => m.name)).toEqual(["lora", "mine-3", "mine"]);
    expect(out.methods[1]!.options).toEqual({ level: 3 });
    expect(out.methods[2]!.options).toEqual({ level: 1 });
    // cosmiconfig's temporary compiled file is gone.
    expect(readdirSync(dir).filter((f) => f.startsWith("apt.config.ts."))).toEqual([]);
  });

  it("reads apt.config.mjs, and a config function gets the command", () => {
    const dir = project({
      "apt.config.mjs": `export default (env) => (${JSON.stringify(baseConfig())} && { ...${JSON.stringify(baseConfig())}, output: "runs/" + env.command });\n`,
    });
    expect(dryRun(dir).output).toBe(join(dir, "runs", "dry-run"));
  });

  it("reads .config/aptrc.json and apt.config.json, and --config names a file", () => {
    const a = project({ ".config/aptrc.json": JSON.stringify(baseConfig({ output: "runs/dotconfig" })) });
    expect(dryRun(a).output).toBe(join(a, "runs", "dotconfig"));
    const b = project({ "apt.config.json": JSON.stringify(baseConfig({ output: "runs/json" })) });
    expect(dryRun(b).configFile).toBe(join(b, "apt.config.json"));
    const c = project({ "configs/exp1.json": JSON.stringify({ ...baseConfig(), model: "../model", task: { kind: "personalize", images: "../concept/*.png", prompt: "p" } }) });
    const out = dryRun(c, ["--config", "configs/exp1.json"]);
    // Paths are relative to the config file's folder.
    expect(out.output).toBe(join(c, "configs", "runs", "sks"));
    expect((out.model as { dir: string }).dir).toBe(join(c, "model"));
  });

  it("finds the config of the project from a sub-folder", () => {
    const dir = project({ "package.json": JSON.stringify({ name: "p" }), ".aptrc.json": JSON.stringify(baseConfig()), "sub/x.txt": "" });
    expect(dryRun(join(dir, "sub")).configFile).toBe(join(dir, ".aptrc.json"));
  });

  it("says where it looked when there is no config (exit 2)", () => {
    const dir = makeProject({ "package.json": "{}" });
    const r = runCli([], dir);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("no apt config found");
    expect(r.stderr).toContain("apt.config.ts");
    expect(r.stderr).not.toMatch(/\n\s+at /); // no stack
    expect(existsSync(join(dir, "runs"))).toBe(false);
  });
});
