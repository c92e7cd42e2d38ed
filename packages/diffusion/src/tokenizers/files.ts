/**
 * Reading and writing the files of a transformers-style tokenizer folder
 * (vocab.json, merges.txt, tokenizer_config.json, special_tokens_map.json,
 * added_tokens.json). Every problem with a file becomes an AptError BAD_INPUT
 * that names the file, so a CLI user knows which one to fix.
 */
import { mkdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { AptError, writeFileAtomic } from "@apt/core";

/** Above this, model_max_length is transformers' "no limit" sentinel (int(1e30)). */
const UNSET_MAX_LENGTH = 1e9;

export async function pathExists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory();
  } catch {
    return false;
  }
}

/**
 * Accepts either the tokenizer folder itself or a diffusers pipeline folder
 * holding it as `tokenizer/`, since users pass either.
 */
export async function resolveTokenizerDir(dir: string): Promise<string> {
  if ((await pathExists(join(dir, "vocab.json"))) || (await pathExists(join(dir, "tokenizer_config.json")))) {
    return dir;
  }
  const sub = join(dir, "tokenizer");
  return (await isDirectory(sub)) ? sub : dir;
}

/** Reads a text file; a missing one is reported with what it should contain. */
export async function readTextFile(path: string, contents: string): Promise<string> {
  try {
    return await readFile(path, "utf8");
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT") throw new AptError("BAD_INPUT", `missing tokenizer file ${path}: expected ${contents}`);
    throw new AptError("BAD_INPUT", `cannot read tokenizer file ${path}: ${(e as Error).message}`, { cause: e });
  }
}

/** Parsed JSON of an optional file; undefined when the file is absent. */
export async function readOptionalJson(path: string): Promise<unknown> {
  if (!(await pathExists(path))) return undefined;
  return parseJson(path, await readTextFile(path, "a JSON file"));
}

export async function readJson(path: string, contents: string): Promise<unknown> {
  return parseJson(path, await readTextFile(path, contents));
}

function parseJson(path: string, text: string): unknown {
  try {
    // Strip a BOM: some editors on Windows write one and JSON.parse rejects it.
    return JSON.parse(text.replace(/^\uFEFF/, ""));
  } catch (e) {
    throw new AptError("BAD_INPUT", `malformed JSON in tokenizer file ${path}: ${(e as Error).message}`, { cause: e });
  }
}

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

export const VOCAB_CONTENTS = 'a JSON object mapping each token to its integer id, e.g. {"a</w>": 320}';
export const MERGES_CONTENTS = 'the BPE merges, one "left right" pair per line, ranked by order (an optional "#version" first line)';

/** vocab.json → token/id record, each id checked to be a non-negative integer. */
export async function readVocab(path: string): Promise<Record<string, number>> {
  const json = await readJson(path, VOCAB_CONTENTS);
  if (!isRecord(json)) throw new AptError("BAD_INPUT", `tokenizer file ${path}: expected ${VOCAB_CONTENTS}`);
  const vocab: Record<string, number> = {};
  for (const [token, id] of Object.entries(json)) {
    if (typeof id !== "number" || !Number.isSafeInteger(id) || id < 0) {
      throw new AptError("BAD_INPUT", `tokenizer file ${path}: id of token ${JSON.stringify(token)} is ${JSON.stringify(id)}, expected a non-negative integer`);
    }
    vocab[token] = id;
  }
  return vocab;
}

/** merges.txt → pairs; the "#version" header and blank lines are skipped. */
export async function readMerges(path: string): Promise<[string, string][]> {
  const text = await readTextFile(path, MERGES_CONTENTS);
  const merges: [string, string][] = [];
  text.split(/\r?\n/).forEach((line, i) => {
    if (line.trim() === "" || (i === 0 && line.startsWith("#version"))) return;
    const parts = line.split(" ");
    if (parts.length !== 2 || parts[0] === "" || parts[1] === "") {
      throw new AptError("BAD_INPUT", `tokenizer file ${path}, line ${i + 1}: expected "left right" (two tokens separated by one space), got ${JSON.stringify(line)}`);
    }
    merges.push([parts[0]!, parts[1]!]);
  });
  return merges;
}

/** What the loaders take from tokenizer_config.json, special_tokens_map.json and added_tokens.json. */
export interface TokenizerSettings {
  tokenizerClass?: string;
  modelMaxLength?: number;
  bosToken?: string;
  eosToken?: string;
  padToken?: string;
  unkToken?: string;
  lowercase?: boolean;
  /** Tokens matched whole (added_tokens_decoder / added_tokens.json), with their ids. */
  addedTokens: Record<string, number>;
}

const SPECIAL_FIELDS = [
  ["bos_token", "bosToken"],
  ["eos_token", "eosToken"],
  ["pad_token", "padToken"],
  ["unk_token", "unkToken"],
] as const;

/** A special token is a string or an AddedToken object `{ content: "..." }`; null means none. */
function specialToken(path: string, field: string, value: unknown): string | undefined {
  if (value === null || value === undefined) return undefined;
  if (typeof value === "string") return value;
  if (isRecord(value) && typeof value.content === "string") return value.content;
  throw new AptError("BAD_INPUT", `tokenizer file ${path}: field "${field}" must be a string or an object {"content": "..."}, got ${JSON.stringify(value)}`);
}

export async function readSettings(dir: string): Promise<TokenizerSettings> {
  const settings: TokenizerSettings = { addedTokens: {} };
  const configPath = join(dir, "tokenizer_config.json");
  const config = await readOptionalJson(configPath);
  if (config !== undefined) {
    if (!isRecord(config)) throw new AptError("BAD_INPUT", `tokenizer file ${configPath}: expected a JSON object`);
    if (config.tokenizer_class !== undefined && config.tokenizer_class !== null) {
      if (typeof config.tokenizer_class !== "string") {
        throw new AptError("BAD_INPUT", `tokenizer file ${configPath}: field "tokenizer_class" must be a string`);
      }
      settings.tokenizerClass = config.tokenizer_class;
    }
    const max = config.model_max_length;
    if (max !== undefined && max !== null) {
      if (typeof max !== "number" || !Number.isInteger(max) || max < 1) {
        throw new AptError("BAD_INPUT", `tokenizer file ${configPath}: field "model_max_length" must be a positive integer, got ${JSON.stringify(max)}`);
      }
      if (max < UNSET_MAX_LENGTH) settings.modelMaxLength = max;
    }
    if (config.lowercase !== undefined || config.do_lower_case !== undefined) {
      const lower = config.lowercase ?? config.do_lower_case;
      if (typeof lower !== "boolean") throw new AptError("BAD_INPUT", `tokenizer file ${configPath}: field "lowercase" must be true or false`);
      settings.lowercase = lower;
    }
    for (const [field, key] of SPECIAL_FIELDS) {
      const token = specialToken(configPath, field, config[field]);
      if (token !== undefined) settings[key] = token;
    }
    const decoder = config.added_tokens_decoder;
    if (decoder !== undefined && decoder !== null) {
      if (!isRecord(decoder)) throw new AptError("BAD_INPUT", `tokenizer file ${configPath}: field "added_tokens_decoder" must be an object {"<id>": {"content": "..."}}`);
      for (const [key, entry] of Object.entries(decoder)) {
        const id = Number(key);
        const content = isRecord(entry) ? entry.content : undefined;
        if (!Number.isSafeInteger(id) || id < 0 || typeof content !== "string") {
          throw new AptError("BAD_INPUT", `tokenizer file ${configPath}: added_tokens_decoder entry ${JSON.stringify(key)} must map an integer id to {"content": "..."}`);
        }
        settings.addedTokens[content] = id;
      }
    }
  }

  // special_tokens_map.json wins over tokenizer_config.json, as in transformers.
  const mapPath = join(dir, "special_tokens_map.json");
  const map = await readOptionalJson(mapPath);
  if (map !== undefined) {
    if (!isRecord(map)) throw new AptError("BAD_INPUT", `tokenizer file ${mapPath}: expected a JSON object`);
    for (const [field, key] of SPECIAL_FIELDS) {
      const token = specialToken(mapPath, field, map[field]);
      if (token !== undefined) settings[key] = token;
    }
  }

  // Older transformers versions keep added tokens in added_tokens.json ({token: id}).
  const addedPath = join(dir, "added_tokens.json");
  const added = await readOptionalJson(addedPath);
  if (added !== undefined) {
    if (!isRecord(added)) throw new AptError("BAD_INPUT", `tokenizer file ${addedPath}: expected a JSON object mapping token to id`);
    for (const [token, id] of Object.entries(added)) {
      if (typeof id !== "number" || !Number.isSafeInteger(id) || id < 0) {
        throw new AptError("BAD_INPUT", `tokenizer file ${addedPath}: id of token ${JSON.stringify(token)} must be a non-negative integer`);
      }
      settings.addedTokens[token] = id;
    }
  }
  return settings;
}

/**
 * Writes each file to a temporary name beside it and renames it into place, so
 * a crash or a concurrent reader never sees a half-written file.
 */
export async function writeFilesAtomically(dir: string, files: Record<string, string>): Promise<void> {
  try {
    await mkdir(dir, { recursive: true });
  } catch (e) {
    throw new AptError("BAD_INPUT", `cannot create tokenizer folder ${dir}: ${(e as Error).message}`, { cause: e });
  }
  for (const [name, text] of Object.entries(files)) {
    const target = join(dir, name);
    try {
      await writeFileAtomic(target, text);
    } catch (e) {
      throw new AptError("BAD_INPUT", `cannot write tokenizer file ${target}: ${(e as Error).message}`, { cause: e });
    }
  }
}
