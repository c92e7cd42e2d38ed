/**
 * A replica's worker thread (see replicas.ts): builds the model with the
 * run's module, then for every slice it is sent takes the weights, computes
 * the base loss's gradients and sends them back.
 */
import { parentPort, workerData } from "node:worker_threads";
import { tf } from "../tensor.js";
import type { TrainingModel } from "../method.js";
import { baseLoss } from "./loss.js";
import type { ShardRequest, ShardResult } from "./replicas.js";

const port = parentPort!;
const { module, args, trainableNames } = workerData as { module: string; args: unknown; trainableNames: string[] };

try {
  const factory = ((await import(module)) as { default?: (a: unknown) => Promise<TrainingModel> }).default;
  if (typeof factory !== "function") throw new Error("its default export must be a function (args) => Promise<model>");
  const model = await factory(args);
  const vars = new Map<string, tf.Variable>(model.unet.namedParameters());
  for (const [n, v] of model.textEncoder.namedParameters()) vars.set(`text_encoder.${n}`, v);
  const missing = trainableNames.filter((n) => !vars.has(n));
  if (missing.length) throw new Error(`the model it builds lacks trainable variables of this run (${missing.slice(0, 3).join(", ")}…)`);
  const list = trainableNames.map((n) => vars.get(n)!);

  port.on("message", (r: ShardRequest) => {
    try {
      if (r.weights) {
        for (const [n, data] of Object.entries(r.weights)) {
          const v = vars.get(n)!;
          const t = tf.tensor(data, v.shape);
          v.assign(t);
          t.dispose();
        }
      }
      const x0 = tf.tensor4d(r.x0, r.shape);
      const noise = tf.tensor4d(r.noise, r.shape);
      const pixelWeights = r.lossWeights ? tf.tensor4d(r.lossWeights, [r.shape[0], r.shape[1], r.shape[2], 1]) : undefined;
      const { value, grads } = tf.variableGrads(() => baseLoss(model, x0, noise, r.timesteps, r.prompts, r.itemWeights, r.nInstance, pixelWeights), list);
      const out: ShardResult = { grads: {}, base: value.dataSync()[0]! };
      trainableNames.forEach((n, i) => {
        const g = grads[list[i]!.name];
        // A copy: its buffer is transferred back.
        out.grads[n] = g ? new Float32Array(g.dataSync() as Float32Array) : new Float32Array(list[i]!.size);
      });
      tf.dispose([value, ...Object.values(grads), x0, noise, ...(pixelWeights ? [pixelWeights] : [])]);
      port.postMessage({ type: "result", result: out }, Object.values(out.grads).map((g) => g.buffer as ArrayBuffer));
    } catch (e) {
      port.postMessage({ type: "error", message: (e as Error).stack ?? String(e) });
    }
  });
  port.postMessage({ type: "ready" });
} catch (e) {
  port.postMessage({ type: "error", message: (e as Error).message });
}
