/**
 * Command-line overrides of config values: `--set train.steps=10`,
 * `--set 'methods[1][1].rank=8'`, `--set task.prompt="a photo of sks dog"`.
 * The value is parsed as JSON when it parses (numbers, booleans, arrays,
 * objects, quoted strings), else taken as a plain string. Overrides are applied
 * to the loaded config before it is validated, so they are checked like the file.
 */
import { AptError } from "@apt/core";
import type { PathSegment } from "./problems.js";

export interface Override {
  text: string;
  path: PathSegment[];
  value: unknown;
}

const SEGMENT = /^([^.[\]]+)|^\.([^.[\]]+)|^\[(\d+)\]|^\["((?:[^"\\]|\\.)*)"\]/;

export function parsePath(text: string): PathSegment[] | undefined {
  const path: PathSegment[] = [];
  let rest = text;
  while (rest.length) {
    const m = SEGMENT.exec(rest);
    if (!m || (m[1] !== undefined && path.length > 0)) return undefined;
    if (m[1] !== undefined) path.push(m[1]);
    else if (m[2] !== undefined) path.push(m[2]);
    else if (m[3] !== undefined) path.push(Number(m[3]));
    else path.push(JSON.parse(`"${m[4]}"`) as string);
    rest = rest.slice(m[0].length);
  }
  return path.length ? path : undefined;
}

export function parseValue(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

export function parseOverride(text: string): Override {
  const eq = text.indexOf("=");
  const path = eq > 0 ? parsePath(text.slice(0, eq).trim()) : undefined;
  if (!path) {
    throw new AptError("BAD_INPUT", `--set ${text}: expected <path>=<value>, e.g. --set train.steps=10 or --set 'methods[0][1].rank=8'`, { exitCode: 2 });
  }
  return { text, path, value: parseValue(text.slice(eq + 1)) };
}

function isContainer(v: unknown): v is Record<string | number, unknown> {
  return typeof v === "object" && v !== null;
}

/** Returns a copy of `root` with `value` at `path` (copies only the containers along the path; plugin objects stay shared). */
export function setAt(root: unknown, path: readonly PathSegment[], value: unknown): unknown {
  if (path.length === 0) return value;
  const [head, ...rest] = path as [PathSegment, ...PathSegment[]];
  const base: Record<string | number, unknown> | unknown[] = Array.isArray(root)
    ? [...(root as unknown[])]
    : isContainer(root)
      ? { ...root }
      : typeof head === "number"
        ? []
        : {};
  (base as Record<string | number, unknown>)[head] = setAt((base as Record<string | number, unknown>)[head], rest, value);
  return base;
}

export function applyOverrides(config: unknown, overrides: readonly Override[]): unknown {
  return overrides.reduce((c, o) => setAt(c, o.path, o.value), config);
}
