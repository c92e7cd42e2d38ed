/**
 * Tiles rendered images into one RGB picture (8-bit), for preview and sample
 * grids; writing it as PNG is left to the caller.
 */
import { AptError } from "@apt/core";
import { CHANNELS, IMAGE_SIZE } from "./attributes.js";

export interface GridOptions {
  /** Images per row (default: ⌈√count⌉). */
  columns?: number;
  /** Gap between tiles and around them, in output pixels (default 2). */
  padding?: number;
  /** Nearest-neighbour magnification (default 1). */
  scale?: number;
  /** Colour of the gaps, 0–255 (default [255, 255, 255]). */
  fill?: readonly [number, number, number];
  /** Side of one image (default 32). */
  imageSize?: number;
}

export interface Grid {
  width: number;
  height: number;
  /** RGB, row-major, 3 bytes a pixel. */
  data: Uint8Array;
}

/** `images` holds `count` HWC images with values in [0, 1]. */
export function tileImages(images: Float32Array, count: number, options: GridOptions = {}): Grid {
  const size = options.imageSize ?? IMAGE_SIZE;
  const per = size * size * CHANNELS;
  if (!Number.isInteger(count) || count < 1 || images.length < count * per) {
    throw new AptError("BAD_INPUT", `tileImages: ${images.length} values do not hold ${count} images of ${size}×${size}×3`);
  }
  const cols = options.columns ?? Math.ceil(Math.sqrt(count));
  const rows = Math.ceil(count / cols);
  const pad = options.padding ?? 2;
  const scale = options.scale ?? 1;
  const fill = options.fill ?? [255, 255, 255];
  const tile = size * scale;
  const width = cols * tile + (cols + 1) * pad;
  const height = rows * tile + (rows + 1) * pad;
  const data = new Uint8Array(width * height * 3);
  for (let i = 0; i < width * height; i++) data.set(fill, i * 3);
  for (let k = 0; k < count; k++) {
    const ox = pad + (k % cols) * (tile + pad);
    const oy = pad + Math.floor(k / cols) * (tile + pad);
    for (let y = 0; y < tile; y++) {
      for (let x = 0; x < tile; x++) {
        const src = k * per + (Math.floor(y / scale) * size + Math.floor(x / scale)) * CHANNELS;
        const dst = ((oy + y) * width + ox + x) * 3;
        for (let c = 0; c < 3; c++) data[dst + c] = Math.round(Math.min(1, Math.max(0, images[src + c]!)) * 255);
      }
    }
  }
  return { width, height, data };
}
