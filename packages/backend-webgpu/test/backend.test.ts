import { describe, expect, it } from "vitest";
import * as tf from "@tensorflow/tfjs-core";
import { backend } from "../src/index.js";

describe("webgpu backend", () => {
  it("probes an adapter and reports whether it is software", async () => {
    const p = await backend.probe();
    if (!p.available) {
      expect(p.reason).toMatch(/adapter|navigator\.gpu|Dawn/);
      return;
    }
    expect(p.reason).toMatch(/^adapter /);
    await backend.init();
    const info = backend.info();
    expect(info.tfjsBackend).toBe("webgpu");
    expect(tf.getBackend()).toBe("webgpu");
    if (process.env.VK_ICD_FILENAMES?.includes("swiftshader")) {
      expect(info.software).toBe(true);
      expect(info.device).toMatch(/SwiftShader/);
    }
    // Three Adam steps on a conv: the loss falls (training works end to end).
    const w = tf.variable(tf.randomNormal([3, 3, 2, 2], 0, 0.5, "float32", 1));
    const x = tf.randomNormal([2, 6, 6, 2], 0, 1, "float32", 2) as tf.Tensor4D;
    const target = tf.randomNormal([2, 6, 6, 2], 0, 1, "float32", 3);
    const opt = tf.train.adam(0.05);
    const losses: number[] = [];
    const before = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) {
      const loss = opt.minimize(() => tf.mean(tf.square(tf.sub(tf.conv2d(x, w as tf.Tensor4D, 1, "same"), target))) as tf.Scalar, true)!;
      losses.push((await loss.data())[0]!);
      loss.dispose();
    }
    expect(losses[2]).toBeLessThan(losses[0]!);
    tf.dispose([x, target, w]);
    opt.dispose();
    expect(tf.memory().numTensors).toBeLessThanOrEqual(before);
    await backend.dispose();
  });
});
