/**
 * The training engine: runs a personalization, continual or pretraining task from a
 * resolved config with any mix of method plugins. One step, as DESIGN.md draws
 * it: data → augment → timesteps → noise → forward (all prompt variants in one
 * batch; observers capture) → per-sample base loss (weighed: items, min-SNR-γ,
 * plugins) + method losses →
 * gradients of the trainable set → clip → AdamW → weight average (emaDecay)
 * → afterStep → log, sample, checkpoint.
 *
 * Determinism: one Rng (the run seed) owns data order, timesteps, noise and
 * VAE sampling; each plugin gets its own Rng derived from the seed and its
 * name. Its state is checkpointed with everything else, so a run stopped at
 * step k and resumed ends bit-identical to one that was not stopped (on the
 * cpu backend).
 */
import * as tf from "@tensorflow/tfjs-core";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { AptError } from "../errors.js";
import { Rng } from "../random.js";
import { AdamW } from "../optim/adamw.js";
import type { Batch, ConceptSpec, Method, StepInfo, StepState, StepVariant } from "../method.js";
import { checkExclusiveHooks, checkMethodSet } from "./methods.js";
import { learningRate } from "./schedule.js";
import { readCheckpoint, resolveCheckpoint, writeCheckpoint, type DataOrder } from "./checkpoint.js";
import type { TrainEvent, TrainRun, TrainSummary } from "./types.js";
import { ReplicaPool } from "./replicas.js";
import { WeightAverage } from "./ema.js";
import { baseLoss, minSnrWeight, perSampleSquaredError } from "./loss.js";

interface Created {
  name: string;
  method: Method;
}

interface TrainableVar {
  variable: tf.Variable;
  lrScale: number;
}

/** A seed for a plugin's own Rng: the run seed mixed with the plugin's name (FNV-1a). */
export function pluginSeed(seed: number, name: string): number {
  let h = (0x811c9dc5 ^ seed) >>> 0;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

function shuffled(n: number, rng: Rng): number[] {
  const p = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [p[i], p[j]] = [p[j]!, p[i]!];
  }
  return p;
}

function normalTensor(shape: number[], rng: Rng): tf.Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const data = new Float32Array(n);
  for (let i = 0; i < n; i++) data[i] = rng.normal();
  return tf.tensor(data, shape, "float32");
}

export async function train(run: TrainRun): Promise<TrainSummary> {
  const { model, train: o } = run;
  const problems = checkMethodSet(run.methods);
  if (run.task === "pretrain") {
    if (!run.data) problems.push('task "pretrain": give `data`, the function that makes each batch');
    if (run.concepts.length !== 0) problems.push(`task "pretrain" trains on \`data\`, not on concepts; got ${run.concepts.length}`);
  } else {
    if (run.concepts.length === 0) problems.push("task: no concept to train on");
    if (run.task === "personalize" && run.concepts.length !== 1) problems.push(`task "personalize" takes one concept, got ${run.concepts.length}`);
    if (run.data) problems.push(`\`data\` is for task "pretrain"; task "${run.task}" trains on its concepts' images`);
  }
  if (!(o.emaDecay >= 0 && o.emaDecay < 1)) problems.push(`train.emaDecay: ${o.emaDecay} is not in [0, 1) (0 turns the weight average off; diffusers' default is 0.9999)`);
  if (!(Number.isFinite(o.snrGamma) && o.snrGamma >= 0)) problems.push(`train.snrGamma: ${o.snrGamma} is not a number ≥ 0 (0 turns min-SNR weighting off; the paper's value is 5)`);
  if (o.trainTextEncoder !== undefined && typeof o.trainTextEncoder !== "boolean") problems.push(`train.trainTextEncoder: ${String(o.trainTextEncoder)} is not true or false (leave it out for the task's default: pretrain trains the text encoder, other tasks do not)`);
  if (problems.length) throw new AptError("BAD_INPUT", problems.join("\n"));
  const emit = (e: TrainEvent) => run.onEvent?.(e);
  const started = performance.now();

  // ------------------------------------------------------------ set up methods
  const created: Created[] = [];
  for (const m of run.methods) {
    const method = await m.plugin.create(m.options, {
      instanceName: m.name,
      model,
      rng: new Rng(pluginSeed(o.seed, m.name)),
      runDir: run.runDir,
      methods: run.methods.map((x) => x.name),
      concepts: run.concepts,
      train: { steps: o.steps, batchSize: o.batchSize, seed: o.seed },
      log: (message) => emit({ type: "log", method: m.name, message }),
    });
    created.push({ name: m.name, method });
  }
  checkExclusiveHooks(created);
  const choosing = created.filter((c) => c.method.trainable).map((c) => c.name);
  if (o.trainTextEncoder !== undefined && choosing.length > 0) {
    throw new AptError("BAD_INPUT", `train.trainTextEncoder applies when no method chooses the trainable weights, but ${choosing.join(", ")} ${choosing.length > 1 ? "do" : "does"}: leave it out and use the method's own option (e.g. lora's text_encoder_target_modules)`);
  }
  await mkdir(run.runDir, { recursive: true });
  for (const c of created) await c.method.prepare?.(model);

  // Trainable set: the union of what methods choose; without any, the whole UNet
  // (plain fine-tuning) and, with train.trainTextEncoder (default: pretraining
  // only), the text encoder too.
  const trainable = new Map<string, TrainableVar>();
  for (const c of created) {
    for (const [name, v] of Object.entries(c.method.trainable?.(model) ?? {})) {
      const tv = v instanceof tf.Variable ? { variable: v, lrScale: 1 } : { variable: v.variable, lrScale: v.lrScale ?? 1 };
      trainable.set(name, tv);
    }
  }
  const trainsOwnWeights = trainable.size === 0;
  if (trainsOwnWeights) {
    for (const [name, v] of model.unet.namedParameters()) trainable.set(name, { variable: v, lrScale: 1 });
    if (o.trainTextEncoder ?? run.task === "pretrain") for (const [name, v] of model.textEncoder.namedParameters()) trainable.set(`text_encoder.${name}`, { variable: v, lrScale: 1 });
  }
  const scales = [...new Set([...trainable.values()].map((t) => t.lrScale))].sort((a, b) => a - b);
  const optimizers = scales.map(
    (scale) =>
      new AdamW(Object.fromEntries([...trainable].filter(([, t]) => t.lrScale === scale).map(([n, t]) => [n, t.variable])), {
        lr: o.lr * scale,
        betas: o.adamBetas,
        eps: o.adamEps,
        weightDecay: o.weightDecay,
      }),
  );
  const varList = [...trainable.values()].map((t) => t.variable);
  let pool: ReplicaPool | undefined;
  if (run.replicas) {
    const hooked = created.filter((c) => c.method.variants || c.method.weigh || c.method.losses || c.method.trainable).map((c) => c.name);
    if (hooked.length) throw new AptError("BAD_INPUT", `replicas: ${hooked.join(", ")} ${hooked.length > 1 ? "have" : "has"} per-sample hooks or trainable weights of its own, which run in one process only; drop \`replicas\` for this run`);
  }

  // ----------------------------------------------------------------- state
  const rng = new Rng(o.seed);
  let step = 0;
  let task = 0;
  let taskStep = 0;
  let data: DataOrder = { epoch: 0, cursor: 0, permutation: [] };
  let resumedFrom: string | undefined;
  let resumedAverage: Record<string, tf.Tensor> | undefined;
  if (run.resume) {
    resumedFrom = await resolveCheckpoint(run.runDir, run.resume);
    const ck = await readCheckpoint(resumedFrom);
    const missing = [...trainable.keys()].filter((n) => !ck.trainable[n]);
    const lackingAverage = o.emaDecay > 0 ? [...trainable.keys()].filter((n) => !ck.ema?.[n]) : [];
    if (missing.length || lackingAverage.length) {
      tf.dispose([...Object.values(ck.trainable), ...Object.values(ck.optimizer), ...Object.values(ck.ema ?? {})]);
      throw new AptError(
        "BAD_INPUT",
        missing.length
          ? `${resumedFrom}: the checkpoint lacks trainable variables of this run (${missing.slice(0, 3).join(", ")}…): was it written with other methods?`
          : `${resumedFrom}: train.emaDecay is ${o.emaDecay} but the checkpoint has no weight average for ${lackingAverage.length === trainable.size ? "any trainable variable" : lackingAverage.slice(0, 3).join(", ")} (it was written with emaDecay 0): resume with emaDecay 0, or start a new run`,
      );
    }
    for (const [name, t] of trainable) t.variable.assign(ck.trainable[name]!);
    if (o.emaDecay > 0) resumedAverage = ck.ema;
    else tf.dispose(Object.values(ck.ema ?? {}));
    optimizers.forEach((opt, i) => {
      const moments: Record<string, { m: tf.Tensor; v: tf.Tensor }> = {};
      for (const name of Object.keys(opt.params)) moments[name] = { m: ck.optimizer[`${name}.m`]!, v: ck.optimizer[`${name}.v`]! };
      opt.setState({ step: ck.state.optimizerSteps[i] ?? 0, moments });
    });
    for (const c of created) {
      const s = ck.plugins[c.name];
      if (s) c.method.loadState?.(s);
    }
    rng.setState(ck.state.rng);
    ({ step, task, taskStep, data } = ck.state);
    tf.dispose([...Object.values(ck.trainable), ...Object.values(ck.optimizer)]);
    for (const s of Object.values(ck.plugins)) for (const v of Object.values(s)) if (v instanceof tf.Tensor) v.dispose();
  }
  // The weights' moving average starts from the (possibly resumed) weights, or continues the checkpoint's.
  const ema = o.emaDecay > 0 ? new WeightAverage(new Map([...trainable].map(([n, t]) => [n, t.variable])), o.emaDecay) : undefined;
  if (ema && resumedAverage) {
    ema.load(resumedAverage);
    tf.dispose(Object.values(resumedAverage));
  }
  // Pretraining is one task without a concept.
  const taskCount = run.task === "pretrain" ? 1 : run.concepts.length;
  const totalSteps = o.steps * taskCount;
  emit({ type: "start", totalSteps, startStep: step, trainable: [...trainable.values()].reduce((a, t) => a + t.variable.size, 0), methods: created.map((c) => c.name), resumedFrom });

  const checkpoint = async (): Promise<string> => {
    const optimizer: Record<string, tf.Tensor> = {};
    for (const opt of optimizers) for (const [name, { m, v }] of Object.entries(opt.getState().moments)) {
      optimizer[`${name}.m`] = m;
      optimizer[`${name}.v`] = v;
    }
    const plugins: Record<string, ReturnType<NonNullable<Method["state"]>>> = {};
    for (const c of created) if (c.method.state) plugins[c.name] = c.method.state();
    const path = await writeCheckpoint(
      run.runDir,
      {
        state: { version: 1, step, task, taskStep, rng: rng.getState(), data, optimizerSteps: optimizers.map((x) => x.step), plugins: {}, config: run.resolvedConfig ?? null },
        trainable: Object.fromEntries([...trainable].map(([n, t]) => [n, t.variable])),
        optimizer,
        plugins,
        ...(ema ? { ema: Object.fromEntries(ema.shadow) } : {}),
      },
      o.checkpointsTotalLimit,
    );
    emit({ type: "checkpoint", step, path });
    return path;
  };

  const samples: string[] = [];
  const sample = async (): Promise<void> => {
    if (!run.writeImages || o.samplePrompts.length === 0) return;
    const { images } = await model.generate({ prompt: o.samplePrompts, numInferenceSteps: o.sampleSteps, guidanceScale: o.sampleGuidance, seed: o.sampleSeed });
    const path = join(run.runDir, "samples", `step-${String(step).padStart(6, "0")}.png`);
    await mkdir(join(run.runDir, "samples"), { recursive: true });
    await run.writeImages(images, path);
    images.dispose();
    samples.push(path);
    emit({ type: "sample", step, path });
  };

  let lastLoss = NaN;
  let lastCheckpoint = "";
  let itPerSec = 0;
  const stopAt = run.stopAfter ?? Infinity;

  try {
  // Replica threads start last, inside the try, so any earlier failure (a bad checkpoint) leaves none running.
  if (run.replicas) pool = await ReplicaPool.start(run.replicas, [...trainable.keys()]);
  while (task < taskCount && step < stopAt) {
    const concept = run.concepts[task];
    if (taskStep === 0) {
      emit({ type: "task", task, concept: concept ? (concept.name ?? concept.prompt) : run.task });
      if (concept) for (const c of created) await c.method.onTaskStart?.(task, concept);
    }
    for (; taskStep < o.steps && step < stopAt; ) {
      const t0 = performance.now();
      const result = await runStep(concept);
      step++;
      taskStep++;
      ema?.update(step);
      lastLoss = result.loss;
      const dt = (performance.now() - t0) / 1000;
      itPerSec = itPerSec === 0 ? 1 / dt : 0.9 * itPerSec + 0.1 / dt;
      const metrics: Record<string, number> = {};
      for (const c of created) for (const [k, v] of Object.entries(c.method.metrics?.() ?? {})) metrics[`${c.name}/${k}`] = v;
      for (const c of created) c.method.afterStep?.({ step, task, loss: result.loss, terms: result.terms, lr: result.lr });
      emit({ type: "step", step, task, loss: result.loss, terms: result.terms, lr: result.lr, itPerSec, metrics });
      if (o.checkpointEvery > 0 && step % o.checkpointEvery === 0) lastCheckpoint = await checkpoint();
      if (o.sampleEvery > 0 && step % o.sampleEvery === 0) await sample();
      await tf.nextFrame();
    }
    if (taskStep < o.steps) break; // stopped early (stopAfter): stay on this task
    if (concept) for (const c of created) await c.method.onTaskEnd?.(task, concept);
    task++;
    taskStep = 0;
  }
  if (!lastCheckpoint.endsWith(`checkpoint-${step}`)) lastCheckpoint = await checkpoint();
  const exports: string[] = [];
  const done = step >= totalSteps;
  if (done) {
    // The finished model is the average (the last checkpoint keeps the raw weights for a resume).
    ema?.copyToWeights();
    if (!(o.sampleEvery > 0 && step % o.sampleEvery === 0)) await sample();
    const finalDir = join(run.runDir, "final");
    await mkdir(finalDir, { recursive: true });
    for (const c of created) exports.push(...((await c.method.export?.(finalDir)) ?? []));
    // The model's own weights trained (no method chose the trainable set): the fine-tuned pipeline is the result.
    if (trainsOwnWeights && model.savePretrained) {
      await model.savePretrained(finalDir);
      exports.push(join(finalDir, "model_index.json"));
    }
    if (exports.length) emit({ type: "export", paths: exports });
  }
  optimizers.forEach((x) => x.dispose());
  for (const c of created) c.method.dispose?.();
  emit({ type: "end", step, seconds: (performance.now() - started) / 1000 });
  return { steps: step, finalLoss: lastLoss, checkpoint: lastCheckpoint, exports, samples };
  } finally {
    ema?.dispose();
    await pool?.close();
  }

  // ------------------------------------------------------------------ a step
  function nextIndices(n: number, count: number): number[] {
    const out: number[] = [];
    while (out.length < count) {
      if (data.cursor >= data.permutation.length || data.permutation.length !== n) {
        data = { epoch: data.permutation.length === n ? data.epoch + 1 : data.epoch, cursor: 0, permutation: shuffled(n, rng) };
      }
      out.push(data.permutation[data.cursor++]!);
    }
    return out;
  }

  function firstBatch(concept: ConceptSpec | undefined, info: StepInfo): Batch {
    if (!concept) {
      const batch = run.data!(o.batchSize, info);
      if (batch.images.rank !== 4 || batch.images.shape[0] !== batch.items.length) {
        tf.dispose([batch.images, ...(batch.lossWeights ? [batch.lossWeights] : [])]);
        throw new AptError("BAD_INPUT", `pretrain data: images [${batch.images.shape.join(", ")}] must be NHWC with one row per item (${batch.items.length} items)`);
      }
      const [n, h, w] = batch.images.shape;
      const m = batch.lossWeights;
      if (m && (m.rank !== 4 || m.shape[0] !== n || m.shape[1] !== h || m.shape[2] !== w || m.shape[3] !== 1)) {
        tf.dispose([batch.images, m]);
        throw new AptError("BAD_INPUT", `pretrain data: lossWeights [${m.shape.join(", ")}] must be [${n}, ${h}, ${w}, 1], one weight per pixel of images`);
      }
      return batch;
    }
    const idx = nextIndices(concept.images.shape[0], o.batchSize);
    return {
      images: tf.tidy(() => tf.gather(concept.images, tf.tensor1d(idx, "int32"))) as tf.Tensor4D,
      items: idx.map(() => ({ prompt: concept.prompt, kind: "instance", weight: 1 })),
    };
  }

  async function runStep(concept: ConceptSpec | undefined): Promise<{ loss: number; terms: Record<string, number>; lr: number }> {
    const info: StepInfo = { step: step + 1, task, rng };
    let batch = firstBatch(concept, info);
    const owned: tf.Tensor[] = [batch.images, ...(batch.lossWeights ? [batch.lossWeights] : [])];
    for (const c of created) {
      if (!c.method.augment) continue;
      const next = c.method.augment(batch, info);
      if (next.images !== batch.images) owned.push(next.images);
      if (next.lossWeights && next.lossWeights !== batch.lossWeights) owned.push(next.lossWeights);
      batch = next;
      const m = batch.lossWeights;
      if (m && (m.shape[0] !== batch.images.shape[0] || m.shape[1] !== batch.images.shape[1] || m.shape[2] !== batch.images.shape[2])) {
        tf.dispose(owned);
        throw new AptError("BAD_INPUT", `${c.name}: its augment returned images [${batch.images.shape.join(", ")}] but lossWeights [${m.shape.join(", ")}]; an augment must keep the two pixel for pixel`);
      }
    }
    const b = batch.items.length;
    const timesteps = created.find((c) => c.method.timesteps)?.method.timesteps!(b, info) ?? Int32Array.from({ length: b }, () => rng.int(model.scheduler.config.num_train_timesteps));
    const methodVariants = created.map((c) => ({ c, list: c.method.variants?.({ ...info, batch }) ?? [] }));
    const allVariants: StepVariant[] = methodVariants.flatMap((x) => x.list);

    const x0 = tf.tidy(() => {
      if (!model.vae) return batch.images;
      const dist = model.vae.encode(batch.images);
      const z = tf.mul(dist.sample(rng), model.vae.scalingFactor) as tf.Tensor4D;
      return z;
    });
    if (x0 !== batch.images) owned.push(x0);
    // Per-pixel weights at the size of what is denoised (latents are smaller than pixels).
    const pixelWeights = !batch.lossWeights
      ? undefined
      : batch.lossWeights.shape[1] === x0.shape[1] && batch.lossWeights.shape[2] === x0.shape[2]
        ? batch.lossWeights
        : tf.tidy(() => tf.image.resizeBilinear(batch.lossWeights!, [x0.shape[1], x0.shape[2]]));
    if (pixelWeights && pixelWeights !== batch.lossWeights) owned.push(pixelWeights);
    const noise = normalTensor(x0.shape, rng) as tf.Tensor4D;
    const tT = tf.tensor1d(timesteps, "int32");
    const snr = model.scheduler.snr(timesteps);
    const lr = learningRate(o.lr, o.lrSchedule, step + 1, totalSteps, o.warmupSteps);
    // Each sample's weight in the base loss: its item's, times min-SNR-γ's for its timestep (train.snrGamma).
    const predictionType = model.scheduler.config.prediction_type;
    const sampleWeights = batch.items.map((it, i) => it.weight * (o.snrGamma > 0 ? minSnrWeight(snr[i]!, o.snrGamma, predictionType) : 1));
    const nInstance = Math.max(1, batch.items.filter((it) => it.kind === "instance").length);
    const termNames: string[] = [];
    let values: number[];
    let grads: tf.NamedTensorMap;
    if (pool) {
      ({ values, grads } = await parallelGrads(batch, sampleWeights, x0, noise, timesteps, nInstance, pixelWeights));
      termNames.push("base");
    } else {
      let termValues: tf.Tensor | undefined;

      const { value: total, grads: g } = tf.variableGrads(() => {
        const xt = model.scheduler.addNoise(x0, noise, timesteps) as tf.Tensor4D;
        const pt = model.scheduler.config.prediction_type;
        const target = (pt === "v_prediction" ? model.scheduler.getVelocity(x0, noise, timesteps) : pt === "sample" ? x0 : noise) as tf.Tensor4D;
        const context = model.encodePrompt(batch.items.map((it) => it.prompt));
        const outs = allVariants.length
          ? model.unet.forwardVariants(xt, tT, [{ encoderHiddenStates: context }, ...allVariants.map((v) => ({ encoderHiddenStates: model.encodePrompt(v.prompts), adapters: v.adapters }))])
          : [model.unet.forward(xt, tT, context)];
        const prediction = outs[0]!;
        const perSampleLoss = perSampleSquaredError(prediction, target, pixelWeights);
        let offset = 1;
        const stateFor = (list: StepVariant[]): StepState => {
          const variants = outs.slice(offset, offset + list.length);
          offset += list.length;
          return { ...info, batch, x0, noise, timesteps, t: tT, xt, target, prediction, variants, perSampleLoss, snr, model };
        };
        const states = methodVariants.map(({ c, list }) => ({ c, s: stateFor(list) }));
        let weights: tf.Tensor1D = tf.tensor1d(sampleWeights);
        for (const { c, s } of states) if (c.method.weigh) weights = tf.mul(weights, c.method.weigh(s)) as tf.Tensor1D;
        const terms: tf.Scalar[] = [tf.div(tf.sum(tf.mul(weights, perSampleLoss)), nInstance) as tf.Scalar];
        termNames.push("base");
        for (const { c, s } of states) {
          for (const [name, value] of Object.entries(c.method.losses?.(s) ?? {})) {
            termNames.push(`${c.name}/${name}`);
            terms.push(value);
          }
        }
        termValues = tf.keep(tf.stack(terms));
        return tf.addN(terms) as tf.Scalar;
      }, varList);
      values = Array.from(termValues!.dataSync());
      tf.dispose([termValues!, total]);
      grads = g;
    }
    const terms = Object.fromEntries(termNames.map((n, i) => [n, values[i]!]));
    const loss = values.reduce((a, v) => a + v, 0);
    const bad = Object.entries(terms).filter(([, v]) => !Number.isFinite(v));
    if (bad.length || !Number.isFinite(loss)) {
      tf.dispose([...Object.values(grads), noise, tT, ...owned]);
      throw new AptError(
        "DIVERGED",
        `training diverged at step ${step + 1}: ${bad.map(([n, v]) => `${n} = ${v}`).join(", ") || `loss = ${loss}`}. Weights were not updated; the last good checkpoint is kept (${lastCheckpoint || "none written yet"}). Try a lower lr or maxGradNorm.`,
      );
    }
    // Global-norm clipping, as torch.nn.utils.clip_grad_norm_.
    const byName: Record<string, tf.Tensor> = {};
    for (const [name, t] of trainable) {
      const g = grads[t.variable.name];
      if (g) byName[name] = g;
    }
    if (o.maxGradNorm > 0) {
      const norm = tf.tidy(() => tf.sqrt(tf.addN(Object.values(byName).map((g) => tf.sum(tf.square(g))))).dataSync()[0]!);
      const coef = o.maxGradNorm / (norm + 1e-6);
      if (coef < 1) for (const [name, g] of Object.entries(byName)) byName[name] = tf.mul(g, coef);
    }
    optimizers.forEach((opt, i) => {
      const mine: Record<string, tf.Tensor> = {};
      for (const name of Object.keys(opt.params)) if (byName[name]) mine[name] = byName[name]!;
      opt.apply(mine, lr * scales[i]!);
    });
    tf.dispose([...new Set([...Object.values(grads), ...Object.values(byName)])]);
    tf.dispose([noise, tT, ...owned]);
    return { loss, terms, lr };
  }

  /** Splits the batch between this thread and the replicas; the sum of the slices' base-loss gradients, by variable name. */
  async function parallelGrads(batch: Batch, sampleWeights: number[], x0: tf.Tensor4D, noise: tf.Tensor4D, timesteps: Int32Array, nInstance: number, pixelWeights: tf.Tensor4D | undefined): Promise<{ values: number[]; grads: tf.NamedTensorMap }> {
    const b = batch.items.length;
    const parts = pool!.size + 1;
    const bounds = Array.from({ length: parts + 1 }, (_, i) => Math.round((i * b) / parts));
    const [, h, w, c] = x0.shape;
    const per = h * w * c;
    const x0Data = x0.dataSync() as Float32Array;
    const noiseData = noise.dataSync() as Float32Array;
    const pixelData = pixelWeights?.dataSync() as Float32Array | undefined;
    // The weights the optimizer wrote last step; the replicas start each step from them.
    const weights = Object.fromEntries([...trainable].map(([n, t]) => [n, t.variable.dataSync() as Float32Array]));
    const slice = (i: number) => {
      const [s, e] = [bounds[i]!, bounds[i + 1]!];
      return { s, e, items: batch.items.slice(s, e), itemWeights: sampleWeights.slice(s, e) };
    };
    const remote = Array.from({ length: pool!.size }, (_, k) => {
      const { s, e, items, itemWeights } = slice(k + 1);
      return pool!.compute(k, {
        weights,
        x0: x0Data.slice(s * per, e * per),
        noise: noiseData.slice(s * per, e * per),
        shape: [e - s, h, w, c],
        timesteps: timesteps.slice(s, e),
        prompts: items.map((it) => it.prompt),
        itemWeights,
        ...(pixelData ? { lossWeights: pixelData.slice(s * h * w, e * h * w) } : {}),
        nInstance,
      });
    });
    const { s, e, items, itemWeights } = slice(0);
    const local = tf.variableGrads(() => {
      const x = tf.slice(x0, [s, 0, 0, 0], [e - s, -1, -1, -1]) as tf.Tensor4D;
      const n = tf.slice(noise, [s, 0, 0, 0], [e - s, -1, -1, -1]) as tf.Tensor4D;
      const m = pixelWeights && (tf.slice(pixelWeights, [s, 0, 0, 0], [e - s, -1, -1, -1]) as tf.Tensor4D);
      return baseLoss(model, x, n, timesteps.slice(s, e), items.map((it) => it.prompt), itemWeights, nInstance, m);
    }, varList);
    const results = await Promise.all(remote);
    let base = local.value.dataSync()[0]!;
    local.value.dispose();
    for (const r of results) base += r.base;
    const grads: tf.NamedTensorMap = {};
    for (const [name, t] of trainable) {
      const own = local.grads[t.variable.name];
      grads[t.variable.name] = tf.tidy(() => {
        let sum: tf.Tensor = own ?? tf.zerosLike(t.variable);
        for (const r of results) sum = tf.add(sum, tf.tensor(r.grads[name]!, t.variable.shape));
        return sum;
      });
    }
    tf.dispose(Object.values(local.grads));
    return { values: [base], grads };
  }
}
