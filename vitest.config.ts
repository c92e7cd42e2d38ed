import { defineConfig } from "vitest/config";

// One vitest run over every package (each package has its own vitest.config.ts
// project). APT_TEST_JSON=<file> adds vitest's JSON reporter so .ci/run can print
// the pass/fail counts as a plain closing line.
const json = process.env.APT_TEST_JSON;
export default defineConfig({
  test: {
    projects: ["packages/*", "tests"],
    reporters: json ? ["default", ["json", { outputFile: json }]] : ["default"],
  },
});
