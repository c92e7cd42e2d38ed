import "./register.js";
export { Module, type ForwardContext, type ParamLayout, type ParamSpec } from "./nn/module.js";
export { Linear, Conv2d, GroupNorm, LayerNorm, Embedding, Container, AdaptableModule } from "./nn/layers.js";
export { silu, gelu, quickGelu, upsampleNearest2x } from "./nn/functional.js";
export { DiffusersModel, ConfigReader, readJson, writeFileAtomic } from "./nn/model.js";
export { HookRegistry } from "./nn/hooks.js";
export { Attention, scaledDotProductAttention, defaultAttentionProcessor, headsToBatch, batchToHeads } from "./models/attention.js";
export { UNet2DConditionModel, parseUNetConfig, timestepEmbedding, type UNet2DConditionConfig, type UNetForwardOptions } from "./models/unet_2d_condition.js";
export { CLIPTextModel, parseCLIPTextConfig, type CLIPTextConfig, type CLIPForwardOptions } from "./models/clip_text_model.js";
