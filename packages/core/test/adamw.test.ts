import { describe, expect, it } from "vitest";
import * as tf from "@tensorflow/tfjs-core";
import "@tensorflow/tfjs-backend-cpu";
import { AdamW } from "../src/index.js";

/** torch.optim.AdamW's update, written out in float64. */
function reference(p0: number[], grads: number[][], lr: number, b1: number, b2: number, eps: number, wd: number): number[] {
  const p = [...p0];
  const m = p.map(() => 0);
  const v = p.map(() => 0);
  grads.forEach((g, k) => {
    const t = k + 1;
    for (let i = 0; i < p.length; i++) {
      p[i]! *= 1 - lr * wd;
      m[i] = b1 * m[i]! + (1 - b1) * g[i]!;
      v[i] = b2 * v[i]! + (1 - b2) * g[i]! ** 2;
      const denom = Math.sqrt(v[i]!) / Math.sqrt(1 - b2 ** t) + eps;
      p[i]! -= (lr / (1 - b1 ** t)) * (m[i]! / denom);
    }
  });
  return p;
}

describe("AdamW", () => {
  it("matches torch's update rule over several steps, and keeps the tensor count", async () => {
    await tf.setBackend("cpu");
    const p0 = [0.5, -1.5, 2.0, 0.0];
    const grads = [
      [0.1, -0.2, 0.3, 0.0],
      [-0.4, 0.1, 0.05, 1.0],
      [0.2, 0.2, -0.3, -0.5],
    ];
    const w = tf.variable(tf.tensor1d(p0));
    const opt = new AdamW({ w }, { lr: 0.1, betas: [0.9, 0.99], eps: 1e-8, weightDecay: 0.05 });
    const count = tf.memory().numTensors;
    for (const g of grads) {
      const gt = tf.tensor1d(g);
      opt.apply({ w: gt });
      gt.dispose();
      expect(tf.memory().numTensors).toBe(count);
    }
    const want = reference(p0, grads, 0.1, 0.9, 0.99, 1e-8, 0.05);
    const got = Array.from(await w.data());
    got.forEach((v, i) => expect(v).toBeCloseTo(want[i]!, 5));
    expect(opt.step).toBe(3);
    // State round trip: a fresh optimizer continues identically.
    const w2 = tf.variable(w.clone());
    const opt2 = new AdamW({ w: w2 }, { lr: 0.1, betas: [0.9, 0.99], eps: 1e-8, weightDecay: 0.05 });
    opt2.setState(opt.getState());
    const g = tf.tensor1d([0.3, 0.3, 0.3, 0.3]);
    opt.apply({ w: g });
    opt2.apply({ w: g });
    expect(Array.from(await w2.data())).toEqual(Array.from(await w.data()));
    tf.dispose([g, w, w2]);
    opt.dispose();
    opt2.dispose();
  });
});
