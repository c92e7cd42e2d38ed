/**
 * ShapeWorld's word-level vocabulary: the four specials, every word the
 * grammar can produce, then the reserved identifier tokens. Ids are stable:
 * new words may only ever be appended.
 */
import { WordLevelTokenizer } from "@apt/diffusion";
import { GRAMMAR_WORDS, IDENTIFIERS } from "./grammar.js";

export const SPECIAL_TOKENS = { pad: "<pad>", bos: "<bos>", eos: "<eos>", unk: "<unk>" } as const;

/** The text encoder's context: the longest grammar prompt plus bos/eos is 16 tokens. */
export const MODEL_MAX_LENGTH = 16;

/** Every word in id order. */
export const VOCABULARY_WORDS: readonly string[] = [
  SPECIAL_TOKENS.pad,
  SPECIAL_TOKENS.bos,
  SPECIAL_TOKENS.eos,
  SPECIAL_TOKENS.unk,
  ...GRAMMAR_WORDS,
  ...IDENTIFIERS,
];

/** word → id, in a stable order (specials 0–3, grammar words, then identifiers). */
export function vocabulary(): Record<string, number> {
  return Object.fromEntries(VOCABULARY_WORDS.map((word, id) => [word, id]));
}

/** ShapeWorld's tokenizer: word-level, lower-cased, unknown words → <unk>, 16 tokens. */
export function createTokenizer(): WordLevelTokenizer {
  return new WordLevelTokenizer({
    vocab: vocabulary(),
    bosToken: SPECIAL_TOKENS.bos,
    eosToken: SPECIAL_TOKENS.eos,
    padToken: SPECIAL_TOKENS.pad,
    unkToken: SPECIAL_TOKENS.unk,
    modelMaxLength: MODEL_MAX_LENGTH,
    lowercase: true,
  });
}

/** Writes the diffusers `tokenizer/` folder (vocab.json, tokenizer_config.json, special_tokens_map.json) into `dir`. */
export async function writeTokenizerFolder(dir: string): Promise<void> {
  await createTokenizer().savePretrained(dir);
}
