/**
 * @apt/backend-webgpu: tfjs's WebGPU backend, in browsers and in Node.
 *
 * In Node there is no `navigator.gpu`; the `webgpu` package (Dawn) provides
 * one. tfjs-backend-webgpu registers itself only if `navigator.gpu` exists *when
 * it is imported*, so the order here matters: create Dawn's GPU, install it as
 * `navigator.gpu`, then import the tfjs backend.
 *
 * Machines without a GPU can still get an adapter through a software Vulkan
 * driver: SwiftShader, shipped by Debian's `chromium` package, found by the
 * Vulkan loader (`libvulkan1`) through
 * `VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json`. It is slow but
 * exact enough to run the conformance suite; `info().software` says so and
 * `backend: "auto"` does not pick it.
 */
import * as tf from "@tensorflow/tfjs-core";
import { existsSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AptError, registerTfjsCore, tfjsCoreLocation, type AptBackend, type BackendInfo, type BackendProbe } from "@apt/core";

registerTfjsCore(tf, "@apt/backend-webgpu", tfjsCoreLocation(import.meta.url));

/** Where Debian's chromium package puts its SwiftShader Vulkan driver manifest. */
export const DEBIAN_SWIFTSHADER_ICD = "/usr/lib/chromium/vk_swiftshader_icd.json";

export interface WebGpuInitOptions {
  /**
   * Vulkan driver manifest to use in Node (sets VK_ICD_FILENAMES before Dawn
   * starts). "swiftshader" means Debian's SwiftShader; default: the environment's.
   */
  vulkanIcd?: string;
  /** Dawn toggles passed to `create()` in Node, e.g. ["backend=vulkan"]. */
  dawnOptions?: string[];
  /** Force a software adapter to be accepted by init even if not asked for by name. */
  [option: string]: unknown;
}

interface AdapterSummary {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  software: boolean;
}

const isNode = typeof process !== "undefined" && !!process.versions?.node;

let gpuPromise: Promise<GPU | undefined> | undefined;
let adapterSummary: AdapterSummary | undefined;
let initialised = false;

function applyEnvironment(opts: WebGpuInitOptions): void {
  if (!isNode) return;
  const icd = opts.vulkanIcd === "swiftshader" ? DEBIAN_SWIFTSHADER_ICD : opts.vulkanIcd;
  if (icd) {
    if (!existsSync(icd)) {
      throw new AptError("BACKEND_UNAVAILABLE", `webgpu: the Vulkan driver manifest ${icd} does not exist. For SwiftShader on Debian: apt-get install chromium libvulkan1.`);
    }
    process.env.VK_ICD_FILENAMES = icd;
  }
  // The Vulkan loader warns (and some drivers fail) without a runtime dir.
  if (!process.env.XDG_RUNTIME_DIR) {
    const dir = join(tmpdir(), `apt-xdg-${process.getuid?.() ?? 0}`);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    process.env.XDG_RUNTIME_DIR = dir;
  }
}

/** The GPU object: the browser's, or Dawn's in Node (created once). */
async function getGpu(opts: WebGpuInitOptions): Promise<GPU | undefined> {
  const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
  if (nav?.gpu) return nav.gpu;
  if (!isNode) return undefined;
  gpuPromise ??= (async () => {
    applyEnvironment(opts);
    let webgpu: { create(options: string[]): GPU; globals: Record<string, unknown> };
    try {
      webgpu = (await import("webgpu")) as unknown as typeof webgpu;
    } catch (e) {
      throw new AptError("BACKEND_UNAVAILABLE", `webgpu: the Dawn binding (npm package "webgpu") failed to load: ${(e as Error).message}`, { cause: e });
    }
    // tfjs-backend-webgpu refers to GPUBufferUsage, GPUMapMode, ... as globals.
    for (const [k, v] of Object.entries(webgpu.globals)) {
      if (!(k in globalThis)) (globalThis as Record<string, unknown>)[k] = v;
    }
    return webgpu.create(opts.dawnOptions ?? []);
  })();
  return gpuPromise;
}

function summarise(adapter: GPUAdapter): AdapterSummary {
  const info = adapter.info as GPUAdapterInfo & { isFallbackAdapter?: boolean };
  const text = `${info.vendor} ${info.architecture} ${info.device} ${info.description}`.toLowerCase();
  const software =
    info.isFallbackAdapter === true ||
    (adapter as { isFallbackAdapter?: boolean }).isFallbackAdapter === true ||
    /swiftshader|llvmpipe|lavapipe|softpipe|warp|microsoft basic render/.test(text);
  return { vendor: info.vendor, architecture: info.architecture, device: info.device, description: info.description, software };
}

function describe(a: AdapterSummary): string {
  const name = a.description || a.device || "unnamed adapter";
  return `${name} (${a.vendor || "?"}/${a.architecture || "?"})${a.software ? ", software" : ""}`;
}

function noAdapterHint(): string {
  const hints = ["webgpu: no WebGPU adapter found."];
  if (isNode) {
    hints.push(
      process.env.VK_ICD_FILENAMES
        ? `VK_ICD_FILENAMES=${process.env.VK_ICD_FILENAMES} gave none; is libvulkan1 installed?`
        : `Without a GPU, a software adapter works: apt-get install chromium libvulkan1, then set VK_ICD_FILENAMES=${DEBIAN_SWIFTSHADER_ICD} (or init({ vulkanIcd: "swiftshader" })).`,
    );
  } else {
    hints.push("This browser has navigator.gpu but returned no adapter (WebGPU disabled or blocklisted?).");
  }
  return hints.join(" ");
}

async function findAdapter(opts: WebGpuInitOptions): Promise<{ adapter?: GPUAdapter; reason: string }> {
  let gpu: GPU | undefined;
  try {
    gpu = await getGpu(opts);
  } catch (e) {
    return { reason: (e as Error).message };
  }
  if (!gpu) return { reason: "webgpu: this runtime has no navigator.gpu" };
  let adapter: GPUAdapter | null = null;
  try {
    adapter = await gpu.requestAdapter({ powerPreference: "high-performance" });
  } catch (e) {
    return { reason: `webgpu: requestAdapter failed: ${(e as Error).message}` };
  }
  if (!adapter) return { reason: noAdapterHint() };
  adapterSummary = summarise(adapter);
  return { adapter, reason: `adapter ${describe(adapterSummary)}` };
}

export const backend: AptBackend & { dispose(): Promise<void> } = {
  name: "webgpu",

  async isAvailable() {
    return (await this.probe()).available;
  },

  async probe(): Promise<BackendProbe> {
    const { adapter, reason } = await findAdapter({});
    return adapter ? { available: true, software: adapterSummary!.software, reason } : { available: false, reason };
  },

  async init(options: WebGpuInitOptions = {}) {
    if (initialised && tf.getBackend() === "webgpu") return;
    const { adapter, reason } = await findAdapter(options);
    if (!adapter) throw new AptError("BACKEND_UNAVAILABLE", reason);
    const nav = ((globalThis as { navigator?: object }).navigator ??= {}) as { gpu?: GPU };
    if (!nav.gpu) Object.defineProperty(nav, "gpu", { value: await getGpu(options), configurable: true });
    // Must come after navigator.gpu exists: the module registers the backend at import time.
    await import("@tensorflow/tfjs-backend-webgpu");
    if (!tf.findBackendFactory("webgpu")) {
      throw new AptError("BACKEND_UNAVAILABLE", "webgpu: @tensorflow/tfjs-backend-webgpu did not register (navigator.gpu was missing when it was first imported; import @apt/backend-webgpu before it).");
    }
    if (!(await tf.setBackend("webgpu"))) {
      throw new AptError("BACKEND_UNAVAILABLE", `webgpu: tfjs could not initialise its webgpu backend on ${describe(adapterSummary!)} (see the error tfjs printed above).`);
    }
    await tf.ready();
    initialised = true;
  },

  info(): BackendInfo {
    if (!initialised || !adapterSummary) throw new AptError("INTERNAL", "webgpu: info() before init()");
    return {
      name: "webgpu",
      tfjsBackend: "webgpu",
      device: describe(adapterSummary),
      software: adapterSummary.software,
      customKernels: [],
      details: {
        vendor: adapterSummary.vendor,
        architecture: adapterSummary.architecture,
        adapter: adapterSummary.description,
        runtime: isNode ? `node ${process.versions.node} + dawn (npm webgpu)` : "browser",
        tfjs: tf.version_core,
      },
    };
  },

  /** Frees the device; in Node the process cannot exit while Dawn's GPU is alive. */
  async dispose() {
    if (tf.findBackend("webgpu")) tf.removeBackend("webgpu");
    initialised = false;
  },
};

export const webgpuBackend = backend;
