import { existsSync } from "node:fs";
import { defineProject } from "vitest/config";

const swiftshader = "/usr/lib/chromium/vk_swiftshader_icd.json";
const env: Record<string, string> = {};
if (!process.env.VK_ICD_FILENAMES && existsSync(swiftshader)) env.VK_ICD_FILENAMES = swiftshader;

export default defineProject({
  test: {
    name: "diffusion",
    include: ["test/**/*.test.ts"],
    env,
    testTimeout: 300_000,
    hookTimeout: 300_000,
  },
});
