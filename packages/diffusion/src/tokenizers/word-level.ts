/**
 * A word-level tokenizer for small text encoders (ShapeWorld's): each word is
 * one vocabulary entry, words are split on whitespace and every punctuation or
 * symbol character stands alone. Unknown words map to the unk token.
 */
import { join } from "node:path";
import { BaseTokenizer } from "./base.js";
import { readSettings, readVocab, resolveTokenizerDir } from "./files.js";

export interface WordLevelTokenizerOptions {
  /** word → id, as in vocab.json. */
  vocab: Record<string, number>;
  /** Default "<bos>". */
  bosToken?: string;
  /** Default "<eos>". */
  eosToken?: string;
  /** Default "<pad>". */
  padToken?: string;
  /** Default none: an unknown word is then an error. */
  unkToken?: string;
  /** Default 77, as for CLIP. */
  modelMaxLength?: number;
  /** Lower-case the text before lookup (default true). */
  lowercase?: boolean;
  /** Tokens matched whole, with their ids (tokenizer_config.json's added_tokens_decoder). */
  addedTokens?: Record<string, number>;
}

/** A single punctuation/symbol character, or a run of anything else that is not whitespace. */
const WORD_PATTERN = /[\p{P}\p{S}]|[^\s\p{P}\p{S}]+/gu;

export class WordLevelTokenizer extends BaseTokenizer {
  readonly lowercase: boolean;

  constructor(options: WordLevelTokenizerOptions) {
    super({
      tokenizerClass: "WordLevelTokenizer",
      vocab: options.vocab,
      specials: {
        bosToken: options.bosToken ?? "<bos>",
        eosToken: options.eosToken ?? "<eos>",
        padToken: options.padToken ?? "<pad>",
        unkToken: options.unkToken,
      },
      modelMaxLength: options.modelMaxLength ?? 77,
      addedTokens: options.addedTokens,
    });
    this.lowercase = options.lowercase ?? true;
  }

  /** Reads vocab.json and the optional tokenizer_config.json / special_tokens_map.json / added_tokens.json. */
  static async fromPretrained(dir: string): Promise<WordLevelTokenizer> {
    const root = await resolveTokenizerDir(dir);
    const vocab = await readVocab(join(root, "vocab.json"));
    const s = await readSettings(root);
    const options: WordLevelTokenizerOptions = { vocab, addedTokens: s.addedTokens };
    if (s.bosToken !== undefined) options.bosToken = s.bosToken;
    if (s.eosToken !== undefined) options.eosToken = s.eosToken;
    if (s.padToken !== undefined) options.padToken = s.padToken;
    if (s.unkToken !== undefined) options.unkToken = s.unkToken;
    if (s.modelMaxLength !== undefined) options.modelMaxLength = s.modelMaxLength;
    if (s.lowercase !== undefined) options.lowercase = s.lowercase;
    return new WordLevelTokenizer(options);
  }

  protected tokenizeText(text: string): string[] {
    const source = this.lowercase ? text.toLowerCase() : text;
    return Array.from(source.matchAll(WORD_PATTERN), ([word]) => word);
  }

  protected detokenize(tokens: readonly string[]): string {
    return tokens.join(" ");
  }

  protected extraFiles(): Record<string, string> {
    return {};
  }

  protected extraConfig(): Record<string, unknown> {
    return { lowercase: this.lowercase };
  }
}
