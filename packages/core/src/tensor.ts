/**
 * The tensor contract.
 *
 * `@tensorflow/tfjs-core` is the tensor library of every @apt package, declared
 * as a peer dependency so that one engine (one kernel registry, one memory
 * tracker) serves them all.
 *
 * Shapes, everywhere in the public API:
 * - images and feature maps are NHWC: [batch, height, width, channels];
 *   (diffusers' NCHW/OIHW are converted at the load/save boundary only);
 * - token sequences are [batch, tokens, channels];
 * - conv filters are HWIO: [kh, kw, inChannels, outChannels];
 * - linear weights are stored as tfjs matrices [in, out].
 *
 * Memory: tensors are freed explicitly, with `tf.tidy` or `dispose`. A training
 * step leaves `tf.memory().numTensors` unchanged; `expectNoTensorLeak` checks it.
 */
import * as tf from "@tensorflow/tfjs-core";
// tfjs-core alone registers no gradient functions (the @tensorflow/tfjs bundle
// does); @apt trains, so every process that loads @apt/core gets them, and the
// chained tensor ops some of them use. Generated at build time (see the script).
import "../gradients/tfjs-gradients.js";
import { createRequire } from "node:module";
import { AptError } from "./errors.js";

export { tf };

interface LoadedCopy {
  version: string;
  location: string;
  tensorClass: unknown;
  registeredBy: string;
}

const registryKey = Symbol.for("@apt/core.tfjs-core-copies");
type Registry = LoadedCopy[];

function registry(): Registry {
  const g = globalThis as unknown as Record<symbol, Registry | undefined>;
  return (g[registryKey] ??= []);
}

/** Where a module URL's `@tensorflow/tfjs-core` resolves to, or "unknown". */
export function tfjsCoreLocation(fromUrl: string): string {
  try {
    return createRequire(fromUrl).resolve("@tensorflow/tfjs-core");
  } catch {
    return "unknown";
  }
}

/**
 * Records the tfjs-core module that a package imported, and fails when it is a
 * different copy from one recorded before. Two copies mean two engines: tensors
 * of one are not `instanceof` the other's `Tensor`, kernels registered by one
 * backend are invisible to ops of the other, and memory accounting splits.
 */
export function registerTfjsCore(
  tfModule: { version_core: string; Tensor: unknown },
  registeredBy: string,
  location = "unknown",
): void {
  const copies = registry();
  const known = copies.find((c) => c.tensorClass === tfModule.Tensor);
  if (known) return;
  const other = copies[0];
  const mine: LoadedCopy = {
    version: tfModule.version_core,
    location,
    tensorClass: tfModule.Tensor,
    registeredBy,
  };
  if (other) {
    throw new AptError(
      "DUPLICATE_TFJS",
      [
        "Two copies of @tensorflow/tfjs-core are loaded:",
        `  ${other.version} at ${other.location} (loaded by ${other.registeredBy})`,
        `  ${mine.version} at ${mine.location} (loaded by ${mine.registeredBy})`,
        "Every @apt package declares @tensorflow/tfjs-core as a peer dependency so one engine serves them all.",
        "Fix: install exactly one version in your project (`pnpm add @tensorflow/tfjs-core@4.22.0`),",
        "then run `pnpm dedupe` (npm: `npm dedupe`); if a dependency pins another version, force one with",
        '`"pnpm": { "overrides": { "@tensorflow/tfjs-core": "4.22.0" } }` (npm: "overrides") in package.json.',
      ].join("\n"),
    );
  }
  copies.push(mine);
}

registerTfjsCore(tf, "@apt/core", tfjsCoreLocation(import.meta.url));

/**
 * Runs `fn` and throws if it changed `tf.memory().numTensors`: the memory rule
 * of every training step. Returns what `fn` returned.
 */
export async function expectNoTensorLeak<T>(label: string, fn: () => T | Promise<T>): Promise<T> {
  const before = tf.memory().numTensors;
  const result = await fn();
  const after = tf.memory().numTensors;
  if (after !== before) {
    throw new AptError(
      "INTERNAL",
      `${label} leaked tensors: tf.memory().numTensors went from ${before} to ${after}. ` +
        "Wrap the work in tf.tidy or dispose intermediates.",
    );
  }
  return result;
}
