/**
 * The options of the `lora` method, validated by a strict zod schema (zod
 * implements the Standard Schema interface the method contract uses). Defaults
 * are those of diffusers' DreamBooth LoRA script (`train_dreambooth_lora.py`):
 * rank 4, alpha = rank, peft's "gaussian" init, attention projections of the
 * UNet only.
 */
import { z } from "zod";

/** diffusers' DreamBooth LoRA targets: the four projections of every UNet attention module. */
export const DEFAULT_TARGET_MODULES = ["to_q", "to_k", "to_v", "to_out.0"] as const;

/** CLIP's attention projections, a usual `text_encoder_target_modules` (diffusers' `--train_text_encoder`). */
export const CLIP_ATTENTION_MODULES = ["q_proj", "k_proj", "v_proj", "out_proj"] as const;

function isRegex(s: string): boolean {
  try {
    new RegExp(`^(?:${s})$`);
    return true;
  } catch {
    return false;
  }
}

/** peft's `target_modules`: a list (exact path or "." + suffix) or a string (regular expression matching the whole path). */
const targetModules = z.union([
  z.string().min(1, "a target regex must not be empty").refine(isRegex, { message: "is not a valid regular expression" }),
  z.array(z.string().min(1, "target module names must not be empty")),
]);

export const loraOptionsSchema = z
  .strictObject({
    /** LoRA rank r (diffusers' `--rank`). */
    rank: z.number().int().min(1).default(4),
    /** lora_alpha; the update is scaled by alpha / rank. Default: rank (scale 1), as diffusers' script. */
    alpha: z.number().positive().optional(),
    /** Init of lora_A (lora_B is always zero): "gaussian" = N(0, (1/rank)²) (diffusers' script), "kaiming" = peft's default kaiming-uniform. */
    init: z.enum(["gaussian", "kaiming"]).default("gaussian"),
    /** UNet modules to adapt (peft rules): linear and conv modules (a conv gets a conv lora_A, as peft and LoCon). */
    target_modules: targetModules.default(() => [...DEFAULT_TARGET_MODULES]),
    /** Text-encoder modules to adapt; [] (default) trains the UNet only. */
    text_encoder_target_modules: targetModules.default(() => []),
    /** lora_dropout: only 0 is implemented. */
    dropout: z
      .number()
      .default(0)
      .refine((v) => v === 0, { message: "only 0 is supported for now: @apt/method-lora does not implement LoRA dropout (remove the option or set it to 0)" }),
    /** Learning-rate multiplier of every LoRA variable. */
    lr_scale: z.number().positive().default(1),
    /**
     * Learning-rate multiplier of the text encoder's LoRA variables (diffusers' `--text_encoder_lr`, kohya's
     * `text_encoder_lr`, as a multiple of the run's lr); default: lr_scale. A few images move a trigger word's
     * text features fast, so a lower rate for the text encoder is usual.
     */
    text_encoder_lr_scale: z.number().positive().optional(),
  })
  .transform((o) => ({ ...o, alpha: o.alpha ?? o.rank, text_encoder_lr_scale: o.text_encoder_lr_scale ?? o.lr_scale }));

/** The options as given in a config (every field optional). */
export type LoraOptionsInput = z.input<typeof loraOptionsSchema>;
/** The validated options, defaults filled in. */
export type LoraOptions = z.output<typeof loraOptionsSchema>;
