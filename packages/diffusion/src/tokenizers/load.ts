/**
 * loadTokenizer: picks the tokenizer class a folder asks for in
 * tokenizer_config.json's `tokenizer_class`, the way transformers'
 * AutoTokenizer does, falling back on the files present when there is none.
 */
import { join } from "node:path";
import { AptError } from "@apt/core";
import { CLIPTokenizer } from "./clip.js";
import { MERGES_CONTENTS, VOCAB_CONTENTS, pathExists, readSettings, resolveTokenizerDir } from "./files.js";
import { WordLevelTokenizer } from "./word-level.js";

/** Accepted `tokenizer_class` values and the class each loads. */
export const SUPPORTED_TOKENIZER_CLASSES = ["CLIPTokenizer", "CLIPTokenizerFast", "WordLevelTokenizer"] as const;

/**
 * Loads the tokenizer in `dir`: a tokenizer folder, or a diffusers pipeline
 * folder with one under `tokenizer/`.
 */
export async function loadTokenizer(dir: string): Promise<CLIPTokenizer | WordLevelTokenizer> {
  const root = await resolveTokenizerDir(dir);
  const configPath = join(root, "tokenizer_config.json");
  const { tokenizerClass } = await readSettings(root);
  // The fast CLIP variant tokenizes identically; only its file format (tokenizer.json)
  // differs, and diffusers folders ship vocab.json + merges.txt for it too.
  switch (tokenizerClass) {
    case "CLIPTokenizer":
    case "CLIPTokenizerFast":
      return CLIPTokenizer.fromPretrained(root);
    case "WordLevelTokenizer":
      return WordLevelTokenizer.fromPretrained(root);
    case undefined:
      break;
    default:
      throw new AptError(
        "BAD_INPUT",
        `tokenizer file ${configPath}: field "tokenizer_class" is ${JSON.stringify(tokenizerClass)}, which is not supported (supported: ${SUPPORTED_TOKENIZER_CLASSES.map((c) => JSON.stringify(c)).join(", ")})`,
      );
  }
  // No class named: a BPE vocabulary comes with merges.txt, which only CLIP has here.
  const vocabPath = join(root, "vocab.json");
  const mergesPath = join(root, "merges.txt");
  if (!(await pathExists(vocabPath))) throw new AptError("BAD_INPUT", `missing tokenizer file ${vocabPath}: expected ${VOCAB_CONTENTS}`);
  if (await pathExists(mergesPath)) return CLIPTokenizer.fromPretrained(root);
  throw new AptError(
    "BAD_INPUT",
    `cannot tell which tokenizer ${root} holds: missing tokenizer file ${mergesPath} (expected ${MERGES_CONTENTS}) and ${configPath} names no "tokenizer_class" (supported: ${SUPPORTED_TOKENIZER_CLASSES.join(", ")})`,
  );
}
