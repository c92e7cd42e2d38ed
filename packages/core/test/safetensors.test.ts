import { describe, it, expect, beforeAll, afterAll, afterEach, vi } from "vitest";
import * as fs from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import {
  AptError,
  SafetensorsReader,
  decodeBF16,
  decodeF16,
  encodeBF16,
  encodeF16,
  readSafetensors,
  serializeSafetensors,
  tf,
  writeSafetensors,
  type TensorToWrite,
} from "../src/index.js";

let dir: string;
beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), "apt-safetensors-"));
});
afterAll(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

let counter = 0;
const file = (label: string) => path.join(dir, `${label}-${counter++}.safetensors`);

/** Bits of a Float32Array, for bit-exact comparisons (NaN payloads, -0). */
const bits = (a: Float32Array) => Array.from(new Uint32Array(a.buffer, a.byteOffset, a.length));
const f32FromBits = (...b: number[]) => new Float32Array(new Uint32Array(b).buffer);

/** Writes a hand-made file: u64 header length (or `length`), the header text, then `data` (bytes, or a zero-filled size). */
async function craft(
  label: string,
  header: unknown,
  data: Uint8Array | number = 0,
  opts: { length?: bigint } = {},
): Promise<string> {
  const p = file(label);
  const json = Buffer.from(typeof header === "string" ? header : JSON.stringify(header));
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(opts.length ?? BigInt(json.length));
  const body = typeof data === "number" ? Buffer.alloc(data) : Buffer.from(data);
  await fs.writeFile(p, Buffer.concat([prefix, json, body]));
  return p;
}

/** The AptError that opening (and reading everything from) `p` throws. */
async function openError(p: string): Promise<AptError> {
  try {
    await readSafetensors(p);
  } catch (e) {
    expect(AptError.isInstance(e)).toBe(true);
    expect((e as AptError).code).toBe("BAD_SAFETENSORS");
    expect((e as AptError).exitCode).toBe(2);
    return e as AptError;
  }
  throw new Error(`expected ${p} to be rejected`);
}

describe("float16 / bfloat16 conversions", () => {
  it("decodes F16 bit patterns computed by hand", () => {
    const out = decodeF16(
      new Uint16Array([0x3c00, 0xc000, 0x7bff, 0x0001, 0x03ff, 0x0400, 0x0000, 0x8000, 0x7c00, 0xfc00, 0x7e00, 0x3555, 0x8001]),
    );
    expect(Array.from(out.subarray(0, 6))).toEqual([1, -2, 65504, 2 ** -24, 1023 * 2 ** -24, 2 ** -14]);
    expect(Object.is(out[6], 0)).toBe(true);
    expect(Object.is(out[7], -0)).toBe(true);
    expect(out[8]).toBe(Infinity);
    expect(out[9]).toBe(-Infinity);
    expect(out[10]).toBeNaN();
    expect(out[11]).toBe(0.333251953125);
    expect(out[12]).toBe(-(2 ** -24));
  });

  it("decodes BF16 bit patterns computed by hand", () => {
    const out = decodeBF16(new Uint16Array([0x3f80, 0xc000, 0x7f80, 0xff80, 0x7fc0, 0x0001, 0x8000, 0x7f7f, 0x3eab]));
    expect(out[0]).toBe(1);
    expect(out[1]).toBe(-2);
    expect(out[2]).toBe(Infinity);
    expect(out[3]).toBe(-Infinity);
    expect(out[4]).toBeNaN();
    expect(out[5]).toBe(2 ** -133);
    expect(Object.is(out[6], -0)).toBe(true);
    expect(out[7]).toBe((2 - 2 ** -7) * 2 ** 127);
    expect(out[8]).toBe(0.333984375);
  });

  it("encodes float32 to F16 with round-to-nearest-even, overflow to inf, NaN kept", () => {
    const input = new Float32Array([
      0, -0, 2 ** -24, 2 ** -14, 65504, 65519, 65520, 1e6, -Infinity, Infinity, NaN,
      1 + 2 ** -11, // tie: 1 (even) wins over 1 + 2^-10
      1 + 3 * 2 ** -11, // tie: 1 + 2^-9 (even) wins over 1 + 2^-10
      1 + 2 ** -11 + 2 ** -20, // just above the tie: rounds up
      2 ** -25, // tie between 0 and the smallest subnormal: 0
      3 * 2 ** -25, // tie between subnormals 1 and 2: 2
      2 ** -25 * 1.0001, // above the tie: smallest subnormal
      2 ** -26, // far below: 0
      -(2 ** -14 - 2 ** -25), // rounds up across into the smallest normal
      2 ** -149, // float32 subnormal: 0
      -1e-30, // underflows to -0
    ]);
    expect(Array.from(encodeF16(input)).map((h) => h.toString(16))).toEqual(
      [
        0x0000, 0x8000, 0x0001, 0x0400, 0x7bff, 0x7bff, 0x7c00, 0x7c00, 0xfc00, 0x7c00, 0x7e00,
        0x3c00, 0x3c02, 0x3c01, 0x0000, 0x0002, 0x0001, 0x0000, 0x8400, 0x0000, 0x8000,
      ].map((h) => h.toString(16)),
    );
    // A NaN whose payload sits only in the low bits stays a NaN (not inf).
    expect(encodeF16(f32FromBits(0x7f800001))[0]).toBe(0x7e00);
  });

  it("encodes float32 to BF16 with round-to-nearest-even, overflow to inf, NaN kept", () => {
    const input = new Float32Array([
      1, -2, 0, -0, Infinity, -Infinity, NaN,
      1 + 2 ** -8, // tie: 1 (even)
      1 + 3 * 2 ** -8, // tie: 1 + 2^-6 (even)
      3.4028234663852886e38, // float32 max rounds to inf
      2 ** -149, // float32 subnormal rounds to 0
      2 ** -133, // smallest bf16 subnormal
    ]);
    expect(Array.from(encodeBF16(input))).toEqual([
      0x3f80, 0xc000, 0x0000, 0x8000, 0x7f80, 0xff80, 0x7fc0, 0x3f80, 0x3f82, 0x7f80, 0x0000, 0x0001,
    ]);
    expect(encodeBF16(f32FromBits(0x7f800001))[0]).toBe(0x7fc0); // low-payload NaN stays NaN
  });

  it("round-trips all 65536 F16 and BF16 bit patterns bit-exactly (NaN payloads included)", () => {
    const all = new Uint16Array(65536).map((_, i) => i);
    expect(encodeF16(decodeF16(all))).toEqual(all);
    expect(encodeBF16(decodeBF16(all))).toEqual(all);
  });

  it("picks the nearest F16 (ties to even) for random float32 values", () => {
    let seed = 12345;
    const rand = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
    const x = new Float32Array(20000).map(() => (rand() - 0.5) * 2 ** Math.floor(rand() * 44 - 28));
    const h = encodeF16(x);
    const near = decodeF16(h);
    const neighbours = decodeF16(new Uint16Array([...h].flatMap((v) => [(v - 1) & 0xffff, (v + 1) & 0xffff])));
    for (let i = 0; i < x.length; i++) {
      const err = Math.abs(near[i]! - x[i]!);
      if (Math.abs(near[i]!) === 65504 || near[i] === 0) continue; // ends of the range
      for (const n of [neighbours[2 * i]!, neighbours[2 * i + 1]!]) {
        const other = Math.abs(n - x[i]!);
        expect(err <= other, `x=${x[i]} → ${h[i]}`).toBe(true);
        if (err === other) expect(h[i]! & 1).toBe(0);
      }
    }
  });
});

describe("writer and reader round trip", () => {
  const f16Input = new Float32Array([0, -0, 2 ** -24, 2 ** -20, 65504, 1e6, Infinity, -Infinity, NaN, 1 + 2 ** -11, 0.1, -3.14159]);
  const bf16Input = new Float32Array([0, -0, 2 ** -133, 1.5 * 2 ** -133, 3.39e38, 3.4e38, Infinity, -Infinity, NaN, 1 + 2 ** -8, 0.1, -3.14159]);
  const tensors: Record<string, TensorToWrite> = {
    f32: { dtype: "F32", shape: [2, 3], data: f32FromBits(0x3f800000, 0x80000000, 0x00000001, 0x7f800000, 0x7fc00123, 0xff7fffff) },
    f16: { dtype: "F16", shape: [3, 4], data: f16Input },
    bf16: { dtype: "BF16", shape: [12], data: bf16Input },
    i32: { dtype: "I32", shape: [4], data: new Int32Array([0, -1, 2147483647, -2147483648]) },
    i64: { dtype: "I64", shape: [2, 2], data: new BigInt64Array([0n, -1n, 2n ** 63n - 1n, -(2n ** 63n)]) },
    u8: { dtype: "U8", shape: [1, 3], data: new Uint8Array([0, 128, 255]) },
    bool: { dtype: "BOOL", shape: [4], data: new Uint8Array([1, 0, 0, 1]) },
    scalar: { dtype: "F32", shape: [], data: new Float32Array([42]) },
    empty: { dtype: "I32", shape: [0, 5], data: new Int32Array(0) },
  };
  const metadata = { format: "pt", note: "ünïcode ✓", empty: "" };

  it("round-trips every dtype and the metadata bit-exactly", async () => {
    const p = file("all");
    await writeSafetensors(p, tensors, metadata);
    const back = await readSafetensors(p);
    expect(back.metadata).toEqual(metadata);
    expect(Object.keys(back.tensors)).toEqual(Object.keys(tensors));
    expect(bits(back.tensors.f32!.data as Float32Array)).toEqual(bits(tensors.f32!.data as Float32Array));
    // F16/BF16 come back as the rounded values: exactly what encode→decode gives.
    expect(bits(back.tensors.f16!.data as Float32Array)).toEqual(bits(decodeF16(encodeF16(f16Input))));
    expect(bits(back.tensors.bf16!.data as Float32Array)).toEqual(bits(decodeBF16(encodeBF16(bf16Input))));
    expect(Array.from(back.tensors.f16!.data as Float32Array).slice(0, 9)).toEqual([0, -0, 2 ** -24, 2 ** -20, 65504, Infinity, Infinity, -Infinity, NaN]);
    expect(Object.is(back.tensors.f16!.data[1], -0)).toBe(true);
    expect(back.tensors.f16!.data[9]).toBe(1);
    expect(back.tensors.f16!.data[10]).toBe(0.0999755859375);
    expect(Array.from(back.tensors.bf16!.data as Float32Array).slice(0, 9)).toEqual([0, -0, 2 ** -133, 2 ** -132, 3.3895313892515355e38, Infinity, Infinity, -Infinity, NaN]);
    for (const name of ["i32", "i64", "u8", "bool", "scalar", "empty"]) {
      expect(back.tensors[name]).toEqual(tensors[name]);
    }
    for (const [name, t] of Object.entries(tensors)) {
      expect(back.tensors[name]!.dtype).toBe(t.dtype);
      expect(back.tensors[name]!.shape).toEqual(t.shape);
    }
    // Writing what was read gives the same bytes again.
    const again = file("again");
    await writeSafetensors(again, back.tensors as Record<string, TensorToWrite>, back.metadata);
    expect(await fs.readFile(again)).toEqual(await fs.readFile(p));
    expect(Buffer.from(serializeSafetensors(tensors, metadata))).toEqual(await fs.readFile(p));
  });

  it("writes the expected bytes: u64 length, JSON header padded with spaces to 8-byte alignment, little-endian data", async () => {
    const p = file("layout");
    await writeSafetensors(p, { b: { dtype: "F32", shape: [2], data: new Float32Array([1, 2]) }, a: { dtype: "I64", shape: [1], data: new BigInt64Array([-2n]) } }, { k: "v" });
    const bytes = await fs.readFile(p);
    const json = '{"__metadata__":{"k":"v"},"b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"a":{"dtype":"I64","shape":[1],"data_offsets":[8,16]}}';
    const n = Math.ceil(json.length / 8) * 8;
    expect(bytes.readBigUInt64LE(0)).toBe(BigInt(n));
    expect(bytes.subarray(8, 8 + json.length).toString()).toBe(json);
    expect(bytes.subarray(8 + json.length, 8 + n).toString()).toBe(" ".repeat(n - json.length));
    expect((8 + n) % 8).toBe(0);
    expect([...bytes.subarray(8 + n)]).toEqual([0, 0, 0x80, 0x3f, 0, 0, 0, 0x40, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
    expect(bytes.length).toBe(8 + n + 16);
    // No metadata and no tensors: "{}" padded to 8 bytes.
    expect(Buffer.from(serializeSafetensors({})).toString("latin1")).toBe("\x08\0\0\0\0\0\0\0{}      ");
  });

  it("reads a hand-made file with an unpadded header, in offset order, with its metadata", async () => {
    const data = Buffer.alloc(14);
    data.writeUInt16LE(0x3c00, 0); // y: F16 [1]
    data.writeFloatLE(-1.5, 2); // x: F32 [1, 2]
    data.writeFloatLE(8, 6);
    data.writeInt32LE(-7, 10); // z: I32 []
    const p = await craft("handmade", {
      x: { dtype: "F32", shape: [1, 2], data_offsets: [2, 10] },
      z: { dtype: "I32", shape: [], data_offsets: [10, 14] },
      __metadata__: { a: "b" },
      y: { dtype: "F16", shape: [1], data_offsets: [0, 2] },
    }, data);
    const r = await SafetensorsReader.open(p);
    expect(r.path).toBe(p);
    expect(r.names()).toEqual(["y", "x", "z"]);
    expect(r.metadata).toEqual({ a: "b" });
    expect(r.has("x")).toBe(true);
    expect(r.has("__metadata__")).toBe(false);
    expect(r.entry("x")).toEqual({ name: "x", dtype: "F32", shape: [1, 2], dataOffsets: [2, 10] });
    expect(await r.read("x")).toEqual({ dtype: "F32", shape: [1, 2], data: new Float32Array([-1.5, 8]) });
    expect(await r.read("y")).toEqual({ dtype: "F16", shape: [1], data: new Float32Array([1]) });
    expect((await r.read("z")).data).toEqual(new Int32Array([-7]));
    expect([...(await r.readRaw("x"))]).toEqual([...data.subarray(2, 10)]);
    await r.close();
  });
});

describe("malformed files are rejected with a precise error", () => {
  const f32 = (shape: number[], begin: number, end: number) => ({ dtype: "F32", shape, data_offsets: [begin, end] });

  it("a file shorter than 8 bytes", async () => {
    const p = file("tiny");
    await fs.writeFile(p, Buffer.from([1, 2, 3, 4, 5]));
    const e = await openError(p);
    expect(e.message).toContain(p);
    expect(e.message).toMatch(/5 bytes, shorter than the 8-byte header length/);
  });

  it("a header length longer than the file", async () => {
    const p = await craft("long-header", "{}", 0, { length: 1000n });
    const e = await openError(p);
    expect(e.message).toContain(p);
    expect(e.message).toMatch(/header length is 1000 bytes but only 2 bytes follow/);
    expect(e.message).toMatch(/truncated: re-download or re-export it/);
  });

  it("a header length of 2^60 fails fast without allocating", async () => {
    const p = await craft("huge-header", "{}", 0, { length: 2n ** 60n });
    const t0 = performance.now();
    const e = await openError(p);
    expect(performance.now() - t0).toBeLessThan(1000);
    expect(e.message).toContain(p);
    expect(e.message).toContain(`${2n ** 60n}`);
    expect(e.message).toMatch(/100 MiB\) limit/);
  });

  it("a header length over the 100 MiB limit even when the file is that large", async () => {
    const p = await craft("limit", "{}", 0, { length: 200n * 1024n * 1024n });
    await fs.truncate(p, 300 * 1024 * 1024); // sparse: takes no disk space
    const e = await openError(p);
    expect(e.message).toContain(p);
    expect(e.message).toMatch(/209715200 bytes, over the 104857600-byte \(100 MiB\) limit/);
  });

  it("a header that is not UTF-8", async () => {
    const p = file("utf8");
    await fs.writeFile(p, Buffer.from([4, 0, 0, 0, 0, 0, 0, 0, 0x7b, 0xff, 0xfe, 0x7d]));
    const e = await openError(p);
    expect(e.message).toContain(p);
    expect(e.message).toMatch(/header is not valid UTF-8/);
  });

  it("bad JSON", async () => {
    const p = await craft("json", '{"a": {"dtype": ');
    const e = await openError(p);
    expect(e.message).toContain(p);
    expect(e.message).toMatch(/header is not valid JSON \(/);
  });

  it("a JSON header that is an array", async () => {
    const p = await craft("array", [1, 2]);
    const e = await openError(p);
    expect(e.message).toContain(p);
    expect(e.message).toMatch(/JSON header is an array, not an object of tensors/);
  });

  it("an unknown dtype", async () => {
    const p = await craft("dtype", { w: { dtype: "F64", shape: [1], data_offsets: [0, 8] } }, 8);
    const e = await openError(p);
    expect(e.message).toContain(`${p}: tensor "w"`);
    expect(e.message).toMatch(/dtype "F64" is not supported \(supported: F32, F16, BF16, I32, I64, U8, BOOL\)/);
  });

  it("missing data_offsets", async () => {
    const p = await craft("no-offsets", { w: { dtype: "F32", shape: [1] } }, 4);
    const e = await openError(p);
    expect(e.message).toContain(`${p}: tensor "w"`);
    expect(e.message).toMatch(/data_offsets missing is not a pair \[begin, end\]/);
  });

  it("data_offsets that end before they begin", async () => {
    const e = await openError(await craft("reversed", { w: f32([0], 4, 0) }, 4));
    expect(e.message).toMatch(/tensor "w": data_offsets \[4, 0\] ends before it begins/);
  });

  it("overlapping offsets", async () => {
    const p = await craft("overlap", { a: f32([2], 0, 8), b: f32([2], 4, 12) }, 12);
    const e = await openError(p);
    expect(e.message).toContain(`${p}: tensor "b"`);
    expect(e.message).toMatch(/data_offsets \[4, 12\] overlap tensor "a", which ends at 8/);
  });

  it("a gap between tensors, and a first tensor that does not start at 0", async () => {
    const p = await craft("gap", { a: f32([1], 0, 4), b: f32([1], 8, 12) }, 12);
    const e = await openError(p);
    expect(e.message).toContain(`${p}: tensor "b"`);
    expect(e.message).toMatch(/leave a gap of 4 bytes after tensor "a", which ends at 4/);
    const e2 = await openError(await craft("gap0", { a: f32([1], 4, 8) }, 8));
    expect(e2.message).toMatch(/tensor "a": data_offsets \[4, 8\] leave a gap of 4 bytes after the start of the data buffer/);
  });

  it("bytes after the last tensor", async () => {
    const p = await craft("trailing", { a: f32([1], 0, 4) }, 10);
    const e = await openError(p);
    expect(e.message).toContain(p);
    expect(e.message).toMatch(/6 bytes after the last tensor/);
  });

  it("out-of-range offsets (past the end of the file)", async () => {
    const p = await craft("range", { a: f32([1], 0, 4), b: f32([4], 4, 20) }, 8);
    const e = await openError(p);
    expect(e.message).toContain(`${p}: tensor "b"`);
    expect(e.message).toMatch(/data_offsets \[4, 20\] are out of range: the data buffer has only 8 bytes; the file is truncated/);
  });

  it("truncated data (a valid file cut short)", async () => {
    const p = file("cut");
    await writeSafetensors(p, { a: { dtype: "F32", shape: [4], data: new Float32Array(4) }, last: { dtype: "I64", shape: [3], data: new BigInt64Array(3) } });
    const { size } = await fs.stat(p);
    await fs.truncate(p, size - 5);
    const e = await openError(p);
    expect(e.message).toContain(`${p}: tensor "last"`);
    expect(e.message).toMatch(/data_offsets \[16, 40\] are out of range: the data buffer has only 35 bytes; the file is truncated: re-download or re-export it/);
  });

  it("a shape that does not match the byte size", async () => {
    const p = await craft("mismatch", { w: f32([2, 3], 0, 20) }, 20);
    const e = await openError(p);
    expect(e.message).toContain(`${p}: tensor "w"`);
    expect(e.message).toMatch(/shape \[2, 3\] of F32 needs 24 bytes \(6 × 4\) but data_offsets \[0, 20\] span 20/);
  });

  it("a shape whose element count overflows", async () => {
    const e = await openError(await craft("overflow", { w: f32([2 ** 40, 2 ** 40], 0, 4) }, 4));
    expect(e.message).toMatch(/tensor "w": shape \[1099511627776, 1099511627776\] of F32 needs/);
  });

  it("non-string metadata", async () => {
    const p = await craft("meta", { __metadata__: { epochs: 3 } });
    const e = await openError(p);
    expect(e.message).toContain(p);
    expect(e.message).toMatch(/"__metadata__" value "epochs" is 3: metadata values must be strings/);
    const e2 = await openError(await craft("meta2", { __metadata__: ["x"] }));
    expect(e2.message).toMatch(/"__metadata__" must be an object of strings/);
  });

  it("a negative or fractional shape entry", async () => {
    const p = await craft("neg", { w: f32([-1, 2], 0, 0) });
    const e = await openError(p);
    expect(e.message).toContain(`${p}: tensor "w"`);
    expect(e.message).toMatch(/shape \[-1,2\] is not an array of non-negative integers/);
    const e2 = await openError(await craft("frac", { w: f32([1.5], 0, 6) }, 6));
    expect(e2.message).toMatch(/tensor "w": shape \[1.5\] is not an array of non-negative integers/);
  });

  it("an entry that is not an object", async () => {
    const e = await openError(await craft("entry", { w: 3 }));
    expect(e.message).toMatch(/tensor "w": the entry is 3, not an object/);
  });

  it("a BOOL byte other than 0 or 1", async () => {
    const p = await craft("bool", { flags: { dtype: "BOOL", shape: [3], data_offsets: [0, 3] } }, new Uint8Array([0, 1, 2]));
    const e = await openError(p);
    expect(e.message).toContain(`${p}: tensor "flags"`);
    expect(e.message).toMatch(/BOOL element 2 is 2, not 0 or 1/);
  });

  it("a missing file", async () => {
    const p = path.join(dir, "does-not-exist.safetensors");
    const e = await openError(p);
    expect(e.message).toContain(p);
    expect(e.message).toMatch(/cannot open the file \(ENOENT/);
  });
});

describe("SafetensorsReader", () => {
  it("reads lazily: open reads only the header, a read only its tensor (4 GiB sparse neighbour)", async () => {
    const p = await craft("lazy", {
      small: { dtype: "F32", shape: [2], data_offsets: [0, 8] },
      big: { dtype: "U8", shape: [4 * 2 ** 30], data_offsets: [8, 8 + 4 * 2 ** 30] },
    }, new Uint8Array(new Float32Array([3, 4]).buffer));
    const headerLength = (await fs.readFile(p)).readUInt32LE(0);
    await fs.truncate(p, 8 + headerLength + 8 + 4 * 2 ** 30); // sparse file: 4 GiB of holes

    const probe = await fs.open(p, "r");
    const readSpy = vi.spyOn(Object.getPrototypeOf(probe) as { read: (...a: unknown[]) => unknown }, "read");
    await probe.close();
    try {
      const t0 = performance.now();
      const r = await SafetensorsReader.open(p);
      expect(performance.now() - t0).toBeLessThan(1000);
      const requested = () => readSpy.mock.calls.reduce((a, c) => a + (c[2] as number), 0);
      expect(requested()).toBe(8 + headerLength);
      expect(r.entry("big").shape).toEqual([4 * 2 ** 30]);
      expect((await r.read("small")).data).toEqual(new Float32Array([3, 4]));
      expect(requested()).toBe(8 + headerLength + 8);
      await r.close();
    } finally {
      readSpy.mockRestore();
    }
  });

  it("suggests close names for an unknown tensor, or lists the first ones", async () => {
    const p = file("names");
    const t = (n: number) => ({ dtype: "U8" as const, shape: [1], data: new Uint8Array([n]) });
    await writeSafetensors(p, { "unet.conv_in.weight": t(1), "unet.conv_in.bias": t(2), "vae.decoder.weight": t(3) });
    const r = await SafetensorsReader.open(p);
    expect(() => r.entry("unet.conv_in.weigth")).toThrow(`${p}: tensor "unet.conv_in.weigth": no such tensor in the file; did you mean "unet.conv_in.weight"?`);
    expect(() => r.entry("decoder.weight")).toThrow(/did you mean "vae.decoder.weight"\?/);
    expect(() => r.entry("text_encoder")).toThrow(/no such tensor in the file; the file has 3 tensors, e.g. "unet.conv_in.weight", "unet.conv_in.bias", "vae.decoder.weight"/);
    await expect(r.read("nope")).rejects.toThrow(/tensor "nope": no such tensor/);
    await r.close();
  });

  it("throws a clear error for reads after close", async () => {
    const p = file("closed");
    await writeSafetensors(p, { a: { dtype: "U8", shape: [1], data: new Uint8Array([1]) } });
    const r = await SafetensorsReader.open(p);
    await r.close();
    await r.close(); // idempotent
    await expect(r.read("a")).rejects.toThrow(`${p}: tensor "a": the reader is closed: open the file again to read it`);
  });

  it("throws an error naming file and tensor when the file shrank after open", async () => {
    const p = file("shrink");
    await writeSafetensors(p, { a: { dtype: "F32", shape: [4], data: new Float32Array(4) }, b: { dtype: "F32", shape: [4], data: new Float32Array(4) } });
    const r = await SafetensorsReader.open(p);
    const { size } = await fs.stat(p);
    await fs.truncate(p, size - 6);
    expect((await r.read("a")).data).toEqual(new Float32Array(4));
    await expect(r.read("b")).rejects.toThrow(new RegExp(`${p}: tensor "b": expected 16 bytes at file offset ${size - 16} but the file ended after 10: it shrank after it was opened`));
    await r.close();
  });
});

describe("writer validation and atomicity", () => {
  const listDir = async () => (await fs.readdir(dir)).filter((f) => f.includes(".tmp-"));

  it("refuses invalid input with an error naming the tensor", () => {
    const bad = (tensors: Record<string, unknown>, metadata?: Record<string, unknown>) => () =>
      serializeSafetensors(tensors as Record<string, TensorToWrite>, metadata as Record<string, string>);
    expect(bad({ w: { dtype: "F32", shape: [2, 2], data: new Float32Array(3) } })).toThrow(/tensor "w": shape \[2, 2\] has 4 elements but the data has 3/);
    expect(bad({ w: { dtype: "I32", shape: [1], data: new Float32Array(1) } })).toThrow(/tensor "w": dtype I32 needs its data in a Int32Array, got Float32Array/);
    expect(bad({ w: { dtype: "F64", shape: [1], data: new Float32Array(1) } })).toThrow(/tensor "w": dtype "F64" is not one of/);
    expect(bad({ w: { dtype: "U8", shape: [-1], data: new Uint8Array(0) } })).toThrow(/tensor "w": shape \[-1\] is not an array/);
    expect(bad({ w: { dtype: "BOOL", shape: [2], data: new Uint8Array([1, 5]) } })).toThrow(/tensor "w": BOOL element 1 is 5, not 0 or 1/);
    expect(bad({ "": { dtype: "U8", shape: [0], data: new Uint8Array(0) } })).toThrow(/invalid tensor name/);
    expect(bad({ __metadata__: { dtype: "U8", shape: [0], data: new Uint8Array(0) } })).toThrow(/"__metadata__" is reserved/);
    expect(bad({}, { epochs: 3 })).toThrow(/metadata value "epochs" is a number: safetensors metadata values must be strings/);
  });

  it("leaves the previous file intact and no temp file when the input is invalid", async () => {
    const p = file("atomic");
    await writeSafetensors(p, { a: { dtype: "U8", shape: [2], data: new Uint8Array([7, 8]) } }, { v: "1" });
    const before = await fs.readFile(p);
    await expect(
      writeSafetensors(p, { a: { dtype: "U8", shape: [2], data: new Uint8Array([1, 2]) }, b: { dtype: "F32", shape: [3], data: new Float32Array(2) } }),
    ).rejects.toThrow(`${p}: tensor "b": shape [3] has 3 elements but the data has 2`);
    expect(await fs.readFile(p)).toEqual(before);
    expect(await listDir()).toEqual([]);
  });

  it("leaves the previous file intact and no temp file when the write fails midway", async () => {
    const p = file("midway");
    await writeSafetensors(p, { a: { dtype: "U8", shape: [2], data: new Uint8Array([7, 8]) } });
    const before = await fs.readFile(p);
    const t = tf.tensor([1, 2, 3], [3], "float32");
    // The tfjs tensor is downloaded after the first tensor was written to the temp file.
    const spy = vi.spyOn(t, "dataSync").mockImplementation(() => {
      throw new Error("device lost");
    });
    await expect(writeSafetensors(p, { a: { dtype: "U8", shape: [1], data: new Uint8Array([1]) }, t })).rejects.toThrow("device lost");
    expect(spy).toHaveBeenCalled();
    expect(await fs.readFile(p)).toEqual(before);
    expect(await listDir()).toEqual([]);
    t.dispose();
  });

  it("removes the temp file when the final rename fails", async () => {
    const target = path.join(dir, "a-directory");
    await fs.mkdir(target);
    await expect(writeSafetensors(target, { a: { dtype: "U8", shape: [1], data: new Uint8Array([1]) } })).rejects.toThrow();
    expect(await listDir()).toEqual([]);
    expect((await fs.stat(target)).isDirectory()).toBe(true);
  });
});

describe("tfjs integration", () => {
  afterEach(() => {
    expect(tf.memory().numTensors).toBe(0);
  });

  it("readTensor returns tensors of the right dtype, shape and values", async () => {
    const p = file("tf");
    await writeSafetensors(p, {
      f32: { dtype: "F32", shape: [2, 2], data: new Float32Array([1, 2, 3, 4]) },
      f16: { dtype: "F16", shape: [2], data: new Float32Array([0.5, -65504]) },
      bf16: { dtype: "BF16", shape: [1], data: new Float32Array([1]) },
      i32: { dtype: "I32", shape: [2], data: new Int32Array([-5, 7]) },
      i64: { dtype: "I64", shape: [2], data: new BigInt64Array([-2147483648n, 2147483647n]) },
      u8: { dtype: "U8", shape: [2], data: new Uint8Array([0, 255]) },
      bool: { dtype: "BOOL", shape: [3], data: new Uint8Array([1, 0, 1]) },
      big: { dtype: "I64", shape: [2], data: new BigInt64Array([1n, 2n ** 31n]) },
    });
    const r = await SafetensorsReader.open(p);
    const expected: Record<string, [string, number[], number[]]> = {
      f32: ["float32", [2, 2], [1, 2, 3, 4]],
      f16: ["float32", [2], [0.5, -65504]],
      bf16: ["float32", [1], [1]],
      i32: ["int32", [2], [-5, 7]],
      i64: ["int32", [2], [-2147483648, 2147483647]],
      u8: ["int32", [2], [0, 255]],
      bool: ["bool", [3], [1, 0, 1]],
    };
    for (const [name, [dtype, shape, values]] of Object.entries(expected)) {
      const t = await r.readTensor(name);
      expect([t.dtype, t.shape, Array.from(t.dataSync())], name).toEqual([dtype, shape, values]);
      t.dispose();
    }
    await expect(r.readTensor("big")).rejects.toThrow(`${p}: tensor "big": I64 element 1 is 2147483648, outside the int32 range of tfjs tensors; use read() to get the BigInt64Array`);
    await r.close();
  });

  it("writes tfjs tensors as F32, I32 and BOOL", async () => {
    const p = file("tf-write");
    const ts = { w: tf.tensor([[1.5, -2]], [1, 2]), i: tf.tensor([3, 4], [2], "int32"), b: tf.tensor([true, false], [2], "bool") };
    await writeSafetensors(p, ts);
    Object.values(ts).forEach((t) => t.dispose());
    const { tensors } = await readSafetensors(p);
    expect(tensors).toEqual({
      w: { dtype: "F32", shape: [1, 2], data: new Float32Array([1.5, -2]) },
      i: { dtype: "I32", shape: [2], data: new Int32Array([3, 4]) },
      b: { dtype: "BOOL", shape: [2], data: new Uint8Array([1, 0]) },
    });
    const s = tf.tensor(["x"], [1], "string");
    expect(() => serializeSafetensors({ s })).toThrow(/tensor "s": tfjs dtype string cannot be written/);
    s.dispose();
  });
});

// tfjs-core alone has no backend and @apt/core must not depend on one, so the
// tests register a minimal in-memory backend: enough to create, read and
// dispose tensors (no kernels are needed here).
class MemoryBackend extends tf.KernelBackend {
  private store = new Map<object, tf.BackendValues>();
  override write(values: tf.BackendValues): object {
    const id = {};
    this.store.set(id, values);
    return id;
  }
  override move(id: object, values: tf.BackendValues): void {
    this.store.set(id, values);
  }
  override readSync(id: object): tf.BackendValues {
    return this.store.get(id)!;
  }
  override async read(id: object): Promise<tf.BackendValues> {
    return this.readSync(id);
  }
  override disposeData(id: object): boolean {
    return this.store.delete(id);
  }
  override numDataIds(): number {
    return this.store.size;
  }
  override refCount(id: object): number {
    return this.store.has(id) ? 1 : 0;
  }
  override incRef(): void {}
  override memory() {
    return { unreliable: true };
  }
  override floatPrecision(): 32 {
    return 32;
  }
  override epsilon(): number {
    return 1e-7;
  }
  override dispose(): void {
    this.store.clear();
  }
}

beforeAll(async () => {
  tf.registerBackend("safetensors-test-memory", () => new MemoryBackend(), 100);
  await tf.setBackend("safetensors-test-memory");
});
