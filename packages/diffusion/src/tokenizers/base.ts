/**
 * What CLIPTokenizer and WordLevelTokenizer share: the token ↔ id tables,
 * special and added tokens (matched whole before the model's own splitting,
 * as transformers does), the bos/eos/padding/truncation framing of `encode`
 * and `call`, `decode`, and `savePretrained`. A subclass only says how a
 * stretch of plain text becomes tokens and how a run of tokens becomes text.
 */
import { AptError } from "@apt/core";
import { writeFilesAtomically } from "./files.js";
import type { DecodeOptions, EncodeOptions, Tokenizer, TokenizerBatch, TokenizerClass } from "./types.js";

export interface SpecialTokenNames {
  bosToken: string;
  eosToken: string;
  padToken: string;
  unkToken: string | undefined;
}

export interface BaseTokenizerInit {
  tokenizerClass: TokenizerClass;
  vocab: Record<string, number>;
  specials: SpecialTokenNames;
  modelMaxLength: number;
  /** Tokens matched whole, with their ids (transformers' added_tokens_decoder). */
  addedTokens: Record<string, number> | undefined;
}

/** One entry of tokenizer_config.json's added_tokens_decoder, as transformers writes it. */
interface AddedTokenJson {
  content: string;
  lstrip: boolean;
  normalized: boolean;
  rstrip: boolean;
  single_word: boolean;
  special: boolean;
}

function checkId(owner: string, token: string, id: unknown): number {
  if (typeof id !== "number" || !Number.isSafeInteger(id) || id < 0) {
    throw new AptError("BAD_INPUT", `${owner}: id of token ${JSON.stringify(token)} is ${JSON.stringify(id)}, expected a non-negative integer`);
  }
  return id;
}

function excerpt(text: string): string {
  return JSON.stringify(text.length > 80 ? `${text.slice(0, 77)}...` : text);
}

export abstract class BaseTokenizer implements Tokenizer {
  readonly tokenizerClass: TokenizerClass;
  readonly modelMaxLength: number;
  readonly bosToken: string;
  readonly eosToken: string;
  readonly padToken: string;
  readonly unkToken: string | undefined;
  readonly bosTokenId: number;
  readonly eosTokenId: number;
  readonly padTokenId: number;
  readonly unkTokenId: number | undefined;

  private readonly encoder = new Map<string, number>();
  private readonly decoder = new Map<number, string>();
  /** Tokens that are not in the model's vocab.json (written to added_tokens_decoder only). */
  private readonly appended = new Set<string>();
  /** Non-special tokens matched whole, for added_tokens_decoder. */
  private readonly added = new Map<string, number>();
  /** Special and added tokens: split out of the text before the model's own tokenization. */
  private readonly wholeTokens = new Set<string>();
  /** wholeTokens longest first, so that a longer token wins over its prefix; rebuilt lazily. */
  private wholeByLength: string[] | undefined;
  private readonly specialIds: ReadonlySet<number>;
  private size = 0;

  protected constructor(init: BaseTokenizerInit) {
    const owner = init.tokenizerClass;
    this.tokenizerClass = owner;
    if (!Number.isSafeInteger(init.modelMaxLength) || init.modelMaxLength < 1) {
      throw new AptError("BAD_INPUT", `${owner}: modelMaxLength must be a positive integer, got ${JSON.stringify(init.modelMaxLength)}`);
    }
    this.modelMaxLength = init.modelMaxLength;

    for (const [token, rawId] of Object.entries(init.vocab)) {
      const id = checkId(`${owner} vocab`, token, rawId);
      const other = this.decoder.get(id);
      if (other !== undefined) {
        // Two tokens on one id would make decode ambiguous; real vocabularies never do this.
        throw new AptError("BAD_INPUT", `${owner} vocab: tokens ${JSON.stringify(other)} and ${JSON.stringify(token)} share id ${id}`);
      }
      this.setToken(token, id);
    }
    for (const [token, rawId] of Object.entries(init.addedTokens ?? {})) {
      const id = checkId(`${owner} added tokens`, token, rawId);
      const known = this.encoder.get(token);
      const holder = this.decoder.get(id);
      if ((known !== undefined && known !== id) || (holder !== undefined && holder !== token)) {
        throw new AptError("BAD_INPUT", `${owner}: added token ${JSON.stringify(token)} with id ${id} conflicts with the vocabulary (${JSON.stringify(holder ?? token)} has id ${known ?? id})`);
      }
      if (known === undefined) {
        this.setToken(token, id);
        this.appended.add(token);
      }
      this.added.set(token, id);
      this.wholeTokens.add(token);
    }

    const { bosToken, eosToken, padToken, unkToken } = init.specials;
    const special = (field: string, token: string): number => {
      const id = this.encoder.get(token);
      if (id === undefined) {
        throw new AptError("BAD_INPUT", `${owner}: ${field} ${JSON.stringify(token)} is not in the vocabulary`);
      }
      this.wholeTokens.add(token);
      this.added.delete(token);
      return id;
    };
    this.bosToken = bosToken;
    this.eosToken = eosToken;
    this.padToken = padToken;
    this.unkToken = unkToken;
    this.bosTokenId = special("bos_token", bosToken);
    this.eosTokenId = special("eos_token", eosToken);
    this.padTokenId = special("pad_token", padToken);
    this.unkTokenId = unkToken === undefined ? undefined : special("unk_token", unkToken);
    const ids = [this.bosTokenId, this.eosTokenId, this.padTokenId];
    if (this.unkTokenId !== undefined) ids.push(this.unkTokenId);
    this.specialIds = new Set(ids);
  }

  private setToken(token: string, id: number): void {
    this.encoder.set(token, id);
    this.decoder.set(id, token);
    if (id >= this.size) this.size = id + 1;
  }

  /** Plain text (no special or added tokens in it) → model tokens. */
  protected abstract tokenizeText(text: string): string[];

  /** A run of model tokens (no special or added tokens) → text, trimmed. */
  protected abstract detokenize(tokens: readonly string[]): string;

  /** Files besides vocab.json and the two configs (e.g. merges.txt). */
  protected abstract extraFiles(): Record<string, string>;

  /** Fields added to tokenizer_config.json (e.g. lowercase). */
  protected abstract extraConfig(): Record<string, unknown>;

  get vocabSize(): number {
    return this.size;
  }

  tokenToId(token: string): number | undefined {
    return this.encoder.get(token);
  }

  idToToken(id: number): string | undefined {
    return this.decoder.get(id);
  }

  /** token → id for every token, added ones included (transformers' get_vocab()). */
  getVocab(): Record<string, number> {
    return Object.fromEntries(this.encoder);
  }

  addTokens(tokens: readonly string[]): number[] {
    return tokens.map((token) => {
      if (typeof token !== "string" || token === "") {
        throw new AptError("BAD_INPUT", `${this.tokenizerClass}.addTokens: tokens must be non-empty strings, got ${JSON.stringify(token)}`);
      }
      let id = this.encoder.get(token);
      if (id === undefined) {
        id = this.size;
        this.setToken(token, id);
        this.appended.add(token);
      }
      if (!this.specialIds.has(id)) this.added.set(token, id);
      this.wholeTokens.add(token);
      this.wholeByLength = undefined;
      return id;
    });
  }

  tokenize(text: string): string[] {
    if (typeof text !== "string") {
      throw new AptError("BAD_INPUT", `${this.tokenizerClass}: text must be a string, got ${typeof text}`);
    }
    const tokens: string[] = [];
    for (const piece of this.splitWhole(text)) {
      if (piece.whole) tokens.push(piece.text);
      else tokens.push(...this.tokenizeText(piece.text));
    }
    return tokens;
  }

  /** Cuts the text around special/added tokens, leftmost first, longest first at one place. */
  private splitWhole(text: string): { text: string; whole: boolean }[] {
    this.wholeByLength ??= [...this.wholeTokens].sort((a, b) => b.length - a.length);
    const present = this.wholeByLength.filter((t) => text.includes(t));
    if (present.length === 0) return [{ text, whole: false }];
    const pieces: { text: string; whole: boolean }[] = [];
    let start = 0;
    let i = 0;
    while (i < text.length) {
      const hit = present.find((t) => text.startsWith(t, i));
      if (hit === undefined) {
        i++;
        continue;
      }
      if (i > start) pieces.push({ text: text.slice(start, i), whole: false });
      pieces.push({ text: hit, whole: true });
      i += hit.length;
      start = i;
    }
    if (start < text.length) pieces.push({ text: text.slice(start), whole: false });
    return pieces;
  }

  private idOf(token: string, text: string): number {
    const id = this.encoder.get(token) ?? this.unkTokenId;
    if (id === undefined) {
      throw new AptError("BAD_INPUT", `${this.tokenizerClass}: token ${JSON.stringify(token)} (from ${excerpt(text)}) is not in the vocabulary and no unk_token is set`);
    }
    return id;
  }

  encode(text: string, options?: EncodeOptions): number[] {
    return this.encodeRow(text, options).ids;
  }

  /** ids plus how many of them are real tokens (CLIP pads with eos, so ids alone cannot tell). */
  private encodeRow(text: string, options: EncodeOptions | undefined): { ids: number[]; length: number } {
    const { padding, truncation, maxLength, addSpecialTokens } = this.resolveOptions(options);
    let body = this.tokenize(text).map((token) => this.idOf(token, text));
    if (truncation) {
      const room = addSpecialTokens ? maxLength - 2 : maxLength;
      if (body.length > room) body = body.slice(0, room);
    }
    const ids = addSpecialTokens ? [this.bosTokenId, ...body, this.eosTokenId] : body;
    const length = ids.length;
    if (padding === "max_length") while (ids.length < maxLength) ids.push(this.padTokenId);
    return { ids, length };
  }

  private resolveOptions(options: EncodeOptions | undefined): Required<EncodeOptions> {
    const padding = options?.padding ?? "max_length";
    const truncation = options?.truncation ?? true;
    const maxLength = options?.maxLength ?? this.modelMaxLength;
    const addSpecialTokens = options?.addSpecialTokens ?? true;
    if (padding !== "max_length" && padding !== false) {
      throw new AptError("BAD_INPUT", `${this.tokenizerClass}: padding must be "max_length" or false, got ${JSON.stringify(padding)}`);
    }
    if (!Number.isSafeInteger(maxLength) || maxLength < 1) {
      throw new AptError("BAD_INPUT", `${this.tokenizerClass}: maxLength must be a positive integer, got ${JSON.stringify(maxLength)}`);
    }
    if (truncation && addSpecialTokens && maxLength < 2) {
      throw new AptError("BAD_INPUT", `${this.tokenizerClass}: maxLength ${maxLength} leaves no room for bos and eos`);
    }
    return { padding, truncation, maxLength, addSpecialTokens };
  }

  /**
   * Encodes a batch. With padding "max_length" rows are `maxLength` wide; a
   * row longer than that (truncation false) widens the whole batch, and with
   * padding false rows are padded to the longest, since a tensor must be
   * rectangular. The mask marks the real tokens of each row.
   */
  call(texts: string | readonly string[], options?: EncodeOptions): TokenizerBatch {
    const list = typeof texts === "string" ? [texts] : texts;
    if (!Array.isArray(list)) {
      throw new AptError("BAD_INPUT", `${this.tokenizerClass}.call: expected a string or an array of strings`);
    }
    const { padding, maxLength } = this.resolveOptions(options);
    const rows = list.map((text) => this.encodeRow(text, options));
    let width = padding === "max_length" ? maxLength : 0;
    for (const row of rows) width = Math.max(width, row.ids.length);
    const inputIds = new Int32Array(rows.length * width).fill(this.padTokenId);
    const attentionMask = new Int32Array(rows.length * width);
    rows.forEach((row, r) => {
      inputIds.set(row.ids, r * width);
      attentionMask.fill(1, r * width, r * width + row.length);
    });
    return { inputIds, shape: [rows.length, width], attentionMask };
  }

  /**
   * ids → text. Runs of model tokens are detokenized by the subclass; special
   * and added tokens are kept verbatim, and the parts are joined by single
   * spaces (transformers' spaces_between_special_tokens).
   */
  decode(ids: ArrayLike<number>, options?: DecodeOptions): string {
    const skip = options?.skipSpecialTokens ?? false;
    const parts: string[] = [];
    let run: string[] = [];
    const flush = () => {
      if (run.length === 0) return;
      const text = this.detokenize(run);
      if (text !== "") parts.push(text);
      run = [];
    };
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i]!;
      const token = this.decoder.get(id);
      if (token === undefined) {
        throw new AptError("BAD_INPUT", `${this.tokenizerClass}.decode: id ${id} is not in the vocabulary (size ${this.size})`);
      }
      if (skip && this.specialIds.has(id)) continue;
      if (this.wholeTokens.has(token)) {
        flush();
        parts.push(token);
      } else {
        run.push(token);
      }
    }
    flush();
    return parts.join(" ");
  }

  async savePretrained(dir: string): Promise<void> {
    // vocab.json holds the model's own tokens in id order; added tokens go to
    // added_tokens_decoder, where transformers also keeps them.
    const vocab = [...this.encoder].filter(([token]) => !this.appended.has(token)).sort((a, b) => a[1] - b[1]);
    const specials: Record<string, string> = { bos_token: this.bosToken, eos_token: this.eosToken, pad_token: this.padToken };
    if (this.unkToken !== undefined) specials.unk_token = this.unkToken;

    const decoder = new Map<number, AddedTokenJson>();
    const entry = (content: string, special: boolean): AddedTokenJson => ({
      content,
      lstrip: false,
      normalized: !special,
      rstrip: false,
      single_word: false,
      special,
    });
    for (const id of this.specialIds) decoder.set(id, entry(this.decoder.get(id)!, true));
    for (const [token, id] of this.added) if (!decoder.has(id)) decoder.set(id, entry(token, false));
    const addedTokensDecoder = Object.fromEntries([...decoder].sort((a, b) => a[0] - b[0]).map(([id, e]) => [String(id), e]));

    const config = {
      tokenizer_class: this.tokenizerClass,
      model_max_length: this.modelMaxLength,
      ...specials,
      ...this.extraConfig(),
      added_tokens_decoder: addedTokensDecoder,
    };
    await writeFilesAtomically(dir, {
      "vocab.json": `${JSON.stringify(Object.fromEntries(vocab))}\n`,
      ...this.extraFiles(),
      "special_tokens_map.json": `${JSON.stringify(specials, null, 2)}\n`,
      "tokenizer_config.json": `${JSON.stringify(config, null, 2)}\n`,
    });
  }
}
