/** The PNG grid writer (read back with pngjs) and the instance-image loader (alpha, crop, box filter, range). */
import { beforeAll, describe, expect, it } from "vitest";
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PNG } from "pngjs";
import { tf } from "@apt/core";
import { backend } from "@apt/backend-cpu";
import { writeImageGrid } from "../src/png.js";
import { cropResize, decodePng, imagesToTensor } from "../src/images.js";
import { solidPng } from "./helpers.js";

const dir = mkdtempSync(join(tmpdir(), "apt-cli-img-"));

beforeAll(async () => {
  await backend.init();
});

describe("PNG grids", () => {
  it("tiles a batch row by row and round-trips the pixels", async () => {
    // 3 images of 2×2: pixel value encodes (image, y, x, channel).
    const n = 3;
    const data = new Float32Array(n * 2 * 2 * 3);
    for (let i = 0; i < data.length; i++) data[i] = (i % 251) / 255;
    const images = tf.tensor4d(data, [n, 2, 2, 3]);
    const path = join(dir, "sub", "grid.png");
    await writeImageGrid(images, path, { cols: 2, gap: 1 });
    images.dispose();
    expect(readdirSync(join(dir, "sub"))).toEqual(["grid.png"]); // no temp file left
    const png = PNG.sync.read(readFileSync(path));
    expect([png.width, png.height]).toEqual([2 * 2 + 1, 2 * 2 + 1]);
    const px = (x: number, y: number) => Array.from(png.data.subarray((y * png.width + x) * 4, (y * png.width + x) * 4 + 4));
    const want = (k: number, y: number, x: number) => [0, 1, 2].map((c) => Math.round(data[((k * 2 + y) * 2 + x) * 3 + c]! * 255)).concat(255);
    expect(px(0, 0)).toEqual(want(0, 0, 0));
    expect(px(4, 1)).toEqual(want(1, 1, 1)); // image 1 is right of image 0, after a 1-pixel gap
    expect(px(1, 4)).toEqual(want(2, 1, 1)); // image 2 starts the second row
    expect(px(2, 0)).toEqual([255, 255, 255, 255]); // the gap
    expect(px(4, 4)).toEqual([255, 255, 255, 255]); // the empty fourth tile
  });
});

describe("instance images", () => {
  it("drops alpha, keeps RGB", () => {
    const file = join(dir, "rgba.png");
    writeFileSync(file, solidPng(3, 2, [10, 20, 30], 128));
    const img = decodePng(file);
    expect([img.width, img.height]).toEqual([3, 2]);
    expect(Array.from(img.rgb.subarray(0, 6))).toEqual([10, 20, 30, 10, 20, 30]);
  });

  it("centre-crops to a square and box-filters to the model size", () => {
    // 6×4 image: columns 0 and 5 are cropped away; the 4×4 centre halves to 2×2 by 2×2 means.
    const w = 6;
    const h = 4;
    const rgb = new Uint8Array(w * h * 3);
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) rgb.fill(x === 0 || x === 5 ? 255 : (x - 1) * 10 + y * 40, (y * w + x) * 3, (y * w + x) * 3 + 3);
    const out = cropResize({ file: "m", width: w, height: h, rgb }, 2);
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    expect(out[0]).toBeCloseTo(mean([0, 10, 40, 50]), 5);
    expect(out[3]).toBeCloseTo(mean([20, 30, 60, 70]), 5);
    expect(out[6]).toBeCloseTo(mean([80, 90, 120, 130]), 5);
    // Up-scaling repeats pixels.
    const up = cropResize({ file: "u", width: 1, height: 1, rgb: new Uint8Array([9, 8, 7]) }, 2);
    expect(Array.from(up)).toEqual([9, 8, 7, 9, 8, 7, 9, 8, 7, 9, 8, 7]);
  });

  it("gives NHWC float32 in [-1, 1]", () => {
    const a = { file: "a", width: 2, height: 2, rgb: new Uint8Array(12).fill(255) };
    const b = { file: "b", width: 4, height: 4, rgb: new Uint8Array(48).fill(0) };
    const { tensor, resized } = imagesToTensor([a, b], 2);
    expect(tensor.shape).toEqual([2, 2, 2, 3]);
    expect(resized).toBe(1);
    const v = tensor.dataSync();
    expect(v[0]).toBe(1);
    expect(v[12]).toBe(-1);
    tensor.dispose();
  });
});
