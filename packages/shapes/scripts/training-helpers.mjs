// Helpers the training scripts (train-evaluator.mjs, train-vae.mjs, train-text-encoder.mjs, pretrain.mjs) share.
import { tf } from "@apt/core";

/** A numeric flag of parseArgs' `values`, or exit 2 naming the flag. */
export function numberFlag(values, name, { integer = false, min = -Infinity } = {}) {
  const v = Number(values[name]);
  if (!Number.isFinite(v) || (integer && !Number.isInteger(v)) || v < min) {
    console.error(`--${name} must be ${integer ? "an integer" : "a number"} ≥ ${min}, got ${values[name]}`);
    process.exit(2);
  }
  return v;
}

/** Linear warm-up to `peak` over `warmup` steps, then cosine decay to `min` at `steps`. */
export function warmupCosine({ peak, min, warmup, steps }) {
  return (step) => {
    if (step < warmup) return (peak * (step + 1)) / warmup;
    const t = Math.min(1, (step - warmup) / Math.max(1, steps - warmup));
    return min + 0.5 * (peak - min) * (1 + Math.cos(Math.PI * t));
  };
}

/** Seconds as 0h00m00s. */
export const hms = (s) => `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m${String(Math.floor(s % 60)).padStart(2, "0")}s`;

/**
 * A training checkpoint's tensors: each weight as param/<name> and its AdamW
 * moments as adam_m/<name>, adam_v/<name> (metadata — step, adam_step — is the caller's).
 */
export function trainingStateTensors(params, optimizer) {
  const tensors = {};
  for (const [name, v] of Object.entries(params)) tensors[`param/${name}`] = v;
  for (const [name, { m, v }] of Object.entries(optimizer.getState().moments)) {
    tensors[`adam_m/${name}`] = m;
    tensors[`adam_v/${name}`] = v;
  }
  return tensors;
}

/** Restores what trainingStateTensors wrote (from an open SafetensorsReader) into the weights and the optimizer. */
export async function loadTrainingState(reader, params, optimizer) {
  const moments = {};
  const loaded = [];
  for (const name of Object.keys(params)) {
    const p = await reader.readTensor(`param/${name}`);
    params[name].assign(p);
    const m = await reader.readTensor(`adam_m/${name}`);
    const v = await reader.readTensor(`adam_v/${name}`);
    moments[name] = { m, v };
    loaded.push(p, m, v);
  }
  optimizer.setState({ step: Number(reader.metadata.adam_step), moments });
  tf.dispose(loaded);
}
