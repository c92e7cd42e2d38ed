import { beforeAll, describe, it } from "vitest";
import { runConformanceSuite } from "@apt/core/conformance";
import { backend } from "../src/index.js";

const probe = await backend.probe();
if (probe.available) {
  runConformanceSuite({ describe, it, beforeAll }, { backend, exclude: [] });
} else {
  // Printed so a run without CUDA says why the suite did not run here.
  console.log(`[backend-cuda] conformance suite skipped: ${probe.reason}`);
  describe.skip(`conformance: backend cuda — skipped: ${probe.reason}`, () => {
    it("needs @tensorflow/tfjs-node-gpu with CUDA 11.2 and cuDNN 8.1", () => {});
  });
}
