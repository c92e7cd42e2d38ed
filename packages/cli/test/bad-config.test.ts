/**
 * Bad input exits 2 before any work, writes nothing (no run folder), prints
 * no stack, and lists every problem of the config in one message, each with
 * its file, path and fix.
 */
import { describe, expect, it } from "vitest";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { baseConfig, conceptImages, DUMMY_MODEL, fakePluginPackage, makeProject, runCli } from "./helpers.js";

function expectBadInput(dir: string, args: string[] = []): string {
  const r = runCli(args, dir);
  expect(r.code, r.stdout + r.stderr).toBe(2);
  expect(r.stderr).toMatch(/^error: /);
  expect(r.stderr).not.toMatch(/\n\s+at .*\(/); // no stack trace
  expect(existsSync(join(dir, "runs"))).toBe(false);
  return r.stderr;
}

describe("bad configs", () => {
  it("gathers every problem of a config into one message", () => {
    const dir = makeProject({
      ...DUMMY_MODEL,
      ".aptrc.json": JSON.stringify({
        backend: "gpu",
        model: "./model",
        task: { kind: "personalize", images: "./missing/*.png", prompt: "a photo of sks star" },
        train: { stpes: 10, lr: "high", lrSchedule: "cosin" },
        methods: ["lroa", "dreambooth", ["lora", { rank: "8" }], ["lora", { rnak: 4 }, "lora-2"], "lora"],
        output: "runs/x",
        smaple: {},
      }),
    });
    fakePluginPackage(dir, "@apt/method-lora");
    const err = expectBadInput(dir);
    expect(err.match(/^error: /gm)).toHaveLength(1);
    expect(err).toContain(".aptrc.json: 11 problems in the config; nothing was run.");
    // bad enum: the allowed values
    expect(err).toMatch(/backend: "gpu" is not allowed\. Did you mean "cpu" or "webgpu"\?\n\s+fix: allowed values: "auto", "cpu", "webgpu", "cuda"/);
    expect(err).toMatch(/train\.lrSchedule: "cosin" is not allowed\. Did you mean "cosine"\?/);
    // unknown keys: did you mean
    expect(err).toMatch(/train\.stpes: unknown key "stpes"\. Did you mean "steps"\?/);
    expect(err).toMatch(/smaple: unknown key "smaple"\. Did you mean "sample"\?/);
    // bad type
    expect(err).toContain("train.lr: expected number, received \"high\"");
    // missing images: the resolved glob and the folder
    expect(err).toContain(`task.images: "./missing/*.png" matched no file (glob ${join(dir, "missing", "*.png")}, relative to the config folder ${dir})`);
    // unknown method: the names tried and did you mean
    expect(err).toMatch(/methods\[0\]: method "lroa" not found \(tried @apt\/method-lroa, apt-method-lroa, lroa from .*\)\. Did you mean "lora"\?/);
    expect(err).toContain('fix: use "lora" (installed)');
    // missing package of a known method: the install command
    expect(err).toMatch(/methods\[1\]: method "dreambooth" is not installed \(tried @apt\/method-dreambooth, apt-method-dreambooth, dreambooth from .*\)\n\s+fix: pnpm add @apt\/method-dreambooth/);
    // options: bad type and unknown option, at their config path
    expect(err).toContain('methods[2][1].rank: expected number, received "8"');
    expect(err).toMatch(/methods\[3\]\[1\]\.rnak: unknown option of "lora" "rnak"\. Did you mean "rank"\?/);
    // duplicate instance, Babel's advice
    expect(err).toMatch(/methods\[4\]: duplicate method "lora" \(also methods\[2\]\)\. To use two separate instances of a plugin, they need separate names\n\s+fix: e\.g\. methods: \[\["lora", \{\}\], \["lora", \{\}, "lora-2"\]\]/);
  });

  it("reports a malformed config file with its name and the parser's message", () => {
    const json = makeProject({ ".aptrc.json": '{ "model": "./model", "task": ' });
    expect(expectBadInput(json)).toMatch(/could not read the config file: JSON Error in .*\.aptrc\.json/);
    const yaml = makeProject({ ".aptrc.yaml": "model: ./model\ntask: [unclosed\n" });
    expect(expectBadInput(yaml)).toMatch(/YAML Error in .*\.aptrc\.yaml/);
    const mjs = makeProject({ "apt.config.mjs": "export default { model: './model', \n" });
    expect(expectBadInput(mjs)).toMatch(/could not read the config file: .*apt\.config\.mjs/);
  });

  it("refuses plugins of another API version, non-plugins, unmet requirements and bad entries", () => {
    const dir = makeProject({ ...DUMMY_MODEL, ...conceptImages(), "not-a-plugin.mjs": "export default { hello: 1 };\n" });
    fakePluginPackage(dir, "@apt/method-future", { apiVersion: 2 });
    fakePluginPackage(dir, "@apt/method-cat", { requires: ["adapter"] });
    const config = baseConfig({ methods: ["future", "./not-a-plugin.mjs", 42, ["cat", "weight=1"]] });
    writeFileSync(join(dir, ".aptrc.json"), JSON.stringify(config));
    const err = expectBadInput(dir);
    expect(err).toMatch(/methods\[0\]: method "future" \(@apt\/method-future@1\.2\.3\) targets method API version 2; this @apt\/cli supports version 1\n\s+fix: upgrade @apt\/cli/);
    expect(err).toMatch(/methods\[1\]: .*not-a-plugin\.mjs does not export a method plugin \(missing apiVersion, name \(a string\), options .*create \(a function\)\)/);
    expect(err).toMatch(/methods\[2\]: expected a method, received 42/);
    expect(err).toMatch(/methods\[3\]\[1\]: options must be an object, received "weight=1"/);

    // With every entry resolved, core's checkMethodSet runs: cat requires an adapter.
    writeFileSync(join(dir, ".aptrc.json"), JSON.stringify(baseConfig({ methods: ["cat"] })));
    expect(expectBadInput(dir)).toMatch(/methods: method "cat" needs a plugin that provides "adapter"/);
  });

  it("refuses images that are not PNG, and a --resume with nothing to resume", () => {
    const dir = makeProject({ ...DUMMY_MODEL, "concept/a.jpg": "not really", "concept/b.png": "not a png either", ".aptrc.json": JSON.stringify(baseConfig({ task: { kind: "personalize", images: "concept/*", prompt: "p" } })) });
    fakePluginPackage(dir, "@apt/method-lora");
    const err = expectBadInput(dir);
    expect(err).toContain('only PNG images are supported; "concept/*" also matched concept/a.jpg');
    expect(err).toMatch(/concept\/b\.png is not a readable PNG/);

    const ok = makeProject({ ...DUMMY_MODEL, ...conceptImages(), ".aptrc.json": JSON.stringify(baseConfig()) });
    fakePluginPackage(ok, "@apt/method-lora");
    expect(expectBadInput(ok, ["--resume", "latest"])).toContain("--resume latest: no checkpoint in");
    expect(expectBadInput(ok, ["--resume", "nowhere"])).toContain("--resume nowhere: not a checkpoint folder");
  });

  it("exits 2 on a wrong command line", () => {
    const dir = makeProject();
    const r = runCli(["--log-every", "zero"], dir);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("--log-every must be an integer");
    expect(runCli(["bench", "step", "--unet", "u.json"], dir).code).toBe(2); // --text missing
    expect(runCli(["--set", "no-equals-sign", "--dry-run"], dir).code).toBe(2);
  });
});
