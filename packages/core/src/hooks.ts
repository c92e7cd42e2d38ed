/**
 * The model-hook contract: how a method reaches into a model without knowing
 * its code. Models (in @apt/diffusion) implement it; methods use it.
 *
 * Everything is addressed by diffusers' module paths
 * (`down_blocks.1.attentions.0.transformer_blocks.0.attn2`), so a path in a
 * method's options means the same module as in diffusers and peft.
 *
 * Patterns:
 * - attention processors swapped by module path (diffusers' AttnProcessor):
 *   the default computes softmax(QKᵀ/√d)V; an observing processor also hands
 *   the probabilities (and logits) of chosen layers to an observer that can
 *   reduce them on the spot (a few query rows, a mean) instead of storing them;
 * - feature observers at block outputs;
 * - adapters wrapping any named linear or conv (LoRA, A3FTA, Bayesian), with the
 *   variables they add listed;
 * - an adapter mask: adapters off for the whole batch or per sample, so that a
 *   reference forward runs on the same weights, even in the same batch as the
 *   adapted one.
 */
import type * as tfc from "@tensorflow/tfjs-core";

type Tensor = tfc.Tensor;

export type HookPointKind = "attention" | "feature" | "linear" | "conv";

export interface HookPoint {
  /** diffusers module path. */
  path: string;
  kind: HookPointKind;
  /** attention points: self- or cross-attention. */
  attention?: "self" | "cross";
  /** attention points: number of heads. */
  heads?: number;
  /** linear/conv points: in and out features (channels). */
  inFeatures?: number;
  outFeatures?: number;
  /**
   * conv points: torch.nn.Conv2d's `kernel_size`, `stride` and `padding` (zeros
   * on each side), each [height, width]. A conv adapter (peft's LoRA Conv2d,
   * LoCon) needs all three: its output must have the conv's output size.
   */
  kernelSize?: [number, number];
  stride?: [number, number];
  padding?: [number, number];
}

/** The projections of one attention module, callable (adapters included). */
export interface AttentionProjections {
  toQ(x: Tensor): Tensor;
  toK(x: Tensor): Tensor;
  toV(x: Tensor): Tensor;
  /** to_out.0 (to_out.1 is dropout). */
  toOut(x: Tensor): Tensor;
}

/** One call of one attention module, as a processor sees it. */
export interface AttentionCall {
  path: string;
  kind: "self" | "cross";
  /** [B, Nq, C]: the input of to_q. */
  hidden: Tensor;
  /** [B, Nk, Cctx]: the input of to_k/to_v (== hidden for self-attention). */
  context: Tensor;
  heads: number;
  /** The UNet's time embedding for this forward, [B, Ctemb] (null in text encoders). */
  temb: Tensor | null;
  projections: AttentionProjections;
}

/** Returns the attention module's output [B, Nq, C] (after to_out). */
export type AttentionProcessor = (call: AttentionCall) => Tensor;

/** What an observing attention processor hands over, inside the forward. */
export interface AttentionObservation {
  path: string;
  kind: "self" | "cross";
  heads: number;
  batch: number;
  /** softmax probabilities [B·heads, Nq, Nk] (diffusers' get_attention_scores layout). */
  probs: Tensor;
  /** pre-softmax scaled logits QKᵀ/√d, [B·heads, Nq, Nk]. */
  logits: Tensor;
}

/**
 * Receives observations during the forward. Tensors passed in belong to the
 * forward (and its gradient tape): keep only what is needed, reduced, and
 * `tf.keep` it if it must outlive an enclosing `tf.tidy`.
 */
export type AttentionObserver = (o: AttentionObservation) => void;

/** Receives a block output [B, H, W, C] (NHWC) during the forward. */
export type FeatureObserver = (path: string, feature: Tensor) => void;

/** Per-forward context an adapter gets. */
export interface AdapterContext {
  /** [B] 1 = adapters on for that sample, 0 = off; null = on for all. */
  mask: Tensor | null;
  /** The time embedding of the current forward, when the model has one. */
  temb: Tensor | null;
}

/**
 * An adapter on a linear or conv module: its output is added to the base
 * module's output (`base(x) + adapter(x)`), multiplied by the adapter mask.
 */
export interface ModuleAdapter {
  /** Name used in variable names: `${path}.${name}.${variable}` unless the adapter names its own. */
  readonly name: string;
  /** Variables the adapter adds, by name relative to the wrapped module (e.g. "lora_A.weight"). */
  variables(): Record<string, tfc.Variable>;
  /**
   * x: the module input ([..., in] for linear, NHWC for conv); returns the delta to add to the base output
   * ([..., out] for linear; for conv NHWC of the conv's output size, given by the point's kernelSize, stride and padding).
   */
  forward(x: Tensor, ctx: AdapterContext): Tensor;
  dispose?(): void;
}

export interface HookedModel {
  /** Every hook point of the model, in module order. */
  hookPoints(kind?: HookPointKind): HookPoint[];
  /** Sets the attention processor of the attention modules whose path matches `target` (peft rules). Returns the paths set. */
  setAttentionProcessor(target: TargetModules, processor: AttentionProcessor): string[];
  /** Back to the fast default processor everywhere. */
  resetAttentionProcessors(): void;
  /** Calls `observer` with the probabilities of the matched attention modules on every forward, until the returned function is called. */
  observeAttention(target: TargetModules, observer: AttentionObserver): () => void;
  /** Calls `observer` with the output of the matched blocks (feature points) on every forward, until the returned function is called. */
  observeFeatures(target: TargetModules, observer: FeatureObserver): () => void;
  /** Wraps each matched linear/conv module with `make(point)`; returns the variables added, by full name. */
  addAdapter(target: TargetModules, make: (point: HookPoint) => ModuleAdapter): Record<string, tfc.Variable>;
  /** Removes adapters (all, or those with this name) and disposes their variables. */
  removeAdapters(name?: string): void;
  /** Adapters on (true/null), off (false), or per sample ([B] of 0/1). Applies to following forwards. */
  setAdapterMask(mask: boolean | null | number[] | Tensor): void;
}

/**
 * Module selection with peft's rules (`check_target_module_exists`): a string
 * is a regular expression that must match the whole path; a list matches a
 * path equal to an entry or ending with "." + entry.
 */
export type TargetModules = string | readonly string[];

export function matchesTargetModules(path: string, target: TargetModules): boolean {
  if (typeof target === "string") return new RegExp(`^(?:${target})$`).test(path);
  return target.some((t) => path === t || path.endsWith(`.${t}`));
}
