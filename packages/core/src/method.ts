/**
 * The method-plugin contract (version 1). A method plugin is a package
 * (`@apt/method-<name>`) whose default export is a `MethodPlugin`: a name, an
 * options schema with defaults, and `create(options, ctx)` returning a
 * `Method`, an object of optional lifecycle hooks the engine calls. Core knows
 * no method by name: everything a method does goes through these hooks and
 * the model-hook contract (./hooks.ts).
 *
 * `apiVersion` lets the contract evolve the way vercel/ai's
 * `specificationVersion` does: the engine accepts the versions it knows and
 * says which one a plugin was written for when it does not.
 */
import type * as tfc from "@tensorflow/tfjs-core";
import type { HookedModel } from "./hooks.js";
import type { Rng } from "./random.js";

type Tensor = tfc.Tensor;

export const METHOD_API_VERSION = 1 as const;

/**
 * The Standard Schema interface (standardschema.dev), which zod ≥ 3.24
 * implements: core validates options through it without depending on zod.
 */
export interface StandardSchemaV1<Input = unknown, Output = Input> {
  readonly "~standard": {
    readonly version: 1;
    readonly vendor: string;
    readonly validate: (value: unknown) => StandardResult<Output> | Promise<StandardResult<Output>>;
    readonly types?: { readonly input: Input; readonly output: Output };
  };
}
export type StandardResult<Output> =
  | { readonly value: Output; readonly issues?: undefined }
  | { readonly issues: ReadonlyArray<{ readonly message: string; readonly path?: ReadonlyArray<PropertyKey | { readonly key: PropertyKey }> }> };

/** Capabilities a plugin provides to, or requires from, the rest of the run. */
export type Capability = "adapter" | (string & {});

export interface MethodPlugin<Options = unknown> {
  readonly apiVersion: typeof METHOD_API_VERSION;
  /** Short name, as written in configs: "cat". */
  readonly name: string;
  readonly description?: string;
  /** Validates the options given in the config and fills in defaults. */
  readonly options: StandardSchemaV1<unknown, Options>;
  /** e.g. lora provides "adapter". */
  readonly provides?: readonly Capability[];
  /** e.g. cat requires "adapter": a run without a plugin providing it fails at start. */
  readonly requires?: readonly Capability[];
  create(options: Options, ctx: SetupContext): Method | Promise<Method>;
}

/** A diffusion model as the engine drives it (StableDiffusionPipeline satisfies it). */
export interface TrainingModel {
  unet: HookedModel & {
    forward(sample: tfc.Tensor4D, timestep: tfc.Tensor1D, encoderHiddenStates: tfc.Tensor3D): tfc.Tensor4D;
    forwardVariants(sample: tfc.Tensor4D, timestep: tfc.Tensor1D, variants: { encoderHiddenStates: tfc.Tensor3D; adapters?: boolean }[]): tfc.Tensor4D[];
    namedParameters(): Map<string, tfc.Variable>;
    config: { in_channels: number; sample_size: number };
  };
  textEncoder: HookedModel & { namedParameters(): Map<string, tfc.Variable> };
  /** prompts → text embeddings [B, N, C]. */
  encodePrompt(prompts: string[]): tfc.Tensor3D;
  scheduler: {
    config: { num_train_timesteps: number; prediction_type: string };
    addNoise(original: Tensor, noise: Tensor, timesteps: Int32Array): Tensor;
    getVelocity(sample: Tensor, noise: Tensor, timesteps: Int32Array): Tensor;
    snr(timesteps: Int32Array): Float64Array;
  };
  /** Latent models: images NHWC in [-1, 1] → latents (already times the scaling factor is the engine's job). */
  vae?: { scalingFactor: number; encode(x: tfc.Tensor4D): { sample(noise: Rng | Tensor): tfc.Tensor4D; dispose(): void } };
  /** Seeded sampling, images NHWC in [0, 1]. */
  generate(o: { prompt: string[]; numInferenceSteps?: number; guidanceScale?: number; seed?: number }): Promise<{ images: tfc.Tensor4D }>;
  /**
   * Writes the whole model as a diffusers pipeline folder (model_index.json last). The engine calls it at the
   * end of a run in which no method chose the trainable weights, so the model's own weights were trained
   * (DreamBooth without LoRA, pretraining): as diffusers' train_dreambooth.py, the result is the pipeline.
   */
  savePretrained?(dir: string): Promise<void>;
}

export interface ConceptSpec {
  /** Instance images NHWC in [-1, 1], [N, H, W, C]. Owned by the engine. */
  images: tfc.Tensor4D;
  /** "a photo of sks star". */
  prompt: string;
  /** "a photo of a star" (prior preservation, base-model comparisons). */
  classPrompt?: string;
  /** The identifier word in `prompt` ("sks"). */
  trigger?: string;
  name?: string;
}

export interface SetupContext {
  /** This instance's name in the run ("cat", or the unique name given in the config). */
  instanceName: string;
  model: TrainingModel;
  /** Seeded per plugin from the run seed: adapter init and other draws are reproducible. */
  rng: Rng;
  /** The run folder (checkpoints, samples, caches such as DreamBooth's class images). */
  runDir: string;
  /** The plugin names in this run, in config order. */
  methods: readonly string[];
  concepts: readonly ConceptSpec[];
  train: { steps: number; batchSize: number; seed: number };
  log(message: string): void;
}

/** One training sample of a batch. */
export interface BatchItem {
  prompt: string;
  /** "instance" (the concept), "prior" (class images), or a method's own kind. */
  kind: string;
  /** Multiplies this sample's loss (DreamBooth's prior_loss_weight). Default 1. */
  weight: number;
}

export interface Batch {
  /** NHWC in [-1, 1] (pixels; latents are made after augment). */
  images: tfc.Tensor4D;
  items: BatchItem[];
  /**
   * Per-pixel loss weights [B, H, W, 1] (≥ 0), as kohya's masked loss: each
   * sample's loss is the weighted mean of its squared errors, Σ m·e² / Σ m
   * (over pixels and channels), so a constant map changes nothing. Resized to
   * the latents' size when the model has a VAE. An `augment` that moves pixels
   * must move these too.
   */
  lossWeights?: tfc.Tensor4D;
}

export interface StepInfo {
  step: number;
  /** Index of the current concept in a continual task. */
  task: number;
  rng: Rng;
}

/** An extra conditioning of the same x_t and t, run in the same batched forward as the main one. */
export interface StepVariant {
  /** One prompt per batch sample. */
  prompts: string[];
  /** false: the pretrained model (adapters off) on the same weights. Default true. */
  adapters?: boolean;
}

export interface StepState extends StepInfo {
  batch: Batch;
  /** x0 as the UNet sees it (latents for latent models), NHWC. */
  x0: tfc.Tensor4D;
  noise: tfc.Tensor4D;
  timesteps: Int32Array;
  t: tfc.Tensor1D;
  xt: tfc.Tensor4D;
  /** ε or v, per the scheduler's prediction_type. */
  target: tfc.Tensor4D;
  /** The model's prediction for the batch's own prompts. */
  prediction: tfc.Tensor4D;
  /** Predictions of this method's variants, in the order `variants` returned them. */
  variants: tfc.Tensor4D[];
  /** Per-sample base loss [B] (mean squared error over H, W, C), before weighting. */
  perSampleLoss: tfc.Tensor1D;
  /** SNR(t) per sample. */
  snr: Float64Array;
  model: TrainingModel;
}

export interface StepResult {
  step: number;
  task: number;
  loss: number;
  terms: Record<string, number>;
  lr: number;
}

export type PluginState = Record<string, Tensor | number | string | number[]>;

/** The hooks a method may implement; every one is optional. */
export interface Method {
  /** Adapters, observers, processors. Runs once, before training (and before a resume restores state). */
  prepare?(model: TrainingModel): void | Promise<void>;
  /** Variables to train, by full name, each with an optional learning-rate multiplier. */
  trainable?(model: TrainingModel): Record<string, tfc.Variable | { variable: tfc.Variable; lrScale?: number }>;
  /** Changes or extends the batch (augmentation, prior samples). Chained in config order. */
  augment?(batch: Batch, s: StepInfo): Batch;
  /** Timesteps for the batch (exclusive: one plugin per run). */
  timesteps?(batchSize: number, s: StepInfo): Int32Array;
  /** Extra conditionings to run in the same batched forward. */
  variants?(s: StepInfo & { batch: Batch }): StepVariant[];
  /** Multiplies the per-sample losses (composes by product across plugins): returns [B]. */
  weigh?(s: StepState): tfc.Tensor1D;
  /** Named extra loss terms, already weighted; they are added to the total. */
  losses?(s: StepState): Record<string, tfc.Scalar>;
  afterStep?(r: StepResult): void;
  onTaskStart?(task: number, concept: ConceptSpec): void | Promise<void>;
  onTaskEnd?(task: number, concept: ConceptSpec): void | Promise<void>;
  /** State for checkpoints (tensors are copied by the engine). */
  state?(): PluginState;
  loadState?(state: PluginState): void;
  metrics?(): Record<string, number>;
  /** Writes the method's final artifacts into `dir` (e.g. the LoRA file); returns the paths written. */
  export?(dir: string): Promise<string[]>;
  dispose?(): void;
}

/** Hooks of which a run may have only one implementation. */
export const EXCLUSIVE_HOOKS = ["timesteps"] as const satisfies readonly (keyof Method)[];
