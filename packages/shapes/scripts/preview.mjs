#!/usr/bin/env node
// Writes a PNG grid of 64 random ShapeWorld renders (8×8, magnified) and prints
// each tile's full prompt, for humans to check the world by eye.
//   pnpm --filter @apt/shapes preview [--seed 1] [--out file.png] [--scale 4] [--count 64]
// (default output: packages/shapes/preview.png, git-ignored).
import { writeFileSync } from "node:fs";
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { PNG } from "pngjs";
import { Rng } from "@apt/core";
import { promptFor, renderBatch, sampleAttributes, tileImages } from "../dist/index.js";

const { values } = parseArgs({
  // pnpm passes a literal "--" through.
  args: process.argv.slice(2).filter((a) => a !== "--"),
  options: {
    seed: { type: "string", default: "0" },
    out: { type: "string" },
    scale: { type: "string", default: "4" },
    count: { type: "string", default: "64" },
  },
});
const seed = Number(values.seed);
const count = Number(values.count);
const rng = new Rng(seed);
const list = Array.from({ length: count }, () => sampleAttributes({}, rng));

const started = performance.now();
const { images } = renderBatch(list, seed);
const ms = performance.now() - started;

const grid = tileImages(images, count, { columns: 8, scale: Number(values.scale), padding: 4 });
const png = new PNG({ width: grid.width, height: grid.height });
for (let i = 0; i < grid.width * grid.height; i++) {
  png.data[i * 4] = grid.data[i * 3];
  png.data[i * 4 + 1] = grid.data[i * 3 + 1];
  png.data[i * 4 + 2] = grid.data[i * 3 + 2];
  png.data[i * 4 + 3] = 255;
}
// Default: packages/shapes/preview.png (git-ignored); --out is relative to where pnpm was run.
const out = values.out === undefined ? fileURLToPath(new URL("../preview.png", import.meta.url)) : resolve(process.env.INIT_CWD ?? process.cwd(), values.out);
writeFileSync(out, PNG.sync.write(png));

list.forEach((attrs, i) => {
  console.log(`${String(Math.floor(i / 8)).padStart(1)},${i % 8}  ${promptFor(attrs)}`);
});
console.log(`\n${count} renders in ${ms.toFixed(1)} ms → ${out}`);
