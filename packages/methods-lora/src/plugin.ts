/**
 * The `lora` method plugin: LoRA adapters on the UNet's (and optionally the
 * text encoder's) linear and conv modules; only the adapters train. Export writes the
 * diffusers/PEFT file and the kohya file.
 */
import * as tf from "@tensorflow/tfjs-core";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import {
  AptError,
  METHOD_API_VERSION,
  matchesTargetModules,
  type HookedModel,
  type HookPoint,
  type Method,
  type MethodPlugin,
  type SetupContext,
  type TargetModules,
  type TrainingModel,
} from "@apt/core";
import { LoraAdapter, convGeometry, initLoraA } from "./adapter.js";
import { DIFFUSERS_LORA_FILE, exactTarget, saveLoraWeights, type LoraLayers } from "./format.js";
import { loraOptionsSchema, type LoraOptions } from "./options.js";

/** The linear and conv points `target` selects (peft rules); none is an error listing example paths. */
export function loraTargets(model: HookedModel, target: TargetModules, option: string, what: string): HookPoint[] {
  const matched = model.hookPoints().filter((p) => (p.kind === "linear" || p.kind === "conv") && matchesTargetModules(p.path, target));
  if (matched.length === 0) {
    const some = model.hookPoints().filter((p) => p.kind === "linear" || p.kind === "conv").slice(0, 4).map((p) => p.path);
    throw new AptError("BAD_INPUT", `lora: ${option} ${JSON.stringify(target)} matches no linear or conv module of the ${what}; examples of paths: ${some.join(", ")}`);
  }
  for (const p of matched) convGeometry(p, `lora (${option})`);
  return matched;
}

/** Training metadata, kohya's `ss_*` keys and modelspec, plus apt's own; string values only. */
export function trainingMetadata(options: LoraOptions, ctx: Pick<SetupContext, "train">, outputName: string, spatialConvs = false): Record<string, string> {
  return {
    // kohya's LoCon: convs with a kernel above 1×1 are adapted at conv_dim / conv_alpha (here the same rank and alpha).
    ...(spatialConvs ? { ss_network_args: JSON.stringify({ conv_dim: String(options.rank), conv_alpha: String(options.alpha) }) } : {}),
    ss_network_module: "networks.lora",
    ss_network_dim: String(options.rank),
    ss_network_alpha: String(options.alpha),
    ss_output_name: outputName,
    ss_steps: String(ctx.train.steps),
    ss_seed: String(ctx.train.seed),
    ss_batch_size_per_device: String(ctx.train.batchSize),
    ss_base_model_version: "sd_v1",
    "modelspec.sai_model_spec": "1.0.0",
    "modelspec.architecture": "stable-diffusion-v1/lora",
    "modelspec.title": outputName,
    apt_method: "lora",
    apt_init: options.init,
    apt_target_modules: JSON.stringify(options.target_modules),
    apt_text_encoder_target_modules: JSON.stringify(options.text_encoder_target_modules),
    format: "pt",
  };
}

function hasTargets(target: TargetModules): boolean {
  return typeof target === "string" ? target.length > 0 : target.length > 0;
}

/** A file-name-safe form of the instance name. */
function fileStem(name: string): string {
  return name.replace(/[^A-Za-z0-9._-]/g, "_") || "lora";
}

export function createLora(options: LoraOptions, ctx: SetupContext): Method {
  const name = ctx.instanceName;
  const unetAdapters: LoraAdapter[] = [];
  const textAdapters: LoraAdapter[] = [];
  const trainable: Record<string, { variable: tf.Variable; lrScale: number }> = {};
  let prepared: TrainingModel | undefined;

  const make = (list: LoraAdapter[], option: string) => (point: HookPoint) => {
    const conv = convGeometry(point, `lora (${option})`);
    const A = initLoraA(point.inFeatures!, options.rank, options.init, ctx.rng, conv);
    const B = tf.zeros([options.rank, point.outFeatures!]);
    try {
      const adapter = new LoraAdapter({
        name,
        path: point.path,
        inFeatures: point.inFeatures!,
        outFeatures: point.outFeatures!,
        conv,
        rank: options.rank,
        alpha: options.alpha,
        A,
        B,
        trainable: true,
      });
      list.push(adapter);
      return adapter;
    } finally {
      tf.dispose([A, B]);
    }
  };

  const layers = (): LoraLayers => ({ unet: unetAdapters, textEncoder: textAdapters });

  return {
    prepare(model) {
      if (prepared) throw new AptError("INTERNAL", `lora "${name}": prepare() was called twice`);
      prepared = model;
      const unetPoints = loraTargets(model.unet, options.target_modules, "target_modules", "UNet");
      const unetVars = model.unet.addAdapter(exactTarget(unetPoints.map((p) => p.path)), make(unetAdapters, "target_modules"));
      for (const [n, variable] of Object.entries(unetVars)) trainable[n] = { variable, lrScale: options.lr_scale };
      if (hasTargets(options.text_encoder_target_modules)) {
        if (!model.textEncoder) throw new AptError("BAD_INPUT", `lora: text_encoder_target_modules is set but the model has no text encoder`);
        const points = loraTargets(model.textEncoder, options.text_encoder_target_modules, "text_encoder_target_modules", "text encoder");
        const vars = model.textEncoder.addAdapter(exactTarget(points.map((p) => p.path)), make(textAdapters, "text_encoder_target_modules"));
        for (const [n, variable] of Object.entries(vars)) trainable[`text_encoder.${n}`] = { variable, lrScale: options.text_encoder_lr_scale };
      }
      const n = unetAdapters.length + textAdapters.length;
      const convs = [...unetAdapters, ...textAdapters].filter((a) => a.conv).length;
      ctx.log(
        `rank ${options.rank}, alpha ${options.alpha}, ${options.init} init: ${unetAdapters.length} UNet + ${textAdapters.length} text-encoder modules${convs > 0 ? ` (${convs} conv)` : ""}, ${Object.values(trainable).reduce((a, t) => a + t.variable.size, 0)} parameters (${n} adapters)`,
      );
    },

    trainable() {
      return { ...trainable };
    },

    metrics(): Record<string, number> {
      const all = [...unetAdapters, ...textAdapters];
      if (all.length === 0) return {};
      const count = all.reduce((a, l) => a + l.B.size, 0);
      const sum = tf.tidy(() => tf.addN(all.map((l) => tf.sum(tf.abs(l.B)))));
      const value = sum.dataSync()[0]! / count;
      sum.dispose();
      return { B_mean_abs: value };
    },

    async export(dir) {
      if (!prepared) throw new AptError("INTERNAL", `lora "${name}": export() before prepare()`);
      await mkdir(dir, { recursive: true });
      const stem = fileStem(name);
      const spatial = [...unetAdapters, ...textAdapters].some((a) => a.conv && a.conv.kernelSize.some((k) => k > 1));
      const metadata = trainingMetadata(options, ctx, stem, spatial);
      const diffusersFile = join(dir, DIFFUSERS_LORA_FILE);
      const kohyaFile = join(dir, `${stem}.kohya.safetensors`);
      await saveLoraWeights(diffusersFile, layers(), { format: "diffusers", metadata });
      await saveLoraWeights(kohyaFile, layers(), { format: "kohya", metadata });
      return [diffusersFile, kohyaFile];
    },

    dispose() {
      // The adapters are this method's: take them off the model (their variables are disposed with them).
      prepared?.unet.removeAdapters(name);
      if (textAdapters.length > 0) prepared?.textEncoder.removeAdapters(name);
      unetAdapters.length = 0;
      textAdapters.length = 0;
      for (const k of Object.keys(trainable)) delete trainable[k];
      prepared = undefined;
    },
  };
}

export const lora: MethodPlugin<LoraOptions> = {
  apiVersion: METHOD_API_VERSION,
  name: "lora",
  description: "LoRA (low-rank adapters) on the UNet's attention projections by default, or any linear and conv modules (LoCon), optionally the text encoder's; exports diffusers and kohya safetensors.",
  options: loraOptionsSchema,
  provides: ["adapter"],
  create: createLora,
};
