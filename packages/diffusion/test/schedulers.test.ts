/**
 * DDPMScheduler / DDIMScheduler against an independent float64 re-derivation of
 * diffusers' formulas (fixtures/schedulers/make_reference.py → reference.json),
 * plus known constants, round trips, error messages and tensor accounting.
 */
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs-core";
import { AptError, Rng } from "@apt/core";
import { backend } from "@apt/backend-cpu";
import {
  DDIMScheduler,
  DDPMScheduler,
  DEFAULT_SCHEDULER_CONFIG,
  loadScheduler,
  type SchedulerConfig,
} from "../src/schedulers/index.js";

// tfjs-backend-cpu is not a dependency of this package; @apt/backend-cpu (tfjs WASM) is.
await backend.init();

interface StepCase {
  scheduler: "DDPMScheduler" | "DDIMScheduler";
  config: Record<string, unknown>;
  num_inference_steps: number | null;
  timestep: number;
  eta: number;
  model_output: string;
  prev_timestep: number;
  prev_sample: number[];
  pred_original_sample: number[];
}
interface Reference {
  shape: number[];
  inputs: Record<string, number[]>;
  schedules: Record<
    string,
    {
      config: Record<string, unknown>;
      betas: number[];
      alphas_cumprod: number[];
      float32_vs_float64: { betas_max_rel: number; alphas_cumprod_max_rel: number };
    }
  >;
  timesteps: { spacing: SchedulerConfig["timestep_spacing"]; n: number; steps_offset: number; timesteps: number[] }[];
  ddim: StepCase[];
  ddpm: StepCase[];
  forward: { config: Record<string, unknown>; timesteps: number[]; add_noise: number[]; velocity: number[]; snr: number[] }[];
}

const ref = JSON.parse(
  readFileSync(new URL("./fixtures/schedulers/reference.json", import.meta.url), "utf8"),
) as Reference;

/** Float32 tensor math against float64 references. */
const TOL = 1e-5;
const SD = { beta_schedule: "scaled_linear", beta_start: 0.00085, beta_end: 0.012 } as const;

const input = (name: string) => tf.tensor(ref.inputs[name]!, ref.shape);

function maxAbsDiff(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  expect(actual.length).toBe(expected.length);
  let m = 0;
  for (let i = 0; i < expected.length; i++) m = Math.max(m, Math.abs(actual[i]! - expected[i]!));
  return m;
}

/** Runs fn and returns the AptError it threw. */
async function aptError(fn: () => unknown): Promise<AptError> {
  try {
    await fn();
  } catch (e) {
    expect(AptError.isInstance(e)).toBe(true);
    return e as AptError;
  }
  throw new Error("expected an AptError");
}

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "apt-schedulers-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function configDir(name: string, json: unknown): Promise<string> {
  const d = join(dir, name);
  await rm(d, { recursive: true, force: true });
  await mkdir(d, { recursive: true });
  await writeFile(join(d, "scheduler_config.json"), typeof json === "string" ? json : JSON.stringify(json));
  return d;
}

describe("noise schedules", () => {
  for (const [name, s] of Object.entries(ref.schedules)) {
    it(`${name}: betas and alphas_cumprod match the float64 reference`, () => {
      const sch = new DDPMScheduler(s.config as Partial<SchedulerConfig>);
      expect(maxAbsDiff(sch.betas, s.betas)).toBeLessThan(1e-12);
      expect(maxAbsDiff(sch.alphasCumprod, s.alphas_cumprod)).toBeLessThan(1e-12);
      for (let i = 0; i < sch.alphas.length; i++) expect(sch.alphas[i]).toBe(1 - sch.betas[i]!);
    });
  }

  it("diffusers' float32 betas sit within 2.4e-7 relative of float64 (zero-SNR rescale: 5.3e-4)", () => {
    // Recorded by the reference script; documents what "float64 instead of float32" changes.
    for (const [name, s] of Object.entries(ref.schedules)) {
      const bound = name.endsWith("zero_snr") ? 6e-4 : 2.4e-7;
      expect(s.float32_vs_float64.betas_max_rel, name).toBeLessThan(bound);
      expect(s.float32_vs_float64.alphas_cumprod_max_rel, name).toBeLessThan(2e-5);
    }
  });

  it("Stable Diffusion's scaled_linear schedule: ᾱ_999 ≈ 0.0047", () => {
    const sch = new DDIMScheduler(SD);
    expect(sch.betas[0]).toBeCloseTo(0.00085, 15);
    expect(sch.betas[999]).toBeCloseTo(0.012, 15);
    expect(sch.alphasCumprod[999]).toBeCloseTo(0.0047, 4);
  });

  it("rescale_betas_zero_snr: ᾱ_999 = 0 exactly, β_999 = 1, ᾱ_0 unchanged", () => {
    for (const base of [SD, {}, { beta_schedule: "squaredcos_cap_v2" } as const]) {
      const plain = new DDIMScheduler(base);
      const zero = new DDIMScheduler({ ...base, rescale_betas_zero_snr: true });
      expect(zero.alphasCumprod[999]).toBe(0);
      expect(zero.betas[999]).toBe(1);
      expect(Math.abs(zero.alphasCumprod[0]! - plain.alphasCumprod[0]!)).toBeLessThan(1e-15);
      expect(zero.snr([999])[0]).toBe(0);
    }
  });

  it("trained_betas override the schedule", () => {
    const betas = Array.from({ length: 10 }, (_, i) => 0.01 * (i + 1));
    const sch = new DDPMScheduler({ num_train_timesteps: 10, trained_betas: betas, beta_schedule: "scaled_linear" });
    expect(Array.from(sch.betas)).toEqual(betas);
    expect(sch.alphasCumprod[1]).toBeCloseTo(0.99 * 0.98, 15);
  });
});

describe("setTimesteps", () => {
  it("matches numpy for every spacing, n and steps_offset", () => {
    expect(ref.timesteps.length).toBe(48);
    for (const c of ref.timesteps) {
      for (const Cls of [DDPMScheduler, DDIMScheduler]) {
        const sch = new Cls({ timestep_spacing: c.spacing, steps_offset: c.steps_offset });
        sch.setTimesteps(c.n);
        expect(sch.timesteps).toBeInstanceOf(Int32Array);
        expect(Array.from(sch.timesteps), `${c.spacing} n=${c.n} offset=${c.steps_offset}`).toEqual(c.timesteps);
        expect(sch.numInferenceSteps).toBe(c.n);
      }
    }
  });

  it("spot checks: SD leading+offset 1, trailing, linspace's half-to-even rounding", () => {
    const lead = new DDIMScheduler({ ...SD, steps_offset: 1 });
    lead.setTimesteps(50);
    expect(Array.from(lead.timesteps.slice(0, 3))).toEqual([981, 961, 941]);
    expect(lead.timesteps[49]).toBe(1);
    const trail = new DDIMScheduler({ timestep_spacing: "trailing" });
    trail.setTimesteps(10);
    expect(Array.from(trail.timesteps)).toEqual([999, 899, 799, 699, 599, 499, 399, 299, 199, 99]);
    const lin = new DDIMScheduler({ timestep_spacing: "linspace" });
    lin.setTimesteps(25);
    expect(lin.timesteps[20]).toBe(166); // np.round(166.5) = 166
  });

  it("before setTimesteps: all training timesteps, descending", () => {
    const sch = new DDPMScheduler({});
    expect(sch.timesteps.length).toBe(1000);
    expect(sch.timesteps[0]).toBe(999);
    expect(sch.timesteps[999]).toBe(0);
    expect(sch.numInferenceSteps).toBeUndefined();
  });
});

function runStep(c: StepCase, noiseVia: "generatorNoise" | "none" = "generatorNoise") {
  const sch = c.scheduler === "DDIMScheduler" ? new DDIMScheduler(c.config) : new DDPMScheduler(c.config);
  if (c.num_inference_steps !== null) sch.setTimesteps(c.num_inference_steps);
  expect(sch.previousTimestep(c.timestep)).toBe(c.prev_timestep);
  const modelOutput = input(c.model_output);
  const sample = input("sample");
  const noise = input("var_noise");
  const out = sch.step(modelOutput, c.timestep, sample, {
    eta: c.eta,
    ...(noiseVia === "generatorNoise" ? { generatorNoise: noise } : {}),
  });
  const result = { prev: out.prevSample.dataSync(), x0: out.predOriginalSample.dataSync() };
  tf.dispose([modelOutput, sample, noise, out.prevSample, out.predOriginalSample]);
  return result;
}

const describeCase = (c: StepCase) =>
  `${JSON.stringify(c.config)} n=${c.num_inference_steps} t=${c.timestep}` + (c.scheduler === "DDIMScheduler" ? ` eta=${c.eta}` : "");

describe("DDIMScheduler.step", () => {
  it.each(ref.ddim.map((c) => [describeCase(c), c] as const))("matches the reference: %s", (_, c) => {
    const { prev, x0 } = runStep(c);
    expect(maxAbsDiff(x0, c.pred_original_sample)).toBeLessThanOrEqual(TOL);
    expect(maxAbsDiff(prev, c.prev_sample)).toBeLessThanOrEqual(TOL);
  });

  it("eta = 0 draws no noise (no rng needed); finalAlphaCumprod follows set_alpha_to_one", () => {
    const c = ref.ddim.find((d) => d.eta === 0)!;
    expect(maxAbsDiff(runStep(c, "none").prev, c.prev_sample)).toBeLessThanOrEqual(TOL);
    expect(new DDIMScheduler({}).finalAlphaCumprod).toBe(1);
    const sd = new DDIMScheduler({ ...SD, set_alpha_to_one: false });
    expect(sd.finalAlphaCumprod).toBe(sd.alphasCumprod[0]);
  });

  it("with 1000 steps, eta 0 and the true ε, recovers x0 from x_T in one step and along the chain", () => {
    const sch = new DDIMScheduler({ ...SD, clip_sample: false });
    sch.setTimesteps(1000);
    const x0 = input("x0");
    const eps = input("noise");
    let x = sch.addNoise(x0, eps, [999]);
    const first = sch.step(eps, 999, x);
    expect(maxAbsDiff(first.predOriginalSample.dataSync(), ref.inputs.x0!)).toBeLessThan(TOL);
    tf.dispose([first.prevSample, first.predOriginalSample]);
    // Deterministic DDIM keeps x_t = sqrt(ᾱ_t)·x0 + sqrt(1−ᾱ_t)·ε, so ε stays the true noise at every step.
    for (const t of sch.timesteps) {
      const out = sch.step(eps, t, x);
      tf.dispose([x, out.predOriginalSample]);
      x = out.prevSample;
    }
    // 1000 float32 steps accumulate rounding (measured 2.7e-5).
    expect(maxAbsDiff(x.dataSync(), ref.inputs.x0!)).toBeLessThan(1e-4);
    tf.dispose([x, x0, eps]);
  });
});

describe("DDPMScheduler.step", () => {
  it.each(ref.ddpm.map((c) => [`${c.config.variance_type} ${describeCase(c)}`, c] as const))(
    "matches the reference: %s",
    (_, c) => {
      const { prev, x0 } = runStep(c);
      expect(maxAbsDiff(x0, c.pred_original_sample)).toBeLessThanOrEqual(TOL);
      expect(maxAbsDiff(prev, c.prev_sample)).toBeLessThanOrEqual(TOL);
    },
  );

  it("t = 0 adds no noise and needs no rng", () => {
    const c = ref.ddpm.find((d) => d.timestep === 0)!;
    expect(maxAbsDiff(runStep(c, "none").prev, c.prev_sample)).toBeLessThanOrEqual(TOL);
  });

  it("opts.rng draws sample.size normals in row-major order: same seed, same step", () => {
    const sch = new DDPMScheduler({});
    const sample = input("sample");
    const mo = input("model_out");
    const a = sch.step(mo, 500, sample, { rng: new Rng(7) });
    const b = sch.step(mo, 500, sample, { rng: new Rng(7) });
    const r = new Rng(7);
    const noise = tf.tensor(Float32Array.from({ length: sample.size }, () => r.normal()), sample.shape);
    const c = sch.step(mo, 500, sample, { generatorNoise: noise });
    expect(Array.from(a.prevSample.dataSync())).toEqual(Array.from(b.prevSample.dataSync()));
    expect(Array.from(a.prevSample.dataSync())).toEqual(Array.from(c.prevSample.dataSync()));
    tf.dispose([sample, mo, noise, a.prevSample, a.predOriginalSample, b.prevSample, b.predOriginalSample, c.prevSample, c.predOriginalSample]);
  });

  it("fixed_small and fixed_small_log have the same std; fixed_large uses β_t", () => {
    const small = new DDPMScheduler({ variance_type: "fixed_small" });
    const log = new DDPMScheduler({ variance_type: "fixed_small_log" });
    const large = new DDPMScheduler({ variance_type: "fixed_large" });
    expect(log.noiseStd(500)).toBeCloseTo(small.noiseStd(500), 15);
    expect(large.noiseStd(500)).toBeCloseTo(Math.sqrt(large.betas[500]!), 15);
  });
});

describe("addNoise, getVelocity, snr", () => {
  it.each(ref.forward.map((f) => [`${JSON.stringify(f.config)} t=${f.timesteps}`, f] as const))(
    "match the reference: %s",
    (_, f) => {
      const sch = new DDPMScheduler(f.config);
      const x0 = input("x0");
      const noise = input("noise");
      const tTensor = tf.tensor1d(f.timesteps, "int32");
      for (const ts of [Int32Array.from(f.timesteps), f.timesteps, tTensor]) {
        const noisy = sch.addNoise(x0, noise, ts);
        const v = sch.getVelocity(x0, noise, ts);
        expect(maxAbsDiff(noisy.dataSync(), f.add_noise)).toBeLessThanOrEqual(TOL);
        expect(maxAbsDiff(v.dataSync(), f.velocity)).toBeLessThanOrEqual(TOL);
        tf.dispose([noisy, v]);
      }
      const snr = sch.snr(f.timesteps);
      expect(snr).toBeInstanceOf(Float64Array);
      for (let i = 0; i < snr.length; i++) expect(snr[i]).toBeCloseTo(f.snr[i]!, 10);
      tf.dispose([x0, noise, tTensor]);
    },
  );

  it("one timestep broadcasts over the batch, for any rank", () => {
    const sch = new DDPMScheduler({});
    const x = tf.ones([3, 5]);
    const n = tf.zeros([3, 5]);
    const out = sch.addNoise(x, n, [100]);
    const expected = Math.sqrt(sch.alphasCumprod[100]!);
    for (const v of out.dataSync()) expect(v).toBeCloseTo(expected, 6);
    tf.dispose([x, n, out]);
  });

  it("scaleModelInput returns the sample itself", () => {
    const s = tf.ones([1, 2, 2, 4]);
    expect(new DDIMScheduler({}).scaleModelInput(s, 10)).toBe(s);
    s.dispose();
  });
});

describe("tensor accounting", () => {
  it("step leaves exactly its 2 outputs, for every scheduler and prediction type", () => {
    const sample = input("sample");
    const mo = input("model_out");
    const noise = input("var_noise");
    for (const prediction_type of ["epsilon", "v_prediction", "sample"] as const) {
      for (const sch of [new DDIMScheduler({ prediction_type }), new DDPMScheduler({ prediction_type })]) {
        sch.setTimesteps(50);
        const before = tf.memory().numTensors;
        const out = sch.step(mo, 980, sample, { eta: 1, generatorNoise: noise });
        expect(tf.memory().numTensors).toBe(before + 2);
        expect(out.prevSample).not.toBe(out.predOriginalSample);
        tf.dispose([out.prevSample, out.predOriginalSample]);
        expect(tf.memory().numTensors).toBe(before);
        const viaRng = sch.step(mo, 980, sample, { eta: 1, rng: new Rng(1) });
        expect(tf.memory().numTensors).toBe(before + 2);
        tf.dispose([viaRng.prevSample, viaRng.predOriginalSample]);
      }
    }
    expect(noise.isDisposed).toBe(false);
    tf.dispose([sample, mo, noise]);
  });

  it("addNoise and getVelocity leave exactly their output", () => {
    const sch = new DDPMScheduler({});
    const x = input("x0");
    const n = input("noise");
    const ts = tf.tensor1d([3, 700], "int32");
    const before = tf.memory().numTensors;
    const a = sch.addNoise(x, n, ts);
    const v = sch.getVelocity(x, n, Int32Array.of(3, 700));
    expect(tf.memory().numTensors).toBe(before + 2);
    tf.dispose([a, v, x, n, ts]);
  });
});

describe("config files", () => {
  it("defaults are diffusers' and toJSON writes each class's own keys", () => {
    const ddim = new DDIMScheduler();
    expect(ddim.config).toEqual(DEFAULT_SCHEDULER_CONFIG);
    const j = ddim.toJSON();
    expect(j._class_name).toBe("DDIMScheduler");
    expect(j).toHaveProperty("set_alpha_to_one", true);
    expect(j).not.toHaveProperty("variance_type");
    expect(j).toHaveProperty("trained_betas", null);
    const ddpm = new DDPMScheduler().toJSON();
    expect(ddpm._class_name).toBe("DDPMScheduler");
    expect(ddpm).toHaveProperty("variance_type", "fixed_small");
    expect(ddpm).not.toHaveProperty("set_alpha_to_one");
    expect(Object.keys(ddpm)).toHaveLength(16);
    expect(Object.keys(j)).toHaveLength(16);
  });

  it("savePretrained → fromPretrained / loadScheduler round-trips, atomically, sorted like diffusers", async () => {
    const cfg: Partial<SchedulerConfig> = {
      ...SD,
      steps_offset: 1,
      clip_sample: false,
      prediction_type: "v_prediction",
      timestep_spacing: "trailing",
      rescale_betas_zero_snr: true,
    };
    // Each class saves only its own fields (as diffusers), so each gets only its own here.
    const cases = [
      [DDIMScheduler, { set_alpha_to_one: false }],
      [DDPMScheduler, { variance_type: "fixed_large" }],
    ] as const;
    for (const [Cls, own] of cases) {
      const sch = new Cls({ ...cfg, ...own });
      const d = join(dir, `round-${sch.className}`);
      const file = await sch.savePretrained(d);
      expect(await readdir(d)).toEqual(["scheduler_config.json"]); // no temp file left
      const text = await readFile(file, "utf8");
      expect(text.endsWith("}\n")).toBe(true);
      const keys = Object.keys(JSON.parse(text) as object);
      expect(keys).toEqual([...keys].sort());
      const back = await Cls.fromPretrained(d);
      expect(back.config).toEqual(sch.config);
      expect(back.toJSON()).toEqual(sch.toJSON());
      const loaded = await loadScheduler(d);
      expect(loaded).toBeInstanceOf(Cls);
      expect(loaded.config).toEqual(sch.config);
      expect(Array.from(loaded.alphasCumprod)).toEqual(Array.from(sch.alphasCumprod));
    }
  });

  it("reads Stable Diffusion's PNDMScheduler config into DDIMScheduler, ignoring unknown keys", async () => {
    const d = await configDir("sd15", {
      _class_name: "PNDMScheduler",
      _diffusers_version: "0.6.0",
      beta_end: 0.012,
      beta_schedule: "scaled_linear",
      beta_start: 0.00085,
      num_train_timesteps: 1000,
      set_alpha_to_one: false,
      skip_prk_steps: true,
      steps_offset: 1,
      trained_betas: null,
      clip_sample: false,
    });
    const sch = await DDIMScheduler.fromPretrained(d);
    expect(sch.config.steps_offset).toBe(1);
    expect(sch.finalAlphaCumprod).toBe(sch.alphasCumprod[0]);
    expect(sch.toJSON()._class_name).toBe("DDIMScheduler");
    expect(sch.toJSON()).not.toHaveProperty("skip_prk_steps");
  });
});

describe("errors", () => {
  it("loadScheduler: unknown or missing _class_name names the file and the supported classes", async () => {
    const d = await configDir("pndm", { _class_name: "PNDMScheduler" });
    const e = await aptError(() => loadScheduler(d));
    expect(e.code).toBe("BAD_INPUT");
    expect(e.exitCode).toBe(2);
    expect(e.message).toContain(join(d, "scheduler_config.json"));
    expect(e.message).toContain('"PNDMScheduler"');
    expect(e.message).toContain("DDPMScheduler, DDIMScheduler");
    const d2 = await configDir("noclass", { beta_schedule: "linear" });
    expect((await aptError(() => loadScheduler(d2))).message).toMatch(/no _class_name; supported scheduler classes: DDPMScheduler, DDIMScheduler/);
  });

  it("missing file, invalid JSON, non-object JSON name the file", async () => {
    const missing = join(dir, "nowhere");
    expect((await aptError(() => loadScheduler(missing))).message).toContain(`${join(missing, "scheduler_config.json")}: no such file`);
    const bad = await configDir("badjson", "{ nope");
    expect((await aptError(() => DDIMScheduler.fromPretrained(bad))).message).toMatch(/scheduler_config\.json: not valid JSON/);
    const arr = await configDir("array", [1, 2]);
    expect((await aptError(() => DDPMScheduler.fromPretrained(arr))).message).toMatch(/scheduler_config\.json: a scheduler config must be a JSON object/);
  });

  const invalid: [string, Record<string, unknown>, RegExp][] = [
    ["num_train_timesteps", { num_train_timesteps: 0 }, /num_train_timesteps must be a positive integer; got 0/],
    ["num_train_timesteps", { num_train_timesteps: 10.5 }, /num_train_timesteps must be a positive integer; got 10.5/],
    ["beta_start", { beta_start: "0.1" }, /beta_start must be a number in \[0, 1\]; got "0.1"/],
    ["beta_end", { beta_end: 2 }, /beta_end must be a number in \[0, 1\]; got 2/],
    ["beta_schedule", { beta_schedule: "sigmoid" }, /beta_schedule must be one of "linear", "scaled_linear", "squaredcos_cap_v2"; got "sigmoid"/],
    ["trained_betas", { trained_betas: [0.1, "x"] }, /trained_betas must be null or an array of numbers in \[0, 1\]/],
    ["trained_betas", { trained_betas: [0.1, 0.2] }, /trained_betas must have num_train_timesteps \(1000\) entries; got 2/],
    ["prediction_type", { prediction_type: "x0" }, /prediction_type must be one of "epsilon", "v_prediction", "sample"; got "x0"/],
    ["timestep_spacing", { timestep_spacing: "karras" }, /timestep_spacing must be one of "leading", "trailing", "linspace"; got "karras"/],
    ["steps_offset", { steps_offset: -1 }, /steps_offset must be a non-negative integer; got -1/],
    ["clip_sample", { clip_sample: "yes" }, /clip_sample must be true or false; got "yes"/],
    ["clip_sample_range", { clip_sample_range: 0 }, /clip_sample_range must be a positive number; got 0/],
    ["set_alpha_to_one", { set_alpha_to_one: 1 }, /set_alpha_to_one must be true or false; got 1/],
    ["rescale_betas_zero_snr", { rescale_betas_zero_snr: null }, /rescale_betas_zero_snr must be true or false; got null/],
    ["rescale_betas_zero_snr", { rescale_betas_zero_snr: true, num_train_timesteps: 1 }, /rescale_betas_zero_snr needs num_train_timesteps >= 2/],
    ["variance_type", { variance_type: "learned_range" }, /variance_type must be one of "fixed_small", "fixed_small_log", "fixed_large"; got "learned_range"/],
    ["thresholding", { thresholding: true }, /thresholding must be false: dynamic thresholding is not implemented/],
    ["dynamic_thresholding_ratio", { dynamic_thresholding_ratio: "a" }, /dynamic_thresholding_ratio must be a finite number/],
    ["sample_max_value", { sample_max_value: null }, /sample_max_value must be a finite number; got null/],
  ];
  it.each(invalid)("invalid %s: AptError naming the field and allowed values (object and file)", async (_, cfg, re) => {
    const e = await aptError(() => new DDIMScheduler(cfg as Partial<SchedulerConfig>));
    expect(e.code).toBe("BAD_INPUT");
    expect(e.message).toMatch(/^DDIMScheduler config: /);
    expect(e.message).toMatch(re);
    const d = await configDir("invalid", { _class_name: "DDPMScheduler", ...cfg });
    const fromFile = await aptError(() => loadScheduler(d));
    expect(fromFile.message.startsWith(`${join(d, "scheduler_config.json")}: `)).toBe(true);
    expect(fromFile.message).toMatch(re);
  });

  it("setTimesteps: n > num_train_timesteps, n < 1, non-integer", async () => {
    const sch = new DDIMScheduler({});
    expect((await aptError(() => sch.setTimesteps(1001))).message).toMatch(
      /numInferenceSteps \(1001\) cannot be larger than num_train_timesteps \(1000\)/,
    );
    expect((await aptError(() => sch.setTimesteps(0))).message).toMatch(/numInferenceSteps must be a positive integer; got 0/);
    expect((await aptError(() => sch.setTimesteps(2.5))).message).toMatch(/got 2.5/);
  });

  it("step: bad timesteps, shapes, eta, missing or doubled noise", async () => {
    const s = input("sample");
    const mo = input("model_out");
    const small = tf.zeros([1, 2]);
    const before = tf.memory().numTensors;
    const ddim = new DDIMScheduler({});
    expect((await aptError(() => ddim.step(mo, 999, s))).message).toMatch(/DDIMScheduler: call setTimesteps\(numInferenceSteps\) before step/);
    ddim.setTimesteps(10);
    expect((await aptError(() => ddim.step(mo, 1000, s))).message).toMatch(/DDIMScheduler.step: timestep must be an integer in \[0, 999\]; got 1000/);
    expect((await aptError(() => ddim.step(mo, 1.5, s))).message).toMatch(/got 1.5/);
    expect((await aptError(() => ddim.step(small, 900, s))).message).toMatch(/modelOutput has shape \[1, 2\] but sample has \[2, 3, 4, 3\]/);
    expect((await aptError(() => ddim.step(mo, 900, s, { eta: -1 }))).message).toMatch(/eta must be a finite number >= 0; got -1/);
    expect((await aptError(() => ddim.step(mo, 900, s, { eta: 1 }))).message).toMatch(/eta > 0 adds noise; pass opts.rng or opts.generatorNoise/);
    expect((await aptError(() => ddim.step(mo, 900, s, { eta: 1, generatorNoise: small }))).message).toMatch(
      /opts.generatorNoise has shape \[1, 2\] but sample has \[2, 3, 4, 3\]/,
    );
    expect((await aptError(() => ddim.step(mo, 900, s, { eta: 1, generatorNoise: s, rng: new Rng(1) }))).message).toMatch(
      /pass opts.rng or opts.generatorNoise, not both/,
    );
    const ddpm = new DDPMScheduler({});
    expect((await aptError(() => ddpm.step(mo, 500, s))).message).toMatch(/DDPMScheduler.step: a step from t > 0 adds noise/);
    ddpm.setTimesteps(10);
    expect((await aptError(() => ddpm.step(mo, 501, s, { rng: new Rng(1) }))).message).toMatch(
      /timestep 501 is not one of the 10 timesteps set by setTimesteps\(10\)/,
    );
    // Failed steps leak nothing, even when they fail inside tf.tidy.
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([s, mo, small]);
  });

  it("addNoise / getVelocity / snr: bad timesteps and shapes", async () => {
    const sch = new DDPMScheduler({});
    const x = input("x0");
    const n = input("noise");
    const small = tf.zeros([2, 2]);
    const floatT = tf.tensor1d([1, 2]);
    expect((await aptError(() => sch.addNoise(x, n, [1, 2, 3]))).message).toMatch(/3 timesteps for a batch of 2; give one per sample or one for all/);
    expect((await aptError(() => sch.addNoise(x, n, [1000, 2]))).message).toMatch(/addNoise: timestep must be an integer in \[0, 999\]; got 1000/);
    expect((await aptError(() => sch.addNoise(x, n, floatT))).message).toMatch(/timesteps must be an int32 Tensor1D; got float32/);
    expect((await aptError(() => sch.addNoise(x, small, [1]))).message).toMatch(/addNoise: noise has shape \[2, 2\] but original has \[2, 3, 4, 3\]/);
    expect((await aptError(() => sch.getVelocity(x, small, [1]))).message).toMatch(/getVelocity: noise has shape/);
    expect((await aptError(() => sch.snr([-1]))).message).toMatch(/snr: timestep must be an integer in \[0, 999\]; got -1/);
    tf.dispose([x, n, small, floatT]);
  });
});
