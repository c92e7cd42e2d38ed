/**
 * A third-party plugin as users get one: packed with `pnpm pack`, installed
 * from the tarball into a fresh project with npm, then found by name from that
 * project's config and listed by `apt-run methods`.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import { cpSync, existsSync, mkdtempSync, readdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { baseConfig, conceptImages, DUMMY_MODEL, makeProject, runCli } from "./helpers.js";

let project: string;

beforeAll(() => {
  const work = mkdtempSync(join(tmpdir(), "apt-cli-pack-"));
  // Packed outside the workspace, as the plugin's own repository would.
  const src = join(work, "apt-method-echo");
  cpSync(join(import.meta.dirname, "fixtures", "apt-method-echo"), src, { recursive: true });
  const env = { ...process.env, npm_config_loglevel: "error", npm_config_audit: "false", npm_config_fund: "false", npm_config_update_notifier: "false" };
  execFileSync("pnpm", ["pack", "--pack-destination", work], { cwd: src, stdio: "pipe", env });
  const tgz = readdirSync(work).find((f) => f.endsWith(".tgz"))!;
  project = makeProject({ ...DUMMY_MODEL, ...conceptImages(), "package.json": JSON.stringify({ name: "my-project", private: true, type: "module" }) });
  execFileSync("npm", ["install", "--no-audit", "--no-fund", "--offline", join(work, tgz)], { cwd: project, stdio: "pipe", env });
});

describe("a plugin installed from a packed tarball", () => {
  it("is installed in the fresh project", () => {
    expect(existsSync(join(project, "node_modules", "apt-method-echo", "index.js"))).toBe(true);
  });

  it("is found by name from the project's config, options validated", () => {
    writeFileSync(join(project, "apt.config.json"), JSON.stringify(baseConfig({ methods: [["echo", { times: 2 }]] })));
    const r = runCli(["--dry-run"], project);
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { methods: unknown[] };
    expect(out.methods).toEqual([{ name: "echo", plugin: "echo", package: "apt-method-echo", version: "0.3.0", file: join(project, "node_modules", "apt-method-echo", "index.js"), options: { times: 2 } }]);

    writeFileSync(join(project, "apt.config.json"), JSON.stringify(baseConfig({ methods: [["echo", { times: 0, loud: true }]] })));
    const bad = runCli(["--dry-run"], project);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("methods[0][1].times: expected a positive integer, received 0");
    expect(bad.stderr).toContain('methods[0][1].loud: unknown option "loud"');
  });

  it("is listed by `apt-run methods`", () => {
    const r = runCli(["methods"], project);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe("echo  apt-method-echo@0.3.0\n  Logs each step; changes nothing.\n  options: schema without introspection\n");
  });
});
