#!/usr/bin/env node
/* global process, console */
/**
 * Which kernels do the gradients of common training ops need that the wasm
 * backend lacks? Runs tf.grads through each op and reports the ones that
 * throw, with the missing kernel's name.
 *
 *   node bench/grad-kernels.mjs           # @apt/backend-cpu (build first: npx tsc -b)
 *   node bench/grad-kernels.mjs --stock   # tfjs-backend-wasm alone: what @apt/backend-cpu has to add
 *
 * Gradient functions come from @apt/core, which registers tfjs's (tfjs-core
 * alone registers none).
 */
import * as tf from "@tensorflow/tfjs-core";
import "@apt/core";

const stock = process.argv.includes("--stock");
if (stock) {
  await import("@tensorflow/tfjs-backend-wasm");
  await tf.setBackend("wasm");
} else {
  const { backend } = await import("../dist/index.js");
  await backend.init();
}

const r = (shape) => tf.randomNormal(shape, 0, 1, "float32", 3);
const pos = (shape) => tf.add(tf.abs(r(shape)), 0.5);
const ids = (values) => tf.tensor1d(values, "int32");
const S = tf.sum;
const grads = (f, xs) => tf.grads(f)(xs);

const cases = {
  "conv2d s1 same": () => grads((x, w) => S(tf.conv2d(x, w, 1, "same")), [r([2, 6, 6, 3]), r([3, 3, 3, 4])]),
  "conv2d s2 valid": () => grads((x, w) => S(tf.conv2d(x, w, 2, "valid")), [r([2, 7, 7, 3]), r([3, 3, 3, 4])]),
  conv2dTranspose: () => grads((x, w) => S(tf.conv2dTranspose(x, w, [1, 6, 6, 3], 2, "same")), [r([1, 3, 3, 4]), r([3, 3, 3, 4])]),
  "fused conv2d + bias + relu": () =>
    grads((x, w, b) => S(tf.fused.conv2d({ x, filter: w, bias: b, activation: "relu", strides: 1, pad: "same" })), [r([1, 5, 5, 3]), r([3, 3, 3, 4]), r([4])]),
  depthwiseConv2d: () => grads((x, w) => S(tf.depthwiseConv2d(x, w, 1, "same")), [r([1, 5, 5, 3]), r([3, 3, 3, 2])]),
  separableConv2d: () => grads((x, d, p) => S(tf.separableConv2d(x, d, p, 1, "same")), [r([1, 5, 5, 3]), r([3, 3, 3, 1]), r([1, 1, 3, 4])]),
  conv1d: () => grads((x, w) => S(tf.conv1d(x, w, 1, "same")), [r([1, 5, 3]), r([3, 3, 4])]),
  matMul: () => grads((a, b) => S(tf.matMul(a, b)), [r([3, 4]), r([4, 5])]),
  "batched matMul, Bᵀ": () => grads((a, b) => S(tf.matMul(a, b, false, true)), [r([2, 3, 4]), r([2, 5, 4])]),
  "fused matMul + bias": () => grads((a, w, b) => S(tf.fused.matMul({ a, b: w, bias: b, activation: "relu" })), [r([3, 4]), r([4, 5]), r([5])]),
  // tfjs registers no gradient for Einsum: forward only.
  "einsum (forward)": () => [tf.einsum("ij,jk->ik", r([3, 4]), r([4, 5]))],
  softmax: () => grads((a) => S(tf.mul(tf.softmax(a), r([3, 4]))), [r([3, 4])]),
  logSoftmax: () => grads((a) => S(tf.mul(tf.logSoftmax(a), r([3, 4]))), [r([3, 4])]),
  "moments / variance": () => grads((a) => { const m = tf.moments(a, -1, true); return S(tf.add(m.mean, m.variance)); }, [r([3, 4])]),
  "batchNorm": () => grads((a, g, b) => S(tf.square(tf.batchNorm(a, tf.zeros([4]), tf.ones([4]), b, g, 1e-5))), [r([3, 4]), r([4]), r([4])]),
  "gelu (erf)": () => grads((a) => S(tf.mul(tf.mul(a, 0.5), tf.add(1, tf.erf(tf.mul(a, Math.SQRT1_2))))), [r([3, 4])]),
  "gelu (tanh)": () => grads((a) => S(tf.mul(a, tf.tanh(tf.mul(a, tf.add(1, tf.mul(tf.square(a), 0.044)))))), [r([3, 4])]),
  "sigmoid / silu": () => grads((a) => S(tf.mul(a, tf.sigmoid(a))), [r([3, 4])]),
  relu: () => grads((a) => S(tf.add(tf.relu(a), tf.leakyRelu(a, 0.2))), [r([3, 4])]),
  "elu / selu / softplus": () => grads((a) => S(tf.add(tf.add(tf.elu(a), tf.selu(a)), tf.softplus(a))), [r([3, 4])]),
  concat: () => grads((a, b) => S(tf.square(tf.concat([a, b], 1))), [r([3, 4]), r([3, 2])]),
  "slice / split": () => grads((a) => S(tf.add(tf.slice(a, [0, 1], [3, 2]), tf.split(a, 2, 1)[0])), [r([3, 4])]),
  "reshape / transpose": () => grads((a) => S(tf.square(tf.transpose(tf.reshape(a, [2, 6])))), [r([3, 4])]),
  "stack / unstack / tile": () => grads((a) => S(tf.square(tf.tile(tf.stack(tf.unstack(a)), [2, 1]))), [r([3, 4])]),
  "gather (embedding)": () => grads((a) => S(tf.square(tf.gather(a, ids([0, 2, 2])))), [r([3, 4])]),
  pad: () => grads((a) => S(tf.square(tf.pad(a, [[1, 1], [0, 2]]))), [r([3, 4])]),
  "resizeNearestNeighbor 2x": () => grads((a) => S(tf.square(tf.image.resizeNearestNeighbor(a, [6, 6]))), [r([1, 3, 3, 2])]),
  resizeBilinear: () => grads((a) => S(tf.square(tf.image.resizeBilinear(a, [6, 6]))), [r([1, 3, 3, 2])]),
  "avgPool / maxPool": () => grads((a) => S(tf.add(tf.avgPool(a, 2, 2, "valid"), tf.maxPool(a, 2, 2, "valid"))), [r([1, 4, 4, 2])]),
  "square / sqrt / rsqrt": () => grads((a) => S(tf.add(tf.sqrt(a), tf.add(tf.rsqrt(a), tf.square(a)))), [pos([3, 4])]),
  "add / sub / mul / div (broadcast)": () => grads((a, b) => S(tf.add(tf.div(tf.mul(tf.sub(a, b), a), tf.add(tf.abs(b), 1)), b)), [r([3, 4]), r([4])]),
  "sum / mean / max / min": () => grads((a) => S(tf.add(tf.add(tf.mean(a, 1), tf.max(a, 1)), tf.min(a, 1))), [r([3, 4])]),
  "exp / log / pow": () => grads((a, b) => S(tf.add(tf.log(tf.add(tf.exp(a), 1)), tf.pow(tf.add(tf.abs(a), 1), b))), [r([3, 4]), r([3, 4])]),
  tanh: () => grads((a) => S(tf.tanh(a)), [r([3, 4])]),
  "maximum / clip / where": () => {
    const mask = tf.greater(r([3, 4]), 0);
    return grads((a, b) => S(tf.add(tf.add(tf.maximum(a, b), tf.clipByValue(a, -0.5, 0.5)), tf.where(mask, a, b))), [r([3, 4]), r([3, 4])]);
  },
  "squaredDifference / abs": () => grads((a, b) => S(tf.add(tf.squaredDifference(a, b), tf.abs(a))), [r([3, 4]), r([3, 4])]),
  "cumsum / reverse / mirrorPad": () => grads((a) => S(tf.square(tf.mirrorPad(tf.reverse(tf.cumsum(a, 1), 1), [[1, 1], [1, 1]], "reflect"))), [r([3, 4])]),
  "cos / sin / logSumExp": () => grads((a) => S(tf.add(tf.add(tf.cos(a), tf.sin(a)), tf.logSumExp(a, 1, true))), [r([3, 4])]),
  unsortedSegmentSum: () => grads((a) => S(tf.square(tf.unsortedSegmentSum(a, ids([0, 1, 0]), 2))), [r([3, 4])]),
};

let failed = 0;
for (const [name, fn] of Object.entries(cases)) {
  try {
    tf.tidy(() => {
      for (const g of fn()) g.dataSync();
    });
    console.log(`ok    ${name}`);
  } catch (e) {
    failed++;
    const msg = String(e?.message ?? e);
    const kernel = /Kernel '(\w+)' not registered/.exec(msg)?.[1];
    console.log(kernel ? `MISS  ${name}: kernel ${kernel} not registered for ${tf.getBackend()}` : `FAIL  ${name}: ${msg.split("\n")[0]}`);
  }
}
console.log(`${Object.keys(cases).length - failed}/${Object.keys(cases).length} gradients run on ${stock ? "stock tfjs-backend-wasm" : "@apt/backend-cpu"}`);
process.exitCode = failed ? 1 : 0;
