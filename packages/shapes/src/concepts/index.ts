export * from "./definitions.js";
export * from "./spec.js";
export * from "./load.js";
export { decodePngRgb, type DecodedRgb } from "./png.js";
