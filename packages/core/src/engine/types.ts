/** Types of the training engine: options, the resolved method list, and the event stream. */
import type * as tfc from "@tensorflow/tfjs-core";
import type { Batch, ConceptSpec, MethodPlugin, StepInfo, TrainingModel } from "../method.js";
import type { ReplicaOptions } from "./replicas.js";

export type LrSchedule = "constant" | "cosine" | "linear";

export interface TrainOptions {
  /** Optimizer steps (per concept for continual tasks). */
  steps: number;
  batchSize: number;
  lr: number;
  lrSchedule: LrSchedule;
  /** Linear warm-up steps before the schedule. */
  warmupSteps: number;
  weightDecay: number;
  adamBetas: [number, number];
  adamEps: number;
  /** Global gradient-norm clipping; 0 disables it. */
  maxGradNorm: number;
  /**
   * An exponential moving average of the trainable weights (diffusers'
   * EMAModel, `--use_ema`): the decay cap, reached through diffusers' warm-up
   * (1 + k) / (10 + k); 0 disables it. Checkpointed with the run; when the run
   * completes the averages replace the weights (what is saved and exported).
   */
  emaDecay: number;
  /**
   * Whether the text encoder trains with the UNet when no method chooses the
   * trainable weights (diffusers' `--train_text_encoder`). Unset: for task
   * "pretrain" yes, otherwise no. false pretrains a UNet under a frozen text
   * encoder, as Stable Diffusion under CLIP.
   */
  trainTextEncoder?: boolean;
  /**
   * γ of min-SNR-γ loss weighting (Hang et al. 2023; diffusers' `--snr_gamma`,
   * kohya's `--min_snr_gamma`): each sample's base loss is weighed by
   * min(SNR(t), γ) over the weight its prediction type already carries —
   * min(SNR, γ) / SNR for ε, min(SNR, γ) / (SNR + 1) for v, min(SNR, γ) for x₀.
   * 0 disables it (every timestep weighs 1).
   */
  snrGamma: number;
  /** One seed owns noise, timesteps, data order and adapter init. */
  seed: number;
  /** Checkpoint every N steps (and at the end); 0: only at the end. */
  checkpointEvery: number;
  /** Keep at most this many checkpoints (oldest removed); 0 keeps all. */
  checkpointsTotalLimit: number;
  /** Sample a grid every N steps (and at the end); 0: only at the end. */
  sampleEvery: number;
  samplePrompts: string[];
  sampleSteps: number;
  sampleGuidance: number;
  sampleSeed: number;
}

export const DEFAULT_TRAIN_OPTIONS: TrainOptions = {
  steps: 400,
  batchSize: 4,
  lr: 1e-4,
  lrSchedule: "constant",
  warmupSteps: 0,
  weightDecay: 1e-2,
  adamBetas: [0.9, 0.999],
  adamEps: 1e-8,
  maxGradNorm: 1,
  emaDecay: 0,
  snrGamma: 0,
  seed: 0,
  checkpointEvery: 100,
  checkpointsTotalLimit: 0,
  sampleEvery: 0,
  samplePrompts: [],
  sampleSteps: 25,
  sampleGuidance: 3,
  sampleSeed: 0,
};

/** A plugin with its validated options, as the config resolved it. */
export interface ResolvedMethod {
  plugin: MethodPlugin<unknown>;
  options: unknown;
  /** Unique name in this run ("cat", or the third tuple entry of the config). */
  name: string;
}

/**
 * - "personalize": one concept's images.
 * - "continual": a sequence of concepts, one after another, no earlier data kept.
 * - "pretrain": no concept; `data` makes every batch (fresh data each step), and
 *   with no method choosing a trainable set, every UNet and text-encoder weight trains.
 */
export type TaskKind = "personalize" | "continual" | "pretrain";

export interface TrainRun {
  model: TrainingModel;
  task: TaskKind;
  /** One concept for "personalize"; the sequence for "continual" (no earlier data kept); none for "pretrain". */
  concepts: ConceptSpec[];
  /**
   * "pretrain" only: makes each step's batch (NHWC in [-1, 1] and one item per
   * image) from the run's Rng in `info.rng`, so a resumed run sees the same
   * data; the engine disposes the images after the step.
   */
  data?: (batchSize: number, info: StepInfo) => Batch;
  /**
   * Data parallelism over worker threads (replicas.ts): each step's batch is
   * split between this thread and `count` replicas. For runs whose plugins have
   * no per-sample hooks (`variants`, `weigh`, `losses`) and no trainable weights
   * of their own: pretraining, plain fine-tuning.
   */
  replicas?: ReplicaOptions;
  train: TrainOptions;
  methods: ResolvedMethod[];
  /** The run folder: checkpoints/, samples/, metrics.jsonl (written by a logger), final/. */
  runDir: string;
  /** The resolved config, stored in every checkpoint. */
  resolvedConfig?: unknown;
  /** "latest" or a checkpoint folder. */
  resume?: string;
  onEvent?: (e: TrainEvent) => void;
  /** Writes an image grid (NHWC in [0,1]) to a PNG path; without it no samples are written. */
  writeImages?: (images: tfc.Tensor4D, path: string) => Promise<void>;
  /** Stop after this step (tests: simulate an interruption); the run is still checkpointed. */
  stopAfter?: number;
}

export type TrainEvent =
  | { type: "start"; totalSteps: number; startStep: number; trainable: number; methods: string[]; resumedFrom?: string }
  | { type: "task"; task: number; concept: string }
  /** A method's message (`ctx.log`), e.g. dreambooth's class images. */
  | { type: "log"; method: string; message: string }
  | { type: "step"; step: number; task: number; loss: number; terms: Record<string, number>; lr: number; itPerSec: number; metrics: Record<string, number> }
  | { type: "sample"; step: number; path: string }
  | { type: "checkpoint"; step: number; path: string }
  | { type: "export"; paths: string[] }
  | { type: "end"; step: number; seconds: number };

export interface TrainSummary {
  steps: number;
  finalLoss: number;
  checkpoint: string;
  exports: string[];
  samples: string[];
}
