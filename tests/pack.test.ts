/**
 * Every package packs into a tarball that installs into an empty project and
 * imports there: `pnpm pack` (which rewrites workspace: ranges), then one
 * `npm install` of all tarballs plus the tfjs-core peer, then each package does
 * its smallest real thing in a plain Node process (no vite in between).
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";

const root = join(import.meta.dirname, "..");
const packages = readdirSync(join(root, "packages")).filter((d) => !d.startsWith("."));
const work = mkdtempSync(join(tmpdir(), "apt-pack-"));
const project = join(work, "project");

function run(cmd: string, args: string[], cwd: string): string {
  return execFileSync(cmd, args, { cwd, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, npm_config_loglevel: "error" } });
}

describe("packed tarballs install and import in an empty project", () => {
  const tarballs: Record<string, string> = {};

  beforeAll(() => {
    for (const dir of packages) {
      const out = run("pnpm", ["pack", "--pack-destination", work], join(root, "packages", dir)).trim().split("\n");
      tarballs[dir] = out[out.length - 1]!.trim();
    }
    run("mkdir", ["-p", project], work);
    writeFileSync(join(project, "package.json"), JSON.stringify({ name: "empty", private: true, type: "module" }));
    run("npm", ["install", "--no-audit", "--no-fund", "@tensorflow/tfjs-core@4.22.0", ...Object.values(tarballs)], project);
  });

  it("each tarball carries dist with types and no tests or sources", () => {
    for (const [dir, tgz] of Object.entries(tarballs)) {
      const files = run("tar", ["tzf", tgz], work).split("\n");
      expect(files, dir).toContain("package/dist/index.js");
      expect(files, dir).toContain("package/dist/index.d.ts");
      expect(files.some((f) => f.includes("/test/") || f.endsWith(".test.ts")), dir).toBe(false);
      const name = JSON.parse(readFileSync(join(root, "packages", dir, "package.json"), "utf8")).name as string;
      const manifest = JSON.parse(readFileSync(join(project, "node_modules", name, "package.json"), "utf8"));
      expect(JSON.stringify(manifest.dependencies ?? {}), dir).not.toContain("workspace:");
    }
  });

  it("imports and runs in plain Node", () => {
    const script = `
      import { tf, readSafetensors, writeSafetensors } from "@apt/core";
      import { conformanceCases } from "@apt/core/conformance";
      import { backend as cpu } from "@apt/backend-cpu";
      import { backend as webgpu } from "@apt/backend-webgpu";
      import { backend as cuda } from "@apt/backend-cuda";
      await cpu.init();
      const w = tf.variable(tf.randomNormal([3, 3, 2, 2]));
      const x = tf.randomNormal([1, 5, 5, 2]);
      const g = tf.grad((w) => tf.sum(tf.conv2d(x, w, 1, "same")))(w);
      await writeSafetensors("w.safetensors", { w });
      const back = await readSafetensors("w.safetensors");
      console.log(JSON.stringify({
        backend: tf.getBackend(), grad: g.shape, cases: conformanceCases.length,
        roundTrip: back.tensors.w.shape, webgpu: typeof (await webgpu.probe()).available,
        cuda: (await cuda.probe()).available,
      }));
      process.exit(0);
    `;
    writeFileSync(join(project, "smoke.mjs"), script);
    const out = JSON.parse(run("node", ["smoke.mjs"], project).trim().split("\n").pop()!);
    expect(out).toEqual({ backend: "wasm", grad: [3, 3, 2, 2], cases: expect.any(Number), roundTrip: [3, 3, 2, 2], webgpu: "boolean", cuda: false });
    expect(out.cases).toBeGreaterThan(30);
  });
});
