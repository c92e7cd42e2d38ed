// Replaces dist/tfjs-gradients.js (tsc's one-line import) with a self-contained
// bundle of tfjs-core's gradient registrations that plain Node can load. The
// public "@tensorflow/tfjs-core" entry stays external so registrations land in
// the same global registry as the user's tfjs-core.
import { build } from "esbuild";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
await build({
  entryPoints: [`${root}src/tfjs-gradients.ts`],
  outfile: `${root}dist/tfjs-gradients.js`,
  bundle: true,
  format: "esm",
  platform: "node",
  target: "node20",
  sourcemap: false,
  legalComments: "inline",
  // Only the bare specifier: esbuild's `external` would also match the
  // "@tensorflow/tfjs-core/dist/..." import this bundle exists to inline.
  plugins: [
    {
      name: "tfjs-core-entry-external",
      setup(b) {
        b.onResolve({ filter: /^@tensorflow\/tfjs-core$/ }, (args) => ({ path: args.path, external: true }));
      },
    },
  ],
  logLevel: "warning",
});
