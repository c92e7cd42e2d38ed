// The demo's config: ShapeWorld's base model learns "sks star" (a red star
// with cyan stripes, a second colour pretraining never showed) from its 4
// reference images, with three methods mixed in one run:
// - dreambooth: prior preservation on class images the base model draws of "a photo of star";
// - lora: the only trainable weights, rank-8 adapters on the UNet's attention
//   projections and its resnets' convs (conv LoRA, kohya's LoCon: the stripes'
//   new colour is drawn at 32×32 by convs, where this UNet has no attention),
//   and on the text encoder's attention at a fifth of the learning rate (the
//   trigger word must come to mean something, without dragging "star" along);
// - cat: keeps the adapted model's prediction on the trigger-free caption
//   equal to the base model's (the class word does not drift).
import { conceptConfig } from "@apt/shapes";

const concept = conceptConfig("red-star-cyan-stripes");

export default {
  backend: "cpu",
  model: "@apt/shapes/base",
  task: { kind: "personalize", images: concept.images, prompt: concept.prompt, classPrompt: concept.classPrompt, trigger: concept.trigger },
  train: { steps: 250, batchSize: 2, lr: 1e-3, seed: 0, checkpointEvery: 50 },
  methods: [
    ["dreambooth", { num_class_images: 8, class_images_per_batch: 2, sample_steps: 20 }],
    [
      "lora",
      {
        rank: 8,
        target_modules: ["to_q", "to_k", "to_v", "to_out.0", "conv1", "conv2", "conv_shortcut"],
        text_encoder_target_modules: ["q_proj", "k_proj", "v_proj", "out_proj"],
        text_encoder_lr_scale: 0.2,
      },
    ],
    ["cat", { cat_factor: 1 }],
  ],
  sample: { steps: 20, guidance: 2 },
  output: "runs/demo",
};
