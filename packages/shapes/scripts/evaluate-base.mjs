#!/usr/bin/env node
// Measures a ShapeWorld base model by the evaluator on its own samples (DDIM,
// fixed seeds): for prompts that state shape and colour (and, half the time
// each, size, texture, position, background), how often the sample shows what
// was stated — over seen shape × colour pairs and over the pairs held out of
// pretraining (composition). Also writes the 8 × 8 "a <colour> <shape>" grid.
//
//   node scripts/evaluate-base.mjs [--model models/base] [--seen 256] [--held-out 96]
//        [--steps 25] [--guidance 4] [--eta 0] [--grid file.png] [--json file.json]
import { writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { PNG } from "pngjs";
import { writeFileAtomic } from "@apt/core";
import { backend } from "@apt/backend-cpu";
import { AutoencoderKL, StableDiffusionPipeline } from "@apt/diffusion";
import { COLORS, SHAPES, ShapeEvaluator, agreementPrompts, isHeldOut, measurePromptAgreement, tileImages } from "../dist/index.js";

const here = dirname(fileURLToPath(import.meta.url));
const cwd = process.env.INIT_CWD ?? process.cwd();
const { values: args } = parseArgs({
  args: process.argv.slice(2).filter((a) => a !== "--"),
  options: {
    model: { type: "string", default: join(here, "..", "models", "base") },
    seen: { type: "string", default: "256" },
    "held-out": { type: "string", default: "96" },
    steps: { type: "string", default: "25" },
    guidance: { type: "string", default: "4" },
    // DDIM's eta: 0 deterministic, 1 ancestral (DDPM-like) noise at each step.
    eta: { type: "string", default: "0" },
    seed: { type: "string", default: "0" },
    grid: { type: "string" },
    json: { type: "string" },
  },
});

await backend.init();
const model = await StableDiffusionPipeline.fromPretrained(resolve(cwd, args.model), { loadVae: AutoencoderKL.fromPretrained });
const evaluator = await ShapeEvaluator.load();
const sampling = { numInferenceSteps: Number(args.steps), guidanceScale: Number(args.guidance), eta: Number(args.eta), seed: Number(args.seed) };
const pct = (v) => (v === undefined || Number.isNaN(v) ? "–" : `${(100 * v).toFixed(1)}%`);

const started = performance.now();
const report = { model: resolve(cwd, args.model), sampling, splits: {} };
for (const [split, count] of [["seen", Number(args.seen)], ["held-out", Number(args["held-out"])]]) {
  if (count <= 0) continue;
  const cases = agreementPrompts(count, { split, seed: split === "seen" ? 1 : 2 });
  const r = await measurePromptAgreement(model, evaluator, cases, {
    ...sampling,
    onProgress: (done, total) => process.stderr.write(`\r${split}: ${done}/${total} samples`),
  });
  process.stderr.write("\n");
  report.splits[split] = { count: r.count, shapeAndColor: r.shapeAndColor, byKind: r.byKind, stated: r.stated, all: r.all };
}
report.seconds = (performance.now() - started) / 1000;

console.log(`\nprompt agreement of ${report.model} (DDIM ${sampling.numInferenceSteps} steps, eta ${sampling.eta}, guidance ${sampling.guidanceScale}, evaluator-judged)\n`);
console.log("| split | samples | shape & colour | shape | colour | texture | size | position | background | everything stated |");
console.log("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
for (const [split, r] of Object.entries(report.splits)) {
  const k = r.byKind;
  console.log(`| ${split} | ${r.count} | ${pct(r.shapeAndColor)} | ${pct(k.shape)} | ${pct(k.color)} | ${pct(k.texture)} | ${pct(k.size)} | ${pct(k.position)} | ${pct(k.background)} | ${pct(r.all)} |`);
}
console.log(`\n${report.seconds.toFixed(0)} s`);

if (args.grid !== undefined) {
  // Rows: shapes; columns: colours; one sample of "a <colour> <shape>" each (held-out pairs included).
  const cases = SHAPES.flatMap((shape) => COLORS.map((color) => ({ prompt: `a ${color} ${shape}`, expected: { shape, color } })));
  const r = await measurePromptAgreement(model, evaluator, cases, { ...sampling, batchSize: 32 });
  const grid = tileImages(r.images, cases.length, { columns: COLORS.length, scale: 3, padding: 3 });
  // Held-out cells get a grey frame instead of white.
  const png = new PNG({ width: grid.width, height: grid.height });
  for (let i = 0; i < grid.width * grid.height; i++) {
    png.data.set([grid.data[i * 3], grid.data[i * 3 + 1], grid.data[i * 3 + 2], 255], i * 4);
  }
  const tile = 32 * 3;
  cases.forEach((c, k) => {
    if (!isHeldOut(c.expected)) return;
    const ox = 3 + (k % COLORS.length) * (tile + 3) - 3;
    const oy = 3 + Math.floor(k / COLORS.length) * (tile + 3) - 3;
    for (let y = oy; y < oy + tile + 6; y++) {
      for (let x = ox; x < ox + tile + 6; x++) {
        const inside = x >= ox + 3 && x < ox + 3 + tile && y >= oy + 3 && y < oy + 3 + tile;
        if (!inside) png.data.set([150, 150, 150, 255], (y * grid.width + x) * 4);
      }
    }
  });
  const out = resolve(cwd, args.grid);
  writeFileSync(out, PNG.sync.write(png));
  const count = (held, agrees) => r.samples.filter((s, i) => isHeldOut(cases[i].expected) === held && (!agrees || s.agrees)).length;
  report.grid = { path: out, seenRight: count(false, true), seenTotal: count(false, false), heldOutRight: count(true, true), heldOutTotal: count(true, false) };
  const g = report.grid;
  console.log(`grid → ${out}: shape & colour right in ${g.seenRight}/${g.seenTotal} seen and ${g.heldOutRight}/${g.heldOutTotal} held-out cells`);
}

if (args.json !== undefined) await writeFileAtomic(resolve(cwd, args.json), `${JSON.stringify(report, null, 2)}\n`);
process.exit(0);
