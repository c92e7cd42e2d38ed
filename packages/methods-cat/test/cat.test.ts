/**
 * CAT: the loss against hand-computed values, its gradient (including the
 * stop-gradient on the base prediction), min-SNR weights, caption stripping,
 * variants and options.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as tf from "@tensorflow/tfjs-core";
import { AptError, Rng, expectNoTensorLeak, type BatchItem, type ConceptSpec, type Method, type SetupContext, type StepState, type TrainingModel } from "@apt/core";
import { backend } from "@apt/backend-cpu";
import catDefault, { cat, catOptions, minSnrWeights, stopGradient, stripTrigger, type CatOptionsInput } from "../src/index.js";

await backend.init();

const concept = (trigger?: string, name?: string): ConceptSpec =>
  ({ images: undefined as unknown as tf.Tensor4D, prompt: `a photo of ${trigger ?? "x"} star`, trigger, name }) as ConceptSpec;

function context(o: { predictionType?: string; concepts?: ConceptSpec[] } = {}): SetupContext {
  const model = { scheduler: { config: { num_train_timesteps: 1000, prediction_type: o.predictionType ?? "epsilon" } } } as unknown as TrainingModel;
  return {
    instanceName: "cat",
    model,
    rng: new Rng(0),
    runDir: "/nonexistent",
    methods: ["lora", "cat"],
    concepts: o.concepts ?? [concept("sks")],
    train: { steps: 10, batchSize: 2, seed: 0 },
    log: () => {},
  };
}

async function make(options: CatOptionsInput, ctx = context()): Promise<Method> {
  return cat.create(catOptions.parse(options), ctx);
}

const items = (...kinds: string[]): BatchItem[] => kinds.map((kind) => ({ prompt: kind === "instance" ? "a photo of sks star" : "a photo of a star", kind, weight: 1 }));

/** A StepState with what CAT reads: batch items, variants, snr, task. */
function state(variants: tf.Tensor4D[], snr: number[], kinds = ["instance", "instance"]): StepState {
  return { step: 1, task: 0, rng: new Rng(1), batch: { images: undefined, items: items(...kinds) }, variants, snr: Float64Array.from(snr) } as unknown as StepState;
}

// Two samples of [1, 2, 2, 1].
//   sample 0: a − b = [1, 0, 2, −1]  → mean square 1.5
//   sample 1: a − b = [0, −2, 2, 2]  → mean square 3
const A = [
  [1, 2, 3, 4],
  [0.5, -1, 2, 0],
];
const B = [
  [0, 2, 1, 5],
  [0.5, 1, 0, -2],
];
let a: tf.Tensor4D;
let b: tf.Tensor4D;
beforeAll(() => {
  a = tf.tensor4d(A.flat(), [2, 2, 2, 1]);
  b = tf.tensor4d(B.flat(), [2, 2, 2, 1]);
});
afterAll(() => tf.dispose([a, b]));

describe("min-SNR weights", () => {
  it("epsilon: min(SNR, γ)/SNR, exactly 1 at or below γ (and at SNR 0)", () => {
    expect(Array.from(minSnrWeights([2, 5, 10, 0], 5, "epsilon"))).toEqual([1, 1, 0.5, 1]);
  });
  it("v_prediction: min(SNR, γ)/(SNR + 1)", () => {
    const w = minSnrWeights([2, 10, 0], 5, "v_prediction");
    expect(w[0]).toBeCloseTo(2 / 3, 7);
    expect(w[1]).toBeCloseTo(5 / 11, 7);
    expect(w[2]).toBe(0);
  });
  it("refuses other prediction types", () => {
    expect(() => minSnrWeights([1], 5, "sample")).toThrow(/epsilon and v_prediction/);
  });
});

describe("CAT loss", () => {
  it("λ·mean_i(w_i·mean_HWC((a − b)²)) with γ = 5, λ = 0.5, ε-prediction", async () => {
    const m = await make({ cat_factor: 0.5, snr_gamma: 5 });
    // w = [1 (SNR 2 ≤ 5), 5/10]: 0.5 · (1·1.5 + 0.5·3)/2 = 0.75
    const { cat: value } = m.losses!(state([a, b], [2, 10]));
    expect(value!.shape).toEqual([]);
    expect(Math.abs(value!.dataSync()[0]! - 0.75)).toBeLessThan(1e-6);
    value!.dispose();
    expect(m.metrics!()).toEqual({ cat: expect.closeTo(0.75, 6) });
    m.dispose!();
  });

  it("v-prediction weights min(SNR, γ)/(SNR + 1)", async () => {
    const m = await make({ cat_factor: 0.5, snr_gamma: 5 }, context({ predictionType: "v_prediction" }));
    // 0.5 · ((2/3)·1.5 + (5/11)·3)/2 = 6.5/11
    const { cat: value } = m.losses!(state([a, b], [2, 10]));
    expect(Math.abs(value!.dataSync()[0]! - 6.5 / 11)).toBeLessThan(1e-6);
    value!.dispose();
    m.dispose!();
  });

  it("without snr_gamma: λ·mean_i(mean_HWC((a − b)²)); default λ = 1", async () => {
    const m = await make({});
    const { cat: value } = m.losses!(state([a, b], [2, 10]));
    expect(Math.abs(value!.dataSync()[0]! - 2.25)).toBeLessThan(1e-6);
    value!.dispose();
    m.dispose!();
  });

  it("averages over instance items only: a prior sample contributes 0", async () => {
    const m = await make({ cat_factor: 0.5, snr_gamma: 5 });
    const { cat: value } = m.losses!(state([a, b], [2, 10], ["instance", "prior"]));
    expect(Math.abs(value!.dataSync()[0]! - 0.5 * 1.5)).toBeLessThan(1e-6);
    value!.dispose();
    const { cat: none } = m.losses!(state([a, b], [2, 10], ["prior", "prior"]));
    expect(none!.dataSync()[0]).toBe(0);
    none!.dispose();
    m.dispose!();
  });

  it("gradient: 2λ·w_i·(a − b)/(N·n) w.r.t. the adapted prediction, zero w.r.t. the base one", async () => {
    const m = await make({ cat_factor: 0.5, snr_gamma: 5 });
    const s = state([a, b], [2, 10]);
    const [ga, gb] = tf.grads((x: tf.Tensor, y: tf.Tensor) => m.losses!({ ...s, variants: [x as tf.Tensor4D, y as tf.Tensor4D] }).cat!)([a, b]);
    const w = [1, 0.5];
    const N = 4;
    const n = 2;
    const expected = A.flatMap((row, i) => row.map((v, j) => (2 * 0.5 * w[i]! * (v - B[i]![j]!)) / (N * n)));
    const got = Array.from(ga!.dataSync());
    expected.forEach((e, k) => expect(Math.abs(got[k]! - e)).toBeLessThan(1e-7));
    expect(Array.from(gb!.dataSync())).toEqual(new Array(8).fill(0));
    tf.dispose([ga!, gb!]);
    m.dispose!();
  });

  it("no gradient reaches shared weights through the base prediction", () => {
    // Full fine-tuning + CAT: both variants depend on the same variable.
    const v = tf.variable(tf.scalar(1.5));
    const x = tf.ones([1, 1, 1, 1]);
    const { grads, value } = tf.variableGrads(() => {
      const adapted = tf.mul(x, tf.mul(v, 2));
      const base = stopGradient(tf.mul(x, tf.mul(v, 3)));
      return tf.sum(tf.square(tf.sub(adapted, base))) as tf.Scalar;
    }, [v]);
    // d/dv (2v − sg(3v))² = 2·(2v − 3v)·2 = −4v = −6
    expect(value.dataSync()[0]).toBeCloseTo(2.25, 6);
    expect(grads[v.name]!.dataSync()[0]).toBeCloseTo(-6, 6);
    tf.dispose([v, x, value, ...Object.values(grads)]);
  });

  it("leaks no tensors (losses, metrics, weigh)", async () => {
    const m = await make({ snr_gamma: 5 });
    const s = state([a, b], [2, 10]);
    await expectNoTensorLeak("cat losses", () => {
      for (let i = 0; i < 3; i++) tf.tidy(() => void m.losses!(s));
      m.metrics!();
      m.weigh!(s).dispose();
    });
    m.dispose!();
  });
});

describe("weigh", () => {
  it("returns w(t) per sample from s.snr when snr_gamma is set", async () => {
    const m = await make({ snr_gamma: 5 });
    const w = m.weigh!(state([a, b], [2, 10]));
    expect(w.shape).toEqual([2]);
    expect(Array.from(w.dataSync())).toEqual([1, 0.5]);
    w.dispose();
  });
  it("returns ones when snr_gamma is null", async () => {
    const m = await make({});
    const w = m.weigh!(state([a, b], [2, 10]));
    expect(Array.from(w.dataSync())).toEqual([1, 1]);
    w.dispose();
  });
});

describe("caption without the trigger (c_no)", () => {
  it.each([
    ["shs, a cat statue lying on the carpet", "shs", "a cat statue lying on the carpet"],
    ["a photo of sks star", "sks", "a photo of star"],
    ["sks star", "sks", "star"],
    ["a photo of sks", "sks", "a photo of"],
    ["a sks star.", "sks", "a star."],
    ["sks, sks dog on the sks, beach", "sks", "dog on the beach"],
    ["a photo of sksx star", "sks", "a photo of sksx star"],
    ["a photo of xsks star", "sks", "a photo of xsks star"],
    ["a photo of SKS star", "sks", "a photo of SKS star"],
    ["a photo of <s*> toy", "<s*>", "a photo of toy"],
    ["a photo of  a  star", "sks", "a photo of a star"],
  ])("%j − %j → %j", (caption, trigger, expected) => {
    expect(stripTrigger(caption, trigger)).toBe(expected);
  });
});

describe("variants", () => {
  it("two variants on the same x_t and t: c_no with adapters on, c_no with adapters off", async () => {
    const m = await make({});
    const v = m.variants!({ step: 1, task: 0, rng: new Rng(0), batch: { images: undefined as unknown as tf.Tensor4D, items: items("instance", "prior") } });
    expect(v).toEqual([
      { prompts: ["a photo of star", "a photo of a star"], adapters: true },
      { prompts: ["a photo of star", "a photo of a star"], adapters: false },
    ]);
  });
  it("uses the current task's concept trigger, or the trigger option", async () => {
    const concepts = [concept("sks"), concept("qwe")];
    const batch = { images: undefined as unknown as tf.Tensor4D, items: [{ prompt: "a qwe dog", kind: "instance", weight: 1 }] };
    const m = await make({}, context({ concepts }));
    expect(m.variants!({ step: 1, task: 1, rng: new Rng(0), batch })[0]!.prompts).toEqual(["a dog"]);
    expect(m.variants!({ step: 1, task: 0, rng: new Rng(0), batch })[0]!.prompts).toEqual(["a qwe dog"]);
    const forced = await make({ trigger: "dog" }, context({ concepts }));
    expect(forced.variants!({ step: 1, task: 1, rng: new Rng(0), batch })[1]!.prompts).toEqual(["a qwe"]);
  });
});

describe("plugin and options", () => {
  it("is a v1 plugin named cat that requires an adapter; default and named exports agree", () => {
    expect(catDefault).toBe(cat);
    expect(cat.apiVersion).toBe(1);
    expect(cat.name).toBe("cat");
    expect(cat.requires).toEqual(["adapter"]);
  });

  const validate = (v: unknown) => cat.options["~standard"].validate(v) as { value?: unknown; issues?: readonly { message: string; path?: readonly unknown[] }[] };

  it("fills defaults", () => {
    expect(validate({})).toEqual({ value: { cat_factor: 1, snr_gamma: null } });
    expect(validate({ cat_factor: 6, snr_gamma: 5, trigger: "shs" }).value).toEqual({ cat_factor: 6, snr_gamma: 5, trigger: "shs" });
  });

  it.each([
    [{ unknown_option: 1 }, "unknown_option"],
    [{ cat_factor: -1 }, "cat_factor"],
    [{ cat_factor: "1" }, "cat_factor"],
    [{ snr_gamma: 0 }, "snr_gamma"],
    [{ snr_gamma: Infinity }, "snr_gamma"],
    [{ snr_gamma: "5" }, "snr_gamma"],
    [{ trigger: "" }, "trigger"],
  ])("rejects %j", (options, field) => {
    const r = validate(options);
    expect(r.issues?.length).toBeGreaterThan(0);
    expect(JSON.stringify(r.issues)).toContain(field);
  });

  it("create() fails without a trigger word, naming the option", async () => {
    const err = await Promise.resolve()
      .then(() => make({}, context({ concepts: [concept(undefined, "star")] })))
      .catch((e: unknown) => e);
    expect(AptError.isInstance(err)).toBe(true);
    expect((err as AptError).code).toBe("BAD_INPUT");
    expect((err as Error).message).toMatch(/"trigger" option/);
    await expect(make({ trigger: "sks" }, context({ concepts: [concept(undefined)] }))).resolves.toBeDefined();
  });

  it("create() refuses snr_gamma for prediction types min-SNR is not defined for", async () => {
    await expect(Promise.resolve().then(() => make({ snr_gamma: 5 }, context({ predictionType: "sample" })))).rejects.toThrow(/snr_gamma/);
    await expect(make({}, context({ predictionType: "sample" }))).resolves.toBeDefined();
  });
});
