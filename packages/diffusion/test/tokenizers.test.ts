import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AptError } from "@apt/core";
import {
  BYTE_TO_UNICODE,
  CLIPTokenizer,
  SUPPORTED_TOKENIZER_CLASSES,
  WordLevelTokenizer,
  loadTokenizer,
  toByteLevel,
  type Tokenizer,
} from "../src/tokenizers/index.js";

// ---------------------------------------------------------------------------
// A miniature CLIP vocabulary built the way openai/CLIP builds the real one:
// the 256 byte characters in GPT-2's table order, the same with "</w>", one
// entry per merge, then the two specials. Ids of base tokens therefore match
// the real CLIP vocab (e.g. "a</w>" = 320); merged tokens start at 512.
// ---------------------------------------------------------------------------

/** GPT-2's bytes_to_unicode, written out independently of the code under test: [byte, char] in vocab order. */
function gpt2ByteTable(): [number, string][] {
  const bs: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) bs.push(b);
  for (let b = 0xa1; b <= 0xac; b++) bs.push(b);
  for (let b = 0xae; b <= 0xff; b++) bs.push(b);
  const cs = [...bs];
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bs.includes(b)) {
      bs.push(b);
      cs.push(256 + n++);
    }
  }
  return bs.map((b, i) => [b, String.fromCharCode(cs[i]!)]);
}

const MERGES = [
  "t h",
  "th e</w>",
  "a b",
  "ab c</w>",
  "o f</w>",
  "d o",
  "do g</w>",
  "p h",
  "o t",
  "ph ot",
  "phot o</w>",
  "' s</w>",
  "c a",
  "ca t</w>",
  "Ã ©</w>", // "é" is UTF-8 C3 A9, spelled "Ã©" in the byte table
  "i n",
  "in g</w>",
];

function clipVocab(): Record<string, number> {
  const chars = gpt2ByteTable().map(([, ch]) => ch);
  const tokens = [...chars, ...chars.map((c) => `${c}</w>`), ...MERGES.map((m) => m.replace(" ", "")), "<|startoftext|>", "<|endoftext|>"];
  return Object.fromEntries(tokens.map((t, i) => [t, i]));
}

const VOCAB = clipVocab();
const BOS = 529;
const EOS = 530;
/** ids of tokens in the test vocabulary. */
const ids = (...tokens: string[]) =>
  tokens.map((t) => {
    const id = VOCAB[t];
    if (id === undefined) throw new Error(`test vocab lacks ${t}`);
    return id;
  });

function clip(extra: Partial<ConstructorParameters<typeof CLIPTokenizer>[0]> = {}): CLIPTokenizer {
  return new CLIPTokenizer({ vocab: VOCAB, merges: ["#version: 0.2", ...MERGES], ...extra });
}

async function expectAptError(run: () => unknown, pattern: RegExp): Promise<AptError> {
  let caught: unknown;
  try {
    await run();
  } catch (e) {
    caught = e;
  }
  expect(AptError.isInstance(caught), `expected an AptError, got ${String(caught)}`).toBe(true);
  const err = caught as AptError;
  expect(err.code).toBe("BAD_INPUT");
  expect(err.exitCode).toBe(2);
  expect(err.message).toMatch(pattern);
  return err;
}

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

let scratch: string;
let counter = 0;
/** A fresh folder under the suite's scratch directory. */
async function freshDir(name: string): Promise<string> {
  const dir = join(scratch, `${counter++}-${name}`);
  await mkdir(dir, { recursive: true });
  return dir;
}

async function writeClipFolder(dir: string, config?: unknown): Promise<void> {
  await writeFile(join(dir, "vocab.json"), JSON.stringify(VOCAB));
  await writeFile(join(dir, "merges.txt"), `#version: 0.2\n${MERGES.join("\n")}\n`);
  if (config !== undefined) await writeFile(join(dir, "tokenizer_config.json"), JSON.stringify(config));
}

beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), "apt-tokenizers-"));
});
afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

describe("byte-level table", () => {
  it("matches GPT-2's bytes_to_unicode for all 256 bytes", () => {
    for (const [b, ch] of gpt2ByteTable()) expect(BYTE_TO_UNICODE[b]).toBe(ch);
    expect(BYTE_TO_UNICODE[0x20]).toBe("Ġ");
    expect(BYTE_TO_UNICODE[0x0a]).toBe("Ċ");
    expect(BYTE_TO_UNICODE[0x00]).toBe("Ā");
    expect(BYTE_TO_UNICODE[0xad]).toBe("Ń");
    expect(toByteLevel("café")).toBe("cafÃ©");
  });
});

describe("CLIPTokenizer", () => {
  it("tokenizes with merges applied in rank order", () => {
    const tok = clip();
    expect(tok.tokenize("the cat")).toEqual(["the</w>", "cat</w>"]);
    expect(tok.tokenize("a photo of the dog")).toEqual(["a</w>", "photo</w>", "of</w>", "the</w>", "dog</w>"]);
    // "t h" (rank 0) is merged before "o t" (rank 8) could apply.
    expect(tok.tokenize("another")).toEqual(["a", "n", "o", "th", "e", "r</w>"]);
    // Every occurrence of the best pair merges at once; "</w>" only on the last symbol.
    expect(tok.tokenize("abcabc")).toEqual(["ab", "c", "abc</w>"]);
  });

  it("cleans whitespace and lower-cases", () => {
    const tok = clip();
    expect(tok.tokenize("  THE   Cat\n\tDOG  ")).toEqual(["the</w>", "cat</w>", "dog</w>"]);
    expect(tok.tokenize("")).toEqual([]);
    expect(tok.tokenize(" \n ")).toEqual([]);
  });

  it("splits punctuation runs, single digits and contractions like CLIP's pattern", () => {
    const tok = clip();
    expect(tok.tokenize("abc!?...")).toEqual(["abc</w>", "!", "?", ".", ".", ".</w>"]);
    expect(tok.tokenize("in 2024")).toEqual(["i", "n</w>", "2</w>", "0</w>", "2</w>", "4</w>"]);
    expect(tok.tokenize("the cat's")).toEqual(["the</w>", "cat</w>", "'s</w>"]);
    expect(tok.tokenize("don't")).toEqual(["do", "n</w>", "'", "t</w>"]);
    expect(tok.tokenize("we'LL")).toEqual(["w", "e</w>", "'", "l", "l</w>"]);
  });

  it("maps non-ASCII text through the byte table", () => {
    const tok = clip();
    expect(tok.tokenize("Café")).toEqual(["ca", "f", "Ã©</w>"]);
    // 🙂 is F0 9F 99 82: four byte characters, none merged.
    expect(tok.tokenize("🙂")).toEqual(["ð", "Ł", "Ļ", "Ĥ</w>"]);
    expect(tok.tokenize("🙂").join("").replace("</w>", "")).toBe(toByteLevel("🙂"));
  });

  it("encodes the way Stable Diffusion calls it: bos, words, eos, padded with eos to max_length", () => {
    const tok = clip({ modelMaxLength: 10 });
    expect(tok.bosTokenId).toBe(BOS);
    expect(tok.eosTokenId).toBe(EOS);
    expect(tok.padTokenId).toBe(EOS);
    expect(tok.unkTokenId).toBeUndefined();
    expect(tok.vocabSize).toBe(531);
    expect(ids("a</w>", "photo</w>", "of</w>", "the</w>", "dog</w>")).toEqual([320, 522, 516, 513, 518]);
    expect(tok.encode("a photo of the dog")).toEqual([BOS, 320, 522, 516, 513, 518, EOS, EOS, EOS, EOS]);
    expect(tok.encode("")).toEqual([BOS, EOS, EOS, EOS, EOS, EOS, EOS, EOS, EOS, EOS]);
  });

  it("truncates keeping eos last, and honours padding/truncation/maxLength/addSpecialTokens", () => {
    const tok = clip({ modelMaxLength: 10 });
    const text = "a photo of the dog";
    expect(tok.encode(text, { maxLength: 5 })).toEqual([BOS, 320, 522, 516, EOS]);
    expect(tok.encode(text, { padding: false })).toEqual([BOS, 320, 522, 516, 513, 518, EOS]);
    expect(tok.encode(text, { padding: false, truncation: false, maxLength: 3 })).toEqual([BOS, 320, 522, 516, 513, 518, EOS]);
    expect(tok.encode(text, { addSpecialTokens: false, padding: false })).toEqual([320, 522, 516, 513, 518]);
    expect(tok.encode(text, { addSpecialTokens: false, maxLength: 3 })).toEqual([320, 522, 516]);
    expect(tok.encode("the", { addSpecialTokens: false, maxLength: 3 })).toEqual([513, EOS, EOS]);
    const long = Array.from({ length: 100 }, () => "the").join(" ");
    const encoded = tok.encode(long);
    expect(encoded).toHaveLength(10);
    expect(encoded[0]).toBe(BOS);
    expect(encoded[9]).toBe(EOS);
  });

  it("rejects bad encode options", async () => {
    const tok = clip();
    await expectAptError(() => tok.encode("a", { maxLength: 1 }), /no room for bos and eos/);
    await expectAptError(() => tok.encode("a", { maxLength: 0 }), /maxLength must be a positive integer/);
    await expectAptError(() => tok.encode("a", { padding: "longest" as never }), /padding must be "max_length" or false/);
  });

  it("call() batches into a row-major Int32Array with an attention mask", () => {
    const tok = clip({ modelMaxLength: 8 });
    const out = tok.call(["the cat", "a photo of the dog"]);
    expect(out.shape).toEqual([2, 8]);
    expect(Array.from(out.inputIds)).toEqual([BOS, 513, 525, EOS, EOS, EOS, EOS, EOS, BOS, 320, 522, 516, 513, 518, EOS, EOS]);
    // The mask must come from lengths: the pad id equals eos, so ids alone cannot tell.
    expect(Array.from(out.attentionMask)).toEqual([1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 0]);

    const unpadded = tok.call(["the cat", "the"], { padding: false });
    expect(unpadded.shape).toEqual([2, 4]);
    expect(Array.from(unpadded.inputIds)).toEqual([BOS, 513, 525, EOS, BOS, 513, EOS, EOS]);
    expect(Array.from(unpadded.attentionMask)).toEqual([1, 1, 1, 1, 1, 1, 1, 0]);

    const single = tok.call("the");
    expect(single.shape).toEqual([1, 8]);
    const wide = tok.call(["a photo of the dog the cat"], { truncation: false });
    expect(wide.shape).toEqual([1, 9]);
    expect(tok.call([]).shape).toEqual([0, 8]);
  });

  it("decodes back to text (byte mapping reversed, </w> as space)", () => {
    const tok = clip({ modelMaxLength: 20 });
    const encoded = tok.encode("A photo of the Cat's café!", { padding: false });
    expect(tok.decode(encoded, { skipSpecialTokens: true })).toBe("a photo of the cat 's café !");
    expect(tok.decode(encoded)).toBe("<|startoftext|> a photo of the cat 's café ! <|endoftext|>");
    expect(tok.decode(tok.encode("the dog"), { skipSpecialTokens: true })).toBe("the dog");
    expect(tok.decode(tok.encode("🙂 über naïve"), { skipSpecialTokens: true })).toBe("🙂 über naïve");
    expect(tok.decode(Int32Array.from(tok.encode("in 2024", { padding: false })), { skipSpecialTokens: true })).toBe("in 2 0 2 4");
    // Half a UTF-8 character decodes to U+FFFD rather than throwing.
    expect(tok.decode(ids("Ã"))).toBe("\uFFFD");
  });

  it("rejects ids outside the vocabulary in decode", async () => {
    await expectAptError(() => clip().decode([5, 99999]), /id 99999 is not in the vocabulary/);
  });

  it("maps unknown symbols to unk, or throws naming the token when there is no unk", async () => {
    const vocab = { ...VOCAB };
    delete vocab["z</w>"];
    const strict = new CLIPTokenizer({ vocab, merges: MERGES });
    await expectAptError(() => strict.encode("fizz"), /token "z<\/w>" \(from "fizz"\) is not in the vocabulary and no unk_token is set/);
    const lenient = new CLIPTokenizer({ vocab, merges: MERGES, unkToken: "<|endoftext|>" });
    expect(lenient.unkTokenId).toBe(EOS);
    expect(lenient.encode("fizz", { padding: false })).toEqual([BOS, ...ids("f", "i", "z"), EOS, EOS]);
  });

  it("addTokens appends tokens that are matched whole before BPE", () => {
    const tok = clip({ modelMaxLength: 8 });
    expect(tok.tokenize("a photo of sks dog")).toEqual(["a</w>", "photo</w>", "of</w>", "s", "k", "s</w>", "dog</w>"]);
    expect(tok.addTokens(["sks", "<cat-toy>"])).toEqual([531, 532]);
    expect(tok.vocabSize).toBe(533);
    expect(tok.tokenize("a photo of sks dog")).toEqual(["a</w>", "photo</w>", "of</w>", "sks", "dog</w>"]);
    expect(tok.encode("a photo of sks dog")).toEqual([BOS, 320, 522, 516, 531, 518, EOS, EOS]);
    expect(tok.tokenize("A <cat-toy>, the dog")).toEqual(["a</w>", "<cat-toy>", ",</w>", "the</w>", "dog</w>"]);
    expect(tok.decode(tok.encode("a photo of sks dog"), { skipSpecialTokens: true })).toBe("a photo of sks dog");
    // Adding a token the vocabulary already has keeps its id and grows nothing.
    expect(tok.addTokens(["sks", "the</w>"])).toEqual([531, 513]);
    expect(tok.vocabSize).toBe(533);
    expect(tok.tokenToId("sks")).toBe(531);
    expect(tok.idToToken(532)).toBe("<cat-toy>");
  });

  it("rejects empty added tokens and malformed merges", async () => {
    await expectAptError(() => clip().addTokens([""]), /non-empty strings/);
    await expectAptError(() => new CLIPTokenizer({ vocab: VOCAB, merges: ["t h", "a b c"] }), /merges\[1\]/);
    await expectAptError(() => new CLIPTokenizer({ vocab: VOCAB, merges: [], bosToken: "<s>" }), /bos_token "<s>" is not in the vocabulary/);
    await expectAptError(() => new CLIPTokenizer({ vocab: { a: 0, b: 0 }, merges: [] }), /share id 0/);
    expect(new CLIPTokenizer({ vocab: VOCAB, merges: [["t", "h"]] }).tokenize("th")).toEqual(["t", "h</w>"]);
    expect(new CLIPTokenizer({ vocab: VOCAB, merges: [["t", "h"]] }).tokenize("tha")).toEqual(["th", "a</w>"]);
  });

  it("savePretrained then fromPretrained gives identical encodings", async () => {
    const dir = await freshDir("clip-save");
    const tok = clip({ modelMaxLength: 12 });
    tok.addTokens(["sks"]);
    await tok.savePretrained(dir);

    expect((await readdir(dir)).sort()).toEqual(["merges.txt", "special_tokens_map.json", "tokenizer_config.json", "vocab.json"]);
    const merges = await readFile(join(dir, "merges.txt"), "utf8");
    expect(merges.split("\n")[0]).toBe("#version: 0.2");
    expect(merges.split("\n").slice(1, 1 + MERGES.length)).toEqual(MERGES);
    const vocab = JSON.parse(await readFile(join(dir, "vocab.json"), "utf8")) as Record<string, number>;
    expect(vocab).toEqual(VOCAB);
    const config = JSON.parse(await readFile(join(dir, "tokenizer_config.json"), "utf8")) as Record<string, unknown>;
    expect(config).toMatchObject({ tokenizer_class: "CLIPTokenizer", model_max_length: 12, bos_token: "<|startoftext|>", eos_token: "<|endoftext|>", pad_token: "<|endoftext|>" });
    expect(config.added_tokens_decoder).toMatchObject({ "531": { content: "sks", special: false }, "529": { special: true }, "530": { special: true } });
    expect(JSON.parse(await readFile(join(dir, "special_tokens_map.json"), "utf8"))).toEqual({ bos_token: "<|startoftext|>", eos_token: "<|endoftext|>", pad_token: "<|endoftext|>" });

    const texts = ["a photo of sks dog", "The Cat's café!!", "in 2024, another abcabc", "🙂"];
    for (const loaded of [await CLIPTokenizer.fromPretrained(dir), await loadTokenizer(dir)]) {
      expect(loaded).toBeInstanceOf(CLIPTokenizer);
      expect(loaded.vocabSize).toBe(tok.vocabSize);
      expect(loaded.modelMaxLength).toBe(12);
      for (const t of texts) expect(loaded.encode(t)).toEqual(tok.encode(t));
      expect(loaded.call(texts)).toEqual(tok.call(texts));
    }

    // Saving again over an existing folder replaces the files and leaves no temporaries.
    const reloaded = await CLIPTokenizer.fromPretrained(dir);
    reloaded.addTokens(["<new>"]);
    await reloaded.savePretrained(dir);
    expect((await readdir(dir)).sort()).toEqual(["merges.txt", "special_tokens_map.json", "tokenizer_config.json", "vocab.json"]);
    expect((await CLIPTokenizer.fromPretrained(dir)).encode("sks <new>", { padding: false })).toEqual([BOS, 531, 532, EOS]);
  });

  it("reads transformers' config forms: AddedToken objects, special_tokens_map.json, the 1e30 max length", async () => {
    const dir = await freshDir("clip-config");
    const added = (content: string) => ({ __type: "AddedToken", content, lstrip: false, normalized: true, rstrip: false, single_word: false });
    await writeClipFolder(dir, {
      add_prefix_space: false,
      bos_token: added("<|startoftext|>"),
      do_lower_case: true,
      eos_token: added("<|endoftext|>"),
      errors: "replace",
      model_max_length: 1e30,
      pad_token: "<|endoftext|>",
      tokenizer_class: "CLIPTokenizer",
      unk_token: added("<|endoftext|>"),
      added_tokens_decoder: { "529": { content: "<|startoftext|>", special: true }, "530": { content: "<|endoftext|>", special: true } },
    });
    let tok = await CLIPTokenizer.fromPretrained(dir);
    expect(tok.modelMaxLength).toBe(77);
    expect(tok.unkTokenId).toBe(EOS);
    expect(tok.padTokenId).toBe(EOS);
    expect(tok.vocabSize).toBe(531);

    // special_tokens_map.json overrides the config, here padding with "!" (id 0).
    await writeFile(join(dir, "special_tokens_map.json"), JSON.stringify({ pad_token: { content: "!" } }));
    tok = await CLIPTokenizer.fromPretrained(dir);
    expect(tok.padTokenId).toBe(0);
    expect(tok.encode("the", { maxLength: 5 })).toEqual([BOS, 513, EOS, 0, 0]);

    // Legacy added_tokens.json.
    await writeFile(join(dir, "added_tokens.json"), JSON.stringify({ "<sks>": 531 }));
    tok = await CLIPTokenizer.fromPretrained(dir);
    expect(tok.encode("a <sks>", { padding: false })).toEqual([BOS, 320, 531, EOS]);
  });

  it("fromPretrained and loadTokenizer accept a pipeline folder holding tokenizer/", async () => {
    const root = await freshDir("pipeline");
    await writeFile(join(root, "model_index.json"), "{}");
    await mkdir(join(root, "tokenizer"));
    await writeClipFolder(join(root, "tokenizer"), { tokenizer_class: "CLIPTokenizer", model_max_length: 77 });
    expect((await CLIPTokenizer.fromPretrained(root)).encode("the dog", { padding: false })).toEqual([BOS, 513, 518, EOS]);
    expect(await loadTokenizer(root)).toBeInstanceOf(CLIPTokenizer);
  });
});

describe("loadTokenizer", () => {
  it("dispatches on tokenizer_class, or on the files when there is no config", async () => {
    const none = await freshDir("no-config");
    await writeClipFolder(none);
    expect(await loadTokenizer(none)).toBeInstanceOf(CLIPTokenizer);

    const fast = await freshDir("fast");
    await writeClipFolder(fast, { tokenizer_class: "CLIPTokenizerFast" });
    const tok: Tokenizer = await loadTokenizer(fast);
    expect(tok).toBeInstanceOf(CLIPTokenizer);
    expect(tok.tokenizerClass).toBe("CLIPTokenizer");

    const words = await freshDir("word-level");
    await writeWordFolder(words);
    expect(await loadTokenizer(words)).toBeInstanceOf(WordLevelTokenizer);
    expect(SUPPORTED_TOKENIZER_CLASSES).toEqual(["CLIPTokenizer", "CLIPTokenizerFast", "WordLevelTokenizer"]);
  });

  it("names the missing vocab.json and what it should hold", async () => {
    const dir = await freshDir("empty");
    const path = join(dir, "vocab.json");
    await expectAptError(() => loadTokenizer(dir), new RegExp(`missing tokenizer file ${escape(path)}: expected a JSON object mapping each token to its integer id`));
    await expectAptError(() => CLIPTokenizer.fromPretrained(dir), new RegExp(escape(path)));
    await expectAptError(() => WordLevelTokenizer.fromPretrained(dir), new RegExp(escape(path)));
    await writeFile(join(dir, "tokenizer_config.json"), JSON.stringify({ tokenizer_class: "CLIPTokenizer" }));
    await expectAptError(() => loadTokenizer(dir), new RegExp(`missing tokenizer file ${escape(path)}`));
  });

  it("names the missing merges.txt", async () => {
    const dir = await freshDir("no-merges");
    await writeFile(join(dir, "vocab.json"), JSON.stringify(VOCAB));
    const merges = escape(join(dir, "merges.txt"));
    await expectAptError(() => CLIPTokenizer.fromPretrained(dir), new RegExp(`missing tokenizer file ${merges}: expected the BPE merges`));
    // Without a config the loader cannot tell CLIP from word-level: it says so.
    await expectAptError(() => loadTokenizer(dir), new RegExp(`cannot tell which tokenizer .*${merges}.*"tokenizer_class"`));
  });

  it("names a file holding malformed JSON", async () => {
    const badVocab = await freshDir("bad-vocab");
    await writeClipFolder(badVocab);
    await writeFile(join(badVocab, "vocab.json"), '{"a": 1,');
    await expectAptError(() => loadTokenizer(badVocab), new RegExp(`malformed JSON in tokenizer file ${escape(join(badVocab, "vocab.json"))}`));

    const badConfig = await freshDir("bad-config");
    await writeClipFolder(badConfig);
    await writeFile(join(badConfig, "tokenizer_config.json"), "{tokenizer_class: CLIPTokenizer}");
    await expectAptError(() => loadTokenizer(badConfig), new RegExp(`malformed JSON in tokenizer file ${escape(join(badConfig, "tokenizer_config.json"))}`));

    const badMap = await freshDir("bad-map");
    await writeClipFolder(badMap);
    await writeFile(join(badMap, "special_tokens_map.json"), "");
    await expectAptError(() => CLIPTokenizer.fromPretrained(badMap), new RegExp(`malformed JSON in tokenizer file ${escape(join(badMap, "special_tokens_map.json"))}`));
  });

  it("rejects an unsupported tokenizer_class, naming file, field and supported values", async () => {
    const dir = await freshDir("bert");
    await writeClipFolder(dir, { tokenizer_class: "BertTokenizer" });
    const err = await expectAptError(() => loadTokenizer(dir), new RegExp(escape(join(dir, "tokenizer_config.json"))));
    expect(err.message).toContain('field "tokenizer_class" is "BertTokenizer", which is not supported');
    for (const name of SUPPORTED_TOKENIZER_CLASSES) expect(err.message).toContain(`"${name}"`);
  });

  it("rejects malformed file contents, naming the file", async () => {
    const dir = await freshDir("contents");
    await writeClipFolder(dir);
    const mergesPath = join(dir, "merges.txt");
    await writeFile(mergesPath, "#version: 0.2\nt h\nth e </w>\n");
    await expectAptError(() => loadTokenizer(dir), new RegExp(`${escape(mergesPath)}, line 3: expected "left right"`));

    await writeClipFolder(dir);
    await writeFile(join(dir, "vocab.json"), JSON.stringify(["a", "b"]));
    await expectAptError(() => loadTokenizer(dir), /vocab\.json: expected a JSON object mapping each token/);
    await writeFile(join(dir, "vocab.json"), JSON.stringify({ a: 1.5 }));
    await expectAptError(() => loadTokenizer(dir), /id of token "a" is 1.5, expected a non-negative integer/);

    await writeClipFolder(dir, { model_max_length: -3 });
    await expectAptError(() => loadTokenizer(dir), /tokenizer_config\.json: field "model_max_length" must be a positive integer/);
    await writeClipFolder(dir, { tokenizer_class: "CLIPTokenizer", bos_token: 7 });
    await expectAptError(() => loadTokenizer(dir), /tokenizer_config\.json: field "bos_token" must be a string or an object/);
    await writeClipFolder(dir, { tokenizer_class: "CLIPTokenizer", eos_token: "<eos>" });
    await expectAptError(() => loadTokenizer(dir), /eos_token "<eos>" is not in the vocabulary/);
    await writeClipFolder(dir, { tokenizer_class: "CLIPTokenizer", added_tokens_decoder: { "3": { content: "sks" } } });
    await expectAptError(() => loadTokenizer(dir), /added token "sks" with id 3 conflicts with the vocabulary/);
  });
});

// ---------------------------------------------------------------------------
// Word-level tokenizer (ShapeWorld's tiny text encoder).
// ---------------------------------------------------------------------------

const WORDS: Record<string, number> = {
  "<pad>": 0,
  "<bos>": 1,
  "<eos>": 2,
  "<unk>": 3,
  a: 4,
  red: 5,
  circle: 6,
  square: 7,
  ",": 8,
  ".": 9,
  left: 10,
  of: 11,
  the: 12,
  blue: 13,
  is: 14,
  "'": 15,
  s: 16,
  "?": 17,
};

const WORD_CONFIG = {
  tokenizer_class: "WordLevelTokenizer",
  model_max_length: 16,
  bos_token: "<bos>",
  eos_token: "<eos>",
  pad_token: "<pad>",
  unk_token: "<unk>",
  lowercase: true,
};

async function writeWordFolder(dir: string, config: Record<string, unknown> = WORD_CONFIG): Promise<void> {
  await writeFile(join(dir, "vocab.json"), JSON.stringify(WORDS));
  await writeFile(join(dir, "tokenizer_config.json"), JSON.stringify(config));
}

describe("WordLevelTokenizer", () => {
  const words = () => new WordLevelTokenizer({ vocab: WORDS, unkToken: "<unk>", modelMaxLength: 16 });

  it("splits on whitespace and on each punctuation character, lower-cased", () => {
    const tok = words();
    expect(tok.tokenize("A red circle, left of the blue square.")).toEqual(["a", "red", "circle", ",", "left", "of", "the", "blue", "square", "."]);
    expect(tok.tokenize("  is\tthe \n circle's?!")).toEqual(["is", "the", "circle", "'", "s", "?", "!"]);
    expect(tok.tokenize("red...")).toEqual(["red", ".", ".", "."]);
    expect(tok.tokenize("")).toEqual([]);
  });

  it("encodes bos + words + eos padded to max length; truncation keeps eos last", () => {
    const tok = words();
    expect([tok.bosTokenId, tok.eosTokenId, tok.padTokenId, tok.unkTokenId, tok.vocabSize]).toEqual([1, 2, 0, 3, 18]);
    expect(tok.encode("A red circle, left of the blue square.")).toEqual([1, 4, 5, 6, 8, 10, 11, 12, 13, 7, 9, 2, 0, 0, 0, 0]);
    expect(tok.encode("A red circle, left of the blue square.", { maxLength: 5 })).toEqual([1, 4, 5, 6, 2]);
    expect(tok.encode("a red circle", { padding: false })).toEqual([1, 4, 5, 6, 2]);
    expect(tok.encode("a red circle", { padding: false, addSpecialTokens: false })).toEqual([4, 5, 6]);
    const out = tok.call(["a red circle", "the blue square ."], { maxLength: 6 });
    expect(out.shape).toEqual([2, 6]);
    expect(Array.from(out.inputIds)).toEqual([1, 4, 5, 6, 2, 0, 1, 12, 13, 7, 9, 2]);
    expect(Array.from(out.attentionMask)).toEqual([1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1]);
  });

  it("maps unknown words to unk, or throws naming the word without one", async () => {
    expect(words().encode("a green circle", { padding: false })).toEqual([1, 4, 3, 6, 2]);
    const strict = new WordLevelTokenizer({ vocab: WORDS });
    expect(strict.unkTokenId).toBeUndefined();
    await expectAptError(() => strict.encode("a green circle"), /token "green" \(from "a green circle"\) is not in the vocabulary and no unk_token is set/);
  });

  it("matches special tokens whole and respects lowercase: false", () => {
    expect(words().encode("a <unk> circle", { padding: false })).toEqual([1, 4, 3, 6, 2]);
    const cased = new WordLevelTokenizer({ vocab: WORDS, unkToken: "<unk>", lowercase: false });
    expect(cased.encode("a Red circle", { padding: false })).toEqual([1, 4, 3, 6, 2]);
  });

  it("decodes, optionally skipping special tokens", () => {
    const tok = words();
    const encoded = tok.encode("A red circle, left of the blue square.");
    expect(tok.decode(encoded, { skipSpecialTokens: true })).toBe("a red circle , left of the blue square .");
    expect(tok.decode(tok.encode("a red", { padding: false }))).toBe("<bos> a red <eos>");
    expect(tok.decode([1, 4, 2, 0, 0])).toBe("<bos> a <eos> <pad> <pad>");
  });

  it("addTokens appends whole-matched tokens", () => {
    const tok = words();
    expect(tok.addTokens(["<shape-x>", "green"])).toEqual([18, 19]);
    expect(tok.vocabSize).toBe(20);
    expect(tok.tokenize("a <shape-x>, green.")).toEqual(["a", "<shape-x>", ",", "green", "."]);
    expect(tok.encode("a <shape-x>", { padding: false })).toEqual([1, 4, 18, 2]);
    expect(tok.decode(tok.encode("a <shape-x> circle"), { skipSpecialTokens: true })).toBe("a <shape-x> circle");
  });

  it("savePretrained then fromPretrained / loadTokenizer round-trips", async () => {
    const dir = await freshDir("word-save");
    const tok = new WordLevelTokenizer({ vocab: WORDS, unkToken: "<unk>", modelMaxLength: 16, lowercase: false });
    tok.addTokens(["<shape-x>"]);
    await tok.savePretrained(dir);
    expect((await readdir(dir)).sort()).toEqual(["special_tokens_map.json", "tokenizer_config.json", "vocab.json"]);
    const config = JSON.parse(await readFile(join(dir, "tokenizer_config.json"), "utf8")) as Record<string, unknown>;
    expect(config).toMatchObject({ ...WORD_CONFIG, lowercase: false });
    expect(JSON.parse(await readFile(join(dir, "vocab.json"), "utf8"))).toEqual(WORDS);

    const texts = ["A red <shape-x>, left of the blue square.", "a Red circle", "is the circle's?"];
    for (const loaded of [await WordLevelTokenizer.fromPretrained(dir), await loadTokenizer(dir)]) {
      expect(loaded).toBeInstanceOf(WordLevelTokenizer);
      expect((loaded as WordLevelTokenizer).lowercase).toBe(false);
      expect(loaded.vocabSize).toBe(19);
      expect(loaded.call(texts)).toEqual(tok.call(texts));
    }
  });

  it("loads the ShapeWorld tokenizer_config.json", async () => {
    const dir = await freshDir("shapeworld");
    await writeWordFolder(dir);
    const tok = await loadTokenizer(dir);
    expect(tok.modelMaxLength).toBe(16);
    expect(tok.encode("A blue square?")).toEqual([1, 4, 13, 7, 17, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    await writeWordFolder(dir, { ...WORD_CONFIG, pad_token: "<nothing>" });
    await expectAptError(() => loadTokenizer(dir), /pad_token "<nothing>" is not in the vocabulary/);
  });
});
