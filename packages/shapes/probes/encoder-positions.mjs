// Per position of the text encoder's output: mean cosine between "a <c> <s>" prompts
// that differ only in the shape word vs only in the colour word.
import { tf } from "@apt/core";
import { backend } from "@apt/backend-cpu";
import { CLIPTextModel } from "@apt/diffusion";
import { COLORS, SHAPES, createTokenizer } from "../dist/index.js";
await backend.init();
const dir = process.argv[2] ?? "models/base/text_encoder";
const enc = await CLIPTextModel.fromPretrained(dir);
const tok = createTokenizer();
const grid = SHAPES.flatMap((s) => COLORS.map((c) => `a ${c} ${s}`));
const t = tok.call(grid, { padding: "max_length", truncation: true, maxLength: 16 });
const h = enc.forward(tf.tensor2d(t.inputIds, t.shape, "int32"));
const nC = COLORS.length;
function cosPairs(x) { // x [G, D]
  const u = tf.div(x, tf.norm(x, 2, 1, true));
  const m = tf.matMul(u, u, false, true).arraySync();
  const p = { shape: [], colour: [] };
  for (let i = 0; i < grid.length; i++) for (let j = i + 1; j < grid.length; j++) {
    const [si, ci, sj, cj] = [Math.floor(i / nC), i % nC, Math.floor(j / nC), j % nC];
    if (ci === cj) p.shape.push(m[i][j]); if (si === sj) p.colour.push(m[i][j]);
  }
  const mean = (a) => (a.reduce((x, y) => x + y, 0) / a.length).toFixed(3);
  return `shape ${mean(p.shape)} colour ${mean(p.colour)}`;
}
console.log("tokens of", grid[0], Array.from(t.inputIds.slice(0, 16)).join(" "));
for (let p = 0; p < 16; p++) console.log(`pos ${p}: ${cosPairs(tf.squeeze(tf.slice(h, [0, p, 0], [-1, 1, -1]), [1]))}`);
console.log(`mean over positions: ${cosPairs(tf.mean(h, 1))}`);
// Centered (subtract mean over the grid) — cosine after removing the common component.
const hc = tf.sub(h, tf.mean(h, 0, true));
for (const p of [4, 8, 15]) console.log(`centered pos ${p}: ${cosPairs(tf.squeeze(tf.slice(hc, [0, p, 0], [-1, 1, -1]), [1]))}`);
console.log(`centered mean: ${cosPairs(tf.mean(hc, 1))}`);
