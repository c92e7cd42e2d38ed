import { describe, expect, it } from "vitest";
import { AptError } from "@apt/core";
import { backend, createCudaBackend, CUDA_REQUIREMENTS } from "../src/index.js";

function expectRequirements(message: string): void {
  expect(message).toContain("CUDA 11.2");
  expect(message).toContain("cuDNN 8.1");
  expect(message).toContain("pnpm add @tensorflow/tfjs-node-gpu@4.22.0");
  expect(message).toContain("onlyBuiltDependencies");
}

describe("cuda backend where tfjs-node-gpu cannot load", () => {
  it("is unavailable when the package is missing, and init says what is needed", async () => {
    const missing = createCudaBackend(async () => {
      throw Object.assign(new Error("Cannot find package '@tensorflow/tfjs-node-gpu' imported from x"), { code: "ERR_MODULE_NOT_FOUND" });
    });
    expect(await missing.isAvailable()).toBe(false);
    expect((await missing.probe()).reason).toBe("@tensorflow/tfjs-node-gpu is not installed");
    const err = await missing.init().then(() => undefined, (e: unknown) => e);
    expect(AptError.isInstance(err)).toBe(true);
    expect((err as AptError).code).toBe("BACKEND_UNAVAILABLE");
    expectRequirements((err as Error).message);
    expect(() => missing.info()).toThrow(/before init/);
  });

  it("is unavailable when the native binding is missing (install step skipped)", async () => {
    const unbuilt = createCudaBackend(async () => {
      throw new Error("Cannot find module '/x/node_modules/@tensorflow/tfjs-node-gpu/lib/napi-v8/tfjs_binding.node'");
    });
    const probe = await unbuilt.probe();
    expect(probe.available).toBe(false);
    expect(probe.reason).toMatch(/native binding is missing/);
    await expect(unbuilt.init()).rejects.toThrow(/cuDNN 8\.1/);
  });

  it("is unavailable when CUDA libraries are missing", async () => {
    const noCuda = createCudaBackend(async () => {
      throw new Error("libcudart.so.11.0: cannot open shared object file: No such file or directory");
    });
    expect((await noCuda.probe()).reason).toMatch(/failed to load a CUDA library: libcudart/);
  });

  it("the requirements text names every prerequisite", () => {
    expectRequirements(CUDA_REQUIREMENTS);
  });

  it("the real backend on this machine answers without throwing", async () => {
    const p = await backend.probe();
    expect(typeof p.available).toBe("boolean");
    if (!p.available) {
      expect(await backend.isAvailable()).toBe(false);
      await expect(backend.init()).rejects.toThrow(/CUDA 11\.2/);
    }
  });
});
