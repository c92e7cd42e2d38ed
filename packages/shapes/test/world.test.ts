import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { AptError, Rng } from "@apt/core";
import { WordLevelTokenizer } from "@apt/diffusion";
import {
  ATTRIBUTE_KINDS,
  ATTRIBUTE_VALUES,
  BACKGROUNDS,
  BACKGROUND_RGB,
  COLORS,
  COLOR_RGB,
  HELD_OUT,
  IDENTIFIERS,
  IMAGE_SIZE,
  MODEL_MAX_LENGTH,
  POSITIONS,
  SHAPES,
  SHAPE_TESTS,
  SIZES,
  TEXTURES,
  VOCABULARY_WORDS,
  createTokenizer,
  isHeldOut,
  itemSeed,
  parsePrompt,
  promptFor,
  render,
  renderBatch,
  renderWithTruth,
  sampleAttributes,
  samplePrompt,
  secondaryRgb,
  tileImages,
  vocabulary,
  writeTokenizerFolder,
  type AttributeKind,
  type Attributes,
  type PromptSpec,
  type RGB,
} from "../src/index.js";

const N = IMAGE_SIZE;
const base: Attributes = { shape: "star", color: "red", texture: "solid", background: "gray", size: "medium", position: "center" };

function pixel(image: Float32Array, x: number, y: number): number[] {
  const o = (y * N + x) * 3;
  return [image[o]!, image[o + 1]!, image[o + 2]!];
}

function unit(rgb: RGB): number[] {
  return rgb.map((v) => v / 255);
}

function expectClose(actual: number[], expected: number[], tol: number): void {
  actual.forEach((v, i) => expect(Math.abs(v - expected[i]!)).toBeLessThanOrEqual(tol));
}

/** Mean colour of the pixels the object covers completely. */
function objectMean(image: Float32Array, mask: Float32Array): number[] {
  const sum = [0, 0, 0];
  let n = 0;
  for (let i = 0; i < N * N; i++) {
    if (mask[i] !== 1) continue;
    for (let c = 0; c < 3; c++) sum[c]! += image[i * 3 + c]!;
    n++;
  }
  return sum.map((v) => v / n);
}

function allAttributes(): Attributes[] {
  const out: Attributes[] = [];
  for (const shape of SHAPES)
    for (const color of COLORS)
      for (const texture of TEXTURES)
        for (const background of BACKGROUNDS)
          for (const size of SIZES) for (const position of POSITIONS) out.push({ shape, color, texture, background, size, position });
  return out;
}

describe("attributes", () => {
  it("has at least 8 shapes and colours, 4 textures, 6 backgrounds, with disjoint words", () => {
    expect(SHAPES.length).toBeGreaterThanOrEqual(8);
    expect(COLORS.length).toBe(8);
    expect(TEXTURES).toEqual(["solid", "striped", "dotted", "checkered"]);
    expect(BACKGROUNDS.length).toBe(6);
    const words = ATTRIBUTE_KINDS.flatMap((k) => [...ATTRIBUTE_VALUES[k]]);
    expect(new Set(words).size).toBe(words.length);
  });

  it("keeps object colours far from each other and from every background", () => {
    const d = (a: RGB, b: RGB) => Math.hypot(a[0] - b[0], a[1] - b[1], a[2] - b[2]);
    for (const a of COLORS) {
      for (const b of COLORS) if (a !== b) expect(d(COLOR_RGB[a], COLOR_RGB[b]), `${a} vs ${b}`).toBeGreaterThan(80);
      for (const bg of BACKGROUNDS) {
        expect(d(COLOR_RGB[a], BACKGROUND_RGB[bg]), `${a} on ${bg}`).toBeGreaterThan(90);
        // The texture's second colour also stands out from the background.
        expect(d(secondaryRgb({ color: a, background: bg }), BACKGROUND_RGB[bg]), `${a} shade on ${bg}`).toBeGreaterThan(90);
      }
    }
    for (const a of BACKGROUNDS) for (const b of BACKGROUNDS) if (a !== b) expect(d(BACKGROUND_RGB[a], BACKGROUND_RGB[b])).toBeGreaterThan(80);
  });

  it("fits every unit shape inside the unit circle", () => {
    for (const shape of SHAPES) {
      let inside = 0;
      for (let y = -1.3; y <= 1.3; y += 0.01) {
        for (let x = -1.3; x <= 1.3; x += 0.01) {
          if (!SHAPE_TESTS[shape](x, y)) continue;
          inside++;
          expect(Math.hypot(x, y), shape).toBeLessThanOrEqual(1.0001);
        }
      }
      expect(inside, shape).toBeGreaterThan(8000);
    }
  });
});

describe("renderer", () => {
  it("is deterministic in its seed", () => {
    const rng = new Rng(1);
    const list = Array.from({ length: 32 }, () => sampleAttributes({}, rng));
    const a = renderBatch(list, 7);
    const b = renderBatch(list, 7);
    const c = renderBatch(list, 8);
    expect(a.shape).toEqual([32, N, N, 3]);
    expect(a.images).toEqual(b.images);
    expect(a.truths).toEqual(b.truths);
    let differing = 0;
    for (let i = 0; i < 32; i++) {
      const per = N * N * 3;
      const x = a.images.subarray(i * per, (i + 1) * per);
      const y = c.images.subarray(i * per, (i + 1) * per);
      if (x.some((v, k) => v !== y[k])) differing++;
    }
    expect(differing).toBe(32);
    expect(render(base, new Rng(3))).toEqual(render(base, new Rng(3)));
    expect(render(base, new Rng(3))).not.toEqual(render(base, new Rng(4)));
    // An item depends only on (seed, index, its attributes).
    const single = renderWithTruth(list[5]!, new Rng(itemSeed(7, 5))).image;
    expect(a.images.subarray(5 * N * N * 3, 6 * N * N * 3)).toEqual(single);
  });

  it("returns HWC values in [0, 1] with the background exact away from the object", () => {
    for (const background of BACKGROUNDS) {
      for (const position of POSITIONS) {
        const { image, mask } = renderWithTruth({ ...base, size: "large", background, position }, new Rng(11));
        for (const v of image) expect(v >= 0 && v <= 1).toBe(true);
        const bg = unit(BACKGROUND_RGB[background]);
        for (const [x, y] of [[0, 0], [N - 1, 0], [0, N - 1], [N - 1, N - 1]] as const) {
          expect(pixel(image, x, y)).toEqual(bg.map(Math.fround));
        }
        // The object stays on the canvas: nothing on the border rows/columns.
        for (let k = 0; k < N; k++) {
          expect(mask[k]! + mask[(N - 1) * N + k]! + mask[k * N]! + mask[k * N + N - 1]!).toBe(0);
        }
      }
    }
  });

  it("paints each solid shape in its colour on each background", () => {
    for (const shape of SHAPES) {
      for (const color of COLORS) {
        for (const background of BACKGROUNDS) {
          const { image, mask, truth } = renderWithTruth({ ...base, shape, color, background }, new Rng(5));
          expectClose(objectMean(image, mask), unit(COLOR_RGB[color]), 1e-6);
          expect(truth.maskArea).toBeGreaterThan(60);
          expect(truth.secondaryShare).toBe(0);
          // The object colour dominates the image's centre.
          expectClose(pixel(image, Math.floor(truth.placement.cx), Math.floor(truth.placement.cy)), unit(COLOR_RGB[color]), shape === "ring" ? 1 : 1e-6);
        }
      }
    }
  });

  it("draws each texture with both of its colours in the expected shares", () => {
    const share: Record<string, [number, number]> = { solid: [0, 0], striped: [0.35, 0.65], dotted: [0.15, 0.4], checkered: [0.35, 0.65] };
    for (const texture of TEXTURES) {
      for (const shape of SHAPES) {
        for (const color of COLORS) {
          const background = BACKGROUNDS[(SHAPES.indexOf(shape) + COLORS.indexOf(color)) % BACKGROUNDS.length]!;
          const attrs: Attributes = { ...base, shape, color, texture, background, size: "large" };
          const { image, mask, truth } = renderWithTruth(attrs, new Rng(17));
          const [lo, hi] = share[texture]!;
          expect(truth.secondaryShare, `${texture} ${shape}`).toBeGreaterThanOrEqual(lo);
          expect(truth.secondaryShare, `${texture} ${shape}`).toBeLessThanOrEqual(hi);
          const primary = unit(COLOR_RGB[color]).map(Math.fround);
          const second = unit(secondaryRgb(attrs)).map(Math.fround);
          const full: number[][] = [];
          for (let i = 0; i < N * N; i++) if (mask[i] === 1) full.push(pixel(image, i % N, Math.floor(i / N)));
          expect(full.some((p) => p.every((v, c) => v === primary[c])), `${texture} ${shape} shows its colour`).toBe(true);
          if (texture !== "solid") expect(full.some((p) => p.every((v, c) => v === second[c])), `${texture} ${shape} shows its second colour`).toBe(true);
          // The object's mean colour is the share-weighted mix of its two colours.
          const mean = objectMean(image, mask);
          const s = truth.secondaryShare;
          expectClose(mean, primary.map((p, c) => p * (1 - s) + second[c]! * s), 0.06);
        }
      }
    }
  });

  it("uses an explicit secondary colour", () => {
    const attrs: Attributes = { ...base, size: "large", texture: "checkered", secondaryColor: "yellow" };
    const { image, mask, truth } = renderWithTruth(attrs, new Rng(2));
    expect(truth.secondaryRgb).toEqual(COLOR_RGB.yellow);
    const yellow = unit(COLOR_RGB.yellow).map(Math.fround);
    let n = 0;
    for (let i = 0; i < N * N; i++) if (mask[i] === 1 && pixel(image, i % N, Math.floor(i / N)).every((v, c) => v === yellow[c])) n++;
    expect(n).toBeGreaterThan(10);
    const rgb = renderWithTruth({ ...attrs, secondaryColor: [0, 0, 0] }, new Rng(2));
    expect(rgb.truth.secondaryRgb).toEqual([0, 0, 0]);
    expect(() => render({ ...attrs, secondaryColor: [0, 0, 300] }, new Rng(2))).toThrow(AptError);
    expect(() => render({ ...attrs, shape: "blob" as never }, new Rng(2))).toThrow(/unknown shape/);
  });

  it("anti-aliases edges: partial coverage gives the exact mix of object and background", () => {
    for (const shape of SHAPES) {
      const { image, mask } = renderWithTruth({ ...base, shape, color: "yellow", background: "navy" }, new Rng(23));
      const fg = unit(COLOR_RGB.yellow);
      const bg = unit(BACKGROUND_RGB.navy);
      const levels = new Set<number>();
      for (let i = 0; i < N * N; i++) {
        const c = mask[i]!;
        if (c <= 0 || c >= 1) continue;
        levels.add(c);
        const expected = fg.map((f, k) => f * c + bg[k]! * (1 - c));
        expectClose(pixel(image, i % N, Math.floor(i / N)), expected, 1e-5);
        // Strictly between the two colours in every channel where they differ.
        pixel(image, i % N, Math.floor(i / N)).forEach((v, k) => {
          if (fg[k] !== bg[k]) expect(v > Math.min(fg[k]!, bg[k]!) && v < Math.max(fg[k]!, bg[k]!)).toBe(true);
        });
      }
      expect(levels.size, shape).toBeGreaterThanOrEqual(5);
    }
  });

  it("orders size bins by mask area, for every shape", () => {
    for (const shape of SHAPES) {
      const ranges = SIZES.map((size) => {
        const areas = Array.from({ length: 40 }, (_, k) => renderWithTruth({ ...base, shape, size, position: POSITIONS[k % 5]! }, new Rng(100 + k)).truth.maskArea);
        return [Math.min(...areas), Math.max(...areas)] as const;
      });
      expect(ranges[0]![1], `${shape} small < medium`).toBeLessThan(ranges[1]![0]);
      expect(ranges[1]![1], `${shape} medium < large`).toBeLessThan(ranges[2]![0]);
    }
  });

  it("places the object on the side its position names", () => {
    for (const size of SIZES) {
      for (const position of POSITIONS) {
        for (let k = 0; k < 20; k++) {
          const { cx, cy } = renderWithTruth({ ...base, size, position }, new Rng(k)).truth.placement;
          const dx = cx - 16;
          const dy = cy - 16;
          if (position === "center") expect(Math.max(Math.abs(dx), Math.abs(dy))).toBeLessThanOrEqual(0.5);
          if (position === "left") expect(dx).toBeLessThanOrEqual(-2.5);
          if (position === "right") expect(dx).toBeGreaterThanOrEqual(2.5);
          if (position === "top") expect(dy).toBeLessThanOrEqual(-2.5);
          if (position === "bottom") expect(dy).toBeGreaterThanOrEqual(2.5);
        }
      }
    }
  });

  it("reports truth: bbox and centroid around the mask", () => {
    const { mask, truth } = renderWithTruth({ ...base, shape: "square", size: "small", position: "left" }, new Rng(9));
    const [x0, y0, x1, y1] = truth.bbox;
    let area = 0;
    for (let y = 0; y < N; y++) {
      for (let x = 0; x < N; x++) {
        const m = mask[y * N + x]!;
        area += m;
        if (m > 0) expect(x >= x0 && x < x1 && y >= y0 && y < y1).toBe(true);
      }
    }
    expect(truth.maskArea).toBeCloseTo(area, 4);
    expect(truth.centroid[0]).toBeCloseTo(truth.placement.cx, 1);
    expect(truth.centroid[1]).toBeCloseTo(truth.placement.cy, 1);
    expect(truth.attributes).toEqual({ ...base, shape: "square", size: "small", position: "left" });
  });

  it("renders 1000 images quickly", () => {
    const rng = new Rng(0);
    const list = Array.from({ length: 1000 }, () => sampleAttributes({}, rng));
    renderBatch(list.slice(0, 50), 0); // warm-up
    const started = performance.now();
    const { images } = renderBatch(list, 1);
    const ms = performance.now() - started;
    console.log(`ShapeWorld: 1000 renders in ${ms.toFixed(0)} ms`);
    expect(images.length).toBe(1000 * N * N * 3);
    expect(ms).toBeLessThan(5000);
  });

  it("tiles images into a grid", () => {
    const { images } = renderBatch([base, { ...base, color: "blue" }, { ...base, color: "green" }], 0);
    const grid = tileImages(images, 3, { columns: 2, padding: 1, scale: 2 });
    expect(grid.width).toBe(2 * 64 + 3);
    expect(grid.height).toBe(2 * 64 + 3);
    expect(grid.data.length).toBe(grid.width * grid.height * 3);
    expect([...grid.data.subarray(((1 + 0) * grid.width + 1) * 3, ((1 + 0) * grid.width + 1) * 3 + 3)]).toEqual([128, 128, 128]);
  });
});

describe("grammar", () => {
  it("writes the canonical forms", () => {
    expect(promptFor({ color: "red", texture: "striped", shape: "star", background: "navy" })).toBe("a red striped star on a navy background");
    expect(promptFor({ shape: "star" })).toBe("a star");
    expect(promptFor({ color: "orange", shape: "heart" })).toBe("an orange heart");
    expect(promptFor({ size: "small", color: "red", shape: "star", position: "left" })).toBe("a small red star at left");
    expect(promptFor({ texture: "dotted" })).toBe("a dotted shape");
    expect(promptFor({})).toBe("a shape");
    expect(promptFor({ shape: "star", identifier: "sks" }, { photo: true })).toBe("a photo of sks star");
    expect(promptFor({ ...base, secondaryColor: "yellow" }, { mention: ["shape", "background"] })).toBe("a star on a gray background");
    expect(promptFor(base)).toBe("a medium red solid star at center on a gray background");
    expect(() => promptFor({ shape: "blob" as never })).toThrow(/unknown shape/);
    expect(() => promptFor({ shape: "star" }, { identifier: "red" })).toThrow(AptError);
  });

  it("parses what it writes, for random attribute subsets", () => {
    const rng = new Rng(42);
    for (let k = 0; k < 3000; k++) {
      const full = sampleAttributes({}, rng);
      const spec: PromptSpec = {};
      for (const kind of ATTRIBUTE_KINDS) if (rng.uniform() < 0.5) (spec as Record<AttributeKind, string>)[kind] = full[kind];
      if (rng.uniform() < 0.3) spec.identifier = IDENTIFIERS[rng.int(IDENTIFIERS.length)]!;
      if (rng.uniform() < 0.3) spec.photo = true;
      const text = promptFor(spec);
      expect(parsePrompt(text), text).toEqual(spec);
      expect(promptFor(parsePrompt(text))).toBe(text);
      expect(parsePrompt(`  ${text.toUpperCase()}. `)).toEqual(spec);
    }
  });

  it("rejects text outside the grammar", () => {
    for (const bad of ["", "red star", "a star on navy background", "a star at", "a star at middle", "a blob", "a red", "a star on a red background", "a star please", "a striped red star"]) {
      expect(() => parsePrompt(bad), bad).toThrow(AptError);
    }
    expect(parsePrompt("a new1 star", { identifiers: ["new1"] })).toEqual({ identifier: "new1", shape: "star" });
  });

  it("samples every attribute uniformly and fills only what is missing", () => {
    const rng = new Rng(3);
    const counts = new Map<string, number>();
    const n = 24000;
    for (let k = 0; k < n; k++) {
      const a = sampleAttributes({ background: "beige" }, rng);
      expect(a.background).toBe("beige");
      for (const kind of ATTRIBUTE_KINDS) counts.set(`${kind}:${a[kind]}`, (counts.get(`${kind}:${a[kind]}`) ?? 0) + 1);
    }
    for (const kind of ATTRIBUTE_KINDS) {
      if (kind === "background") continue;
      const values = ATTRIBUTE_VALUES[kind];
      for (const v of values) expect(counts.get(`${kind}:${v}`)! / n, `${kind}:${v}`).toBeCloseTo(1 / values.length, 1);
    }
    expect(sampleAttributes({ secondaryColor: "pink" }, rng).secondaryColor).toBe("pink");
  });

  it("holds out a spread ~10% of shape × colour pairs that training sampling never produces", () => {
    expect(HELD_OUT.length / (SHAPES.length * COLORS.length)).toBeGreaterThan(0.05);
    expect(HELD_OUT.length / (SHAPES.length * COLORS.length)).toBeLessThan(0.15);
    expect(new Set(HELD_OUT.map((h) => h.shape)).size).toBe(HELD_OUT.length);
    expect(new Set(HELD_OUT.map((h) => h.color)).size).toBe(HELD_OUT.length);
    const rng = new Rng(5);
    const seen = new Set<string>();
    for (let k = 0; k < 20000; k++) {
      const a = sampleAttributes({}, rng, { excludeHeldOut: true });
      expect(isHeldOut(a)).toBe(false);
      seen.add(`${a.shape}/${a.color}`);
    }
    expect(seen.size).toBe(64 - HELD_OUT.length);
    for (let k = 0; k < 500; k++) expect(isHeldOut(sampleAttributes({ shape: "heart" }, rng, { excludeHeldOut: true }))).toBe(false);
    expect(() => sampleAttributes({ shape: "heart", color: "cyan" }, rng, { excludeHeldOut: true })).toThrow(/held out/);
    let held = 0;
    for (let k = 0; k < 5000; k++) if (isHeldOut(sampleAttributes({}, rng))) held++;
    expect(held).toBeGreaterThan(0);
  });

  it("samples true prompts with attributes left out", () => {
    const rng = new Rng(8);
    const a = sampleAttributes({}, rng);
    const lengths = new Set<number>();
    for (let k = 0; k < 200; k++) {
      const text = samplePrompt(a, rng, { photoProbability: 0.2 });
      const spec = parsePrompt(text);
      for (const kind of ATTRIBUTE_KINDS) if (spec[kind] !== undefined) expect(spec[kind]).toBe(a[kind]);
      lengths.add(text.split(" ").length);
    }
    expect(lengths.size).toBeGreaterThan(5);
    expect(samplePrompt(a, rng, { probabilities: { size: 1, color: 1, texture: 1, shape: 1, position: 1, background: 1 } })).toBe(promptFor(a));
  });
});

describe("vocabulary and tokenizer", () => {
  const dirs: string[] = [];
  afterAll(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  it("has stable ids: specials first, grammar words, then 24 identifiers", () => {
    const vocab = vocabulary();
    expect(Object.keys(vocab).slice(0, 4)).toEqual(["<pad>", "<bos>", "<eos>", "<unk>"]);
    expect(Object.values(vocab)).toEqual(VOCABULARY_WORDS.map((_, i) => i));
    expect(new Set(VOCABULARY_WORDS).size).toBe(VOCABULARY_WORDS.length);
    expect(IDENTIFIERS.length).toBe(24);
    for (const id of IDENTIFIERS) {
      expect(vocab[id]).toBeGreaterThanOrEqual(VOCABULARY_WORDS.length - IDENTIFIERS.length);
      expect(() => parsePrompt(`a ${id}`)).toThrow(); // an identifier is not a noun
    }
    expect(vocab.red).toBe(VOCABULARY_WORDS.indexOf("red"));
  });

  it("fits every prompt of the grammar, at its longest, in 16 tokens without <unk>", () => {
    const tok = createTokenizer();
    expect(tok.modelMaxLength).toBe(MODEL_MAX_LENGTH);
    const used = new Set<number>();
    let longest = 0;
    for (const a of allAttributes()) {
      for (const text of [promptFor(a, { photo: true, identifier: "sks" }), promptFor(a)]) {
        const ids = tok.encode(text, { padding: false, truncation: false });
        longest = Math.max(longest, ids.length);
        expect(ids).not.toContain(tok.unkTokenId);
        for (const id of ids) used.add(id);
      }
    }
    expect(longest).toBeLessThanOrEqual(16);
    expect(longest).toBe(16);
    // Every grammar word is produced by some prompt (identifiers apart from sks are only reserved).
    const grammarIds = VOCABULARY_WORDS.map((w, i) => [w, i] as const).filter(([w]) => !w.startsWith("<") && !(IDENTIFIERS as readonly string[]).includes(w));
    for (const [w, i] of grammarIds) if (w !== "an" && w !== "shape") expect(used.has(i), w).toBe(true);
    expect(tok.encode("a shape")).toHaveLength(16);
    expect(tok.encode("a glorp star", { padding: false })).toContain(tok.unkTokenId);
  });

  it("writes a tokenizer folder that reloads to the same ids", async () => {
    const dir = await mkdtemp(join(tmpdir(), "shapes-tok-"));
    dirs.push(dir);
    await writeTokenizerFolder(join(dir, "tokenizer"));
    expect((await readdir(join(dir, "tokenizer"))).sort()).toEqual(["special_tokens_map.json", "tokenizer_config.json", "vocab.json"]);
    const back = await WordLevelTokenizer.fromPretrained(join(dir, "tokenizer"));
    const tok = createTokenizer();
    expect(back.getVocab()).toEqual(tok.getVocab());
    expect(back.modelMaxLength).toBe(16);
    expect(back.unkToken).toBe("<unk>");
    const rng = new Rng(1);
    for (let k = 0; k < 300; k++) {
      const text = samplePrompt(sampleAttributes({}, rng), rng, { photoProbability: 0.3, ...(k % 3 === 0 ? { identifier: IDENTIFIERS[k % 24]! } : {}) });
      expect(back.encode(text), text).toEqual(tok.encode(text));
    }
    const batch = back.call(["a red star", "an orange heart at left"]);
    expect(batch.shape).toEqual([2, 16]);
  });
});
