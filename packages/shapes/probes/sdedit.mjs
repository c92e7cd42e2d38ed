// When is the shape settled? Renders of seen pairs are noised to t and denoised (DDIM 25 steps' timesteps
// ≤ t, classifier-free guidance), once with their own prompt "a <colour> <shape>" and once with the next
// shape's; the evaluator reads the result's shape. Prints, per t: how often it keeps its own shape, and how
// often the swapped prompt's shape wins. Usage: node probes/sdedit.mjs <model> [N 64] [guidance 2] [t 999,600,400,300,200]
import { resolve } from "node:path";
import { tf, Rng } from "@apt/core";
import { backend } from "@apt/backend-cpu";
import { AutoencoderKL, StableDiffusionPipeline } from "@apt/diffusion";
import { SHAPES, ShapeEvaluator, renderBatch, sampleAttributes } from "../dist/index.js";
await backend.init();
const [dir = "models/base", N = "64", G = "2", tl = "999,600,400,300,200"] = process.argv.slice(2);
const model = await StableDiffusionPipeline.fromPretrained(resolve(dir), { loadVae: AutoencoderKL.fromPretrained });
const evaluator = await ShapeEvaluator.load();
const n = Number(N), guidance = Number(G);
const rng = new Rng(4242);
const attrs = Array.from({ length: n }, () => sampleAttributes({}, rng, { excludeHeldOut: true }));
const x0 = tf.tidy(() => { const r = renderBatch(attrs, 4243); return tf.sub(tf.mul(tf.tensor4d(r.images, r.shape), 2), 1); });
const swapped = attrs.map((a) => SHAPES[(SHAPES.indexOf(a.shape) + 1) % SHAPES.length]);
const sched = model.scheduler;
sched.setTimesteps(25);
const all = Array.from(sched.timesteps);

function denoise(tStart, prompts) {
  const ts = all.filter((t) => t <= tStart);
  const context = tf.tidy(() => tf.concat([model.encodePrompt(prompts.map(() => "")), model.encodePrompt(prompts)], 0));
  let x = tf.tidy(() => sched.addNoise(x0, tf.randomNormal(x0.shape, 0, 1, "float32", tStart), new Int32Array(n).fill(ts[0])));
  for (const t of ts) {
    const next = tf.tidy(() => {
      const out = model.unet.forward(tf.concat([x, x], 0), tf.fill([2 * n], t, "int32"), context);
      const [u, c] = tf.split(out, 2, 0);
      const { prevSample, predOriginalSample } = sched.step(tf.add(u, tf.mul(tf.sub(c, u), guidance)), t, x, { eta: 0 });
      predOriginalSample.dispose();
      return prevSample;
    });
    x.dispose();
    x = next;
  }
  context.dispose();
  const images = tf.tidy(() => tf.clipByValue(tf.add(tf.mul(x, 0.5), 0.5), 0, 1));
  x.dispose();
  const read = Array.from(evaluator.predict(images).shape.index, (k) => SHAPES[k]);
  images.dispose();
  return read;
}
for (const t of tl.split(",").map(Number)) {
  const own = denoise(t, attrs.map((a) => `a ${a.color} ${a.shape}`));
  const swap = denoise(t, attrs.map((a, i) => `a ${a.color} ${swapped[i]}`));
  const keep = own.filter((s, i) => s === attrs[i].shape).length;
  const follow = swap.filter((s, i) => s === swapped[i]).length;
  console.log(`t ${t}: own prompt keeps the shape ${keep}/${n}; swapped prompt's shape ${follow}/${n}`);
}
