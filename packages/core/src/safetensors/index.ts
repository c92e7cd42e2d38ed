/** Safetensors I/O: lazy validated reader, atomic writer, float16/bfloat16 conversions. */
export {
  DTYPE_SIZES,
  decodeBF16,
  decodeF16,
  encodeBF16,
  encodeF16,
  isSafetensorsDtype,
  type SafetensorsDtype,
  type TensorData,
} from "./dtypes.js";
export {
  MAX_HEADER_BYTES,
  SafetensorsReader,
  parseSafetensorsHeader,
  readSafetensors,
  type DecodedTensor,
  type SafetensorsEntry,
} from "./reader.js";
export { serializeSafetensors, writeSafetensors, type TensorToWrite } from "./writer.js";
