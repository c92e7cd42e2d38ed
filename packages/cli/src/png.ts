/** Image grids as PNG (pngjs), written atomically: the engine's `writeImages` and `apt-run sample`'s output. */
import { PNG } from "pngjs";
import type { tf } from "@apt/core";
import { writeFileAtomic } from "./util/fs.js";

export interface GridOptions {
  /** Columns of the grid (default: ⌈√N⌉). */
  cols?: number;
  /** Pixels between tiles (default 2), filled with `background`. */
  gap?: number;
  /** RGB of the gaps (default white). */
  background?: [number, number, number];
}

/**
 * Tiles N images (NHWC floats in [0, 1], 1, 3 or 4 channels) row by row into
 * one RGBA PNG and returns its bytes.
 */
export function encodeGrid(data: Float32Array | Int32Array | Uint8Array, shape: readonly number[], o: GridOptions = {}): Buffer {
  const [n, h, w, c] = shape as [number, number, number, number];
  if (shape.length !== 4 || ![1, 3, 4].includes(c)) throw new Error(`encodeGrid: expected NHWC images with 1, 3 or 4 channels, got shape [${shape.join(", ")}]`);
  const cols = Math.max(1, Math.min(o.cols ?? Math.ceil(Math.sqrt(n)), n));
  const rows = Math.max(1, Math.ceil(n / cols));
  const gap = o.gap ?? 2;
  const [br, bg, bb] = o.background ?? [255, 255, 255];
  const width = cols * w + (cols - 1) * gap;
  const height = rows * h + (rows - 1) * gap;
  const png = new PNG({ width, height, colorType: 6 });
  for (let i = 0; i < width * height; i++) {
    png.data[i * 4] = br;
    png.data[i * 4 + 1] = bg;
    png.data[i * 4 + 2] = bb;
    png.data[i * 4 + 3] = 255;
  }
  const toByte = (v: number) => Math.round(Math.min(1, Math.max(0, Number.isFinite(v) ? v : 0)) * 255);
  for (let k = 0; k < n; k++) {
    const ox = (k % cols) * (w + gap);
    const oy = Math.floor(k / cols) * (h + gap);
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const src = ((k * h + y) * w + x) * c;
        const dst = ((oy + y) * width + ox + x) * 4;
        const r = toByte(data[src]!);
        png.data[dst] = r;
        png.data[dst + 1] = c >= 3 ? toByte(data[src + 1]!) : r;
        png.data[dst + 2] = c >= 3 ? toByte(data[src + 2]!) : r;
        png.data[dst + 3] = c === 4 ? toByte(data[src + 3]!) : 255;
      }
    }
  }
  return PNG.sync.write(png);
}

/**
 * Writes a batch of images (NHWC in [0, 1]) as one grid PNG at `path`
 * (temp file + rename, folders created). Does not dispose `images`: the caller owns them.
 */
export async function writeImageGrid(images: tf.Tensor4D, path: string, o: GridOptions = {}): Promise<void> {
  const data = (await images.data()) as Float32Array;
  await writeFileAtomic(path, encodeGrid(data, images.shape, o));
}
