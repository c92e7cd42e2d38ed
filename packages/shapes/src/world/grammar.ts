/**
 * ShapeWorld's prompt grammar and attribute sampling.
 *
 *   prompt     := head noun [position] [background]
 *   head       := ("a" | "an") [size] [color] [texture] [identifier]
 *               | "a photo of" [size] [color] [texture] [identifier]
 *   noun       := shape | "shape"                       ("shape" = any shape)
 *   position   := "at" ("center" | "left" | "right" | "top" | "bottom")
 *   background := "on" ("a" | "an") bg "background"
 *
 * e.g. "a star", "an orange star", "a small red striped star at left on a navy
 * background", "a photo of sks star". An attribute a prompt leaves out means
 * "any". The article is "an" before a vowel. Object colours and background
 * colours are disjoint word sets, so every word names one attribute.
 */
import { AptError, Rng } from "@apt/core";
import {
  ATTRIBUTE_KINDS,
  ATTRIBUTE_VALUES,
  BACKGROUNDS,
  COLORS,
  POSITIONS,
  SHAPES,
  SIZES,
  TEXTURES,
  isHeldOut,
  type AttributeKind,
  type Attributes,
  type Background,
  type Color,
  type PartialAttributes,
  type Position,
  type Shape,
  type Size,
  type Texture,
} from "./attributes.js";

/**
 * Made-up words reserved for personalization triggers ("a sks star"): in the
 * vocabulary, never produced by the grammar on its own, never in pretraining
 * prompts.
 */
export const IDENTIFIERS = [
  "sks", "zxv", "qwe", "bnk", "vlo", "kep", "tyr", "wuz",
  "hix", "jom", "fep", "dax", "gub", "mip", "rov", "pux",
  "yod", "zeb", "kiv", "wib", "fip", "drq", "vyn", "gix",
] as const;

/** The grammar's own function words. */
export const FUNCTION_WORDS = ["a", "an", "photo", "of", "shape", "at", "on", "background"] as const;

/** What a prompt states; a missing field means "any". */
export interface PromptSpec {
  shape?: Shape;
  color?: Color;
  texture?: Texture;
  background?: Background;
  size?: Size;
  position?: Position;
  /** A trigger word placed just before the noun ("a red sks star"). */
  identifier?: string;
  /** "a photo of …" (no article after it: "a photo of sks star"). */
  photo?: boolean;
}

export interface PromptOptions {
  /** State only these attribute kinds (default: every one present in the spec). */
  mention?: readonly AttributeKind[];
  /** Overrides the spec's photo flag. */
  photo?: boolean;
  /** Overrides the spec's identifier. */
  identifier?: string;
}

/** Every word the grammar can produce, in the order the vocabulary numbers them. */
export const GRAMMAR_WORDS: readonly string[] = [...FUNCTION_WORDS, ...SIZES, ...COLORS, ...TEXTURES, ...SHAPES, ...POSITIONS, ...BACKGROUNDS];

const GRAMMAR_WORD_SET: ReadonlySet<string> = new Set<string>(GRAMMAR_WORDS);

function article(next: string): string {
  return /^[aeiou]/.test(next) ? "an" : "a";
}

function checkValue(kind: AttributeKind, value: unknown): void {
  if (!(ATTRIBUTE_VALUES[kind] as readonly unknown[]).includes(value)) {
    throw new AptError("BAD_INPUT", `unknown ${kind} ${JSON.stringify(value)} (one of ${ATTRIBUTE_VALUES[kind].join(", ")})`);
  }
}

/**
 * The prompt for these attributes: every attribute present in `spec` (or only
 * those in `options.mention`) is stated; the rest are left out, meaning any.
 */
export function promptFor(spec: PromptSpec | Attributes | PartialAttributes, options: PromptOptions = {}): string {
  const s = spec as PromptSpec;
  const said = (kind: AttributeKind): boolean => s[kind] !== undefined && (options.mention === undefined || options.mention.includes(kind));
  for (const kind of ATTRIBUTE_KINDS) if (s[kind] !== undefined) checkValue(kind, s[kind]);
  const identifier = options.identifier ?? s.identifier;
  if (identifier !== undefined && (!/^[^\s\p{P}\p{S}]+$/u.test(identifier) || GRAMMAR_WORD_SET.has(identifier.toLowerCase()))) {
    throw new AptError("BAD_INPUT", `identifier ${JSON.stringify(identifier)} must be one word (letters/digits) that the grammar does not use`);
  }
  const words: string[] = [];
  if (said("size")) words.push(s.size!);
  if (said("color")) words.push(s.color!);
  if (said("texture")) words.push(s.texture!);
  if (identifier !== undefined) words.push(identifier);
  words.push(said("shape") ? s.shape! : "shape");
  const photo = options.photo ?? s.photo ?? false;
  const head = photo ? ["a", "photo", "of"] : [article(words[0]!)];
  const tail: string[] = [];
  if (said("position")) tail.push("at", s.position!);
  if (said("background")) tail.push("on", article(s.background!), s.background!, "background");
  return [...head, ...words, ...tail].join(" ");
}

export interface ParseOptions {
  /** Words accepted as identifiers (default: IDENTIFIERS). */
  identifiers?: readonly string[];
}

/**
 * Reads a grammar prompt back into what it states (missing = any); the
 * inverse of `promptFor`. Case and surrounding whitespace are ignored; a
 * trailing "." is allowed. Throws BAD_INPUT on anything outside the grammar.
 */
export function parsePrompt(text: string, options: ParseOptions = {}): PromptSpec {
  if (typeof text !== "string") throw new AptError("BAD_INPUT", `parsePrompt: expected a string, got ${typeof text}`);
  const identifiers = new Set((options.identifiers ?? IDENTIFIERS).map((w) => w.toLowerCase()));
  const words = text.trim().toLowerCase().replace(/\s*\.$/, "").split(/\s+/).filter((w) => w !== "");
  let i = 0;
  const fail = (expected: string): never => {
    const at = i < words.length ? `${JSON.stringify(words[i])} (word ${i + 1})` : "the end";
    throw new AptError("BAD_INPUT", `parsePrompt: expected ${expected} at ${at} in ${JSON.stringify(text)}`);
  };
  const take = <T extends string>(set: readonly T[]): T | undefined => {
    const w = words[i];
    if (w !== undefined && (set as readonly string[]).includes(w)) {
      i++;
      return w as T;
    }
    return undefined;
  };

  const spec: PromptSpec = {};
  if (take(["a", "an"]) === undefined) fail('"a" or "an"');
  if (words[i] === "photo" && words[i + 1] === "of") {
    spec.photo = true;
    i += 2;
  }
  const size = take(SIZES);
  if (size !== undefined) spec.size = size;
  const color = take(COLORS);
  if (color !== undefined) spec.color = color;
  const texture = take(TEXTURES);
  if (texture !== undefined) spec.texture = texture;
  const maybeId = words[i];
  if (maybeId !== undefined && identifiers.has(maybeId) && !GRAMMAR_WORD_SET.has(maybeId)) {
    spec.identifier = maybeId;
    i++;
  }
  const shape = take(SHAPES);
  if (shape !== undefined) spec.shape = shape;
  else if (take(["shape"]) === undefined) fail("a shape noun (or a size, colour, texture or identifier before it)");
  if (take(["at"]) !== undefined) {
    const position = take(POSITIONS);
    if (position === undefined) fail(`a position (${POSITIONS.join(", ")})`);
    spec.position = position;
  }
  if (take(["on"]) !== undefined) {
    if (take(["a", "an"]) === undefined) fail('"a"');
    const background = take(BACKGROUNDS);
    if (background === undefined) fail(`a background colour (${BACKGROUNDS.join(", ")})`);
    spec.background = background;
    if (take(["background"]) === undefined) fail('"background"');
  }
  if (i < words.length) fail("the end of the prompt");
  return spec;
}

export interface SampleOptions {
  /** Never return a held-out shape × colour pair (throws if the partial fixes one). */
  excludeHeldOut?: boolean;
}

/**
 * Fills the attributes `partial` leaves out, each uniformly over its values
 * (drawn in the order size, color, texture, shape, position, background);
 * with `excludeHeldOut`, uniformly over the pairs that are not held out.
 */
export function sampleAttributes(partial: PartialAttributes, rng: Rng, options: SampleOptions = {}): Attributes {
  for (const kind of ATTRIBUTE_KINDS) if (partial[kind] !== undefined) checkValue(kind, partial[kind]);
  if (options.excludeHeldOut && partial.shape !== undefined && partial.color !== undefined && isHeldOut(partial)) {
    throw new AptError("BAD_INPUT", `sampleAttributes: ${partial.color} ${partial.shape} is held out and excludeHeldOut is set`);
  }
  for (;;) {
    const out: Record<string, unknown> = {};
    for (const kind of ATTRIBUTE_KINDS) {
      const values = ATTRIBUTE_VALUES[kind];
      out[kind] = partial[kind] ?? values[rng.int(values.length)];
    }
    if (partial.secondaryColor !== undefined) out.secondaryColor = partial.secondaryColor;
    const attrs = out as unknown as Attributes;
    if (!options.excludeHeldOut || !isHeldOut(attrs)) return attrs;
  }
}

/** How often `samplePrompt` states each attribute by default. */
export const DEFAULT_MENTION_PROBABILITY: Readonly<Record<AttributeKind, number>> = {
  size: 0.5,
  color: 0.85,
  texture: 0.7,
  shape: 0.9,
  position: 0.5,
  background: 0.7,
};

export interface SamplePromptOptions {
  /** Per-kind probability of stating the attribute (defaults: DEFAULT_MENTION_PROBABILITY). */
  probabilities?: Partial<Record<AttributeKind, number>>;
  /** Probability of the "a photo of" form (default 0). */
  photoProbability?: number;
  identifier?: string;
}

/**
 * A random true prompt for a rendered image: each attribute is stated with
 * its probability (draws in ATTRIBUTE_KINDS order, then one for the photo
 * form), the rest left out.
 */
export function samplePrompt(attrs: Attributes, rng: Rng, options: SamplePromptOptions = {}): string {
  const mention: AttributeKind[] = [];
  for (const kind of ATTRIBUTE_KINDS) {
    const p = options.probabilities?.[kind] ?? DEFAULT_MENTION_PROBABILITY[kind];
    if (rng.uniform() < p) mention.push(kind);
  }
  const photo = rng.uniform() < (options.photoProbability ?? 0);
  const prompt: PromptOptions = { mention, photo };
  if (options.identifier !== undefined) prompt.identifier = options.identifier;
  return promptFor(attrs, prompt);
}
