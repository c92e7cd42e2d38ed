import { AptError } from "@apt/core";

/** Prediction types min-SNR-γ weighting is defined for. */
export const MIN_SNR_PREDICTION_TYPES = ["epsilon", "v_prediction"] as const;

/**
 * Min-SNR-γ loss weights (Hang et al. 2023) as diffusers' training scripts
 * compute them: min(SNR(t), γ)/SNR(t) for ε-prediction and
 * min(SNR(t), γ)/(SNR(t) + 1) for v-prediction. For ε-prediction the weight is
 * exactly 1 where SNR ≤ γ (also at SNR = 0, where the quotient is 0/0).
 */
export function minSnrWeights(snr: ArrayLike<number>, gamma: number, predictionType: string): Float32Array {
  const out = new Float32Array(snr.length);
  for (let i = 0; i < snr.length; i++) {
    const s = snr[i]!;
    if (predictionType === "epsilon") out[i] = s <= gamma ? 1 : gamma / s;
    else if (predictionType === "v_prediction") out[i] = Math.min(s, gamma) / (s + 1);
    else throw new AptError("BAD_INPUT", `min-SNR weighting is defined for ${MIN_SNR_PREDICTION_TYPES.join(" and ")} prediction, not ${JSON.stringify(predictionType)}`);
  }
  return out;
}
