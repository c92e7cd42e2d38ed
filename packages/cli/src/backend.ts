/** Picking and starting a backend: from the user's project first (config folder or cwd), then from the CLI's own install. */
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { chooseBackend, packageBackendLoader, type AptBackend, type BackendLoader } from "@apt/core";

export function backendLoader(fromDir: string): BackendLoader {
  const project = packageBackendLoader(fromDir);
  const own = packageBackendLoader(dirname(fileURLToPath(import.meta.url)));
  return async (name) => (await project(name)) ?? (await own(name));
}

export interface StartedBackend {
  backend: AptBackend;
  /** The reason lines of the choice, then the device. */
  report: string;
}

/** chooseBackend + init; the report says why this backend and what it runs on. */
export async function startBackend(request: string, fromDir: string): Promise<StartedBackend> {
  const choice = await chooseBackend(request, backendLoader(fromDir));
  await choice.backend.init();
  const info = choice.backend.info();
  return { backend: choice.backend, report: `${choice.reason}\nbackend: ${info.name} (${info.device}${info.software ? ", software" : ""})` };
}
