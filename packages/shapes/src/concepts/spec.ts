/**
 * A concept's full spec (what `concepts/<name>/concept.json` holds): its
 * prompts, its reference images' attributes and its evaluation prompts, all
 * derived from a `ConceptDefinition`; and the deterministic rendering of its
 * reference images.
 */
import { AptError } from "@apt/core";
import {
  BACKGROUND_RGB,
  COLOR_RGB,
  darker,
  isHeldOut,
  lighter,
  secondaryRgb,
  type AttributeKind,
  type Attributes,
  type Background,
  type PartialAttributes,
  type RGB,
} from "../world/attributes.js";
import { IDENTIFIERS, parsePrompt, promptFor, type PromptSpec } from "../world/grammar.js";
import { renderBatch, type RenderedBatch } from "../world/render.js";
import type { ConceptAttributes, ConceptDefinition, Identifier } from "./definitions.js";

/** Reference images per concept. */
export const REFERENCES_PER_CONCEPT = 4;

/** Smallest sRGB distance (0–255) kept between the object's colours and the background in references and concept prompts. */
export const MIN_BACKGROUND_DISTANCE = 90;

/**
 * - "concept": the prompt has the trigger and asks for the concept in some
 *   context; the sample should show the concept (fixed attributes) in that
 *   context (text alignment, subject fidelity).
 * - "class": the class word without the trigger; the sample should look like
 *   the base model's (prior preservation, language drift).
 */
export type EvalPromptKind = "concept" | "class";

export interface EvalPrompt {
  prompt: string;
  kind: EvalPromptKind;
  /** The context attributes the prompt states (size, position, background; colour for the drift probe). */
  varies: AttributeKind[];
  /** Whether no reference image shows the context the prompt states (stated size/position/background all together). */
  newContext: boolean;
  /** `parsePrompt(prompt)`, exactly. */
  parsed: PromptSpec;
  /**
   * What a sample for this prompt should show: the stated attributes, plus for
   * "concept" prompts the concept's fixed shape, colour, texture and second
   * colour. Kinds left out are free.
   */
  expected: PartialAttributes;
}

export interface ConceptReference {
  /** File name in the concept's folder ("ref-0.png"). */
  file: string;
  /** Everything the renderer was given (fixed attributes + this image's layout). */
  attributes: Attributes;
}

/** How the concept differs from everything pretraining renders. */
export interface ConceptNovelty {
  /** Its texture's second colour is neither automatic shade (pretraining never sets `secondaryColor`). */
  secondaryColor: boolean;
  /** Its shape × colour pair is held out of pretraining (`HELD_OUT`). */
  heldOutPair: boolean;
}

/** The contents of `concepts/<name>/concept.json`. */
export interface ConceptSpec {
  name: string;
  description: string;
  identifier: Identifier;
  classWord: ConceptAttributes["shape"];
  /** "a photo of sks star": the instance prompt. */
  prompt: string;
  /** "a photo of star": the class prompt (prior preservation); the grammar has no article after "a photo of". */
  classPrompt: string;
  /** The trigger word in `prompt` (= identifier). */
  trigger: string;
  /** Fixed across the reference images. */
  attributes: ConceptAttributes;
  /** The attribute kinds that vary across the reference images. */
  free: ["size", "position", "background"];
  novelty: ConceptNovelty;
  /** `renderBatch(references.map(r => r.attributes), seed)` gives the images. */
  seed: number;
  references: ConceptReference[];
  evaluation: EvalPrompt[];
}

function rgbOf(c: ConceptAttributes["secondaryColor"]): RGB | undefined {
  return c === undefined ? undefined : typeof c === "string" ? COLOR_RGB[c] : c;
}

function distance(a: RGB, b: RGB): number {
  return Math.hypot(a[0] - b[0], a[1] - b[1], a[2] - b[2]);
}

/** Whether the second colour is one pretraining never renders for this object colour (neither automatic shade). */
export function hasNovelSecondaryColor(attrs: ConceptAttributes): boolean {
  const s = rgbOf(attrs.secondaryColor);
  if (s === undefined || attrs.texture === "solid") return false;
  const base = COLOR_RGB[attrs.color];
  const same = (a: RGB, b: RGB): boolean => a[0] === b[0] && a[1] === b[1] && a[2] === b[2];
  return !same(s, darker(base)) && !same(s, lighter(base));
}

/** Whether the object and its texture's second colour both stand out from this background. */
export function conceptVisibleOn(attrs: ConceptAttributes, background: Background): boolean {
  const full = { color: attrs.color, background, ...(attrs.secondaryColor !== undefined ? { secondaryColor: attrs.secondaryColor } : {}) };
  const bg = BACKGROUND_RGB[background];
  return distance(COLOR_RGB[attrs.color], bg) > MIN_BACKGROUND_DISTANCE && distance(secondaryRgb(full), bg) > MIN_BACKGROUND_DISTANCE;
}

function fixedAttributes(a: ConceptAttributes): ConceptAttributes {
  const out: ConceptAttributes = { shape: a.shape, color: a.color, texture: a.texture };
  if (a.secondaryColor !== undefined) out.secondaryColor = typeof a.secondaryColor === "string" ? a.secondaryColor : [...a.secondaryColor];
  return out;
}

function checkDefinition(def: ConceptDefinition): void {
  const bad = (why: string): never => {
    throw new AptError("BAD_INPUT", `concept ${JSON.stringify(def.name)}: ${why}`);
  };
  if (!/^[a-z0-9]+(-[a-z0-9]+)*$/.test(def.name)) bad("the name must be kebab-case (a-z, 0-9, -)");
  if (!(IDENTIFIERS as readonly string[]).includes(def.identifier)) bad(`identifier ${JSON.stringify(def.identifier)} is not one of IDENTIFIERS`);
  if (def.classWord !== def.attributes.shape) bad(`class word ${def.classWord} is not the concept's shape ${def.attributes.shape}`);
  if (def.references.length !== REFERENCES_PER_CONCEPT) bad(`${def.references.length} references, expected ${REFERENCES_PER_CONCEPT}`);
  if (!hasNovelSecondaryColor(def.attributes) && !isHeldOut(def.attributes)) {
    bad("neither its second colour nor its shape × colour pair is new to pretraining");
  }
  for (const bg of [...def.references.map((r) => r.background), ...def.evalBackgrounds]) {
    if (!conceptVisibleOn(def.attributes, bg)) bad(`its colours are within ${MIN_BACKGROUND_DISTANCE} of the ${bg} background`);
  }
}

const CONTEXT_KINDS = ["size", "position", "background"] as const;

/** The full spec of a concept: prompts, reference attributes and evaluation prompts. */
export function conceptSpec(def: ConceptDefinition): ConceptSpec {
  checkDefinition(def);
  const fixed = fixedAttributes(def.attributes);
  const shape = def.classWord;
  const id = def.identifier;
  const references: ConceptReference[] = def.references.map((r, i) => ({
    file: `ref-${i}.png`,
    attributes: {
      size: r.size,
      color: fixed.color,
      texture: fixed.texture,
      shape: fixed.shape,
      position: r.position,
      background: r.background,
      ...(fixed.secondaryColor !== undefined ? { secondaryColor: fixed.secondaryColor } : {}),
    },
  }));

  // Concept prompts take the instance prompt's photo form; class prompts the plain one unless asked.
  const evalPrompt = (kind: EvalPromptKind, stated: PromptSpec, photo = kind === "concept"): EvalPrompt => {
    const text = promptFor({ ...stated, shape }, kind === "concept" ? { photo, identifier: id } : { photo });
    const parsed = parsePrompt(text);
    const varies = (["size", "color", "position", "background"] as const).filter((k) => stated[k] !== undefined);
    const context = CONTEXT_KINDS.filter((k) => stated[k] !== undefined);
    const newContext = context.length > 0 && !def.references.some((r) => context.every((k) => r[k] === stated[k]));
    const expected: PartialAttributes = kind === "concept" ? { ...fixed } : { shape };
    for (const k of ["size", "color", "texture", "position", "background"] as const) {
      if (parsed[k] !== undefined) (expected as Record<string, unknown>)[k] = parsed[k];
    }
    return { prompt: text, kind, varies, newContext, parsed, expected };
  };
  const [bgNew, bgOther] = def.evalBackgrounds;
  const evaluation: EvalPrompt[] = [
    evalPrompt("concept", {}),
    evalPrompt("concept", { background: bgNew }),
    evalPrompt("concept", { size: "small" }),
    evalPrompt("concept", { position: "top" }),
    evalPrompt("concept", { size: "small", position: "left", background: bgOther }),
    evalPrompt("concept", { background: def.references[0]!.background }),
    evalPrompt("class", {}),
    evalPrompt("class", {}, true),
    evalPrompt("class", { background: bgNew }),
    evalPrompt("class", { size: "small", position: "top" }),
    evalPrompt("class", { color: fixed.color }),
  ];

  return {
    name: def.name,
    description: def.description,
    identifier: id,
    classWord: shape,
    prompt: promptFor({ shape }, { photo: true, identifier: id }),
    classPrompt: promptFor({ shape }, { photo: true }),
    trigger: id,
    attributes: fixed,
    free: ["size", "position", "background"],
    novelty: { secondaryColor: hasNovelSecondaryColor(fixed), heldOutPair: isHeldOut(fixed) },
    seed: def.seed,
    references,
    evaluation,
  };
}

/** Renders a concept's reference images ([4, 32, 32, 3] in [0, 1]) from its spec, deterministically. */
export function renderConceptReferences(spec: Pick<ConceptSpec, "references" | "seed">): RenderedBatch {
  return renderBatch(
    spec.references.map((r) => r.attributes),
    spec.seed,
  );
}

/** Values in [0, 1] → 8-bit (rounded, clamped), as the reference PNGs store them. */
export function toBytes(values: Float32Array): Uint8Array {
  const out = new Uint8Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = Math.round(Math.min(1, Math.max(0, values[i]!)) * 255);
  return out;
}
