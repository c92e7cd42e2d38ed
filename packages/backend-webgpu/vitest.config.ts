import { existsSync } from "node:fs";
import { defineProject } from "vitest/config";

// Without a GPU, Dawn finds an adapter through Debian's SwiftShader Vulkan
// driver (apt-get install chromium libvulkan1): point the loader at it unless
// the environment already chose a driver.
const swiftshader = "/usr/lib/chromium/vk_swiftshader_icd.json";
const env: Record<string, string> = {};
if (!process.env.VK_ICD_FILENAMES && existsSync(swiftshader)) env.VK_ICD_FILENAMES = swiftshader;

export default defineProject({
  test: {
    name: "backend-webgpu",
    include: ["test/**/*.test.ts"],
    env,
    testTimeout: 300_000,
    hookTimeout: 300_000,
  },
});
