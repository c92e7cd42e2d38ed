// The demo's config: ShapeWorld's base model learns "sks star" (a red star
// with cyan stripes, a second colour pretraining never showed) from its 4
// reference images, with three methods mixed in one run:
// - dreambooth: prior preservation on class images the base model draws of "a photo of star";
// - lora: the only trainable weights, rank-8 adapters on the UNet's attention
//   and the text encoder's attention (the trigger word must come to mean something);
// - cat: keeps the adapted model's prediction on the trigger-free caption
//   equal to the base model's (the class word does not drift).
import { conceptConfig } from "@apt/shapes";

const concept = conceptConfig("red-star-cyan-stripes");

export default {
  backend: "cpu",
  model: "@apt/shapes/base",
  task: { kind: "personalize", images: concept.images, prompt: concept.prompt, classPrompt: concept.classPrompt, trigger: concept.trigger },
  train: { steps: 120, batchSize: 2, lr: 1e-3, seed: 0, checkpointEvery: 40 },
  methods: [
    ["dreambooth", { num_class_images: 8, class_images_per_batch: 2, sample_steps: 20 }],
    ["lora", { rank: 8, text_encoder_target_modules: ["q_proj", "k_proj", "v_proj", "out_proj"] }],
    ["cat", { cat_factor: 1 }],
  ],
  sample: { steps: 20, guidance: 4 },
  output: "runs/demo",
};
