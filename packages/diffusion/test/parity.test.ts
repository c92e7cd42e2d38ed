/**
 * Numerical parity with the PyTorch reference (../shared/bench/torch_reference.py)
 * through the public loaders and the hook API, on backend-cpu and backend-webgpu.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs-core";
import { readSafetensors, type AptBackend, type DecodedTensor } from "@apt/core";
import { backend as cpu } from "@apt/backend-cpu";
import { backend as webgpu } from "@apt/backend-webgpu";
import { CLIPTextModel, UNet2DConditionModel } from "../src/index.js";

const fixture = join(import.meta.dirname, "..", "..", "..", "..", "shared", "fixtures", "shapes-s-parity");

function relError(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < expected.length; i++) {
    num += (actual[i]! - expected[i]!) ** 2;
    den += expected[i]! ** 2;
  }
  return Math.sqrt(num / den);
}

const golden = await readSafetensors(join(fixture, "golden.safetensors"));
const g = (name: string): DecodedTensor => golden.tensors[name]!;
const ATTN = "down_blocks.1.attentions.0.transformer_blocks.0";

const webgpuProbe = await webgpu.probe();
const backends: [string, AptBackend, boolean][] = [
  ["cpu", cpu, true],
  ["webgpu", webgpu, webgpuProbe.available || !!process.env.CI],
];

for (const [name, backend, run] of backends) {
  const suite = run ? describe : describe.skip;
  suite(`parity with PyTorch on backend ${name}${run ? "" : ` — skipped: ${webgpuProbe.reason}`}`, () => {
    let unet: UNet2DConditionModel;
    let text: CLIPTextModel;

    beforeAll(async () => {
      await backend.init();
      unet = await UNet2DConditionModel.fromPretrained(join(fixture, "unet"));
      text = await CLIPTextModel.fromPretrained(join(fixture, "text_encoder"));
    });
    afterAll(async () => {
      unet?.dispose();
      text?.dispose();
      if (name === "webgpu") await webgpu.dispose();
    });

    it("counts the reference's parameters", () => {
      expect(unet.numParameters()).toBe(1_687_075);
      expect(text.numParameters()).toBe(84_480);
    });

    it("text encoder output and UNet output (and attention probabilities via observeAttention) match to 1e-4", async () => {
      const before = tf.memory().numTensors;
      const ids = g("input_ids");
      const captured: Record<string, tf.Tensor> = {};
      const stop = unet.observeAttention([`${ATTN}.attn1`, `${ATTN}.attn2`], (o) => {
        captured[o.path] = tf.keep(o.probs);
      });
      const [textOut, unetOut] = tf.tidy(() => {
        const hidden = text.forward(tf.tensor2d(ids.data as Int32Array, ids.shape as [number, number], "int32"));
        const s = g("sample");
        const sample = tf.transpose(tf.tensor4d(s.data as Float32Array, s.shape as [number, number, number, number]), [0, 2, 3, 1]) as tf.Tensor4D;
        const t = tf.tensor1d(g("timestep").data as Int32Array, "int32");
        const out = unet.forward(sample, t, hidden);
        return [hidden, tf.transpose(out, [0, 3, 1, 2])];
      });
      stop();
      const errText = relError(await textOut.data(), g("text_out").data as Float32Array);
      const errUnet = relError(await unetOut.data(), g("unet_out").data as Float32Array);
      expect(unetOut.shape).toEqual(g("unet_out").shape);
      const errors: Record<string, number> = { text_out: errText, unet_out: errUnet };
      for (const kind of ["attn1", "attn2"]) {
        const ref = g(`attn_probs.${ATTN}.${kind}`);
        const got = captured[`${ATTN}.${kind}`]!;
        expect(got.shape).toEqual(ref.shape);
        errors[kind] = relError(await got.data(), ref.data as Float32Array);
      }
      console.log(`[parity ${name}] relative errors: ${Object.entries(errors).map(([k, v]) => `${k} ${v.toExponential(2)}`).join(", ")}`);
      for (const [k, v] of Object.entries(errors)) expect(v, k).toBeLessThanOrEqual(1e-4);
      tf.dispose([textOut, unetOut, ...Object.values(captured)]);
      expect(tf.memory().numTensors).toBe(before);
    });
  });
}
