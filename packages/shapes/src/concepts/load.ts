/**
 * The shipped concept folders (`concepts/<name>/concept.json` and
 * `ref-0.png … ref-3.png`, written by `scripts/make-concepts.mjs`), found
 * next to this module through import.meta.url, so they load from the source
 * tree, from dist and from an installed package alike.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { AptError } from "@apt/core";
import { CHANNELS, IMAGE_SIZE } from "../world/attributes.js";
import { CONCEPT_DEFINITIONS } from "./definitions.js";
import { decodePngRgb } from "./png.js";
import { REFERENCES_PER_CONCEPT, type ConceptSpec } from "./spec.js";

/** The folder holding the shipped concepts (absolute). */
export function shippedConceptsDir(): string {
  return fileURLToPath(new URL("../../concepts/", import.meta.url));
}

/** The names of the shipped concepts, in a stable order. */
export function listConcepts(): string[] {
  return CONCEPT_DEFINITIONS.map((d) => d.name);
}

function checkName(name: string): void {
  if (!listConcepts().includes(name)) {
    throw new AptError("BAD_INPUT", `unknown concept ${JSON.stringify(name)} (one of ${listConcepts().join(", ")})`);
  }
}

/** The folder of one shipped concept (absolute). */
export function conceptDir(name: string): string {
  checkName(name);
  return join(shippedConceptsDir(), name);
}

/**
 * An absolute glob of the concept's reference PNGs (forward slashes), for
 * apt-run configs: `task: { kind: "personalize", images: conceptImagesGlob("red-star-cyan-stripes"), … }`.
 */
export function conceptImagesGlob(name: string): string {
  return `${conceptDir(name).replace(/\\/g, "/")}/ref-*.png`;
}

export interface LoadedConcept {
  spec: ConceptSpec;
  /** The reference images as stored (8-bit, /255): [4, 32, 32, 3], HWC, values in [0, 1]. */
  images: Float32Array;
  shape: [number, number, number, number];
  /** The concept's folder (absolute). */
  dir: string;
}

/** Reads a shipped concept's `concept.json`. */
export function readConceptSpec(name: string): ConceptSpec {
  const dir = conceptDir(name);
  const file = join(dir, "concept.json");
  let spec: ConceptSpec;
  try {
    spec = JSON.parse(readFileSync(file, "utf8")) as ConceptSpec;
  } catch (cause) {
    throw new AptError("BAD_INPUT", `concept ${name}: cannot read ${file} (${(cause as Error).message})`, { cause });
  }
  if (spec?.name !== name || !Array.isArray(spec.references) || spec.references.length !== REFERENCES_PER_CONCEPT) {
    throw new AptError("BAD_INPUT", `concept ${name}: ${file} is not this concept's spec`);
  }
  return spec;
}

/** Reads a shipped concept: its spec and its 4 reference images (synchronous: a few kB). */
export function loadConcept(name: string): LoadedConcept {
  const dir = conceptDir(name);
  const spec = readConceptSpec(name);
  const per = IMAGE_SIZE * IMAGE_SIZE * CHANNELS;
  const images = new Float32Array(spec.references.length * per);
  spec.references.forEach((ref, i) => {
    const file = join(dir, ref.file);
    const png = decodePngRgb(readFileSync(file), file);
    if (png.width !== IMAGE_SIZE || png.height !== IMAGE_SIZE) {
      throw new AptError("BAD_INPUT", `${file}: ${png.width}×${png.height}, expected ${IMAGE_SIZE}×${IMAGE_SIZE}`);
    }
    for (let k = 0; k < per; k++) images[i * per + k] = png.rgb[k]! / 255;
  });
  return { spec, images, shape: [spec.references.length, IMAGE_SIZE, IMAGE_SIZE, CHANNELS], dir };
}

/** The concept as an apt-run concept entry (`{ name, images, prompt, classPrompt, trigger }`), images as an absolute glob. */
export function conceptConfig(name: string): { name: string; images: string; prompt: string; classPrompt: string; trigger: string } {
  const spec = readConceptSpec(name);
  return { name, images: conceptImagesGlob(name), prompt: spec.prompt, classPrompt: spec.classPrompt, trigger: spec.trigger };
}
