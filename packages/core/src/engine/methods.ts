/** Checks on the set of methods of one run, before any work is done. */
import { AptError } from "../errors.js";
import { EXCLUSIVE_HOOKS, METHOD_API_VERSION, type Method } from "../method.js";
import type { ResolvedMethod } from "./types.js";

/** Problems with a method set (empty when fine): API versions, duplicate names, unmet requirements. */
export function checkMethodSet(methods: ResolvedMethod[]): string[] {
  const problems: string[] = [];
  const seen = new Set<string>();
  for (const m of methods) {
    const version = (m.plugin as { apiVersion?: unknown }).apiVersion;
    if (version !== METHOD_API_VERSION) {
      problems.push(`method "${m.name}" targets method API version ${JSON.stringify(version)}; this @apt/core supports version ${METHOD_API_VERSION}: update the plugin or @apt/core`);
    }
    if (seen.has(m.name)) {
      problems.push(`method "${m.name}" appears twice; to run two instances give them unique names: ["${m.plugin.name}", {...}, "${m.plugin.name}-2"]`);
    }
    seen.add(m.name);
  }
  for (const m of methods) {
    for (const need of m.plugin.requires ?? []) {
      if (!methods.some((o) => o !== m && (o.plugin.provides ?? []).includes(need))) {
        problems.push(`method "${m.name}" needs a plugin that provides "${need}" in the same run${need === "adapter" ? ' (e.g. add "lora" to methods)' : ""}`);
      }
    }
  }
  return problems;
}

/** Fails when two methods implement the same exclusive hook (e.g. both sample timesteps). */
export function checkExclusiveHooks(created: { name: string; method: Method }[]): void {
  const problems: string[] = [];
  for (const hook of EXCLUSIVE_HOOKS) {
    const owners = created.filter((c) => typeof c.method[hook] === "function").map((c) => `"${c.name}"`);
    if (owners.length > 1) problems.push(`methods ${owners.join(" and ")} both implement "${hook}"; only one method per run may ${hook === "timesteps" ? "choose the timesteps" : `implement ${hook}`}: remove one of them`);
  }
  if (problems.length) throw new AptError("BAD_INPUT", problems.join("\n"));
}
