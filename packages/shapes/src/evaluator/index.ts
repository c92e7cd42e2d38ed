export * from "./model.js";
export * from "./train.js";
export * from "./agreement.js";
export * from "./concept.js";
