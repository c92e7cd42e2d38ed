/**
 * Safetensors reader: `open()` reads the 8-byte header length and the JSON
 * header only, validates every entry against the file size, and each tensor is
 * read later on demand with positional reads, so a multi-GB checkpoint is never
 * read whole.
 *
 * Layout: u64 little-endian header length N, N bytes of UTF-8 JSON
 * `{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}}`,
 * then the data buffer; offsets are relative to byte 8 + N.
 */
import { open, type FileHandle } from "node:fs/promises";
import { AptError } from "../errors.js";
import { tf } from "../tensor.js";
import { DTYPE_SIZES, decodeTensorBytes, isSafetensorsDtype, type SafetensorsDtype, type TensorData } from "./dtypes.js";

export interface SafetensorsEntry {
  name: string;
  dtype: SafetensorsDtype;
  shape: number[];
  dataOffsets: [number, number];
}

export interface DecodedTensor {
  dtype: SafetensorsDtype;
  shape: number[];
  data: TensorData;
}

/** Largest header accepted, as in the reference Rust implementation. */
export const MAX_HEADER_BYTES = 100 * 1024 * 1024;

const TRUNCATED = "the file is truncated: re-download or re-export it";
// Positional reads are capped by Node at 2 GiB - 1 per call.
const READ_CHUNK = 1 << 30;

/** A BAD_SAFETENSORS error that names the file and, when there is one, the tensor. */
export function safetensorsError(path: string, problem: string, tensor?: string, cause?: unknown): AptError {
  const where = tensor === undefined ? path : `${path}: tensor ${JSON.stringify(tensor)}`;
  return new AptError("BAD_SAFETENSORS", `${where}: ${problem}`, cause === undefined ? undefined : { cause });
}

const show = (v: unknown): string => (v === undefined ? "missing" : JSON.stringify(v) ?? String(v));
const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);
const isCount = (v: unknown): v is number => typeof v === "number" && Number.isSafeInteger(v) && v >= 0;

/**
 * Validates a decoded JSON header against a data buffer of `dataLength` bytes.
 * Returns the entries sorted by offset (file order) and the metadata.
 */
export function parseSafetensorsHeader(
  path: string,
  header: unknown,
  dataLength: number,
): { entries: SafetensorsEntry[]; metadata: Record<string, string> } {
  if (!isObject(header)) {
    const kind = Array.isArray(header) ? "an array" : header === null ? "null" : typeof header;
    throw safetensorsError(path, `the JSON header is ${kind}, not an object of tensors: not a safetensors file`);
  }
  let metadata: Record<string, string> = Object.freeze({});
  const entries: SafetensorsEntry[] = [];
  for (const [name, info] of Object.entries(header)) {
    if (name === "__metadata__") {
      if (!isObject(info)) throw safetensorsError(path, `"__metadata__" must be an object of strings, got ${show(info)}`);
      for (const [k, v] of Object.entries(info)) {
        if (typeof v !== "string") {
          throw safetensorsError(path, `"__metadata__" value ${JSON.stringify(k)} is ${show(v)}: metadata values must be strings`);
        }
      }
      metadata = Object.freeze(Object.fromEntries(Object.entries(info as Record<string, string>)));
      continue;
    }
    const bad = (problem: string) => safetensorsError(path, problem, name);
    if (!isObject(info)) throw bad(`the entry is ${show(info)}, not an object with dtype, shape and data_offsets`);
    const { dtype, shape, data_offsets: offsets } = info;
    if (!isSafetensorsDtype(dtype)) {
      throw bad(`dtype ${show(dtype)} is not supported (supported: ${Object.keys(DTYPE_SIZES).join(", ")}); convert the file to one of them`);
    }
    if (!Array.isArray(shape) || !shape.every(isCount)) {
      throw bad(`shape ${show(shape)} is not an array of non-negative integers`);
    }
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isCount)) {
      throw bad(`data_offsets ${show(offsets)} is not a pair [begin, end] of non-negative integers`);
    }
    const [begin, end] = offsets as [number, number];
    if (begin > end) throw bad(`data_offsets [${begin}, ${end}] ends before it begins`);
    const count = shape.reduce((a: number, b: number) => a * b, 1);
    const expected = count * DTYPE_SIZES[dtype];
    if (!Number.isSafeInteger(expected) || expected !== end - begin) {
      throw bad(`shape [${shape.join(", ")}] of ${dtype} needs ${expected} bytes (${count} × ${DTYPE_SIZES[dtype]}) but data_offsets [${begin}, ${end}] span ${end - begin}`);
    }
    if (end > dataLength) {
      throw bad(`data_offsets [${begin}, ${end}] are out of range: the data buffer has only ${dataLength} bytes; ${TRUNCATED}`);
    }
    entries.push({ name, dtype, shape: [...(shape as number[])], dataOffsets: [begin, end] });
  }
  // Tensors must tile the data buffer exactly: no overlap (two tensors sharing
  // bytes), no gap and no trailing bytes (hidden, unaccounted data).
  entries.sort((a, b) => a.dataOffsets[0] - b.dataOffsets[0] || a.dataOffsets[1] - b.dataOffsets[1]);
  let at = 0;
  let previous: SafetensorsEntry | undefined;
  for (const e of entries) {
    const [begin, end] = e.dataOffsets;
    if (begin < at) {
      throw safetensorsError(path, `data_offsets [${begin}, ${end}] overlap tensor ${JSON.stringify(previous?.name)}, which ends at ${at}`, e.name);
    }
    if (begin > at) {
      const after = previous ? `tensor ${JSON.stringify(previous.name)}, which ends at ${at}` : "the start of the data buffer (0)";
      throw safetensorsError(path, `data_offsets [${begin}, ${end}] leave a gap of ${begin - at} bytes after ${after}`, e.name);
    }
    at = end;
    previous = e;
  }
  if (at !== dataLength) {
    throw safetensorsError(path, `the data buffer has ${dataLength - at} bytes after the last tensor (tensors end at ${at}, the buffer is ${dataLength} bytes): the file is corrupt or was not fully overwritten`);
  }
  return { entries, metadata };
}

/**
 * Reads exactly `length` bytes at `position`, looping over short reads (the OS
 * may return fewer bytes than asked). Returns the bytes, or how many there were
 * if the file ended first.
 */
async function readExactly(fh: FileHandle, length: number, position: number): Promise<Uint8Array | number> {
  const buf = new Uint8Array(length);
  let done = 0;
  while (done < length) {
    const { bytesRead } = await fh.read(buf, done, Math.min(READ_CHUNK, length - done), position + done);
    if (bytesRead === 0) return done;
    done += bytesRead;
  }
  return buf;
}

function allocationError(path: string, name: string, bytes: number, cause: unknown): AptError {
  return safetensorsError(path, `cannot allocate ${bytes} bytes to load it (${String(cause)})`, name, cause);
}

export class SafetensorsReader {
  readonly path: string;
  readonly metadata: Record<string, string>;
  #fh: FileHandle | undefined;
  readonly #entries: Map<string, SafetensorsEntry>;
  readonly #dataStart: number;

  private constructor(path: string, fh: FileHandle, entries: SafetensorsEntry[], metadata: Record<string, string>, dataStart: number) {
    this.path = path;
    this.#fh = fh;
    this.metadata = metadata;
    this.#entries = new Map(entries.map((e) => [e.name, e]));
    this.#dataStart = dataStart;
  }

  static async open(path: string): Promise<SafetensorsReader> {
    let fh: FileHandle;
    try {
      fh = await open(path, "r");
    } catch (e) {
      throw safetensorsError(path, `cannot open the file (${(e as Error).message})`, undefined, e);
    }
    try {
      const size = (await fh.stat()).size;
      if (size < 8) {
        throw safetensorsError(path, `the file is ${size} bytes, shorter than the 8-byte header length: not a safetensors file, or ${TRUNCATED}`);
      }
      const prefix = await readExactly(fh, 8, 0);
      if (typeof prefix === "number") throw safetensorsError(path, "the file shrank while it was being opened");
      const n = new DataView(prefix.buffer).getBigUint64(0, true);
      // Both bounds are checked before allocating, so a corrupt length never allocates.
      if (n > BigInt(MAX_HEADER_BYTES)) {
        throw safetensorsError(path, `the header length is ${n} bytes, over the ${MAX_HEADER_BYTES}-byte (100 MiB) limit: not a safetensors file, or it is corrupt`);
      }
      const headerLength = Number(n);
      if (8 + headerLength > size) {
        throw safetensorsError(path, `the header length is ${headerLength} bytes but only ${size - 8} bytes follow the length: not a safetensors file, or ${TRUNCATED}`);
      }
      const bytes = await readExactly(fh, headerLength, 8);
      if (typeof bytes === "number") throw safetensorsError(path, "the file shrank while it was being opened");
      let text: string;
      try {
        text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
      } catch (e) {
        throw safetensorsError(path, "the header is not valid UTF-8: not a safetensors file, or it is corrupt", undefined, e);
      }
      let json: unknown;
      try {
        json = JSON.parse(text);
      } catch (e) {
        throw safetensorsError(path, `the header is not valid JSON (${(e as Error).message}): not a safetensors file, or it is corrupt`, undefined, e);
      }
      const { entries, metadata } = parseSafetensorsHeader(path, json, size - 8 - headerLength);
      return new SafetensorsReader(path, fh, entries, metadata, 8 + headerLength);
    } catch (e) {
      await fh.close();
      throw e;
    }
  }

  /** Tensor names in file (offset) order. */
  names(): string[] {
    return [...this.#entries.keys()];
  }

  has(name: string): boolean {
    return this.#entries.has(name);
  }

  entry(name: string): SafetensorsEntry {
    const e = this.#entries.get(name);
    if (e) return { ...e, shape: [...e.shape], dataOffsets: [...e.dataOffsets] };
    const names = this.names();
    const close = names
      .map((n) => ({ n, d: editDistance(name, n) }))
      .filter(({ n, d }) => d <= Math.max(2, Math.floor(name.length / 4)) || n.endsWith(`.${name}`) || name.endsWith(`.${n}`))
      .sort((a, b) => a.d - b.d)
      .slice(0, 3)
      .map(({ n }) => JSON.stringify(n));
    const hint =
      close.length > 0
        ? `did you mean ${close.join(" or ")}?`
        : names.length === 0
          ? "the file has no tensors"
          : `the file has ${names.length} tensors, e.g. ${names.slice(0, 5).map((n) => JSON.stringify(n)).join(", ")}`;
    throw safetensorsError(this.path, `no such tensor in the file; ${hint}`, name);
  }

  /** The tensor's bytes as stored (little-endian), in a fresh buffer. */
  async readRaw(name: string): Promise<Uint8Array> {
    const fh = this.#fh;
    if (!fh) throw safetensorsError(this.path, "the reader is closed: open the file again to read it", name);
    const [begin, end] = this.entry(name).dataOffsets;
    let got: Uint8Array | number;
    try {
      got = await readExactly(fh, end - begin, this.#dataStart + begin);
    } catch (e) {
      if (e instanceof RangeError) throw allocationError(this.path, name, end - begin, e);
      throw safetensorsError(this.path, `reading ${end - begin} bytes failed (${(e as Error).message})`, name, e);
    }
    if (typeof got === "number") {
      throw safetensorsError(this.path, `expected ${end - begin} bytes at file offset ${this.#dataStart + begin} but the file ended after ${got}: it shrank after it was opened (is something rewriting it?)`, name);
    }
    return got;
  }

  async read(name: string): Promise<DecodedTensor> {
    const { dtype, shape } = this.entry(name);
    const raw = await this.readRaw(name);
    try {
      return { dtype, shape, data: decodeTensorBytes(dtype, raw) };
    } catch (e) {
      throw safetensorsError(this.path, (e as Error).message, name, e);
    }
  }

  /**
   * The tensor as a tfjs tensor: float dtypes → float32, I32/U8 → int32,
   * I64 → int32 (every value must fit), BOOL → bool. The caller disposes it.
   */
  async readTensor(name: string): Promise<tf.Tensor> {
    const { dtype, shape, data } = await this.read(name);
    if (data instanceof Float32Array) return tf.tensor(data, shape, "float32");
    if (data instanceof Int32Array) return tf.tensor(data, shape, "int32");
    if (data instanceof BigInt64Array) {
      const out = new Int32Array(data.length);
      for (let i = 0; i < data.length; i++) {
        const v = data[i]!;
        if (v < -2147483648n || v > 2147483647n) {
          throw safetensorsError(this.path, `I64 element ${i} is ${v}, outside the int32 range of tfjs tensors; use read() to get the BigInt64Array`, name);
        }
        out[i] = Number(v);
      }
      return tf.tensor(out, shape, "int32");
    }
    return dtype === "BOOL" ? tf.tensor(data, shape, "bool") : tf.tensor(Int32Array.from(data), shape, "int32");
  }

  async close(): Promise<void> {
    const fh = this.#fh;
    this.#fh = undefined;
    await fh?.close();
  }
}

/** Opens `path`, reads every tensor, closes. */
export async function readSafetensors(
  path: string,
): Promise<{ metadata: Record<string, string>; tensors: Record<string, DecodedTensor> }> {
  const reader = await SafetensorsReader.open(path);
  try {
    const tensors: [string, DecodedTensor][] = [];
    for (const name of reader.names()) tensors.push([name, await reader.read(name)]);
    // fromEntries defines own properties, so a tensor named "__proto__" stays a tensor.
    return { metadata: reader.metadata, tensors: Object.fromEntries(tensors) };
  } finally {
    await reader.close();
  }
}

/** Levenshtein distance, for "did you mean" (error path only). */
function editDistance(a: string, b: string): number {
  let row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const next = [i];
    for (let j = 1; j <= b.length; j++) {
      next[j] = Math.min(row[j]! + 1, next[j - 1]! + 1, row[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    row = next;
  }
  return row[b.length]!;
}
