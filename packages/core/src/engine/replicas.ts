/**
 * Data parallelism across worker threads. tfjs's WASM backend runs on one
 * core in Node, so a second core works only in a second tfjs engine: each
 * replica is a worker thread with its own backend and its own copy of the
 * model, built by a module the run names. Every step the main thread sends
 * each replica the current trainable weights and a slice of the batch (clean
 * samples, noise, timesteps, prompts, item and pixel weights), computes its own slice
 * meanwhile, and adds the replicas' gradients to its own before clipping and
 * the optimizer step — the same update as one process computing the whole
 * batch, up to float summation order.
 *
 * Only the base loss is split: plugins with per-sample hooks (`variants`,
 * `weigh`, `losses`) or their own trainable weights run in one process
 * (`train` says so at start). `augment` and `timesteps` run in the main thread.
 */
import { Worker } from "node:worker_threads";
import { AptError } from "../errors.js";

export interface ReplicaOptions {
  /** Extra workers (1 on a 2-core machine). */
  count: number;
  /**
   * A module whose default export `(args) => Promise<TrainingModel>` builds the
   * same model (architecture; the weights are sent every step) and initialises
   * the backend it runs on, inside the worker.
   */
  module: string | URL;
  /** Structured-clonable arguments for the module's default export. */
  args?: unknown;
}

/** What a replica computes for one slice. */
export interface ShardRequest {
  /** Trainable weights by run name (sent when they changed since the last step). */
  weights?: Record<string, Float32Array>;
  x0: Float32Array;
  noise: Float32Array;
  shape: [number, number, number, number];
  timesteps: Int32Array;
  prompts: string[];
  itemWeights: number[];
  /** Per-pixel loss weights of the slice, [n, h, w, 1] row-major, when the batch has them. */
  lossWeights?: Float32Array;
  /** Divisor of the weighted sum (instance samples in the whole batch). */
  nInstance: number;
}

export interface ShardResult {
  grads: Record<string, Float32Array>;
  /** Σ wᵢ Lᵢ / nInstance over the slice. */
  base: number;
}

type Pending = { resolve: (r: ShardResult) => void; reject: (e: Error) => void };

export class ReplicaPool {
  private readonly workers: Worker[];
  private readonly pending = new Map<Worker, Pending>();
  private failure: Error | undefined;

  private constructor(workers: Worker[]) {
    this.workers = workers;
    for (const w of workers) {
      w.on("message", (m: { type: string; result?: ShardResult; message?: string }) => {
        const p = this.pending.get(w);
        this.pending.delete(w);
        if (m.type === "result" && p) p.resolve(m.result!);
        else if (m.type === "error") {
          const e = new AptError("INTERNAL", `replica: ${m.message}`);
          this.failure = e;
          p?.reject(e);
        }
      });
      w.on("error", (e) => {
        this.failure = e;
        this.pending.get(w)?.reject(e);
        this.pending.delete(w);
      });
    }
  }

  get size(): number {
    return this.workers.length;
  }

  /** Starts `count` workers and waits until each has built its model; fails naming the module. */
  static async start(o: ReplicaOptions, trainableNames: string[]): Promise<ReplicaPool> {
    if (!Number.isInteger(o.count) || o.count < 1) throw new AptError("BAD_INPUT", `replicas.count must be a positive integer, got ${o.count}`);
    const moduleUrl = o.module instanceof URL ? o.module.href : o.module;
    const workers = Array.from({ length: o.count }, () => new Worker(new URL("./replica-worker.js", import.meta.url), { workerData: { module: moduleUrl, args: o.args, trainableNames } }));
    try {
      await Promise.all(
        workers.map(
          (w) =>
            new Promise<void>((resolve, reject) => {
              const onMessage = (m: { type: string; message?: string }) => {
                w.off("message", onMessage);
                if (m.type === "ready") resolve();
                else reject(new AptError("BAD_INPUT", `replicas.module ${moduleUrl}: ${m.message}`));
              };
              w.on("message", onMessage);
              w.once("error", (e) => reject(new AptError("BAD_INPUT", `replicas.module ${moduleUrl}: ${e.message}`, { cause: e })));
            }),
        ),
      );
    } catch (e) {
      await Promise.all(workers.map((w) => w.terminate()));
      throw e;
    }
    return new ReplicaPool(workers);
  }

  /** Sends replica i its slice; resolves with its gradients. */
  compute(i: number, request: ShardRequest): Promise<ShardResult> {
    if (this.failure) return Promise.reject(this.failure);
    const w = this.workers[i]!;
    return new Promise((resolve, reject) => {
      this.pending.set(w, { resolve, reject });
      w.postMessage(request);
    });
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}
