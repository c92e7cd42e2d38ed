/**
 * The safetensors element types @apt reads and writes, their sizes, and the
 * bit-level float16 / bfloat16 conversions (Node 20 has no Float16Array).
 *
 * All conversions work on the raw bits (through Uint32Array views of the
 * Float32Arrays), never through JS numbers, so NaN payloads and signed zeros
 * survive: F16 → F32 → F16 and BF16 → F32 → BF16 are bit-exact for all 65536
 * patterns.
 */

export type SafetensorsDtype = "F32" | "F16" | "BF16" | "I32" | "I64" | "U8" | "BOOL";

/** Bytes per element of each dtype. */
export const DTYPE_SIZES: Readonly<Record<SafetensorsDtype, number>> = Object.freeze({
  F32: 4,
  F16: 2,
  BF16: 2,
  I32: 4,
  I64: 8,
  U8: 1,
  BOOL: 1,
});

export function isSafetensorsDtype(x: unknown): x is SafetensorsDtype {
  return typeof x === "string" && Object.prototype.hasOwnProperty.call(DTYPE_SIZES, x);
}

/** F32/F16/BF16 → Float32Array; I32 → Int32Array; I64 → BigInt64Array; U8, BOOL → Uint8Array. */
export type TensorData = Float32Array | Int32Array | BigInt64Array | Uint8Array;

// Float32 bit pattern of every float16, built on first use (256 KiB).
let f16Table: Uint32Array | undefined;

function f16BitsToF32Bits(h: number): number {
  const sign = (h & 0x8000) << 16;
  const exp = (h >>> 10) & 0x1f;
  let mant = h & 0x3ff;
  if (exp === 0x1f) return (sign | 0x7f800000 | (mant << 13)) >>> 0; // inf, or NaN keeping its payload
  if (exp !== 0) return (sign | ((exp - 15 + 127) << 23) | (mant << 13)) >>> 0;
  if (mant === 0) return sign >>> 0; // ±0
  // Subnormal (mant × 2^-24): normalise, since every float16 subnormal is a float32 normal.
  let e = -14;
  while ((mant & 0x400) === 0) {
    mant <<= 1;
    e--;
  }
  return (sign | ((e + 127) << 23) | ((mant & 0x3ff) << 13)) >>> 0;
}

export function decodeF16(u16: Uint16Array): Float32Array {
  if (!f16Table) {
    f16Table = new Uint32Array(65536);
    for (let h = 0; h < 65536; h++) f16Table[h] = f16BitsToF32Bits(h);
  }
  const out = new Float32Array(u16.length);
  const bits = new Uint32Array(out.buffer);
  for (let i = 0; i < u16.length; i++) bits[i] = f16Table[u16[i]!]!;
  return out;
}

/** Float32 bits → float16 bits, rounding to nearest, ties to even; overflow → ±inf. */
function f32BitsToF16Bits(x: number): number {
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  const mant = x & 0x7fffff;
  if (exp === 0xff) {
    if (mant === 0) return sign | 0x7c00;
    // NaN: keep the top payload bits; if they are all zero set the quiet bit so it stays a NaN.
    return sign | 0x7c00 | (mant >>> 13 || 0x200);
  }
  const e = exp - 127 + 15; // float16 biased exponent
  if (e >= 0x1f) return sign | 0x7c00;
  if (e >= 1) {
    const rest = mant & 0x1fff;
    let h = sign | (e << 10) | (mant >>> 13);
    // A carry out of the mantissa correctly bumps the exponent (up to inf).
    if (rest > 0x1000 || (rest === 0x1000 && (h & 1) === 1)) h++;
    return h;
  }
  // Float16 subnormal q × 2^-24. The float32 is (mant | 1 << 23) × 2^(exp-150),
  // so q = (mant | 1 << 23) >> (126 - exp), rounded on the bits shifted out.
  const shift = 14 - e; // = 126 - exp, ≥ 14
  if (shift > 24) return sign; // below half the smallest subnormal: rounds to ±0
  const full = mant | 0x800000;
  let q = full >>> shift;
  const rest = full & ((1 << shift) - 1);
  const half = 1 << (shift - 1);
  if (rest > half || (rest === half && (q & 1) === 1)) q++; // q = 0x400 is the smallest normal: fine
  return sign | q;
}

export function encodeF16(f32: Float32Array): Uint16Array {
  const bits = new Uint32Array(f32.buffer, f32.byteOffset, f32.length);
  const out = new Uint16Array(f32.length);
  for (let i = 0; i < bits.length; i++) out[i] = f32BitsToF16Bits(bits[i]!);
  return out;
}

export function decodeBF16(u16: Uint16Array): Float32Array {
  // bfloat16 is the top half of a float32: subnormals, inf and NaN need no special case.
  const out = new Float32Array(u16.length);
  const bits = new Uint32Array(out.buffer);
  for (let i = 0; i < u16.length; i++) bits[i] = u16[i]! << 16;
  return out;
}

export function encodeBF16(f32: Float32Array): Uint16Array {
  const bits = new Uint32Array(f32.buffer, f32.byteOffset, f32.length);
  const out = new Uint16Array(f32.length);
  for (let i = 0; i < bits.length; i++) {
    const x = bits[i]!;
    if ((x & 0x7fffffff) > 0x7f800000) {
      // NaN: truncating could clear the whole mantissa (→ inf), so force the quiet bit then.
      out[i] = ((x >>> 16) & 0x7f) !== 0 ? x >>> 16 : (x >>> 16) | 0x40;
    } else {
      // Round to nearest even: add 0x7fff plus the lowest kept bit, then truncate.
      // Overflow rounds into the exponent and gives ±inf, as it should.
      out[i] = (x + 0x7fff + ((x >>> 16) & 1)) >>> 16;
    }
  }
  return out;
}

// Safetensors data is little-endian. On a little-endian host (every platform
// Node ships prebuilt for but s390x) typed-array views are used as they are.
const HOST_IS_LE = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Reverses the bytes of each `size`-byte element (a copy) on big-endian hosts; a no-op otherwise. */
export function swapToHost(bytes: Uint8Array, size: number): Uint8Array {
  if (HOST_IS_LE || size === 1) return bytes;
  const out = new Uint8Array(bytes.length);
  for (let i = 0; i < bytes.length; i += size) {
    for (let j = 0; j < size; j++) out[i + j] = bytes[i + size - 1 - j]!;
  }
  return out;
}

/** Bytes of a typed array in safetensors (little-endian) order, without a copy where possible. */
export function littleEndianBytes(data: ArrayBufferView & { BYTES_PER_ELEMENT: number }): Uint8Array {
  const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  return swapToHost(bytes, data.BYTES_PER_ELEMENT);
}

/**
 * Decodes the little-endian bytes of one tensor. Returns views of `bytes` where
 * the dtype needs no conversion and the alignment allows, so `bytes` should be
 * owned by the caller. Throws a plain Error (the caller adds file and tensor)
 * for a BOOL byte other than 0 or 1.
 */
export function decodeTensorBytes(dtype: SafetensorsDtype, bytes: Uint8Array): TensorData {
  const size = DTYPE_SIZES[dtype];
  let b = swapToHost(bytes, size);
  if (b.byteOffset % size !== 0) b = b.slice(); // typed-array views must be aligned
  const n = b.length / size;
  switch (dtype) {
    case "F32":
      return new Float32Array(b.buffer, b.byteOffset, n);
    case "F16":
      return decodeF16(new Uint16Array(b.buffer, b.byteOffset, n));
    case "BF16":
      return decodeBF16(new Uint16Array(b.buffer, b.byteOffset, n));
    case "I32":
      return new Int32Array(b.buffer, b.byteOffset, n);
    case "I64":
      return new BigInt64Array(b.buffer, b.byteOffset, n);
    case "U8":
      return b;
    case "BOOL": {
      const bad = b.findIndex((v) => v > 1);
      if (bad >= 0) throw new Error(`BOOL element ${bad} is ${b[bad]}, not 0 or 1`);
      return b;
    }
  }
}
