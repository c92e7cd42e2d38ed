/**
 * CLIP's byte-level BPE tokenizer (Stable Diffusion 1.x's `tokenizer/`), with
 * the behaviour of transformers' CLIPTokenizer: whitespace collapsed, lower
 * case, CLIP's split pattern, GPT-2's byte → unicode spelling, and BPE with
 * "</w>" marking the end of each word.
 */
import { join } from "node:path";
import { AptError } from "@apt/core";
import { BaseTokenizer } from "./base.js";
import { UNICODE_TO_BYTE, toByteLevel } from "./bytes.js";
import { readMerges, readSettings, readVocab, resolveTokenizerDir } from "./files.js";

export interface CLIPTokenizerOptions {
  /** token → id, as in vocab.json. */
  vocab: Record<string, number>;
  /** Ranked merges: "left right" lines (a "#version" header line is skipped) or pairs. */
  merges: readonly string[] | readonly (readonly [string, string])[];
  /** Default "<|startoftext|>". */
  bosToken?: string;
  /** Default "<|endoftext|>". */
  eosToken?: string;
  /** Default: the eos token, which is what Stable Diffusion pads with. */
  padToken?: string;
  /** Default none: a token missing from the vocabulary is then an error. */
  unkToken?: string;
  /** Default 77. */
  modelMaxLength?: number;
  /** Tokens matched whole, with their ids (tokenizer_config.json's added_tokens_decoder). */
  addedTokens?: Record<string, number>;
}

/** CLIP's pre-tokenization pattern: contractions, letter runs, single digits, other-symbol runs. */
const CLIP_PATTERN = /<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+/giu;

const END_OF_WORD = "</w>";

const utf8 = new TextEncoder();

/** The BPE cache is bounded so that a long-running process fed arbitrary prompts does not grow without limit. */
const CACHE_LIMIT = 10_000;

export class CLIPTokenizer extends BaseTokenizer {
  /** Ranked merges as "left right" → rank (byte-level symbols never contain a space). */
  private readonly ranks = new Map<string, number>();
  private readonly merges: [string, string][] = [];
  private readonly cache = new Map<string, string[]>();

  constructor(options: CLIPTokenizerOptions) {
    const eosToken = options.eosToken ?? "<|endoftext|>";
    super({
      tokenizerClass: "CLIPTokenizer",
      vocab: options.vocab,
      specials: {
        bosToken: options.bosToken ?? "<|startoftext|>",
        eosToken,
        padToken: options.padToken ?? eosToken,
        unkToken: options.unkToken,
      },
      modelMaxLength: options.modelMaxLength ?? 77,
      addedTokens: options.addedTokens,
    });
    options.merges.forEach((merge, i) => {
      let pair: readonly string[];
      if (typeof merge === "string") {
        if (merge.trim() === "" || (i === 0 && merge.startsWith("#version"))) return;
        pair = merge.split(" ");
      } else {
        pair = merge;
      }
      const [left, right] = pair;
      if (pair.length !== 2 || !left || !right || left.includes(" ") || right.includes(" ")) {
        throw new AptError("BAD_INPUT", `CLIPTokenizer: merges[${i}] must be two space-free tokens ("left right"), got ${JSON.stringify(merge)}`);
      }
      // As in transformers' dict(zip(merges, ranks)), a repeated pair keeps its later rank.
      this.ranks.set(`${left} ${right}`, this.merges.length);
      this.merges.push([left, right]);
    });
  }

  /** Reads vocab.json, merges.txt and the optional tokenizer_config.json / special_tokens_map.json / added_tokens.json. */
  static async fromPretrained(dir: string): Promise<CLIPTokenizer> {
    const root = await resolveTokenizerDir(dir);
    const vocab = await readVocab(join(root, "vocab.json"));
    const merges = await readMerges(join(root, "merges.txt"));
    const s = await readSettings(root);
    const options: CLIPTokenizerOptions = { vocab, merges, addedTokens: s.addedTokens };
    if (s.bosToken !== undefined) options.bosToken = s.bosToken;
    if (s.eosToken !== undefined) options.eosToken = s.eosToken;
    if (s.padToken !== undefined) options.padToken = s.padToken;
    if (s.unkToken !== undefined) options.unkToken = s.unkToken;
    if (s.modelMaxLength !== undefined) options.modelMaxLength = s.modelMaxLength;
    return new CLIPTokenizer(options);
  }

  protected tokenizeText(text: string): string[] {
    // transformers' whitespace_clean + lower(); ftfy's fix_text is left out.
    const clean = text.replace(/\s+/g, " ").trim().toLowerCase();
    const tokens: string[] = [];
    for (const [word] of clean.matchAll(CLIP_PATTERN)) tokens.push(...this.bpe(toByteLevel(word)));
    return tokens;
  }

  /** BPE of one byte-level word: repeatedly merge every occurrence of the best-ranked adjacent pair. */
  private bpe(word: string): string[] {
    const cached = this.cache.get(word);
    if (cached !== undefined) return cached;
    const chars = Array.from(word);
    let symbols = chars.slice(0, -1);
    symbols.push(chars[chars.length - 1]! + END_OF_WORD);
    while (symbols.length > 1) {
      let best = -1;
      let bestRank = Infinity;
      for (let i = 0; i < symbols.length - 1; i++) {
        const rank = this.ranks.get(`${symbols[i]} ${symbols[i + 1]}`);
        if (rank !== undefined && rank < bestRank) {
          bestRank = rank;
          best = i;
        }
      }
      if (best < 0) break;
      const first = symbols[best]!;
      const second = symbols[best + 1]!;
      const merged: string[] = [];
      for (let i = 0; i < symbols.length; ) {
        if (i < symbols.length - 1 && symbols[i] === first && symbols[i + 1] === second) {
          merged.push(first + second);
          i += 2;
        } else {
          merged.push(symbols[i]!);
          i += 1;
        }
      }
      symbols = merged;
    }
    if (this.cache.size >= CACHE_LIMIT) this.cache.clear();
    this.cache.set(word, symbols);
    return symbols;
  }

  protected detokenize(tokens: readonly string[]): string {
    // Rebuild the UTF-8 bytes: a character may span tokens, so decode once at the end.
    const bytes: number[] = [];
    for (const token of tokens) {
      const endsWord = token.endsWith(END_OF_WORD);
      const body = endsWord ? token.slice(0, -END_OF_WORD.length) : token;
      for (const ch of body) {
        const b = UNICODE_TO_BYTE.get(ch);
        if (b !== undefined) bytes.push(b);
        // Not a byte-level character (a hand-made vocabulary): keep it as its own UTF-8.
        else bytes.push(...utf8.encode(ch));
      }
      if (endsWord) bytes.push(0x20);
    }
    // Invalid UTF-8 (ids cut mid-character) becomes U+FFFD, like errors="replace".
    return new TextDecoder("utf-8").decode(new Uint8Array(bytes)).trim();
  }

  protected extraFiles(): Record<string, string> {
    const lines = ["#version: 0.2", ...this.merges.map(([a, b]) => `${a} ${b}`)];
    return { "merges.txt": `${lines.join("\n")}\n` };
  }

  protected extraConfig(): Record<string, unknown> {
    return { do_lower_case: true };
  }
}
