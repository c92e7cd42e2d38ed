/**
 * A small PNG reader for the shipped reference images, so that loading a
 * concept needs nothing beyond Node: 8-bit RGB or RGBA (alpha dropped),
 * non-interlaced, any of the five row filters. Other PNGs are refused.
 */
import { inflateSync } from "node:zlib";
import { AptError } from "@apt/core";

export interface DecodedRgb {
  width: number;
  height: number;
  /** Interleaved RGB bytes, row-major, width × height × 3. */
  rgb: Uint8Array;
}

const SIGNATURE = [137, 80, 78, 71, 13, 10, 26, 10];

function paeth(a: number, b: number, c: number): number {
  const p = a + b - c;
  const pa = Math.abs(p - a);
  const pb = Math.abs(p - b);
  const pc = Math.abs(p - c);
  return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}

/** Decodes an 8-bit RGB/RGBA PNG to RGB bytes; `what` names it in errors. */
export function decodePngRgb(bytes: Uint8Array, what = "PNG"): DecodedRgb {
  const bad = (why: string): never => {
    throw new AptError("BAD_INPUT", `${what}: ${why}`);
  };
  if (bytes.length < 8 || SIGNATURE.some((v, i) => bytes[i] !== v)) bad("not a PNG file");
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let width = 0;
  let height = 0;
  let channels = 0;
  const idat: Uint8Array[] = [];
  let ended = false;
  for (let at = 8; at + 8 <= bytes.length && !ended; ) {
    const length = view.getUint32(at);
    const type = String.fromCharCode(bytes[at + 4]!, bytes[at + 5]!, bytes[at + 6]!, bytes[at + 7]!);
    const data = bytes.subarray(at + 8, at + 8 + length);
    if (data.length !== length) bad(`chunk ${type} is cut short`);
    if (type === "IHDR") {
      width = view.getUint32(at + 8);
      height = view.getUint32(at + 12);
      const [depth, colorType, , , interlace] = [data[8], data[9], data[10], data[11], data[12]];
      if (depth !== 8 || (colorType !== 2 && colorType !== 6) || interlace !== 0) {
        bad(`only 8-bit, non-interlaced RGB or RGBA PNGs are read (bit depth ${depth}, colour type ${colorType}, interlace ${interlace})`);
      }
      channels = colorType === 2 ? 3 : 4;
    } else if (type === "IDAT") {
      idat.push(data);
    } else if (type === "IEND") {
      ended = true;
    }
    at += 12 + length;
  }
  if (channels === 0 || width === 0 || height === 0) bad("no IHDR chunk");
  if (!ended) bad("no IEND chunk (truncated file)");
  let raw: Uint8Array;
  try {
    raw = inflateSync(Buffer.concat(idat));
  } catch (cause) {
    throw new AptError("BAD_INPUT", `${what}: image data does not inflate (${(cause as Error).message})`, { cause });
  }
  const stride = width * channels;
  if (raw.length < height * (stride + 1)) bad(`image data holds ${raw.length} bytes, expected ${height * (stride + 1)}`);
  const pixels = new Uint8Array(height * stride);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)]!;
    const src = y * (stride + 1) + 1;
    const row = y * stride;
    const prev = row - stride;
    for (let x = 0; x < stride; x++) {
      const a = x >= channels ? pixels[row + x - channels]! : 0;
      const b = y > 0 ? pixels[prev + x]! : 0;
      const c = x >= channels && y > 0 ? pixels[prev + x - channels]! : 0;
      let predictor: number;
      switch (filter) {
        case 0:
          predictor = 0;
          break;
        case 1:
          predictor = a;
          break;
        case 2:
          predictor = b;
          break;
        case 3:
          predictor = (a + b) >> 1;
          break;
        case 4:
          predictor = paeth(a, b, c);
          break;
        default:
          return bad(`row ${y} has unknown filter ${filter}`);
      }
      pixels[row + x] = (raw[src + x]! + predictor) & 0xff;
    }
  }
  if (channels === 3) return { width, height, rgb: pixels };
  const rgb = new Uint8Array(width * height * 3);
  for (let i = 0; i < width * height; i++) {
    rgb[i * 3] = pixels[i * 4]!;
    rgb[i * 3 + 1] = pixels[i * 4 + 1]!;
    rgb[i * 3 + 2] = pixels[i * 4 + 2]!;
  }
  return { width, height, rgb };
}
