// Writes gradients/tfjs-gradients.js: tfjs-core's gradient registrations and
// chained tensor ops (`x.reshape(...)`, used inside some gradient functions),
// bundled so that plain Node can load them.
//
// Why: @tensorflow/tfjs-core registers no gradient functions by itself (the
// @tensorflow/tfjs bundle inlines them), and its ESM sources use extension-less
// imports that Node's ESM loader cannot resolve. So we do what the tfjs bundle
// does: inline them, keeping the public "@tensorflow/tfjs-core" entry external.
// The inlined code registers into tfjs's global registries and patches the
// global Tensor class, so it serves the user's single tfjs-core.
// The output lives outside dist/ so that `tsc -b` can never overwrite it.
import { build } from "esbuild";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
await build({
  stdin: {
    contents: [
      'import "@tensorflow/tfjs-core/dist/register_all_gradients.js";',
      'import "@tensorflow/tfjs-core/dist/public/chained_ops/register_all_chained_ops.js";',
    ].join("\n"),
    resolveDir: root,
    loader: "js",
  },
  outfile: `${root}gradients/tfjs-gradients.js`,
  bundle: true,
  format: "esm",
  platform: "node",
  target: "node20",
  legalComments: "inline",
  // Only the bare specifier: esbuild's `external` would also match the
  // "@tensorflow/tfjs-core/dist/..." imports this bundle exists to inline.
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
