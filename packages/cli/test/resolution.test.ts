/**
 * Method names resolve from the config file's folder: "x" → @apt/method-x,
 * then apt-method-x, then x; "@acme/x" → @acme/apt-method-x, then @acme/x;
 * "module:x" exactly; "./file" from the config folder. `apt-run methods`
 * lists what is installed.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { baseConfig, conceptImages, DUMMY_MODEL, fakePluginPackage, makeProject, pluginSource, runCli } from "./helpers.js";

let dir: string;

function resolved(methods: unknown[]): { name: string; package?: string; file?: string; options: unknown }[] {
  writeFileSync(join(dir, ".aptrc.json"), JSON.stringify(baseConfig({ methods })));
  const r = runCli(["--dry-run"], dir);
  expect(r.code, r.stderr).toBe(0);
  return (JSON.parse(r.stdout) as { methods: { name: string; package?: string; file?: string; options: unknown }[] }).methods;
}

beforeAll(() => {
  dir = makeProject({ ...DUMMY_MODEL, ...conceptImages(), "plugins/local.mjs": pluginSource({ name: "local", schema: "standard" }) });
  fakePluginPackage(dir, "@apt/method-x", { name: "x-apt" });
  fakePluginPackage(dir, "apt-method-x", { name: "x-prefixed" });
  fakePluginPackage(dir, "x", { name: "x-literal" });
  fakePluginPackage(dir, "@acme/apt-method-y", { name: "y-prefixed" });
  fakePluginPackage(dir, "@acme/y", { name: "y-literal" });
  fakePluginPackage(dir, "weird-name", { name: "weird-name", exportStyle: "named" }); // export const weirdName
  fakePluginPackage(dir, "apt-method-old", { name: "old", exportStyle: "cjs", schema: "standard" });
});

describe("plugin resolution", () => {
  it("tries @apt/method-x, then apt-method-x, then x", () => {
    expect(resolved(["x"])[0]).toMatchObject({ name: "x-apt", package: "@apt/method-x" });
    rmSync(join(dir, "node_modules", "@apt", "method-x"), { recursive: true });
    expect(resolved(["x"])[0]).toMatchObject({ name: "x-prefixed", package: "apt-method-x" });
    rmSync(join(dir, "node_modules", "apt-method-x"), { recursive: true });
    expect(resolved(["x"])[0]).toMatchObject({ name: "x-literal", package: "x" });
  });

  it("resolves scoped names, module: names, files, named and CommonJS exports", () => {
    const [a, b, c, d, e, f] = resolved(["@acme/y", ["@acme/apt-method-y", {}, "y-again"], "module:weird-name", "./plugins/local.mjs", ["old", { level: 2 }], ["module:@acme/y", {}, "y2"]]);
    expect(a).toMatchObject({ name: "y-prefixed", package: "@acme/apt-method-y" });
    expect(b).toMatchObject({ name: "y-again", package: "@acme/apt-method-y" });
    expect(c).toMatchObject({ name: "weird-name", package: "weird-name", options: { rank: 4, alpha: 4, targets: ["to_q"] } });
    expect(d).toMatchObject({ name: "local", file: join(dir, "plugins", "local.mjs"), options: { level: 1 } });
    expect(e).toMatchObject({ name: "old", package: "apt-method-old", options: { level: 2 } });
    expect(f).toMatchObject({ name: "y2", package: "@acme/y" });
  });

  it("lists installed plugins with their options (`apt-run methods`)", () => {
    const r = runCli(["methods"], dir);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^@acme\/y {2}@acme\/apt-method-y@1\.2\.3\n {2}fake y-prefixed plugin$/m);
    expect(r.stdout).toContain("    rank: integer = 4  LoRA rank");
    expect(r.stdout).toContain('    targets: string[] = ["to_q"]');
    expect(r.stdout).toMatch(/^old {2}apt-method-old@1\.2\.3\n {2}fake old plugin\n {2}options: schema without introspection$/m);
    const json = JSON.parse(runCli(["methods", "--json"], dir).stdout) as { package: string; options?: { name: string }[] }[];
    expect(json.map((m) => m.package)).toEqual(["@acme/apt-method-y", "apt-method-old"]);
  });
});
