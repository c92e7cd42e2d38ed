/**
 * The README's first command runs `pnpm demo`; this runs the same script in its
 * quick form (4 training steps, one sample per prompt) to check the plumbing on
 * every CI run: apt-run trains with lora + dreambooth + cat from the example
 * config, the base model is measured in a second process, and the table, the
 * grid, the metrics and the LoRA file come out.
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";

const root = join(import.meta.dirname, "..");

describe("the ShapeWorld demo", () => {
  it("trains, measures before and after, and prints the table and its files", () => {
    const out = join(mkdtempSync(join(tmpdir(), "apt-demo-")), "run");
    const stdout = execFileSync(process.execPath, [join(root, "examples", "demo", "demo.mjs"), "--quick", "--output", out], { cwd: root, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
    expect(stdout).toMatch(/training 4 steps: dreambooth \+ lora \+ cat/);
    expect(stdout).toMatch(/\|\s+recognised as the concept\s+\|\s+\d+%\s+\|\s+\d+%\s+\|/);
    expect(stdout).toMatch(/\|\s+same-seed similarity to the base model's sample\s+\|\s+1\.00\s+\|\s+-?\d\.\d\d\s+\|/);
    for (const file of ["before-after.png", "metrics.json", join("final", "pytorch_lora_weights.safetensors"), join("final", "lora.kohya.safetensors")]) {
      expect(existsSync(join(out, file)), file).toBe(true);
    }
    const metrics = JSON.parse(readFileSync(join(out, "metrics.json"), "utf8"));
    for (const side of ["before", "after"]) {
      for (const k of ["recognised", "followsPrompt", "classShape", "classLeak"]) {
        expect(metrics[side][k]).toBeGreaterThanOrEqual(0);
        expect(metrics[side][k]).toBeLessThanOrEqual(1);
      }
      expect(metrics[side].samples).toHaveLength(11);
    }
    expect(metrics.classSimilarityToBase).toBeGreaterThan(0.5);
  });
});
