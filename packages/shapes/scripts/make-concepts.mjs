#!/usr/bin/env node
/* global URL, console */
// Writes the shipped concept sets from CONCEPT_DEFINITIONS (src/concepts/definitions.ts):
//   concepts/<name>/concept.json, concepts/<name>/ref-0.png … ref-3.png (32×32, 8-bit RGB)
//   concepts/sequence.json (the 5-concept continual sequence)
// Deterministic: the same definitions give byte-identical files.
//   pnpm --filter @apt/shapes make-concepts   (builds first)
import { mkdirSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { PNG } from "pngjs";
import { CONCEPT_DEFINITIONS, CONTINUAL_SEQUENCE, IMAGE_SIZE, conceptSpec, renderConceptReferences, toBytes } from "../dist/index.js";

const root = fileURLToPath(new URL("../concepts/", import.meta.url));
mkdirSync(root, { recursive: true });
const names = new Set(CONCEPT_DEFINITIONS.map((d) => d.name));
// Folders of concepts that no longer exist go.
for (const entry of readdirSync(root, { withFileTypes: true })) {
  if (entry.isDirectory() && !names.has(entry.name)) rmSync(join(root, entry.name), { recursive: true });
}

const json = (value) => `${JSON.stringify(value, null, 2)}\n`;
const per = IMAGE_SIZE * IMAGE_SIZE * 3;
for (const def of CONCEPT_DEFINITIONS) {
  const spec = conceptSpec(def);
  const dir = join(root, spec.name);
  mkdirSync(dir, { recursive: true });
  const bytes = toBytes(renderConceptReferences(spec).images);
  spec.references.forEach((ref, i) => {
    // colorType 2: stored as 8-bit RGB (pngjs takes RGBA input and drops alpha).
    const png = new PNG({ width: IMAGE_SIZE, height: IMAGE_SIZE, colorType: 2 });
    for (let p = 0; p < IMAGE_SIZE * IMAGE_SIZE; p++) {
      png.data[p * 4] = bytes[i * per + p * 3];
      png.data[p * 4 + 1] = bytes[i * per + p * 3 + 1];
      png.data[p * 4 + 2] = bytes[i * per + p * 3 + 2];
      png.data[p * 4 + 3] = 255;
    }
    writeFileSync(join(dir, ref.file), PNG.sync.write(png, { colorType: 2 }));
  });
  writeFileSync(join(dir, "concept.json"), json(spec));
  console.log(`${spec.name.padEnd(32)} ${spec.prompt.padEnd(26)} ${spec.references.length} refs, ${spec.evaluation.length} eval prompts`);
}
writeFileSync(join(root, "sequence.json"), json({ description: "5 concepts for continual runs, learned in this order", concepts: CONTINUAL_SEQUENCE }));
console.log(`→ ${root}`);
