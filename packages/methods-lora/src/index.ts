/**
 * @apt/method-lora: the `lora` method plugin (default export) and the LoRA
 * file format helpers (diffusers/PEFT and kohya naming).
 */
import "./register.js";
import { lora } from "./plugin.js";

export { lora, createLora, loraTargets, trainingMetadata } from "./plugin.js";
export { loraOptionsSchema, DEFAULT_TARGET_MODULES, CLIP_ATTENTION_MODULES, type LoraOptions, type LoraOptionsInput } from "./options.js";
export { LoraAdapter, convGeometry, initLoraA, loraAShape, type ConvGeometry, type LoraAdapterSpec, type LoraInit } from "./adapter.js";
export {
  loadLoraWeights,
  saveLoraWeights,
  loraStateDict,
  loraKeys,
  torchLoraShapes,
  kohyaModuleName,
  exactTarget,
  DIFFUSERS_LORA_FILE,
  LORA_ADAPTER_METADATA_KEY,
  type LoadLoraOptions,
  type LoraComponent,
  type LoraFormat,
  type LoraLayers,
  type LoraTargetModels,
  type SaveLoraOptions,
} from "./format.js";

export default lora;
