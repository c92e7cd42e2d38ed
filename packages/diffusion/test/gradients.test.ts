/**
 * One training step's gradients against PyTorch: the loss
 * mean((unet(x_t, t, text(ids)) − v)²) on the shapes-s parity weights, with the
 * text encoder trainable, differentiated by tfjs through the public API and by
 * ../shared/bench/torch_reference.py in float64 (scripts/make-grad-fixture.py
 * wrote test/fixtures/train-step-grads.safetensors). Every parameter's gradient
 * norm is compared, and the full gradient of the text encoder and of every
 * attention's key/value/output weights (the way from the loss back into the
 * text encoder, which pretraining and text-encoder LoRA depend on).
 */
import { beforeAll, describe, expect, it } from "vitest";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs-core";
import { readSafetensors } from "@apt/core";
import { backend } from "@apt/backend-cpu";
import { CLIPTextModel, UNet2DConditionModel, toDiffusersLayout } from "../src/index.js";

const fixture = join(import.meta.dirname, "..", "..", "..", "..", "shared", "fixtures", "shapes-s-parity");
const ref = await readSafetensors(join(import.meta.dirname, "fixtures", "train-step-grads.safetensors"));
const T = (name: string): tf.Tensor => {
  const e = ref.tensors[name]!;
  return tf.tensor(e.data as Float32Array | Int32Array, e.shape, e.data instanceof Int32Array ? "int32" : "float32");
};
const scalar = (name: string): number => (ref.tensors[name]!.data as Float32Array)[0]!;

function relErr(a: tf.Tensor, b: tf.Tensor): number {
  // A key projection's bias has zero gradient in exact arithmetic (softmax ignores a
  // constant per query): there the error is taken against 1e-6 instead of ~1e-17.
  return tf.tidy(() => tf.norm(tf.sub(a, b)).dataSync()[0]! / Math.max(tf.norm(b).dataSync()[0]!, 1e-6));
}

describe("a training step's gradients equal PyTorch's (float64)", () => {
  let unet: UNet2DConditionModel;
  let text: CLIPTextModel;
  const grads = new Map<string, tf.Tensor>();
  let loss = NaN;

  beforeAll(async () => {
    await backend.init();
    unet = await UNet2DConditionModel.fromPretrained(join(fixture, "unet"));
    text = await CLIPTextModel.fromPretrained(join(fixture, "text_encoder"));
    const specs = new Map([...unet.namedParamSpecs()].map(([n, s]) => [n, s] as const));
    for (const [n, s] of text.namedParamSpecs()) specs.set(`text_encoder.${n}`, s);
    const vars = [...specs.values()].map((s) => s.variable!);
    const xt = tf.transpose(T("x_t"), [0, 2, 3, 1]) as tf.Tensor4D;
    const target = tf.transpose(T("target"), [0, 2, 3, 1]) as tf.Tensor4D;
    const ids = T("input_ids") as tf.Tensor2D;
    const t = T("t") as tf.Tensor1D;
    const { value, grads: g } = tf.variableGrads(() => {
      const ctx = text.forward(ids);
      return tf.mean(tf.square(tf.sub(unet.forward(xt, t, ctx), target))) as tf.Scalar;
    }, vars);
    loss = value.dataSync()[0]!;
    value.dispose();
    const byVariable = new Map(vars.map((v) => [v.name, v]));
    for (const [name, spec] of specs) {
      const grad = g[spec.variable!.name]!;
      expect(byVariable.has(spec.variable!.name)).toBe(true);
      // "plain" layouts come back as the gradient itself, which is disposed below.
      grads.set(name, tf.tidy(() => tf.clone(toDiffusersLayout(grad, spec.layout))));
    }
    tf.dispose([...Object.values(g), xt, target, ids, t]);
  });

  it("loss", () => {
    expect(Math.abs(loss - scalar("loss"))).toBeLessThan(1e-5);
  });

  it("every parameter's gradient norm (UNet and text encoder)", () => {
    const names = Object.keys(ref.tensors).filter((k) => k.startsWith("grad_norm/")).map((k) => k.slice("grad_norm/".length));
    expect(names.length).toBe(grads.size);
    const bad: string[] = [];
    for (const name of names) {
      const want = scalar(`grad_norm/${name}`);
      const got = tf.tidy(() => tf.norm(grads.get(name)!).dataSync()[0]!);
      if (!(Math.abs(got - want) <= 1e-3 * want + 1e-7)) bad.push(`${name}: ${got} vs ${want}`);
    }
    expect(bad).toEqual([]);
  });

  it("full gradients of the text encoder and of the attention key/value/output weights", () => {
    const names = Object.keys(ref.tensors).filter((k) => k.startsWith("grad/")).map((k) => k.slice("grad/".length));
    expect(names.filter((n) => n.startsWith("text_encoder.")).length).toBeGreaterThan(20);
    expect(names.filter((n) => n.endsWith("attn2.to_k.weight")).length).toBeGreaterThan(3);
    const errors = names.map((n) => [n, tf.tidy(() => relErr(grads.get(n)!, T(`grad/${n}`)))] as const);
    const worst = errors.reduce((a, b) => (b[1] > a[1] ? b : a));
    expect(worst[1], worst[0]).toBeLessThan(2e-3);
  });
});
