export * from "./attributes.js";
export { SHAPE_TESTS, type InsideTest } from "./shapes.js";
export * from "./render.js";
export * from "./grammar.js";
export * from "./vocabulary.js";
export * from "./grid.js";
