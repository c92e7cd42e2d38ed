export type { DecodeOptions, EncodeOptions, Tokenizer, TokenizerBatch, TokenizerClass } from "./types.js";
export { BaseTokenizer } from "./base.js";
export { CLIPTokenizer, type CLIPTokenizerOptions } from "./clip.js";
export { WordLevelTokenizer, type WordLevelTokenizerOptions } from "./word-level.js";
export { loadTokenizer, SUPPORTED_TOKENIZER_CLASSES } from "./load.js";
export { BYTE_TO_UNICODE, UNICODE_TO_BYTE, toByteLevel } from "./bytes.js";
