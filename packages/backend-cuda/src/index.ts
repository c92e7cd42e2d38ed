/**
 * @apt/backend-cuda: @tensorflow/tfjs-node-gpu (TensorFlow C library with CUDA),
 * an optional peer dependency imported lazily, so that installing @apt never
 * requires it and machines without it get a clear message instead of a crash.
 *
 * tfjs-node-gpu 4.22 binds libtensorflow 2.9.1, built for CUDA 11.2 and
 * cuDNN 8.1. Its install step downloads that library from outside the npm
 * registry, and pnpm 10 runs no dependency install step unless the package is
 * listed in `onlyBuiltDependencies`.
 */
import * as tf from "@tensorflow/tfjs-core";
import { AptError, registerTfjsCore, tfjsCoreLocation, type AptBackend, type BackendInfo, type BackendProbe } from "@apt/core";

registerTfjsCore(tf, "@apt/backend-cuda", tfjsCoreLocation(import.meta.url));

export const TFJS_NODE_GPU = "@tensorflow/tfjs-node-gpu";

/** What a user needs for this backend, printed whenever it cannot load. */
export const CUDA_REQUIREMENTS = [
  "@apt/backend-cuda needs @tensorflow/tfjs-node-gpu 4.22, which runs on Linux or Windows x86_64 with",
  "  - an NVIDIA driver > 450, CUDA 11.2 (libcudart.so.11.0) and cuDNN 8.1 (libcudnn.so.8) on the library path;",
  "  - the package installed with its install step run (it downloads libtensorflow-gpu 2.9.1):",
  "      pnpm add @tensorflow/tfjs-node-gpu@4.22.0",
  '    pnpm 10 skips dependency install steps: add  onlyBuiltDependencies: ["@tensorflow/tfjs-node-gpu"]  to',
  "    pnpm-workspace.yaml (or run `pnpm approve-builds`), then `pnpm rebuild @tensorflow/tfjs-node-gpu`;",
  "      npm install @tensorflow/tfjs-node-gpu@4.22.0   (npm runs the install step itself)",
  'Or choose another backend: backend: "webgpu" or "cpu" (backend: "auto" falls back by itself).',
].join("\n");

/** The parts of tfjs-node-gpu this backend touches. */
export interface TfjsNodeGpuModule {
  version?: { "tfjs-node"?: string; "tfjs-core"?: string } | Record<string, string>;
  version_core?: string;
  Tensor?: unknown;
}

export type TfjsNodeGpuLoader = () => Promise<TfjsNodeGpuModule>;

const defaultLoader: TfjsNodeGpuLoader = () => import(/* @vite-ignore */ TFJS_NODE_GPU) as Promise<TfjsNodeGpuModule>;

function loadFailure(e: unknown): string {
  const err = e as { code?: string; message?: string };
  const message = err.message ?? String(e);
  if (message.includes("tfjs_binding.node")) {
    return `${TFJS_NODE_GPU} is installed but its native binding is missing (its install step did not run or its download failed): ${firstLine(message)}`;
  }
  const notFound = err.code === "ERR_MODULE_NOT_FOUND" || err.code === "MODULE_NOT_FOUND" || /Cannot find (package|module)|Could not resolve/.test(message);
  if (notFound && message.includes(TFJS_NODE_GPU)) return `${TFJS_NODE_GPU} is not installed`;
  if (/libcudart|libcudnn|libcublas|libtensorflow/.test(message)) {
    return `${TFJS_NODE_GPU} failed to load a CUDA library: ${firstLine(message)}`;
  }
  return `${TFJS_NODE_GPU} failed to load: ${firstLine(message)}`;
}

function firstLine(s: string): string {
  return s.split("\n")[0]!.slice(0, 300);
}

/** A cuda backend whose tfjs-node-gpu import can be replaced (tests, custom builds). */
export function createCudaBackend(load: TfjsNodeGpuLoader = defaultLoader): AptBackend {
  let loaded: Promise<{ mod?: TfjsNodeGpuModule; reason: string }> | undefined;
  let initialised = false;

  const tryLoad = () =>
    (loaded ??= (async () => {
      try {
        const mod = await load();
        if (mod.Tensor && mod.version_core) registerTfjsCore(mod as { version_core: string; Tensor: unknown }, TFJS_NODE_GPU);
        if (!tf.findBackendFactory("tensorflow")) {
          return { reason: `${TFJS_NODE_GPU} loaded but registered no "tensorflow" tfjs backend` };
        }
        return { mod, reason: `${TFJS_NODE_GPU} loaded` };
      } catch (e) {
        if (AptError.isInstance(e)) throw e; // two copies of tfjs-core: the user must fix that
        return { reason: loadFailure(e) };
      }
    })());

  const cuda: AptBackend = {
    name: "cuda",
    async isAvailable() {
      return (await cuda.probe()).available;
    },
    async probe(): Promise<BackendProbe> {
      const { mod, reason } = await tryLoad();
      return mod ? { available: true, software: false, reason } : { available: false, reason };
    },
    async init() {
      if (initialised && tf.getBackend() === "tensorflow") return;
      const { mod, reason } = await tryLoad();
      if (!mod) throw new AptError("BACKEND_UNAVAILABLE", `backend "cuda" cannot start: ${reason}.\n${CUDA_REQUIREMENTS}`);
      if (!(await tf.setBackend("tensorflow"))) {
        throw new AptError("BACKEND_UNAVAILABLE", `backend "cuda": tfjs could not start its "tensorflow" backend.\n${CUDA_REQUIREMENTS}`);
      }
      // tfjs-node-gpu silently runs on the CPU when libcudnn/libcudart are missing (tfjs#8269).
      const usingGpu = (tf.backend() as { isUsingGpuDevice?: boolean }).isUsingGpuDevice;
      if (usingGpu === false) {
        throw new AptError("BACKEND_UNAVAILABLE", `backend "cuda": TensorFlow found no CUDA device (it would silently run on the CPU).\n${CUDA_REQUIREMENTS}`);
      }
      initialised = true;
    },
    info(): BackendInfo {
      if (!initialised) throw new AptError("INTERNAL", "cuda: info() before init()");
      return {
        name: "cuda",
        tfjsBackend: "tensorflow",
        device: "CUDA (libtensorflow 2.9.1 via @tensorflow/tfjs-node-gpu)",
        software: false,
        customKernels: [],
        details: { tfjs: tf.version_core },
      };
    },
  };
  return cuda;
}

export const backend: AptBackend = createCudaBackend();
export const cudaBackend = backend;
