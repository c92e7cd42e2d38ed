// Diffusion-classifier proxy for "does the model use the shape word": renders of seen pairs are noised at
// t, and the v-prediction loss is computed under "a <colour> <shape>" for each of the 8 shapes; the shape
// with the lowest loss is the model's guess. Also: the mean loss gap (wrong shapes − right shape), relative.
// Usage: node probes/dc-shape.mjs <model dir> [N 64] [t list 300,500,700] ["a {c} {s}" prompt template]
import { resolve } from "node:path";
import { tf, Rng } from "@apt/core";
import { backend } from "@apt/backend-cpu";
import { AutoencoderKL, StableDiffusionPipeline } from "@apt/diffusion";
import { SHAPES, renderBatch, sampleAttributes } from "../dist/index.js";
await backend.init();
const [dir = "models/base", N = "64", tl = "300,500,700", template = "a {c} {s}"] = process.argv.slice(2);
const model = await StableDiffusionPipeline.fromPretrained(resolve(dir), { loadVae: AutoencoderKL.fromPretrained });
const sched = model.scheduler; // addNoise / getVelocity: the training-time forward process
const rng = new Rng(12345);
const n = Number(N);
const attrs = Array.from({ length: n }, () => sampleAttributes({}, rng, { excludeHeldOut: true }));
const r = renderBatch(attrs, 777);
const x0 = tf.tidy(() => tf.sub(tf.mul(tf.tensor4d(r.images, r.shape), 2), 1));
const K = SHAPES.length;
const ctxAll = model.encodePrompt(attrs.flatMap((a) => SHAPES.map((s) => template.replace("{c}", a.color).replace("{s}", s))));
const started = performance.now();
for (const t of tl.split(",").map(Number)) {
  let right = 0, gapSum = 0;
  const noise = tf.randomNormal(x0.shape, 0, 1, "float32", 99 + t);
  for (let s = 0; s < n; s += 8) {
    const m = Math.min(8, n - s);
    const losses = tf.tidy(() => {
      const xs = tf.slice(x0, [s, 0, 0, 0], [m, -1, -1, -1]);
      const ns = tf.slice(noise, [s, 0, 0, 0], [m, -1, -1, -1]);
      const ts = new Int32Array(m).fill(t);
      const xt = sched.addNoise(xs, ns, ts);
      const v = sched.getVelocity(xs, ns, ts);
      const rep = (x) => tf.reshape(tf.tile(tf.expandDims(x, 1), [1, K, 1, 1, 1]), [m * K, 32, 32, 3]);
      const ctx = tf.slice(ctxAll, [s * K, 0, 0], [m * K, -1, -1]);
      const pred = model.unet.forward(rep(xt), tf.fill([m * K], t, "int32"), ctx);
      return tf.mean(tf.square(tf.sub(pred, rep(v))), [1, 2, 3]).reshape([m, K]).arraySync();
    });
    losses.forEach((row, i) => {
      const truth = SHAPES.indexOf(attrs[s + i].shape);
      const best = row.indexOf(Math.min(...row));
      right += best === truth;
      const wrong = row.filter((_, k) => k !== truth);
      gapSum += (wrong.reduce((a, b) => a + b, 0) / wrong.length - row[truth]) / row[truth];
    });
  }
  noise.dispose();
  console.log(`t ${t}: shape picked right ${right}/${n} (${((100 * right) / n).toFixed(1)}%), mean relative loss gap ${(100 * gapSum / n).toFixed(2)}%`);
}
console.log(`${((performance.now() - started) / 1000).toFixed(0)} s`);
