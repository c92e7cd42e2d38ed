// Sampling with a per-timestep schedule of conditioning: for t > tUncond the prediction is the unconditional
// one; for t in [gLo, gHi] CFG at scale g; elsewhere the conditional prediction (g = 1).
// Usage: node probes/guidance-schedule.mjs <model> <N seen prompts> <tUncond> <gLo> <gHi> <g>
// (1000 0 999 2 is the protocol of evaluate-base --guidance 2 and gives its numbers on the same prompts and seeds)
import { resolve } from "node:path";
import { tf, Rng } from "@apt/core";
import { backend } from "@apt/backend-cpu";
import { AutoencoderKL, StableDiffusionPipeline } from "@apt/diffusion";
import { ShapeEvaluator, agreementPrompts, SHAPES, COLORS } from "../dist/index.js";
await backend.init();
const [dir, N, tU, gLo, gHi, G] = process.argv.slice(2);
const model = await StableDiffusionPipeline.fromPretrained(resolve(dir), { loadVae: AutoencoderKL.fromPretrained });
const evaluator = await ShapeEvaluator.load();
const cases = agreementPrompts(Number(N), { split: "seen", seed: 1 });
const sched = model.scheduler;
let right = 0, shapeRight = 0, colorRight = 0;
for (let s = 0; s < cases.length; s += 32) {
  const chunk = cases.slice(s, s + 32);
  const n = chunk.length;
  const rng = new Rng(s / 32);
  const noise = new Float32Array(n * 32 * 32 * 3); for (let i = 0; i < noise.length; i++) noise[i] = rng.normal();
  let x = tf.tensor4d(noise, [n, 32, 32, 3]);
  const context = tf.tidy(() => tf.concat([model.encodePrompt(chunk.map(() => "")), model.encodePrompt(chunk.map((c) => c.prompt))], 0));
  sched.setTimesteps(25);
  for (const t of Array.from(sched.timesteps)) {
    const next = tf.tidy(() => {
      const out = model.unet.forward(tf.concat([x, x], 0), tf.fill([2 * n], t, "int32"), context);
      const [u, c] = tf.split(out, 2, 0);
      const g = t > Number(tU) ? 0 : t >= Number(gLo) && t <= Number(gHi) ? Number(G) : 1;
      const eps = tf.add(u, tf.mul(tf.sub(c, u), g));
      const { prevSample, predOriginalSample } = sched.step(eps, t, x, { eta: 0 });
      predOriginalSample.dispose();
      return prevSample;
    });
    x.dispose(); x = next;
  }
  context.dispose();
  const images = tf.tidy(() => tf.clipByValue(tf.add(tf.mul(x, 0.5), 0.5), 0, 1)); x.dispose();
  const p = evaluator.predict(images); images.dispose();
  chunk.forEach((c, i) => {
    const sh = SHAPES[p.shape.index[i]] === c.expected.shape, co = COLORS[p.color.index[i]] === c.expected.color;
    shapeRight += sh; colorRight += co; right += sh && co;
  });
}
const n = cases.length;
console.log(`tUncond ${tU} guidance ${G} in [${gLo}, ${gHi}]: shape & colour ${right}/${n} (${(100 * right / n).toFixed(1)}%), shape ${(100 * shapeRight / n).toFixed(1)}%, colour ${(100 * colorRight / n).toFixed(1)}%`);
