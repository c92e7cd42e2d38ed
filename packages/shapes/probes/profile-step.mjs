// One fwd+bwd of the UNet variant (batch B, one thread): time per tfjs kernel.
import { tf } from "@apt/core";
import createBaseModel from "../scripts/base-model.mjs";
const [variant = "shapes-t", B = "8"] = process.argv.slice(2);
const model = await createBaseModel({ unet: variant, textEncoder: "models/base/text_encoder" });
const b = Number(B);
const x = tf.randomNormal([b, 32, 32, 3]);
const t = tf.tensor1d(Array.from({ length: b }, (_, i) => 100 * i), "int32");
const ctx = model.encodePrompt(Array.from({ length: b }, () => "a red cross"));
const vars = [...model.unet.namedParameters().values()];
const step = () => { const { value, grads } = tf.variableGrads(() => tf.mean(tf.square(model.unet.forward(x, t, ctx))), vars); tf.dispose([value, ...Object.values(grads)]); };
step(); step();
let t0 = performance.now(); step(); console.log(`plain step ${(performance.now() - t0).toFixed(0)} ms`);
const prof = await tf.profile(step);
const by = {};
for (const k of prof.kernels) { const e = (by[k.name] ??= { ms: 0, n: 0 }); e.ms += typeof k.kernelTimeMs === "number" ? k.kernelTimeMs : 0; e.n++; }
const total = Object.values(by).reduce((a, e) => a + e.ms, 0);
console.log(`profiled kernels total ${total.toFixed(0)} ms`);
for (const [name, e] of Object.entries(by).sort((a, b) => b[1].ms - a[1].ms).slice(0, 25)) console.log(`${name.padEnd(28)} ${e.ms.toFixed(1).padStart(7)} ms ${(100 * e.ms / total).toFixed(1).padStart(5)}%  ×${e.n}`);
