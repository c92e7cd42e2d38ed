/**
 * @apt/shapes: ShapeWorld, the embedded default world of @apt — a seeded
 * renderer that knows the truth, its prompt grammar and its vocabulary.
 */
export * from "./world/index.js";
export * from "./evaluator/index.js";
export * from "./concepts/index.js";
