export { cat, cat as default, catOptions, type CatOptions, type CatOptionsInput } from "./cat.js";
export { stripTrigger } from "./caption.js";
export { minSnrWeights, MIN_SNR_PREDICTION_TYPES } from "./snr.js";
export { stopGradient } from "./stop-gradient.js";
