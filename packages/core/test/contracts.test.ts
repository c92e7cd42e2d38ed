import { describe, expect, it } from "vitest";
import * as tf from "@tensorflow/tfjs-core";
import "@tensorflow/tfjs-backend-cpu";
import { AptError, chooseBackend, expectNoTensorLeak, registerTfjsCore, Rng, type AptBackend, type BackendProbe } from "../src/index.js";

describe("tensor contract", () => {
  it("accepts the same tfjs-core twice and rejects a second copy with dedupe instructions", () => {
    registerTfjsCore(tf, "test (same copy)");
    class OtherTensor {}
    const err = (() => {
      try {
        registerTfjsCore({ version_core: "4.21.0", Tensor: OtherTensor }, "some-plugin", "/elsewhere/node_modules/@tensorflow/tfjs-core/dist/tf-core.node.js");
      } catch (e) {
        return e;
      }
    })();
    expect(AptError.isInstance(err)).toBe(true);
    const message = (err as Error).message;
    expect(message).toMatch(/Two copies of @tensorflow\/tfjs-core/);
    expect(message).toContain("4.21.0 at /elsewhere");
    expect(message).toContain("loaded by some-plugin");
    expect(message).toContain("pnpm dedupe");
    expect(message).toContain("overrides");
    expect((err as AptError).exitCode).toBe(2);
  });

  it("detects a real second copy of tfjs-core (its ESM build, loaded beside the CommonJS one)", async () => {
    const second = (await import("@tensorflow/tfjs-core/dist/index.js")) as unknown as { version_core: string; Tensor: unknown };
    expect(second.Tensor).not.toBe(tf.Tensor);
    expect(() => registerTfjsCore(second, "a plugin with its own tfjs-core", "/plugin/node_modules/@tensorflow/tfjs-core")).toThrow(/Two copies of @tensorflow\/tfjs-core are loaded/);
  });

  it("expectNoTensorLeak passes a tidy step and catches a leaking one", async () => {
    await tf.setBackend("cpu");
    const w = tf.variable(tf.ones([2, 2]));
    const opt = tf.train.sgd(0.1);
    const step = () => {
      const loss = opt.minimize(() => tf.sum(tf.square(w)) as tf.Scalar, true)!;
      loss.dispose();
    };
    step(); // the optimizer creates its state on the first step
    await expectNoTensorLeak("sgd step", step);
    await expect(expectNoTensorLeak("leaky step", () => void tf.add(w, 1))).rejects.toThrow(/leaky step leaked tensors: .* from \d+ to \d+/);
    w.dispose();
  });
});

function fake(name: string, probe: BackendProbe): AptBackend {
  return {
    name,
    isAvailable: async () => probe.available,
    probe: async () => probe,
    init: async () => {},
    info: () => ({ name, tfjsBackend: name, device: name, software: !!probe.software, customKernels: [], details: {} }),
  };
}

describe("backend selection", () => {
  const cudaMissing = fake("cuda", { available: false, reason: "@tensorflow/tfjs-node-gpu is not installed" });
  const webgpuSoftware = fake("webgpu", { available: true, software: true, reason: "adapter SwiftShader driver 5.0.0 (google/swiftshader), software" });
  const webgpuReal = fake("webgpu", { available: true, software: false, reason: "adapter NVIDIA H100 (nvidia/hopper)" });
  const cpu = fake("cpu", { available: true, reason: "WebAssembly SIMD" });

  it("auto picks cuda, then a real webgpu adapter, then cpu, and says why", async () => {
    const soft = await chooseBackend("auto", async (n) => ({ cuda: cudaMissing, webgpu: webgpuSoftware, cpu })[n]);
    expect(soft.backend).toBe(cpu);
    expect(soft.reason).toBe(
      [
        "cuda: skipped, @tensorflow/tfjs-node-gpu is not installed",
        "webgpu: skipped, its adapter is software (adapter SwiftShader driver 5.0.0 (google/swiftshader), software); slower than the cpu backend",
        "cpu: picked (WebAssembly SIMD)",
      ].join("\n"),
    );
    const real = await chooseBackend("auto", async (n) => ({ cuda: cudaMissing, webgpu: webgpuReal, cpu })[n]);
    expect(real.backend).toBe(webgpuReal);
    expect(real.reason).toMatch(/webgpu: picked \(adapter NVIDIA H100/);
    const notInstalled = await chooseBackend("auto", async (n) => (n === "cpu" ? cpu : undefined));
    expect(notInstalled.reason).toMatch(/^cuda: skipped, @apt\/backend-cuda is not installed\nwebgpu: skipped, @apt\/backend-webgpu is not installed\ncpu: picked/);
  });

  it("a backend asked for by name must be installed and available", async () => {
    await expect(chooseBackend("cuda", async () => cudaMissing)).rejects.toThrow(/backend "cuda" is not available: @tensorflow\/tfjs-node-gpu is not installed/);
    await expect(chooseBackend("webgpu", async () => undefined)).rejects.toThrow(/pnpm add @apt\/backend-webgpu/);
    expect((await chooseBackend("webgpu", async () => webgpuSoftware)).backend).toBe(webgpuSoftware);
    await expect(chooseBackend("auto", async () => undefined)).rejects.toThrow(/no backend is available/);
  });
});

describe("Rng", () => {
  it("is reproducible from its seed and from a saved state", () => {
    const a = new Rng(42);
    const b = new Rng(42);
    const xs = Array.from({ length: 5 }, () => a.nextUint32());
    expect(Array.from({ length: 5 }, () => b.nextUint32())).toEqual(xs);
    const state = a.getState();
    const next = a.uniform();
    const c = new Rng(0);
    c.setState(state);
    expect(c.uniform()).toBe(next);
    expect(new Rng(43).nextUint32()).not.toBe(xs[0]);
  });

  it("draws normals with mean ≈ 0 and variance ≈ 1", () => {
    const r = new Rng(7);
    const n = 20000;
    let s = 0;
    let s2 = 0;
    for (let i = 0; i < n; i++) {
      const v = r.normal();
      s += v;
      s2 += v * v;
    }
    expect(Math.abs(s / n)).toBeLessThan(0.03);
    expect(Math.abs(s2 / n - 1)).toBeLessThan(0.05);
  });
});
