/**
 * Registers tfjs's gradient functions. `@tensorflow/tfjs-core` registers none
 * by itself; the `@tensorflow/tfjs` bundle does, by inlining them. Their source
 * (tfjs-core's `dist/register_all_gradients.js`) is ESM with extension-less
 * imports, which Node's ESM loader cannot resolve, so core's build bundles this
 * file with esbuild into `dist/tfjs-gradients.js` (scripts/bundle-gradients.mjs),
 * as tfjs itself does. The inlined ops run on tfjs's single global engine.
 * Under vitest (vite resolves such imports) this file is used as it is.
 */
import "@tensorflow/tfjs-core/dist/register_all_gradients.js";
