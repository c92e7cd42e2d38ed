import { afterAll, beforeAll, describe, it } from "vitest";
import { runConformanceSuite, type ConformanceExclusion } from "@apt/core/conformance";
import { backend } from "../src/index.js";

/** Known gaps of tfjs-backend-webgpu 4.22 on this suite, each with its reason. */
export const WEBGPU_EXCLUSIONS: ConformanceExclusion[] = [];

const probe = await backend.probe();
// In CI an adapter (SwiftShader at least) is required; elsewhere say why it is skipped.
if (!probe.available && !process.env.CI) {
  describe.skip(`conformance: backend webgpu — skipped: ${probe.reason}`, () => {
    it("needs a WebGPU adapter", () => {});
  });
} else {
  runConformanceSuite({ describe, it, beforeAll }, { backend, exclude: WEBGPU_EXCLUSIONS, timeout: 120_000 });
  afterAll(async () => backend.dispose());
}
