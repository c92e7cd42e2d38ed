/** Progress rendering (plain lines without a terminal, a bar on one), the smoothed ETA and the metrics file. */
import { describe, expect, it } from "vitest";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import type { TrainEvent } from "@apt/core";
import { EtaEstimator, formatDuration, MetricsWriter, ProgressReporter } from "../src/progress.js";

function sink() {
  let text = "";
  return { stream: { write: (s: string) => (text += s), isTTY: false }, text: () => text };
}

const step = (n: number, loss = 0.1234, lr = 1e-4): TrainEvent => ({ type: "step", step: n, task: 0, loss, terms: {}, lr, itPerSec: 2, metrics: {} });

describe("progress", () => {
  it("prints one plain line every N steps without a terminal", () => {
    const out = sink();
    let now = 0;
    const p = new ProgressReporter({ stream: out.stream, logEvery: 10, now: () => now });
    p.onEvent({ type: "start", totalSteps: 40, startStep: 0, trainable: 28672, methods: ["lora", "cat"] });
    p.onEvent({ type: "task", task: 0, concept: "sks" });
    for (let i = 1; i <= 40; i++) {
      now += i <= 2 ? 5 : 0.5; // two slow warm-up steps, then 2 it/s
      p.onEvent(step(i, 0.5 / i));
      if (i === 20) p.onEvent({ type: "checkpoint", step: 20, path: "runs/x/checkpoints/checkpoint-20" });
    }
    p.onEvent({ type: "sample", step: 40, path: "runs/x/samples/step-000040.png" });
    p.onEvent({ type: "end", step: 40, seconds: 252 });
    expect(out.text().split("\n")).toEqual([
      "training 40 steps: lora + cat, 28,672 trainable parameters",
      "task 1: sks",
      "step 10/40 loss 0.0500 lr 1.0e-4 2.00 it/s eta 15s",
      "step 20/40 loss 0.0250 lr 1.0e-4 2.00 it/s eta 10s",
      "checkpoint at step 20: runs/x/checkpoints/checkpoint-20",
      "step 30/40 loss 0.0167 lr 1.0e-4 2.00 it/s eta 5s",
      "step 40/40 loss 0.0125 lr 1.0e-4 2.00 it/s eta 0s",
      "samples at step 40: runs/x/samples/step-000040.png",
      "done: step 40 in 4m12s",
      "",
    ]);
  });

  it("names the loss terms when there are several", () => {
    const p = new ProgressReporter({ stream: sink().stream, now: () => 0 });
    p.onEvent({ type: "start", totalSteps: 100, startStep: 0, trainable: 1, methods: ["lora", "cat"] });
    const e = { type: "step", step: 1, task: 0, loss: 0.12, terms: { base: 0.1, "cat/cat": 0.02 }, lr: 5e-5, itPerSec: 1.5, metrics: {} } as const;
    expect(p.stepLine(e)).toBe("step 1/100 loss 0.1200 base 0.1000 cat/cat 0.0200 lr 5.0e-5 1.50 it/s eta ?");
  });

  it("leaves the first two steps out of the ETA and smooths the rest", () => {
    const eta = new EtaEstimator(2, 0.5);
    eta.start(0);
    eta.tick(10);
    eta.tick(20);
    expect(eta.secondsPerStep).toBeUndefined();
    eta.tick(21);
    expect(eta.secondsPerStep).toBe(1);
    eta.tick(24);
    expect(eta.secondsPerStep).toBe(2);
    expect(eta.etaSeconds(10)).toBe(20);
    expect([formatDuration(5), formatDuration(252), formatDuration(3720), formatDuration(undefined)]).toEqual(["5s", "4m12s", "1h02m", "?"]);
  });

  it("draws a bar on a terminal", () => {
    const stream = Object.assign(new PassThrough(), { isTTY: true, columns: 120 });
    let text = "";
    stream.on("data", (d: Buffer) => (text += d.toString()));
    const p = new ProgressReporter({ stream, now: () => 0 });
    p.onEvent({ type: "start", totalSteps: 4, startStep: 0, trainable: 10, methods: ["lora"] });
    for (let i = 1; i <= 4; i++) p.onEvent(step(i));
    p.onEvent({ type: "end", step: 4, seconds: 1 });
    expect(text).toContain("4/4 | loss 0.1234 | lr 1.0e-4");
    expect(text).toContain("done: step 4 in 1s");
  });

  it("appends one JSON line per step to metrics.jsonl", () => {
    const file = join(mkdtempSync(join(tmpdir(), "apt-cli-metrics-")), "run", "metrics.jsonl");
    const w = new MetricsWriter(file);
    w.write({ type: "start", totalSteps: 2, startStep: 0, trainable: 1, methods: [] });
    w.write({ type: "step", step: 1, task: 0, loss: 0.5, terms: { "cat/cat": 0.1 }, lr: 1e-4, itPerSec: 3, metrics: { "cat/kps": 0.9 } });
    w.write(step(2));
    w.close();
    const lines = readFileSync(file, "utf8").trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatchObject({ step: 1, task: 0, loss: 0.5, lr: 1e-4, it_s: 3, terms: { "cat/cat": 0.1 }, metrics: { "cat/kps": 0.9 } });
    expect(typeof lines[1]!.ts).toBe("number");
  });
});
