/**
 * Safetensors writer. Everything is validated before the disk is touched; the
 * file is then written to a temporary file next to the target and renamed over
 * it, so a crash or an error midway never leaves a half-written checkpoint.
 */
import { randomBytes } from "node:crypto";
import { open, rename, rm, type FileHandle } from "node:fs/promises";
import { tf } from "../tensor.js";
import {
  DTYPE_SIZES,
  encodeBF16,
  encodeF16,
  isSafetensorsDtype,
  littleEndianBytes,
  type SafetensorsDtype,
  type TensorData,
} from "./dtypes.js";
import { safetensorsError } from "./reader.js";

/**
 * One tensor to write. `data` is a Float32Array for F32, F16 and BF16 (the
 * latter two are rounded to nearest even), Int32Array for I32, BigInt64Array
 * for I64, Uint8Array for U8 and BOOL (0 or 1).
 */
export interface TensorToWrite {
  dtype: SafetensorsDtype;
  shape: number[];
  data: TensorData | Float32Array;
}

// The typed array each dtype's data must come in (F16/BF16 are encoded from float32).
const ARRAY_FOR = {
  F32: Float32Array, F16: Float32Array, BF16: Float32Array, I32: Int32Array, I64: BigInt64Array, U8: Uint8Array, BOOL: Uint8Array,
} as const;

const TF_DTYPES: Partial<Record<string, SafetensorsDtype>> = { float32: "F32", int32: "I32", bool: "BOOL" };

interface Planned {
  name: string;
  byteLength: number;
  /** The little-endian bytes, produced only when written (F16/BF16 encode, tfjs downloads). */
  bytes: () => Uint8Array;
}

function checkBool(where: string, name: string, data: Uint8Array): void {
  const bad = data.findIndex((v) => v > 1);
  if (bad >= 0) throw safetensorsError(where, `BOOL element ${bad} is ${data[bad]}, not 0 or 1`, name);
}

function planTensor(where: string, name: string, value: TensorToWrite | tf.Tensor): Planned & { dtype: SafetensorsDtype; shape: number[] } {
  const bad = (problem: string) => safetensorsError(where, problem, name);
  if (name === "" || name === "__metadata__") {
    throw bad(`invalid tensor name: names must be non-empty and "__metadata__" is reserved for the metadata`);
  }
  if (value instanceof tf.Tensor) {
    const t = value;
    const dtype = TF_DTYPES[t.dtype];
    if (!dtype) throw bad(`tfjs dtype ${t.dtype} cannot be written (float32, int32 and bool can)`);
    if (t.isDisposed) throw bad("the tfjs tensor is disposed");
    const byteLength = t.size * DTYPE_SIZES[dtype];
    const bytes = () => {
      const data = t.dataSync() as Float32Array | Int32Array | Uint8Array;
      if (dtype === "BOOL") checkBool(where, name, data as Uint8Array);
      return littleEndianBytes(data);
    };
    return { name, dtype, shape: [...t.shape], byteLength, bytes };
  }
  const { dtype, shape, data } = (value ?? {}) as Partial<TensorToWrite>;
  if (!isSafetensorsDtype(dtype)) {
    throw bad(`dtype ${JSON.stringify(dtype)} is not one of ${Object.keys(DTYPE_SIZES).join(", ")}`);
  }
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw bad(`shape ${JSON.stringify(shape)} is not an array of non-negative integers`);
  }
  if (!(data instanceof ARRAY_FOR[dtype])) {
    throw bad(`dtype ${dtype} needs its data in a ${ARRAY_FOR[dtype].name}, got ${data?.constructor?.name ?? String(data)}`);
  }
  const d = data as TensorData;
  const count = shape.reduce((a, b) => a * b, 1);
  if (d.length !== count) {
    throw bad(`shape [${shape.join(", ")}] has ${count} elements but the data has ${d.length}`);
  }
  if (dtype === "BOOL") checkBool(where, name, d as Uint8Array);
  const bytes =
    dtype === "F16" ? () => littleEndianBytes(encodeF16(d as Float32Array))
    : dtype === "BF16" ? () => littleEndianBytes(encodeBF16(d as Float32Array))
    : () => littleEndianBytes(d);
  return { name, dtype, shape: [...shape], byteLength: count * DTYPE_SIZES[dtype], bytes };
}

/** Validates the input and lays out the file: returns the 8-byte length + padded JSON header, and the tensors in order. */
function plan(
  where: string,
  tensors: Record<string, TensorToWrite | tf.Tensor>,
  metadata: Record<string, string> | undefined,
): { header: Uint8Array; planned: Planned[] } {
  const parts: string[] = [];
  if (metadata !== undefined) {
    if (typeof metadata !== "object" || metadata === null || Array.isArray(metadata)) {
      throw safetensorsError(where, "metadata must be an object of strings");
    }
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== "string") {
        throw safetensorsError(where, `metadata value ${JSON.stringify(k)} is a ${typeof v}: safetensors metadata values must be strings (JSON.stringify it)`);
      }
    }
    if (Object.keys(metadata).length > 0) parts.push(`"__metadata__":${JSON.stringify(metadata)}`);
  }
  const planned: Planned[] = [];
  let offset = 0;
  for (const [name, value] of Object.entries(tensors)) {
    const p = planTensor(where, name, value);
    // Built by hand, not through an object, to keep the given order (and a name like "__proto__" a name).
    parts.push(`${JSON.stringify(name)}:${JSON.stringify({ dtype: p.dtype, shape: p.shape, data_offsets: [offset, offset + p.byteLength] })}`);
    planned.push(p);
    offset += p.byteLength;
  }
  const json = new TextEncoder().encode(`{${parts.join(",")}}`);
  // Pad with spaces so the data buffer starts 8-byte aligned, as the reference implementation does.
  const n = json.length + ((8 - (json.length % 8)) % 8);
  const header = new Uint8Array(8 + n).fill(0x20);
  new DataView(header.buffer).setBigUint64(0, BigInt(n), true);
  header.set(json, 8);
  return { header, planned };
}

function checkedBytes(where: string, p: Planned): Uint8Array {
  const b = p.bytes();
  if (b.length !== p.byteLength) throw safetensorsError(where, `produced ${b.length} bytes instead of ${p.byteLength}`, p.name);
  return b;
}

/** The whole file in memory. Prefer writeSafetensors for large tensors: it streams them. */
export function serializeSafetensors(
  tensors: Record<string, TensorToWrite | tf.Tensor>,
  metadata?: Record<string, string>,
): Uint8Array {
  const where = "safetensors (in memory)";
  const { header, planned } = plan(where, tensors, metadata);
  const out = new Uint8Array(header.length + planned.reduce((a, p) => a + p.byteLength, 0));
  out.set(header, 0);
  let at = header.length;
  for (const p of planned) {
    out.set(checkedBytes(where, p), at);
    at += p.byteLength;
  }
  return out;
}

async function writeAll(fh: FileHandle, bytes: Uint8Array, position: number): Promise<void> {
  let done = 0;
  while (done < bytes.length) {
    // Node caps one write at 2 GiB - 1; the OS may also write less than asked.
    const { bytesWritten } = await fh.write(bytes, done, Math.min(1 << 30, bytes.length - done), position + done);
    done += bytesWritten;
  }
}

/**
 * Writes `tensors` (in key order) and `metadata` to `path` atomically: a
 * temporary file in the same folder, fsynced, then renamed over the target.
 * On any failure the temporary file is removed and `path` is left as it was.
 */
export async function writeSafetensors(
  path: string,
  tensors: Record<string, TensorToWrite | tf.Tensor>,
  metadata?: Record<string, string>,
): Promise<void> {
  const { header, planned } = plan(path, tensors, metadata);
  const tmp = `${path}.tmp-${process.pid}-${randomBytes(6).toString("hex")}`;
  let fh: FileHandle | undefined;
  try {
    fh = await open(tmp, "wx");
    await writeAll(fh, header, 0);
    let at = header.length;
    for (const p of planned) {
      await writeAll(fh, checkedBytes(path, p), at);
      at += p.byteLength;
    }
    await fh.sync();
    await fh.close();
    fh = undefined;
    await rename(tmp, path);
  } catch (e) {
    await fh?.close().catch(() => undefined);
    await rm(tmp, { force: true }).catch(() => undefined);
    throw e;
  }
}
