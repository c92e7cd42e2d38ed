/**
 * CLIPTextModel (transformers' names: `text_model.embeddings.token_embedding`,
 * `text_model.encoder.layers.N.self_attn.q_proj`, …): token + position
 * embeddings, pre-norm transformer layers with a causal mask, final layer norm.
 *
 *   const te = await CLIPTextModel.fromPretrained("model/text_encoder");
 *   const hidden = te.forward(inputIds); // int32 [B, N] → [B, N, hidden_size]
 */
import * as tf from "@tensorflow/tfjs-core";
import { join } from "node:path";
import { Rng } from "@apt/core";
import { scaledDotProductAttention } from "./attention.js";
import { Container, Embedding, LayerNorm, Linear } from "../nn/layers.js";
import { activation, type Activation } from "../nn/functional.js";
import { ConfigReader, DiffusersModel, readJson } from "../nn/model.js";
import { Module, type ForwardContext } from "../nn/module.js";

export interface CLIPTextConfig {
  vocab_size: number;
  max_position_embeddings: number;
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  hidden_act: "quick_gelu" | "gelu";
  layer_norm_eps: number;
  /** Kept for saving back (SD's text encoders carry it; unused here). */
  extra: Record<string, unknown>;
}

export function parseCLIPTextConfig(raw: Record<string, unknown>, source = "text_encoder config"): CLIPTextConfig {
  const r = new ConfigReader(source, raw);
  const hidden = r.number("hidden_size", 512, { integer: true, min: 1 });
  const heads = r.number("num_attention_heads", 8, { integer: true, min: 1 });
  if (hidden % heads !== 0) r.fail("num_attention_heads", `(${heads}) must divide hidden_size (${hidden})`);
  const extra: Record<string, unknown> = {};
  for (const k of ["projection_dim", "bos_token_id", "eos_token_id", "pad_token_id", "torch_dtype", "architectures", "model_type"]) if (k in raw) extra[k] = raw[k];
  return {
    vocab_size: r.number("vocab_size", 49408, { integer: true, min: 1 }),
    max_position_embeddings: r.number("max_position_embeddings", 77, { integer: true, min: 1 }),
    hidden_size: hidden,
    intermediate_size: r.number("intermediate_size", 2048, { integer: true, min: 1 }),
    num_hidden_layers: r.number("num_hidden_layers", 12, { integer: true, min: 1 }),
    num_attention_heads: heads,
    hidden_act: r.string("hidden_act", ["quick_gelu", "gelu"] as const, "quick_gelu"),
    layer_norm_eps: r.number("layer_norm_eps", 1e-5),
    extra,
  };
}

class CLIPAttention extends Module {
  readonly q: Linear;
  readonly k: Linear;
  readonly v: Linear;
  readonly out: Linear;
  constructor(
    dim: number,
    readonly heads: number,
  ) {
    super();
    this.q = this.add("q_proj", new Linear(dim, dim));
    this.k = this.add("k_proj", new Linear(dim, dim));
    this.v = this.add("v_proj", new Linear(dim, dim));
    this.out = this.add("out_proj", new Linear(dim, dim));
  }
  call(x: tf.Tensor, mask: tf.Tensor, ctx: ForwardContext): tf.Tensor {
    return this.out.call(scaledDotProductAttention(this.q.call(x, ctx), this.k.call(x, ctx), this.v.call(x, ctx), this.heads, { mask }), ctx);
  }
}

class CLIPEncoderLayer extends Module {
  readonly attn: CLIPAttention;
  readonly ln1: LayerNorm;
  readonly fc1: Linear;
  readonly fc2: Linear;
  readonly ln2: LayerNorm;
  private readonly act: (x: tf.Tensor) => tf.Tensor;
  constructor(c: CLIPTextConfig) {
    super();
    this.attn = this.add("self_attn", new CLIPAttention(c.hidden_size, c.num_attention_heads));
    this.ln1 = this.add("layer_norm1", new LayerNorm(c.hidden_size, c.layer_norm_eps));
    const mlp = this.add("mlp", new Container());
    this.fc1 = mlp.set("fc1", new Linear(c.hidden_size, c.intermediate_size));
    this.fc2 = mlp.set("fc2", new Linear(c.intermediate_size, c.hidden_size));
    this.ln2 = this.add("layer_norm2", new LayerNorm(c.hidden_size, c.layer_norm_eps));
    this.act = activation(c.hidden_act as Activation);
  }
  call(x: tf.Tensor, mask: tf.Tensor, ctx: ForwardContext): tf.Tensor {
    x = tf.add(x, this.attn.call(this.ln1.call(x), mask, ctx));
    return tf.add(x, this.fc2.call(this.act(this.fc1.call(this.ln2.call(x), ctx)), ctx));
  }
}

export interface CLIPForwardOptions {
  /** Use the output of the layer this many from the end (A1111's "clip skip" − 1); the final layer norm is applied. Default 0. */
  skipLastLayers?: number;
}

export class CLIPTextModel extends DiffusersModel {
  readonly weightsName = "model.safetensors";
  readonly tokenEmbedding: Embedding;
  readonly positionEmbedding: Embedding;
  readonly layers: CLIPEncoderLayer[] = [];
  readonly finalLayerNorm: LayerNorm;

  constructor(readonly config: CLIPTextConfig) {
    super();
    const tm = this.add("text_model", new Container());
    const emb = tm.set("embeddings", new Container());
    this.tokenEmbedding = emb.set("token_embedding", new Embedding(config.vocab_size, config.hidden_size));
    this.positionEmbedding = emb.set("position_embedding", new Embedding(config.max_position_embeddings, config.hidden_size));
    const layers = tm.set("encoder", new Container()).set("layers", new Container());
    for (let i = 0; i < config.num_hidden_layers; i++) this.layers.push(layers.set(String(i), new CLIPEncoderLayer(config)));
    this.finalLayerNorm = tm.set("final_layer_norm", new LayerNorm(config.hidden_size, config.layer_norm_eps));
  }

  toConfig(): Record<string, unknown> {
    const { extra, ...c } = this.config;
    return { architectures: ["CLIPTextModel"], model_type: "clip_text_model", ...extra, ...c };
  }

  static fromConfig(raw: Record<string, unknown>, opts: { seed?: number } = {}): CLIPTextModel {
    const model = new CLIPTextModel(parseCLIPTextConfig(raw));
    // transformers initialises CLIP embeddings with N(0, 0.02) rather than torch's N(0, 1).
    for (const e of [model.tokenEmbedding, model.positionEmbedding]) e.params.get("weight")!.init = { kind: "normal", std: 0.02 };
    model.initialize(new Rng(opts.seed ?? 0));
    return model;
  }

  static async fromPretrained(dir: string): Promise<CLIPTextModel> {
    const configPath = join(dir, "config.json");
    const model = new CLIPTextModel(parseCLIPTextConfig(await readJson(configPath), configPath));
    // transformers keeps a `position_ids` buffer in some checkpoints; it is arange(N), not a weight.
    await model.loadWeights(join(dir, model.weightsName), { ignore: (n) => n === "text_model.embeddings.position_ids" });
    return model;
  }

  /** inputIds int32 [B, N] (N ≤ max_position_embeddings) → last hidden state [B, N, hidden_size]. */
  forward(inputIds: tf.Tensor2D, opts: CLIPForwardOptions = {}): tf.Tensor3D {
    const [, n] = inputIds.shape;
    if (n > this.config.max_position_embeddings) {
      throw new Error(`CLIPTextModel: ${n} tokens but max_position_embeddings is ${this.config.max_position_embeddings}; truncate in the tokenizer`);
    }
    const ctx = this.forwardContext();
    const ids = inputIds.dtype === "int32" ? inputIds : tf.cast(inputIds, "int32");
    const positions = tf.range(0, n, 1, "int32");
    let x = tf.add(this.tokenEmbedding.call(ids), tf.expandDims(this.positionEmbedding.call(positions), 0));
    const maskData = new Float32Array(n * n);
    for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) maskData[i * n + j] = -1e9; // causal
    const mask = tf.tensor2d(maskData, [n, n]);
    const upTo = this.layers.length - (opts.skipLastLayers ?? 0);
    for (let i = 0; i < upTo; i++) x = this.layers[i]!.call(x, mask, ctx);
    return this.finalLayerNorm.call(x) as tf.Tensor3D;
  }
}
