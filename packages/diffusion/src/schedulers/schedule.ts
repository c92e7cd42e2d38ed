/**
 * The noise schedule (β, α, ᾱ) and the inference timesteps, as diffusers
 * computes them.
 *
 * Precision: diffusers builds β in float32 torch; here everything is float64,
 * the exact values that float32 rounds. Measured (test/fixtures/schedulers/
 * reference.json, `float32_vs_float64`), diffusers' float32 sits from float64 by
 * at most 2.4e-7 relative on β and 1.3e-5 on ᾱ (a running product of 1000
 * rounded factors); the zero-SNR rescale, which recovers β_t as 1 − ᾱ_t/ᾱ_{t−1},
 * loses up to 5e-4 relative on the smallest β in float32 (1e-5 on ᾱ).
 */
import type { SchedulerConfig, TimestepSpacing } from "./config.js";
import { AptError } from "@apt/core";

/** torch.linspace: the first half counts up from start, the second down from end, so both ends are exact. */
function linspace(start: number, end: number, steps: number): Float64Array {
  const out = new Float64Array(steps);
  if (steps === 1) {
    out[0] = start;
    return out;
  }
  const step = (end - start) / (steps - 1);
  const half = Math.floor(steps / 2);
  for (let i = 0; i < steps; i++) out[i] = i < half ? start + i * step : end - (steps - 1 - i) * step;
  return out;
}

/** Glide's cosine schedule (Nichol & Dhariwal 2021), β capped at 0.999 as diffusers' betas_for_alpha_bar. */
function squaredCosCapV2(T: number): Float64Array {
  const alphaBar = (t: number) => Math.cos(((t + 0.008) / 1.008) * Math.PI / 2) ** 2;
  const out = new Float64Array(T);
  for (let i = 0; i < T; i++) out[i] = Math.min(1 - alphaBar((i + 1) / T) / alphaBar(i / T), 0.999);
  return out;
}

/**
 * Lin et al. 2023, Algorithm 1: shift and scale sqrt(ᾱ) so that the last value
 * is exactly 0 (zero terminal SNR: x_T is pure noise, as at sampling time) and
 * the first is unchanged, then turn ᾱ back into β. The last β becomes exactly 1.
 */
export function rescaleZeroTerminalSnr(betas: Float64Array): Float64Array {
  const T = betas.length;
  const sqrtAbar = new Float64Array(T);
  let prod = 1;
  for (let i = 0; i < T; i++) {
    prod *= 1 - betas[i]!;
    sqrtAbar[i] = Math.sqrt(prod);
  }
  const first = sqrtAbar[0]!;
  const last = sqrtAbar[T - 1]!;
  const scale = first / (first - last);
  const abar = sqrtAbar.map((s) => ((s - last) * scale) ** 2);
  const out = new Float64Array(T);
  out[0] = 1 - abar[0]!;
  for (let i = 1; i < T; i++) out[i] = 1 - abar[i]! / abar[i - 1]!;
  return out;
}

/** β for every training timestep, per the config (trained_betas win, then the schedule, then the optional rescale). */
export function makeBetas(config: SchedulerConfig): Float64Array {
  const T = config.num_train_timesteps;
  let betas: Float64Array;
  if (config.trained_betas !== null) betas = Float64Array.from(config.trained_betas);
  else if (config.beta_schedule === "linear") betas = linspace(config.beta_start, config.beta_end, T);
  else if (config.beta_schedule === "scaled_linear") {
    // Latent diffusion's schedule: linear in sqrt(β).
    betas = linspace(Math.sqrt(config.beta_start), Math.sqrt(config.beta_end), T).map((b) => b * b);
  } else betas = squaredCosCapV2(T);
  return config.rescale_betas_zero_snr ? rescaleZeroTerminalSnr(betas) : betas;
}

export function cumprod(x: Float64Array): Float64Array {
  const out = new Float64Array(x.length);
  let p = 1;
  for (let i = 0; i < x.length; i++) out[i] = p *= x[i]!;
  return out;
}

/** numpy's round: halves go to the even neighbour (np.linspace(0, 999, 25) has 166.5 → 166). */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * np.arange(start, stop, step) for floats: numpy fills it as start + i·delta,
 * with delta = (start + step) − start, and sizes it ceil((stop − start) / step).
 */
function npArange(start: number, stop: number, step: number): Float64Array {
  const length = Math.max(0, Math.ceil((stop - start) / step));
  const out = new Float64Array(length);
  const delta = start + step - start;
  for (let i = 0; i < length; i++) out[i] = i === 0 ? start : start + i * delta;
  return out;
}

/** np.linspace(start, stop, num) with the endpoint: start + i·step, the last value set to stop. */
function npLinspace(start: number, stop: number, num: number): Float64Array {
  const out = new Float64Array(num);
  if (num === 1) {
    out[0] = start;
    return out;
  }
  const step = (stop - start) / (num - 1);
  for (let i = 0; i < num; i++) out[i] = i * step + start;
  out[num - 1] = stop;
  return out;
}

/**
 * The inference timesteps of diffusers' `set_timesteps`, in descending order
 * (Table 2 of Lin et al. 2023 names the spacings):
 * - leading:  arange(0, n) · (T // n), reversed, + steps_offset;
 * - trailing: round(arange(T, 0, −T/n)) − 1 (always includes T − 1);
 * - linspace: round(linspace(0, T − 1, n)), reversed.
 */
export function inferenceTimesteps(spacing: TimestepSpacing, T: number, n: number, stepsOffset: number): Int32Array {
  if (!Number.isInteger(n) || n < 1) {
    throw new AptError("BAD_INPUT", `numInferenceSteps must be a positive integer; got ${String(n)}`);
  }
  if (n > T) {
    throw new AptError(
      "BAD_INPUT",
      `numInferenceSteps (${n}) cannot be larger than num_train_timesteps (${T}): the model was trained on ${T} timesteps`,
    );
  }
  if (spacing === "leading") {
    const ratio = Math.floor(T / n);
    return Int32Array.from({ length: n }, (_, i) => (n - 1 - i) * ratio + stepsOffset);
  }
  if (spacing === "trailing") {
    return Int32Array.from(npArange(T, 0, -T / n), (v) => roundHalfEven(v) - 1);
  }
  return Int32Array.from(npLinspace(0, T - 1, n).reverse(), roundHalfEven);
}
