import type { LrSchedule } from "./types.js";

/** Learning rate at `step` (1-based): linear warm-up, then constant, cosine or linear decay to 0 at `total`. */
export function learningRate(base: number, schedule: LrSchedule, step: number, total: number, warmup: number): number {
  if (warmup > 0 && step <= warmup) return (base * step) / warmup;
  if (schedule === "constant") return base;
  const progress = Math.min(1, Math.max(0, (step - warmup) / Math.max(1, total - warmup)));
  if (schedule === "linear") return base * (1 - progress);
  return base * 0.5 * (1 + Math.cos(Math.PI * progress));
}
