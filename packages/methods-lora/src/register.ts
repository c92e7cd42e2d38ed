import * as tf from "@tensorflow/tfjs-core";
import { registerTfjsCore, tfjsCoreLocation } from "@apt/core";

// One engine for every @apt package: fail early if this package sees another tfjs-core copy.
registerTfjsCore(tf, "@apt/method-lora", tfjsCoreLocation(import.meta.url));
