/**
 * The surface both tokenizers share, shaped after what transformers/diffusers
 * users call: `tokenizer(prompt, padding="max_length", truncation=True,
 * max_length=tokenizer.model_max_length)` and friends.
 */

export interface EncodeOptions {
  /**
   * "max_length" (default, as Stable Diffusion pipelines call it) pads every
   * sequence with the pad id up to `maxLength`; false leaves it unpadded.
   */
  padding?: "max_length" | false;
  /**
   * Default true: cut the sequence to `maxLength`. With special tokens added,
   * the words are cut so that bos stays first and eos stays last.
   */
  truncation?: boolean;
  /** Default: the tokenizer's `modelMaxLength`. */
  maxLength?: number;
  /** Default true: wrap the sequence in bos … eos. */
  addSpecialTokens?: boolean;
}

export interface DecodeOptions {
  /** Drop bos/eos/pad/unk ids (default false, as in transformers). */
  skipSpecialTokens?: boolean;
}

/** A batch, row-major, ready to become an int32 tensor of `shape`. */
export interface TokenizerBatch {
  inputIds: Int32Array;
  shape: [batch: number, length: number];
  /** 1 where a real token (bos/eos included) sits, 0 on padding. */
  attentionMask: Int32Array;
}

export type TokenizerClass = "CLIPTokenizer" | "WordLevelTokenizer";

export interface Tokenizer {
  /** The class name written to tokenizer_config.json. */
  readonly tokenizerClass: TokenizerClass;
  readonly modelMaxLength: number;
  /** Number of embedding rows the ids need: highest id + 1, added tokens included. */
  readonly vocabSize: number;
  readonly bosTokenId: number;
  readonly eosTokenId: number;
  readonly padTokenId: number;
  readonly unkTokenId: number | undefined;
  /** Text → tokens (no special tokens added). */
  tokenize(text: string): string[];
  encode(text: string, options?: EncodeOptions): number[];
  /** Batch encoding; rows are padded to a common width (see implementation). */
  call(texts: string | readonly string[], options?: EncodeOptions): TokenizerBatch;
  decode(ids: ArrayLike<number>, options?: DecodeOptions): string;
  /** Id of one token, or undefined when it is not in the vocabulary. */
  tokenToId(token: string): number | undefined;
  idToToken(id: number): string | undefined;
  /** token → id for every token, added ones included (transformers' get_vocab()). */
  getVocab(): Record<string, number>;
  /**
   * Appends tokens to the vocabulary (tokens already present keep their id);
   * they are matched whole in text before the model's own splitting, the way
   * textual-inversion placeholders are. Returns their ids, in order.
   */
  addTokens(tokens: readonly string[]): number[];
  /** Writes a folder that `fromPretrained` / `loadTokenizer` read back. */
  savePretrained(dir: string): Promise<void>;
}
