// Norms of the UNet's time embedding and of the pooled-prompt add_embedding, and how much each varies.
import { tf } from "@apt/core";
import { backend } from "@apt/backend-cpu";
import { AutoencoderKL, StableDiffusionPipeline } from "@apt/diffusion";
await backend.init();
const m = await StableDiffusionPipeline.fromPretrained(process.argv[2] ?? "models/base", { loadVae: AutoencoderKL.fromPretrained });
const u = m.unet;
const ts = [0, 100, 250, 400, 600, 800, 999];
const te = u.timeEmbedding(tf.tensor1d(ts, "float32"), ts.length);
const prompts = ["", "a cross", "a red cross", "a blue cross", "a red circle", "a blue circle", "a red square", "a green star"];
const ae = u.addEmbedding.call(m.encodePrompt(prompts));
const norms = (x) => Array.from(tf.norm(x, 2, 1).dataSync()).map((v) => v.toFixed(1));
console.log("time emb norms", ts.map((t, i) => `t${t}:${norms(te)[i]}`).join(" "));
console.log("add emb norms", prompts.map((p, i) => `"${p}":${norms(ae)[i]}`).join(" "));
const d = (a, b) => tf.norm(tf.sub(a, b)).dataSync()[0].toFixed(1);
const row = (x, i) => tf.slice(x, [i, 0], [1, -1]);
console.log("time t100 vs t800 distance", d(row(te, 1), row(te, 5)), " t400 vs t600", d(row(te, 3), row(te, 4)));
console.log("add red cross vs blue cross", d(row(ae, 2), row(ae, 3)), " red cross vs red circle", d(row(ae, 2), row(ae, 4)), " '' vs red cross", d(row(ae, 0), row(ae, 2)), " 'a cross' vs 'a red cross'", d(row(ae, 1), row(ae, 2)));
