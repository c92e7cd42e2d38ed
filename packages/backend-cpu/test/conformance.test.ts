import { beforeAll, describe, it } from "vitest";
import { runConformanceSuite, type ConformanceExclusion } from "@apt/core/conformance";
import { backend } from "../src/index.js";

/** Known gaps of @apt/backend-cpu on the conformance suite, each with its reason. */
export const CPU_EXCLUSIONS: ConformanceExclusion[] = [];

runConformanceSuite({ describe, it, beforeAll }, { backend, exclude: CPU_EXCLUSIONS });
