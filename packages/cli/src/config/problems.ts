/**
 * Gathering config problems. Every check adds what it finds here instead of
 * throwing, so that one run reports everything that is wrong (as
 * semantic-release does with its plugin errors), then `throwIfAny` raises one
 * AptError (exit code 2) whose message lists each problem with the file, the
 * JSON path inside it and the fix.
 */
import { relative, isAbsolute } from "node:path";
import { AptError } from "@apt/core";

export type PathSegment = string | number;

export interface Problem {
  /** The config file (or "--set" / "command line" for values given there). */
  file: string;
  /** Path inside the config, [] for the file as a whole. */
  path: PathSegment[];
  message: string;
  fix?: string;
}

const IDENT = /^[A-Za-z_$][\w$]*$/;

/** `["methods", 2, 1, "rank"]` → `methods[2][1].rank`. */
export function formatPath(path: readonly PathSegment[]): string {
  let out = "";
  for (const seg of path) {
    if (typeof seg === "number") out += `[${seg}]`;
    else if (IDENT.test(seg)) out += out ? `.${seg}` : seg;
    else out += `[${JSON.stringify(seg)}]`;
  }
  return out;
}

/** Shows a file relative to the working folder when it is inside it. */
export function displayFile(file: string, cwd = process.cwd()): string {
  if (!isAbsolute(file)) return file;
  const rel = relative(cwd, file);
  return rel && !rel.startsWith("..") && !isAbsolute(rel) ? rel : file;
}

export class Problems {
  readonly list: Problem[] = [];
  /** Paths set on the command line (`--set a.b=1`): problems under them name "--set" as their source. */
  private readonly overridden: PathSegment[][] = [];

  constructor(
    readonly file: string,
    readonly cwd = process.cwd(),
  ) {}

  markOverridden(path: PathSegment[]): void {
    this.overridden.push(path);
  }

  add(path: PathSegment[], message: string, fix?: string): void {
    const fromSet = this.overridden.some((o) => o.length <= path.length && o.every((seg, i) => seg === path[i]));
    this.list.push({ file: fromSet ? "--set" : this.file, path, message, ...(fix ? { fix } : {}) });
  }

  get size(): number {
    return this.list.length;
  }

  format(): string {
    const n = this.list.length;
    const head = `${displayFile(this.file, this.cwd)}: ${n} problem${n === 1 ? "" : "s"} in the config; nothing was run.`;
    const lines = this.list.map((p) => {
      const where = p.file === "--set" ? "--set" : displayFile(p.file, this.cwd);
      const path = formatPath(p.path);
      let line = `  ✖ ${where}${path ? ` › ${path}` : ""}: ${p.message}`;
      if (p.fix) line += `\n      fix: ${p.fix}`;
      return line;
    });
    return [head, ...lines].join("\n");
  }

  throwIfAny(): void {
    if (this.list.length > 0) throw new AptError("BAD_INPUT", this.format(), { exitCode: 2 });
  }
}
