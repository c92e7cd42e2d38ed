/**
 * Instance images: PNG files (pngjs; other formats are refused with a
 * message) → NHWC float32 in [-1, 1].
 *
 * - RGBA and grey PNGs become RGB (alpha is dropped, not blended).
 * - Every image is brought to the model's resolution (UNet sample size × the
 *   VAE's downsampling factor): a centre crop to a square, then a box filter
 *   (each output pixel is the area-weighted mean of the source pixels it
 *   covers), which is exact for integer down-scaling and smooth otherwise.
 */
import { readFileSync } from "node:fs";
import { extname, isAbsolute, relative } from "node:path";
import { PNG } from "pngjs";
import { glob } from "tinyglobby";
import { tf } from "@apt/core";

export interface DecodedImage {
  file: string;
  width: number;
  height: number;
  /** Interleaved RGB bytes, width × height × 3. */
  rgb: Uint8Array;
}

/** Files matched by `pattern` (relative to `dir`), sorted. */
export async function findImages(pattern: string, dir: string): Promise<string[]> {
  const opts = { cwd: dir, absolute: true, onlyFiles: true, dot: false, expandDirectories: false };
  const files = isAbsolute(pattern) ? await glob([relative(dir, pattern) || "."], opts) : await glob([pattern], opts);
  return files.sort();
}

export function isPng(file: string): boolean {
  return extname(file).toLowerCase() === ".png";
}

/** Decodes one PNG to RGB bytes. Throws with pngjs' message when it is not a readable PNG. */
export function decodePng(file: string): DecodedImage {
  const png = PNG.sync.read(readFileSync(file));
  const { width, height, data } = png;
  const rgb = new Uint8Array(width * height * 3);
  for (let i = 0, j = 0; i < width * height * 4; i += 4, j += 3) {
    rgb[j] = data[i]!;
    rgb[j + 1] = data[i + 1]!;
    rgb[j + 2] = data[i + 2]!;
  }
  return { file, width, height, rgb };
}

/** Centre crop to a square, then box-filter resample to size × size. Returns RGB floats in [0, 255]. */
export function cropResize(img: DecodedImage, size: number): Float32Array {
  const side = Math.min(img.width, img.height);
  const x0 = Math.floor((img.width - side) / 2);
  const y0 = Math.floor((img.height - side) / 2);
  const out = new Float32Array(size * size * 3);
  const scale = side / size;
  // Per output coordinate, the source pixels it covers with their weights.
  const spans: { i: number; w: number }[][] = [];
  for (let o = 0; o < size; o++) {
    const a = o * scale;
    const b = (o + 1) * scale;
    const list: { i: number; w: number }[] = [];
    for (let s = Math.floor(a); s < Math.min(Math.ceil(b), side); s++) {
      const w = Math.min(b, s + 1) - Math.max(a, s);
      if (w > 1e-9) list.push({ i: s, w });
    }
    const total = list.reduce((t, e) => t + e.w, 0);
    for (const e of list) e.w /= total;
    spans.push(list);
  }
  for (let oy = 0; oy < size; oy++) {
    for (let ox = 0; ox < size; ox++) {
      let r = 0;
      let g = 0;
      let b = 0;
      for (const sy of spans[oy]!) {
        for (const sx of spans[ox]!) {
          const w = sy.w * sx.w;
          const k = ((y0 + sy.i) * img.width + (x0 + sx.i)) * 3;
          r += w * img.rgb[k]!;
          g += w * img.rgb[k + 1]!;
          b += w * img.rgb[k + 2]!;
        }
      }
      const o = (oy * size + ox) * 3;
      out[o] = r;
      out[o + 1] = g;
      out[o + 2] = b;
    }
  }
  return out;
}

/** Images at the model's resolution as one NHWC float32 tensor in [-1, 1]; also says how many were resized. */
export function imagesToTensor(images: DecodedImage[], size: number): { tensor: tf.Tensor4D; resized: number } {
  const data = new Float32Array(images.length * size * size * 3);
  let resized = 0;
  images.forEach((img, n) => {
    let px: Float32Array;
    if (img.width === size && img.height === size) px = Float32Array.from(img.rgb);
    else {
      px = cropResize(img, size);
      resized++;
    }
    const off = n * size * size * 3;
    for (let i = 0; i < px.length; i++) data[off + i] = px[i]! / 127.5 - 1;
  });
  return { tensor: tf.tensor4d(data, [images.length, size, size, 3]), resized };
}
