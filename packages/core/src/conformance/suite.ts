/**
 * The backend conformance suite, after tfjs's own pattern: one suite, written
 * once, that every backend package re-runs against itself with a visible
 * exclusion list, each entry with its reason.
 *
 *   // packages/backend-x/test/conformance.test.ts
 *   import { describe, it, beforeAll } from "vitest";
 *   import { runConformanceSuite } from "@apt/core/conformance";
 *   import { backend } from "../src/index.js";
 *   runConformanceSuite({ describe, it, beforeAll }, { backend, exclude: [] });
 */
import * as tf from "@tensorflow/tfjs-core";
import type { AptBackend, BackendInitOptions } from "../backend.js";
import { conformanceCases, type ConformanceCase } from "./cases.js";
import { checkCase } from "./check.js";

export interface ConformanceExclusion {
  /** A case id ("conv2d/3x3-s2-same") or a prefix ending in "*" ("conv2d/*"). */
  id: string;
  /** What to leave out: the whole case (default) or only its gradient check. */
  part?: "case" | "gradient";
  /** Why; printed in the test name. Required: an exclusion without a reason is not accepted. */
  reason: string;
}

export interface ConformanceTestApi {
  describe(name: string, fn: () => void): void;
  it: {
    (name: string, fn: () => void | Promise<void>, timeout?: number): void;
    skip(name: string, fn?: () => void | Promise<void>): void;
  };
  beforeAll(fn: () => unknown, timeout?: number): void;
}

export interface ConformanceOptions {
  backend: AptBackend;
  initOptions?: BackendInitOptions;
  exclude?: ConformanceExclusion[];
  /** Base seed of the random inputs; a fresh one per run unless given (or APT_CONFORMANCE_SEED is set). */
  seed?: number;
  /** Multiplies every tolerance (a backend with less precise math says so here, visibly). */
  toleranceScale?: number;
  /** Per-test timeout in ms. */
  timeout?: number;
}

function matches(ex: ConformanceExclusion, id: string): boolean {
  return ex.id.endsWith("*") ? id.startsWith(ex.id.slice(0, -1)) : ex.id === id;
}

/** Checks an exclusion list against the cases; throws on an entry that matches nothing or has no reason. */
export function validateExclusions(exclude: ConformanceExclusion[], cases: ConformanceCase[] = conformanceCases): void {
  for (const ex of exclude) {
    if (!ex.reason || ex.reason.trim().length < 8) throw new Error(`conformance exclusion "${ex.id}" needs a reason`);
    if (!cases.some((c) => matches(ex, c.id))) throw new Error(`conformance exclusion "${ex.id}" matches no case; case ids: ${cases.map((c) => c.id).join(", ")}`);
  }
}

export function resolveSeed(seed?: number): number {
  if (seed !== undefined) return seed;
  const env = process.env.APT_CONFORMANCE_SEED;
  if (env !== undefined && env !== "") return Number(env) >>> 0;
  return (Math.random() * 2 ** 32) >>> 0;
}

export function runConformanceSuite(api: ConformanceTestApi, opts: ConformanceOptions): void {
  const exclude = opts.exclude ?? [];
  validateExclusions(exclude);
  const seed = resolveSeed(opts.seed);
  const scale = opts.toleranceScale ?? 1;
  const timeout = opts.timeout ?? 60_000;

  api.describe(`conformance: backend ${opts.backend.name} (seed ${seed}; rerun with APT_CONFORMANCE_SEED=${seed})`, () => {
    api.beforeAll(async () => {
      await opts.backend.init(opts.initOptions);
      const info = opts.backend.info();
      if (tf.getBackend() !== info.tfjsBackend) {
        throw new Error(`backend ${opts.backend.name} initialised but tfjs runs on "${tf.getBackend()}", not "${info.tfjsBackend}"`);
      }
    }, 300_000);

    for (const c of conformanceCases) {
      const ex = exclude.find((e) => matches(e, c.id));
      if (ex && (ex.part ?? "case") === "case") {
        api.it.skip(`${c.id} — excluded: ${ex.reason}`);
        continue;
      }
      const skipGradient = ex?.part === "gradient" || c.gradient === false;
      const label = ex?.part === "gradient" ? `${c.id} (gradient excluded: ${ex.reason})` : c.id;
      api.it(
        label,
        async () => {
          const r = await checkCase(c, seed, { gradient: !skipGradient });
          const problems: string[] = [];
          const tolF = c.tolerance.forward * scale;
          const tolG = c.tolerance.gradient * scale;
          if (!(r.forwardError <= tolF)) problems.push(`forward error ${r.forwardError.toExponential(2)} > ${tolF.toExponential(1)}`);
          if (!skipGradient) {
            for (const [name, err] of Object.entries(r.gradientErrors)) {
              if (!(err <= tolG)) problems.push(`gradient of ${name}: error ${err.toExponential(2)} > ${tolG.toExponential(1)}`);
            }
          }
          if (r.leakedTensors !== 0) problems.push(`${r.leakedTensors} tensors leaked`);
          if (problems.length) throw new Error(`${c.id} on ${opts.backend.name} (case seed ${r.seed}): ${problems.join("; ")}`);
        },
        timeout,
      );
    }
  });
}
