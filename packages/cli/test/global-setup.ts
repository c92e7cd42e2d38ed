// The CLI tests spawn `node dist/bin.js`: build the package (and, through
// project references, @apt/core and @apt/diffusion) first; incremental, so
// this costs little when dist is current.
import { execFileSync } from "node:child_process";
import { join } from "node:path";

export default function setup(): void {
  const dir = join(import.meta.dirname, "..");
  execFileSync(join(dir, "..", "..", "node_modules", ".bin", "tsc"), ["-b"], { cwd: dir, stdio: "inherit" });
}
