/**
 * The parts of tfjs-backend-wasm's `BackendWasm` (4.22) that the custom kernels
 * use, and helpers to compose its XNNPACK-backed kernels.
 *
 * tfjs keeps each tensor's data in the WASM heap (`dataIdMap` maps a dataId to
 * its heap offset and its id in the C++ tensor registry). A kernel reads inputs
 * as typed-array views of the heap, allocates outputs with `makeOutput`, and may
 * call the stock kernels (`getKernel(name, "wasm").kernelFunc`) on TensorInfos:
 * a TensorInfo with another `shape` over the same dataId is a free reshape.
 *
 * Heap views are invalidated when the heap grows (any allocation may grow it),
 * so every view is taken after the last allocation that precedes its use.
 */
import { getKernel, util } from "@tensorflow/tfjs-core";
import type { DataType, KernelBackend, NamedAttrMap, TensorInfo } from "@tensorflow/tfjs-core";

type DataId = object;

interface WasmTensorData {
  id: number;
  memoryOffset: number;
  shape: number[];
  dtype: DataType;
  refCount: number;
}

interface WasmModule {
  HEAPU8: Uint8Array;
  cwrap(name: string, returnType: string | null, argTypes: string[]): (...args: unknown[]) => unknown;
  tfjs: { disposeData(id: number): void };
}

export interface WasmBackend extends KernelBackend {
  wasm: WasmModule;
  dataIdMap: {
    get(dataId: DataId): WasmTensorData | undefined;
    delete(dataId: DataId): boolean;
    has(dataId: DataId): boolean;
  };
  makeOutput(shape: number[], dtype: DataType, memoryOffset?: number): TensorInfo;
  typedArrayFromHeap(info: TensorInfo): Float32Array | Int32Array | Uint8Array;
  numDataIds(): number;
}

export function asWasm(backend: unknown): WasmBackend {
  const b = backend as Partial<WasmBackend> | null;
  if (!b || typeof b.makeOutput !== "function" || !b.dataIdMap || !b.wasm) {
    throw new Error("@apt/backend-cpu kernels run on tfjs-backend-wasm only");
  }
  return b as WasmBackend;
}

/** Runs a tfjs-backend-wasm kernel (the one registered now for "wasm"). */
export function runKernel(backend: WasmBackend, name: string, inputs: Record<string, TensorInfo>, attrs: NamedAttrMap = {}): TensorInfo {
  const config = getKernel(name, "wasm");
  if (!config) throw new Error(`kernel ${name} is not registered for backend wasm`);
  return config.kernelFunc({ inputs, backend, attrs }) as TensorInfo;
}

/** Frees intermediates made by `makeOutput` or stock kernels; undefined entries are skipped. */
export function release(backend: WasmBackend, ...infos: (TensorInfo | undefined)[]): void {
  for (const info of infos) if (info) backend.disposeData(info.dataId);
}

/** Same data, another shape (no copy). */
export function reshaped(info: TensorInfo, shape: number[]): TensorInfo {
  return { dataId: info.dataId, shape, dtype: info.dtype };
}

export function f32(backend: WasmBackend, info: TensorInfo): Float32Array {
  return backend.typedArrayFromHeap(info) as Float32Array;
}

export function i32(backend: WasmBackend, info: TensorInfo): Int32Array {
  return backend.typedArrayFromHeap(info) as Int32Array;
}

export function heapOffset(backend: WasmBackend, info: TensorInfo): number {
  const data = backend.dataIdMap.get(info.dataId);
  if (!data) throw new Error("tensor is not on the wasm backend");
  return data.memoryOffset;
}

export function tensorId(backend: WasmBackend, info: TensorInfo): number {
  const data = backend.dataIdMap.get(info.dataId);
  if (!data) throw new Error("tensor is not on the wasm backend");
  return data.id;
}

/**
 * A tensor over part of another tensor's heap memory (no copy), so that a
 * batched op can call a single-matrix C++ kernel on each slice. Must be freed
 * with `releaseView`, never with `disposeData` (that would free the parent's memory).
 */
export function heapView(backend: WasmBackend, parent: TensorInfo, elementOffset: number, shape: number[]): TensorInfo {
  const bytes = util.bytesPerElement(parent.dtype);
  return backend.makeOutput(shape, parent.dtype, heapOffset(backend, parent) + elementOffset * bytes);
}

/** Forgets a `heapView`: drops it from the registries (which also frees XNNPACK operators cached on its id). */
export function releaseView(backend: WasmBackend, view: TensorInfo): void {
  const data = backend.dataIdMap.get(view.dataId);
  if (!data) return;
  backend.dataIdMap.delete(view.dataId);
  backend.wasm.tfjs.disposeData(data.id);
}

/** A float32 output filled with zeros (`makeOutput` memory is uninitialised). */
export function zeros(backend: WasmBackend, shape: number[], dtype: DataType = "float32"): TensorInfo {
  const out = backend.makeOutput(shape, dtype);
  backend.typedArrayFromHeap(out).fill(0);
  return out;
}

/** Throws for a data format other than NHWC (the only layout these kernels implement). */
export function assertNHWC(kernel: string, dataFormat: unknown): void {
  if (dataFormat !== undefined && dataFormat !== "NHWC" && dataFormat !== "channelsLast") {
    throw new Error(`${kernel} on @apt/backend-cpu supports dataFormat 'NHWC' only, got '${String(dataFormat)}'`);
  }
}
