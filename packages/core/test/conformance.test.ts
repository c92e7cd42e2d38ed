/**
 * The suite itself: run against tfjs's pure-JS cpu backend (the reference tfjs
 * backend) it must pass, and a backend with one wrong kernel must be caught.
 */
import { describe, it, beforeAll, expect } from "vitest";
import * as tf from "@tensorflow/tfjs-core";
import "../src/tensor.js";
import "@tensorflow/tfjs-backend-cpu";
import { MathBackendCPU } from "@tensorflow/tfjs-backend-cpu";
import type { AptBackend } from "../src/index.js";
import { checkCase, conformanceCases, runConformanceSuite, validateExclusions, reference as R } from "../src/conformance/index.js";

const tfjsCpu: AptBackend = {
  name: "tfjs-cpu",
  isAvailable: async () => true,
  probe: async () => ({ available: true, reason: "pure JS" }),
  init: async () => {
    await tf.setBackend("cpu");
    await tf.ready();
  },
  info: () => ({ name: "tfjs-cpu", tfjsBackend: "cpu", device: "JavaScript", software: false, customKernels: [], details: {} }),
};

runConformanceSuite(
  { describe, it, beforeAll },
  {
    backend: tfjsCpu,
    exclude: [
      {
        id: "upsample/nearest-2x",
        part: "gradient",
        reason: "tfjs-backend-cpu 4.22 ResizeNearestNeighborGrad is wrong for batch > 1 (every batch after the first gets the wrong offset); see the test below",
      },
    ],
  },
);

describe("tfjs-backend-cpu 4.22 ResizeNearestNeighborGrad", () => {
  it("is still wrong for batch > 1 (when this fails, tfjs fixed it: drop the exclusion above)", async () => {
    await tf.setBackend("cpu");
    const dy = tf.reshape(tf.range(0, 2 * 2 * 2 * 1), [2, 2, 2, 1]);
    const g = tf.grad((x: tf.Tensor) => tf.sum(tf.mul(tf.image.resizeNearestNeighbor(x as tf.Tensor4D, [2, 2]), dy)))(tf.zeros([2, 1, 1, 1]));
    // Correct: [0+1+2+3, 4+5+6+7] = [6, 22].
    expect(Array.from(await g.data())).not.toEqual([6, 22]);
  });
});

describe("conformance suite catches a wrong kernel", () => {
  beforeAll(async () => {
    // A copy of the cpu backend whose Softmax gradient path is fine but whose
    // Sigmoid is slightly wrong (as a buggy kernel would be).
    tf.registerBackend("cpu-broken", () => new MathBackendCPU());
    for (const k of tf.getKernelsForBackend("cpu")) {
      if (k.kernelName === "Sigmoid") continue;
      tf.registerKernel({ ...k, backendName: "cpu-broken" });
    }
    const sigmoid = tf.getKernel("Sigmoid", "cpu")!;
    tf.registerKernel({
      kernelName: "Sigmoid",
      backendName: "cpu-broken",
      kernelFunc: (args) => {
        const backend = args.backend as MathBackendCPU;
        const out = sigmoid.kernelFunc(args) as tf.TensorInfo;
        const vals = backend.readSync(out.dataId) as Float32Array;
        const wrong = vals.map((v) => v * (1 + 1e-3));
        backend.disposeData(out.dataId);
        return { dataId: backend.write(wrong, out.shape, "float32"), shape: out.shape, dtype: "float32" };
      },
    });
    await tf.setBackend("cpu-broken");
  });

  it("flags the forward error of every case that uses the bad kernel", async () => {
    const silu = conformanceCases.find((c) => c.id === "activation/silu")!;
    const r = await checkCase(silu, 1234);
    expect(r.forwardError).toBeGreaterThan(silu.tolerance.forward);
    const square = conformanceCases.find((c) => c.id === "elementwise/square")!;
    expect((await checkCase(square, 1234)).forwardError).toBeLessThan(square.tolerance.forward);
    await tf.setBackend("cpu");
  });
});

describe("conformance suite plumbing", () => {
  it("rejects exclusions without a reason or matching no case", () => {
    expect(() => validateExclusions([{ id: "conv2d/3x3-s1-same", reason: "" }])).toThrow(/needs a reason/);
    expect(() => validateExclusions([{ id: "nope/none", reason: "a long enough reason" }])).toThrow(/matches no case/);
    expect(() => validateExclusions([{ id: "conv2d/*", reason: "a long enough reason" }])).not.toThrow();
  });

  it("float64 references agree with hand-computed values", () => {
    const x = R.make([1, 2, 2, 1], (i) => i + 1); // [[1,2],[3,4]]
    const w = R.make([2, 2, 1, 1], () => 1);
    expect(Array.from(R.conv2d(x, w, 1, "valid").data)).toEqual([10]);
    expect(Array.from(R.conv2d(x, w, 1, "same").data)).toEqual([10, 6, 7, 4]);
    const s = R.softmax(R.make([2], (i) => i));
    expect(s.data[1]! / s.data[0]!).toBeCloseTo(Math.E, 12);
    expect(R.erf(0.5)).toBeCloseTo(0.5204998778130465, 14);
    expect(R.erf(3.5)).toBeCloseTo(0.9999992569016276, 14);
    expect(Array.from(R.matMul(R.make([1, 2], (i) => i + 1), R.make([2, 1], (i) => i + 3)).data)).toEqual([11]);
    expect(Array.from(R.resizeNearest(R.make([1, 1, 2, 1], (i) => i), 2, 4).data)).toEqual([0, 0, 1, 1, 0, 0, 1, 1]);
  });
});
