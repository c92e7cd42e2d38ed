/**
 * The backend contract. A backend package (`@apt/backend-cpu`, `-webgpu`,
 * `-cuda`) exports one `AptBackend` as `backend`. It owns a tfjs backend: `init`
 * loads it, registers the custom kernels it needs for training and makes it the
 * active tfjs backend; `info` says what device it is running on.
 */
import { createRequire } from "node:module";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { AptError } from "./errors.js";

export type BackendName = "cpu" | "webgpu" | "cuda";

export interface BackendInfo {
  /** @apt backend name: "cpu", "webgpu", "cuda". */
  name: string;
  /** Name of the tfjs backend it activates (`tf.getBackend()` after init): "wasm", "webgpu", "tensorflow". */
  tfjsBackend: string;
  /** The device in words, e.g. "WASM SIMD, 1 thread" or "SwiftShader driver 5.0.0 (google/swiftshader)". */
  device: string;
  /** True when the device emulates a GPU in software (SwiftShader, WARP, a fallback adapter). */
  software: boolean;
  /** Custom kernels this backend registered on top of the tfjs backend. */
  customKernels: string[];
  /** Anything else worth printing (versions, flags, limits). */
  details: Record<string, string | number | boolean>;
}

export interface BackendProbe {
  available: boolean;
  /** For a GPU backend: whether the adapter it would use is a software one. */
  software?: boolean;
  /** Why it is unavailable, or what it found ("adapter: NVIDIA H100"). */
  reason: string;
}

export interface BackendInitOptions {
  [option: string]: unknown;
}

export interface AptBackend {
  readonly name: string;
  /** Cheap check that the backend can run here; never throws. */
  isAvailable(): Promise<boolean>;
  /** Like isAvailable, with the reason and (for GPUs) whether the device is software. */
  probe(): Promise<BackendProbe>;
  /** Loads the tfjs backend, registers custom kernels, activates it. Throws an AptError saying what is missing. */
  init(options?: BackendInitOptions): Promise<void>;
  /** What it runs on. Valid after `init`. */
  info(): BackendInfo;
  /** Releases the device (a Dawn GPU keeps a Node process alive). Optional. */
  dispose?(): Promise<void>;
}

/** Order in which `backend: "auto"` tries backends. */
export const AUTO_ORDER: readonly BackendName[] = ["cuda", "webgpu", "cpu"];

export interface BackendChoice {
  backend: AptBackend;
  /** One line per backend considered, ending with the one picked. */
  reason: string;
}

export type BackendLoader = (name: string) => Promise<AptBackend | undefined>;

/** Package that provides a backend name: "cpu" → "@apt/backend-cpu". */
export function backendPackageName(name: string): string {
  return name.startsWith("@") || name.includes("/") ? name : `@apt/backend-${name}`;
}

/**
 * Loads `@apt/backend-<name>` as the user's project sees it (resolved from
 * `fromDir`, then from @apt/core itself), or undefined when it is not installed.
 */
export function packageBackendLoader(fromDir: string = process.cwd()): BackendLoader {
  return async (name) => {
    const pkg = backendPackageName(name);
    let mod: { backend?: AptBackend } | undefined;
    try {
      const resolved = createRequire(join(fromDir, "noop.js")).resolve(pkg);
      mod = (await import(pathToFileURL(resolved).href)) as { backend?: AptBackend };
    } catch (e) {
      if (!isModuleNotFound(e)) throw e;
      try {
        mod = (await import(pkg)) as { backend?: AptBackend };
      } catch (e2) {
        if (isModuleNotFound(e2)) return undefined;
        throw e2;
      }
    }
    if (!mod.backend) {
      throw new AptError("BAD_INPUT", `${pkg} does not export a \`backend\` (an AptBackend); is it an @apt backend package?`);
    }
    return mod.backend;
  };
}

function isModuleNotFound(e: unknown): boolean {
  const code = (e as { code?: string } | null)?.code;
  return code === "MODULE_NOT_FOUND" || code === "ERR_MODULE_NOT_FOUND" || code === "ERR_PACKAGE_PATH_NOT_EXPORTED";
}

/**
 * Chooses a backend. A name (or a backend object) is taken as asked and fails
 * with the backend's own reason when it cannot run. "auto" tries cuda, then
 * webgpu with a real (not software) adapter, then cpu, and says why it picked
 * what it picked.
 */
export async function chooseBackend(
  request: "auto" | string | AptBackend,
  load: BackendLoader = packageBackendLoader(),
): Promise<BackendChoice> {
  if (typeof request === "object") {
    const probe = await request.probe();
    if (!probe.available) {
      throw new AptError("BACKEND_UNAVAILABLE", `backend "${request.name}" is not available: ${probe.reason}`);
    }
    return { backend: request, reason: `${request.name}: asked for by name (${probe.reason})` };
  }
  if (request !== "auto") {
    const backend = await load(request);
    if (!backend) {
      throw new AptError(
        "BACKEND_UNAVAILABLE",
        `backend "${request}" is not installed: add it with \`pnpm add ${backendPackageName(request)}\` ` +
          `(known backends: ${AUTO_ORDER.join(", ")}, or "auto").`,
      );
    }
    const probe = await backend.probe();
    if (!probe.available) {
      throw new AptError("BACKEND_UNAVAILABLE", `backend "${request}" is not available: ${probe.reason}`);
    }
    return { backend, reason: `${request}: asked for by name (${probe.reason})` };
  }
  const lines: string[] = [];
  for (const name of AUTO_ORDER) {
    const backend = await load(name);
    if (!backend) {
      lines.push(`${name}: skipped, ${backendPackageName(name)} is not installed`);
      continue;
    }
    const probe = await backend.probe();
    if (!probe.available) {
      lines.push(`${name}: skipped, ${probe.reason}`);
      continue;
    }
    if (probe.software && name !== AUTO_ORDER[AUTO_ORDER.length - 1]) {
      lines.push(`${name}: skipped, its adapter is software (${probe.reason}); slower than the cpu backend`);
      continue;
    }
    lines.push(`${name}: picked (${probe.reason})`);
    return { backend, reason: lines.join("\n") };
  }
  throw new AptError("BACKEND_UNAVAILABLE", `no backend is available:\n${lines.join("\n")}\nInstall one: \`pnpm add @apt/backend-cpu\`.`);
}
