/** Where commands write and from which folder they run (tests pass their own). */
import type { OutputStream } from "../progress.js";

export interface Io {
  stdout: OutputStream;
  stderr: OutputStream;
  cwd: string;
}

export function processIo(): Io {
  return { stdout: process.stdout, stderr: process.stderr, cwd: process.cwd() };
}
