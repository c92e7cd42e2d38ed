// Per shape: of N samples of "a <colour> <shape>" (every colour, held-out pairs included), how many the
// evaluator reads as that shape, and what it reads instead. Usage: node probes/confusion.mjs <model> [perPair 2] [guidance 2]
import { resolve } from "node:path";
import { backend } from "@apt/backend-cpu";
import { AutoencoderKL, StableDiffusionPipeline } from "@apt/diffusion";
import { COLORS, SHAPES, ShapeEvaluator, isHeldOut, measurePromptAgreement } from "../dist/index.js";
await backend.init();
const [dir = "models/base", perPair = "2", guidance = "2"] = process.argv.slice(2);
const model = await StableDiffusionPipeline.fromPretrained(resolve(dir), { loadVae: AutoencoderKL.fromPretrained });
const evaluator = await ShapeEvaluator.load();
const cases = [];
for (let k = 0; k < Number(perPair); k++) for (const shape of SHAPES) for (const color of COLORS) cases.push({ prompt: `a ${color} ${shape}`, expected: { shape, color } });
const r = await measurePromptAgreement(model, evaluator, cases, { guidanceScale: Number(guidance), numInferenceSteps: 25, seed: 0 });
const seen = { right: 0, n: 0 };
for (const shape of SHAPES) {
  const mine = r.samples.map((s, i) => [s, cases[i]]).filter(([, c]) => c.expected.shape === shape);
  const reads = {};
  for (const [s] of mine) reads[s.predicted.shape] = (reads[s.predicted.shape] ?? 0) + 1;
  const wrong = Object.entries(reads).filter(([k]) => k !== shape).sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${v}`).join(", ");
  console.log(`${shape.padEnd(8)} ${reads[shape] ?? 0}/${mine.length}   read instead: ${wrong}`);
}
for (const [s, c] of r.samples.map((s, i) => [s, cases[i]])) if (!isHeldOut(c.expected)) { seen.n++; seen.right += s.predicted.shape === c.expected.shape && s.predicted.color === c.expected.color; }
console.log(`shape & colour on seen pairs: ${seen.right}/${seen.n} (${((100 * seen.right) / seen.n).toFixed(1)}%); shape overall ${(100 * r.byKind.shape).toFixed(1)}%`);
