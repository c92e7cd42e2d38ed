/**
 * Rendering the engine's event stream: a cli-progress bar on a terminal,
 * plain lines elsewhere (CI logs, pipes), and the JSONL metrics file.
 *
 * The ETA is smoothed exponentially over the step times and leaves out the
 * first steps (kernel compilation, caches warming), which would otherwise
 * make it jump (sd-scripts' lesson).
 */
import { closeSync, mkdirSync, openSync, writeSync } from "node:fs";
import { dirname } from "node:path";
import cliProgress from "cli-progress";
import type { TrainEvent } from "@apt/core";

/** Exponentially smoothed seconds per step, ignoring the first `skip` step intervals. */
export class EtaEstimator {
  private last: number | undefined;
  private seen = 0;
  private ema: number | undefined;

  constructor(
    readonly skip = 2,
    readonly alpha = 0.1,
  ) {}

  /** Marks the start (the time the first step interval counts from). */
  start(now: number): void {
    this.last = now;
    this.seen = 0;
    this.ema = undefined;
  }

  /** Records that a step finished at `now` (seconds). */
  tick(now: number): void {
    if (this.last !== undefined) {
      const dt = Math.max(0, now - this.last);
      this.seen++;
      if (this.seen > this.skip) this.ema = this.ema === undefined ? dt : this.alpha * dt + (1 - this.alpha) * this.ema;
    }
    this.last = now;
  }

  /** Smoothed seconds per step, undefined until past the skipped steps. */
  get secondsPerStep(): number | undefined {
    return this.ema;
  }

  etaSeconds(remaining: number): number | undefined {
    return this.ema === undefined ? undefined : remaining * this.ema;
  }
}

/** 4m12s, 12s, 1h02m. */
export function formatDuration(seconds: number | undefined): string {
  if (seconds === undefined || !Number.isFinite(seconds)) return "?";
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}

export function formatLr(lr: number): string {
  return lr.toExponential(1);
}

export function formatLoss(loss: number): string {
  return Number.isFinite(loss) ? loss.toFixed(4) : String(loss);
}

export interface OutputStream {
  write(s: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

export interface ProgressOptions {
  stream: OutputStream;
  /** Terminal rendering (a live bar); default: stream.isTTY. */
  tty?: boolean;
  /** Plain mode: one line every N steps (and at the last step). Default 10. */
  logEvery?: number;
  /** Seconds, monotonic. Default performance.now() / 1000. */
  now?: () => number;
}

type StepEvent = Extract<TrainEvent, { type: "step" }>;

/** Turns TrainEvents into a progress bar (TTY) or plain lines. */
export class ProgressReporter {
  private readonly eta = new EtaEstimator();
  private readonly now: () => number;
  private readonly logEvery: number;
  private readonly tty: boolean;
  private total = 0;
  private startedAt = 0;
  private multibar: cliProgress.MultiBar | undefined;
  private bar: cliProgress.SingleBar | undefined;

  constructor(private readonly o: ProgressOptions) {
    this.now = o.now ?? (() => performance.now() / 1000);
    this.logEvery = Math.max(1, Math.floor(o.logEvery ?? 10));
    this.tty = o.tty ?? Boolean(o.stream.isTTY);
  }

  private line(s: string): void {
    if (this.multibar) {
      this.multibar.log(`${s}\n`);
      this.multibar.update(); // draws now (the bar otherwise redraws on a timer, which a busy step loop delays)
    } else this.o.stream.write(`${s}\n`);
  }

  /** The plain progress line of a step: `step 20/400 loss 0.1234 lr 1.0e-4 1.52 it/s eta 4m12s`. */
  stepLine(e: StepEvent): string {
    const spp = this.eta.secondsPerStep;
    const itPerSec = spp ? 1 / spp : e.itPerSec;
    // Extra loss terms by name (the base ε-loss is already in "loss" when it is the only term).
    const entries = Object.entries(e.terms);
    const terms = (entries.length > 1 ? entries : [])
      .map(([k, v]) => ` ${k} ${formatLoss(v)}`)
      .join("");
    return `step ${e.step}/${this.total} loss ${formatLoss(e.loss)}${terms} lr ${formatLr(e.lr)} ${itPerSec > 0 ? itPerSec.toFixed(2) : "?"} it/s eta ${formatDuration(this.eta.etaSeconds(this.total - e.step))}`;
  }

  onEvent(e: TrainEvent): void {
    switch (e.type) {
      case "start": {
        this.total = e.totalSteps;
        this.startedAt = this.now();
        this.eta.start(this.startedAt);
        const head = `training ${e.totalSteps} steps${e.startStep ? ` from step ${e.startStep}` : ""}${e.resumedFrom ? ` (resumed from ${e.resumedFrom})` : ""}: ${e.methods.join(" + ")}, ${e.trainable.toLocaleString("en-US")} trainable parameters`;
        this.o.stream.write(`${head}\n`);
        if (this.tty) {
          this.multibar = new cliProgress.MultiBar(
            {
              stream: this.o.stream as NodeJS.WritableStream,
              format: "{bar} {value}/{total} | loss {loss} | lr {lr} | {speed} it/s | eta {eta_s}",
              barsize: 30,
              hideCursor: true,
              clearOnComplete: false,
              noTTYOutput: false,
              etaBuffer: 1,
            },
            cliProgress.Presets.shades_classic,
          );
          this.bar = this.multibar.create(e.totalSteps, e.startStep, { loss: "-", lr: "-", speed: "-", eta_s: "?" });
        }
        return;
      }
      case "task":
        this.line(`task ${e.task + 1}: ${e.concept}`);
        return;
      case "log":
        this.line(`[${e.method}] ${e.message}`);
        return;
      case "step": {
        this.eta.tick(this.now());
        if (this.bar) {
          const spp = this.eta.secondsPerStep;
          this.bar.update(e.step, {
            loss: formatLoss(e.loss),
            lr: formatLr(e.lr),
            speed: (spp ? 1 / spp : e.itPerSec).toFixed(2),
            eta_s: formatDuration(this.eta.etaSeconds(this.total - e.step)),
          });
        } else if (e.step % this.logEvery === 0 || e.step === this.total) {
          this.line(this.stepLine(e));
        }
        return;
      }
      case "sample":
        this.line(`samples at step ${e.step}: ${e.path}`);
        return;
      case "checkpoint":
        this.line(`checkpoint at step ${e.step}: ${e.path}`);
        return;
      case "export":
        this.line(`exported: ${e.paths.join(", ")}`);
        return;
      case "end":
        this.stop();
        this.o.stream.write(`done: step ${e.step} in ${formatDuration(e.seconds)}\n`);
        return;
    }
  }

  /** Stops the bar (idempotent); call it on errors too so the terminal is left clean. */
  stop(): void {
    if (this.multibar) {
      this.multibar.update(); // flushes queued lines
      this.multibar.stop();
      this.multibar = undefined;
      this.bar = undefined;
    }
  }
}

/**
 * Appends one JSON object per step event to a file (metrics.jsonl): crash-safe
 * (each line is written to the file with one write call as it comes), easy to
 * tail and to load (`pandas.read_json(path, lines=True)`).
 */
export class MetricsWriter {
  private fd: number | undefined;

  constructor(readonly path: string) {}

  write(e: TrainEvent): void {
    if (e.type !== "step") return;
    if (this.fd === undefined) {
      mkdirSync(dirname(this.path), { recursive: true });
      this.fd = openSync(this.path, "a");
    }
    const record = { step: e.step, task: e.task, loss: e.loss, lr: e.lr, it_s: e.itPerSec, terms: e.terms, metrics: e.metrics, ts: Date.now() / 1000 };
    writeSync(this.fd, `${JSON.stringify(record)}\n`);
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}
