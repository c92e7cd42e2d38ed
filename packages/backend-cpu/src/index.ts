/**
 * @apt/backend-cpu: the embedded default backend. tfjs's WASM backend (XNNPACK,
 * SIMD) plus the kernels it lacks for training, and faster versions of two it
 * has (see ./kernels/register.ts).
 *
 *   import { backend } from "@apt/backend-cpu";
 *   await backend.init();
 */
import * as tf from "@tensorflow/tfjs-core";
import { createRequire } from "node:module";
import { dirname, sep } from "node:path";
import { AptError, registerTfjsCore, tfjsCoreLocation } from "@apt/core";
import type { AptBackend, BackendInfo, BackendInitOptions, BackendProbe } from "@apt/core";
import { customKernels, registerCustomKernels } from "./kernels/register.js";

registerTfjsCore(tf, "@apt/backend-cpu", tfjsCoreLocation(import.meta.url));

export { customKernels, type CustomKernel } from "./kernels/register.js";

export interface CpuInitOptions extends BackendInitOptions {
  /**
   * WASM threads. Only honoured where tfjs-backend-wasm supports threads
   * (browsers with cross-origin isolation); in Node it always runs 1 thread.
   */
  threads?: number;
  /** false forces the non-SIMD build; true fails when SIMD is unavailable. Default: SIMD when available. */
  simd?: boolean;
}

interface State {
  simd: boolean;
  threads: number;
  threadsRequested: number | undefined;
  multithreadSupported: boolean;
  kernels: string[];
  wasmVersion: string;
}

const TFJS_BACKEND = "wasm";
let initializing: Promise<State> | undefined;
let state: State | undefined;

const isNode = typeof process !== "undefined" && typeof process.versions?.node === "string";

// The program tfjs-backend-wasm itself uses to detect WebAssembly SIMD (from wasm-feature-detect).
const SIMD_PROBE = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 1, 4, 1, 96, 0, 0, 3, 2, 1, 0, 10, 9, 1, 7, 0, 65, 0, 253, 15, 26, 11]);

function simdAvailable(): boolean {
  try {
    return WebAssembly.validate(SIMD_PROBE);
  } catch {
    return false;
  }
}

function parseOptions(options: BackendInitOptions = {}): { threads: number | undefined; simd: boolean | undefined } {
  const { threads, simd } = options as CpuInitOptions;
  if (threads !== undefined && !(Number.isInteger(threads) && threads >= 1)) {
    throw new AptError("BAD_INPUT", `backend cpu: threads must be a positive integer, got ${String(threads)}`);
  }
  if (simd !== undefined && typeof simd !== "boolean") {
    throw new AptError("BAD_INPUT", `backend cpu: simd must be true or false, got ${String(simd)}`);
  }
  return { threads, simd };
}

async function load(threads: number | undefined, simd: boolean | undefined): Promise<State> {
  let wasm: typeof import("@tensorflow/tfjs-backend-wasm");
  try {
    wasm = await import("@tensorflow/tfjs-backend-wasm");
  } catch (e) {
    throw new AptError(
      "BACKEND_UNAVAILABLE",
      "backend cpu: cannot load @tensorflow/tfjs-backend-wasm; install it with `pnpm add @tensorflow/tfjs-backend-wasm@4.22.0`",
      { cause: e },
    );
  }
  if (isNode && !tf.findBackend(TFJS_BACKEND)) {
    // Point tfjs at the .wasm files next to its own entry point, wherever the
    // package manager put it (emscripten's default, the script directory, breaks
    // once this module is bundled).
    const entry = createRequire(import.meta.url).resolve("@tensorflow/tfjs-backend-wasm");
    wasm.setWasmPaths(dirname(entry) + sep);
  }
  if (simd === false) tf.env().set("WASM_HAS_SIMD_SUPPORT", false);
  if (simd === true && !(await tf.env().getAsync("WASM_HAS_SIMD_SUPPORT"))) {
    throw new AptError("BACKEND_UNAVAILABLE", "backend cpu: simd: true was asked for, but this runtime has no WebAssembly SIMD");
  }
  if (threads !== undefined) wasm.setThreadsCount(threads);

  if (!(await tf.setBackend(TFJS_BACKEND))) {
    throw new AptError(
      "BACKEND_UNAVAILABLE",
      "backend cpu: tfjs-backend-wasm failed to initialise (see the warning tfjs printed above); " +
        "in a bundled app, serve its .wasm files and call setWasmPaths from @tensorflow/tfjs-backend-wasm first",
    );
  }
  await tf.ready();
  const kernels = registerCustomKernels();
  return {
    simd: Boolean(await tf.env().getAsync("WASM_HAS_SIMD_SUPPORT")),
    threads: wasm.getThreadsCount(),
    threadsRequested: threads,
    multithreadSupported: Boolean(await tf.env().getAsync("WASM_HAS_MULTITHREAD_SUPPORT")),
    kernels,
    wasmVersion: wasm.version_wasm,
  };
}

export const backend: AptBackend = {
  name: "cpu",

  async isAvailable() {
    return (await this.probe()).available;
  },

  async probe(): Promise<BackendProbe> {
    if (typeof WebAssembly !== "object") return { available: false, reason: "no WebAssembly in this runtime" };
    return simdAvailable()
      ? { available: true, reason: "WebAssembly SIMD" }
      : { available: true, reason: "WebAssembly without SIMD (the slower non-SIMD build will be used)" };
  },

  async init(options?: BackendInitOptions) {
    const { threads, simd } = parseOptions(options);
    if (!initializing) {
      initializing = load(threads, simd);
      void initializing.catch(() => (initializing = undefined));
    }
    const s = await initializing;
    state = s;
    // The WASM module loads once per process: a later init cannot change its build.
    if (simd !== undefined && simd !== s.simd) {
      throw new AptError("BAD_INPUT", `backend cpu is already initialised with simd: ${s.simd}; it cannot change within a process`);
    }
    if (threads !== undefined && s.threadsRequested !== undefined && threads !== s.threadsRequested) {
      throw new AptError("BAD_INPUT", `backend cpu is already initialised with threads: ${s.threadsRequested}; it cannot change within a process`);
    }
    // Idempotent, and makes wasm active again if another backend was selected since.
    if (tf.getBackend() !== TFJS_BACKEND && !(await tf.setBackend(TFJS_BACKEND))) {
      throw new AptError("BACKEND_UNAVAILABLE", "backend cpu: could not switch tfjs back to the wasm backend");
    }
    s.kernels = registerCustomKernels();
  },

  info(): BackendInfo {
    if (!state) throw new AptError("BAD_INPUT", "backend cpu: call init() before info()");
    const { simd, threads } = state;
    const details: Record<string, string | number | boolean> = {
      simd,
      threads,
      multithreadSupported: state.multithreadSupported,
      tfjsCore: tf.version_core,
      tfjsBackendWasm: state.wasmVersion,
      wasmBinary: !simd ? "tfjs-backend-wasm.wasm" : state.multithreadSupported ? "tfjs-backend-wasm-threaded-simd.wasm" : "tfjs-backend-wasm-simd.wasm",
    };
    if (state.threadsRequested !== undefined) details.threadsRequested = state.threadsRequested;
    for (const k of customKernels) {
      if (state.kernels.includes(k.config.kernelName)) details[`kernel.${k.config.kernelName}`] = `${k.kind}: ${k.why}`;
    }
    return {
      name: "cpu",
      tfjsBackend: TFJS_BACKEND,
      device: `WASM ${simd ? "SIMD" : "(no SIMD)"}, ${threads} thread${threads === 1 ? "" : "s"}`,
      software: false,
      customKernels: [...state.kernels],
      details,
    };
  },
};

/** The same backend, by a descriptive name. */
export const cpuBackend = backend;
