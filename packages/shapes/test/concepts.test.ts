import { readFileSync, readdirSync } from "node:fs";
import { isAbsolute, join } from "node:path";
import { PNG } from "pngjs";
import { describe, expect, it } from "vitest";
import { AptError, Rng } from "@apt/core";
import {
  BACKGROUNDS,
  COLOR_RGB,
  CONCEPT_DEFINITIONS,
  CONTINUAL_SEQUENCE,
  IDENTIFIERS,
  IMAGE_SIZE,
  MODEL_MAX_LENGTH,
  REFERENCES_PER_CONCEPT,
  conceptConfig,
  conceptImagesGlob,
  conceptSpec,
  conceptVisibleOn,
  createTokenizer,
  darker,
  decodePngRgb,
  isHeldOut,
  lighter,
  listConcepts,
  loadConcept,
  parsePrompt,
  readConceptSpec,
  renderConceptReferences,
  sampleAttributes,
  secondaryRgb,
  shippedConceptsDir,
  toBytes,
  type Attributes,
  type ConceptDefinition,
  type RGB,
} from "../src/index.js";

const PER = IMAGE_SIZE * IMAGE_SIZE * 3;
const names = listConcepts();
const specs = CONCEPT_DEFINITIONS.map((d) => conceptSpec(d));
const tok = createTokenizer();

const sameRgb = (a: RGB, b: RGB): boolean => a[0] === b[0] && a[1] === b[1] && a[2] === b[2];

/** Every prompt a concept ships: instance, class and evaluation prompts. */
function promptsOf(name: string): string[] {
  const spec = readConceptSpec(name);
  return [spec.prompt, spec.classPrompt, ...spec.evaluation.map((e) => e.prompt)];
}

describe("concept definitions", () => {
  it("ships at least 6 concepts with unique names and unique reserved identifiers", () => {
    expect(names.length).toBeGreaterThanOrEqual(6);
    expect(new Set(names).size).toBe(names.length);
    const ids = CONCEPT_DEFINITIONS.map((d) => d.identifier);
    expect(new Set(ids).size).toBe(ids.length);
    for (const id of ids) expect(IDENTIFIERS as readonly string[]).toContain(id);
  });

  it("names the class by the concept's shape and prompts with the identifier as trigger", () => {
    for (const spec of specs) {
      expect(spec.classWord).toBe(spec.attributes.shape);
      expect(spec.trigger).toBe(spec.identifier);
      expect(spec.prompt).toBe(`a photo of ${spec.identifier} ${spec.classWord}`);
      // The grammar puts no article after "a photo of".
      expect(spec.classPrompt).toBe(`a photo of ${spec.classWord}`);
      expect(parsePrompt(spec.prompt)).toEqual({ photo: true, identifier: spec.identifier, shape: spec.classWord });
      expect(parsePrompt(spec.classPrompt)).toEqual({ photo: true, shape: spec.classWord });
      expect(spec.free).toEqual(["size", "position", "background"]);
    }
  });

  it("makes every concept new to pretraining: a second colour it never renders, or a held-out pair", () => {
    // Pretraining draws its attributes with sampleAttributes (excludeHeldOut), which never sets secondaryColor,
    // so every pretraining texture is the object colour with its darker or lighter shade.
    const rng = new Rng(7);
    const drawn: Attributes[] = [];
    for (let i = 0; i < 4000; i++) drawn.push(sampleAttributes({}, rng, { excludeHeldOut: true }));
    for (const a of drawn) {
      expect(a.secondaryColor).toBeUndefined();
      expect(isHeldOut(a)).toBe(false);
    }
    for (const spec of specs) {
      const a = spec.attributes;
      const shades = [darker(COLOR_RGB[a.color]), lighter(COLOR_RGB[a.color])];
      const rendered = renderConceptReferences(spec).truths.map((t) => t.secondaryRgb);
      const novelSecondary = rendered.every((s) => !shades.some((shade) => sameRgb(s, shade)));
      expect(spec.novelty).toEqual({ secondaryColor: novelSecondary, heldOutPair: isHeldOut(a) });
      expect(spec.novelty.secondaryColor || spec.novelty.heldOutPair, spec.name).toBe(true);
      if (spec.novelty.secondaryColor) {
        expect(a.texture).not.toBe("solid");
        // No background makes pretraining pick this second colour for this object colour.
        for (const bg of BACKGROUNDS) expect(sameRgb(secondaryRgb({ color: a.color, background: bg }), rendered[0]!)).toBe(false);
        // It is far from both shades (a two-tone pattern, not a near-miss).
        for (const shade of shades) expect(Math.hypot(rendered[0]![0] - shade[0], rendered[0]![1] - shade[1], rendered[0]![2] - shade[2])).toBeGreaterThan(80);
      } else {
        expect(a.secondaryColor).toBeUndefined();
        expect(() => sampleAttributes({ shape: a.shape, color: a.color }, new Rng(1), { excludeHeldOut: true })).toThrow(AptError);
      }
      // No pretraining draw shows the concept: same shape, colour and texture with the concept's second colour.
      const seen = drawn.some((d) => d.shape === a.shape && d.color === a.color && d.texture === a.texture && sameRgb(secondaryRgb(d), rendered[0]!));
      expect(seen, spec.name).toBe(false);
    }
  });

  it("keeps the object and its second colour visible on every background it is shown or prompted on", () => {
    for (const def of CONCEPT_DEFINITIONS) {
      for (const bg of [...def.references.map((r) => r.background), ...def.evalBackgrounds]) {
        expect(conceptVisibleOn(def.attributes, bg), `${def.name} on ${bg}`).toBe(true);
      }
    }
  });

  it("varies size, position and background across the 4 references", () => {
    for (const spec of specs) {
      expect(spec.references).toHaveLength(REFERENCES_PER_CONCEPT);
      for (const kind of ["size", "position", "background"] as const) {
        expect(new Set(spec.references.map((r) => r.attributes[kind])).size, `${spec.name} ${kind}`).toBeGreaterThan(1);
      }
      for (const r of spec.references) {
        for (const k of ["shape", "color", "texture", "secondaryColor"] as const) expect(r.attributes[k]).toEqual(spec.attributes[k]);
      }
    }
  });

  it("rejects a definition that is not new to pretraining or whose class is not its shape", () => {
    const base = CONCEPT_DEFINITIONS[0]!;
    const plain: ConceptDefinition = { ...base, attributes: { shape: "star", color: "red", texture: "striped" } };
    expect(() => conceptSpec(plain)).toThrow(/new to pretraining/);
    const shade: ConceptDefinition = { ...base, attributes: { ...base.attributes, secondaryColor: darker(COLOR_RGB.red) } };
    expect(() => conceptSpec(shade)).toThrow(/new to pretraining/);
    expect(() => conceptSpec({ ...base, classWord: "heart" })).toThrow(/class word/);
    expect(() => conceptSpec({ ...base, identifier: "zzz" as never })).toThrow(/IDENTIFIERS/);
  });
});

describe("concept prompts", () => {
  it("parses and tokenizes every shipped prompt within 16 tokens and without <unk>", () => {
    for (const name of names) {
      for (const text of promptsOf(name)) {
        expect(() => parsePrompt(text), text).not.toThrow();
        const ids = tok.encode(text, { padding: false, truncation: false });
        expect(ids.length, text).toBeLessThanOrEqual(MODEL_MAX_LENGTH);
        expect(ids, text).not.toContain(tok.unkTokenId);
      }
    }
  });

  it("stores each evaluation prompt's parse and the attributes a sample should show", () => {
    for (const spec of specs) {
      const { evaluation } = spec;
      for (const e of evaluation) {
        expect(e.parsed, e.prompt).toEqual(parsePrompt(e.prompt));
        expect(e.expected.shape).toBe(spec.classWord);
        for (const k of ["size", "color", "position", "background"] as const) {
          if (e.parsed[k] !== undefined) expect(e.expected[k], `${e.prompt} ${k}`).toBe(e.parsed[k]);
          expect(e.varies.includes(k)).toBe(e.parsed[k] !== undefined);
        }
        if (e.kind === "concept") {
          expect(e.parsed.identifier).toBe(spec.identifier);
          for (const k of ["color", "texture", "secondaryColor"] as const) expect(e.expected[k]).toEqual(spec.attributes[k]);
        } else {
          expect(e.parsed.identifier).toBeUndefined();
          expect(e.expected.texture).toBeUndefined();
          expect(e.expected.secondaryColor).toBeUndefined();
        }
      }
      const concept = evaluation.filter((e) => e.kind === "concept");
      const cls = evaluation.filter((e) => e.kind === "class");
      // The instance prompt itself, and each context kind changed to one no reference shows.
      expect(concept.map((e) => e.prompt)).toContain(spec.prompt);
      for (const kind of ["size", "position", "background"] as const) {
        expect(concept.some((e) => e.varies.length === 1 && e.varies[0] === kind && e.newContext), `${spec.name} new ${kind}`).toBe(true);
      }
      expect(concept.some((e) => e.varies.length === 3)).toBe(true);
      // Prior preservation: the bare class, the class prompt, the class in a new context, and the class in the concept's colour.
      expect(cls.map((e) => e.prompt)).toEqual(expect.arrayContaining([`a ${spec.classWord}`, spec.classPrompt]));
      expect(cls.some((e) => e.varies.includes("background"))).toBe(true);
      expect(cls.some((e) => e.varies.includes("color") && e.expected.color === spec.attributes.color)).toBe(true);
      // newContext is right: no reference shows the stated size/position/background together.
      for (const e of evaluation) {
        const context = (["size", "position", "background"] as const).filter((k) => e.parsed[k] !== undefined);
        const shown = spec.references.some((r) => context.every((k) => r.attributes[k] === e.parsed[k]));
        expect(e.newContext, e.prompt).toBe(context.length > 0 && !shown);
      }
    }
  });
});

describe("shipped concept files", () => {
  it("holds one folder per concept and the sequence, nothing else", () => {
    const entries = readdirSync(shippedConceptsDir(), { withFileTypes: true });
    expect(entries.filter((e) => e.isDirectory()).map((e) => e.name).sort()).toEqual([...names].sort());
    expect(entries.filter((e) => e.isFile()).map((e) => e.name)).toEqual(["sequence.json"]);
    for (const name of names) {
      expect(readdirSync(join(shippedConceptsDir(), name)).sort()).toEqual(["concept.json", "ref-0.png", "ref-1.png", "ref-2.png", "ref-3.png"]);
    }
  });

  it("has concept.json files equal to the definitions' specs (run make-concepts after changing one)", () => {
    for (const spec of specs) expect(readConceptSpec(spec.name)).toEqual(spec);
  });

  it("stores 8-bit RGB PNGs that re-rendering from the definition reproduces exactly", () => {
    for (const spec of specs) {
      const bytes = toBytes(renderConceptReferences(spec).images);
      spec.references.forEach((ref, i) => {
        const file = join(shippedConceptsDir(), spec.name, ref.file);
        const raw = readFileSync(file);
        // IHDR: 32×32, bit depth 8, colour type 2 (RGB).
        expect([raw.readUInt32BE(16), raw.readUInt32BE(20), raw[24], raw[25]]).toEqual([IMAGE_SIZE, IMAGE_SIZE, 8, 2]);
        const ours = decodePngRgb(raw, file);
        expect(Array.from(ours.rgb), file).toEqual(Array.from(bytes.subarray(i * PER, (i + 1) * PER)));
        // The package's reader agrees with pngjs.
        const png = PNG.sync.read(raw);
        const viaPngjs = new Uint8Array(PER);
        for (let p = 0; p < IMAGE_SIZE * IMAGE_SIZE; p++) for (let c = 0; c < 3; c++) viaPngjs[p * 3 + c] = png.data[p * 4 + c]!;
        expect(Array.from(viaPngjs)).toEqual(Array.from(ours.rgb));
      });
    }
  });

  it("lists the 5-concept continual sequence in sequence.json", () => {
    expect(CONTINUAL_SEQUENCE).toHaveLength(5);
    expect(new Set(CONTINUAL_SEQUENCE).size).toBe(5);
    for (const name of CONTINUAL_SEQUENCE) expect(names).toContain(name);
    const file = JSON.parse(readFileSync(join(shippedConceptsDir(), "sequence.json"), "utf8")) as { concepts: string[] };
    expect(file.concepts).toEqual([...CONTINUAL_SEQUENCE]);
  });
});

describe("loading concepts", () => {
  it("loads the spec and the 4 reference images as [4, 32, 32, 3] floats in [0, 1]", () => {
    for (const name of names) {
      const { spec, images, shape, dir } = loadConcept(name);
      expect(spec.name).toBe(name);
      expect(shape).toEqual([4, IMAGE_SIZE, IMAGE_SIZE, 3]);
      expect(images).toBeInstanceOf(Float32Array);
      expect(images.length).toBe(4 * PER);
      expect(isAbsolute(dir)).toBe(true);
      const rendered = renderConceptReferences(spec).images;
      let worst = 0;
      let lo = Infinity;
      let hi = -Infinity;
      for (let i = 0; i < images.length; i++) {
        lo = Math.min(lo, images[i]!);
        hi = Math.max(hi, images[i]!);
        worst = Math.max(worst, Math.abs(images[i]! - rendered[i]!));
      }
      expect(lo).toBeGreaterThanOrEqual(0);
      expect(hi).toBeLessThanOrEqual(1);
      // 8-bit storage: at most half a step from the float render.
      expect(worst).toBeLessThanOrEqual(0.5 / 255 + 1e-6);
    }
  });

  it("gives an absolute glob of the reference PNGs and an apt-run concept entry", () => {
    for (const name of names) {
      const glob = conceptImagesGlob(name);
      expect(isAbsolute(glob)).toBe(true);
      expect(glob.endsWith(`/${name}/ref-*.png`)).toBe(true);
      const dir = glob.slice(0, -"/ref-*.png".length);
      expect(readdirSync(dir).filter((f) => /^ref-.*\.png$/.test(f))).toHaveLength(4);
      const spec = readConceptSpec(name);
      expect(conceptConfig(name)).toEqual({ name, images: glob, prompt: spec.prompt, classPrompt: spec.classPrompt, trigger: spec.trigger });
    }
  });

  it("refuses unknown concepts and files that are not PNGs", () => {
    expect(() => loadConcept("no-such-concept")).toThrow(/unknown concept/);
    expect(() => conceptImagesGlob("../world")).toThrow(AptError);
    expect(() => decodePngRgb(new Uint8Array([1, 2, 3]))).toThrow(/not a PNG/);
  });
});
