/** The options schema: diffusers' DreamBooth LoRA defaults, strict, clear messages. */
import { describe, expect, it } from "vitest";
import { METHOD_API_VERSION } from "@apt/core";
import lora, { lora as named, loraOptionsSchema, type LoraOptions } from "../src/index.js";

type StandardResult = Awaited<ReturnType<(typeof lora.options)["~standard"]["validate"]>>;

async function validate(value: unknown): Promise<StandardResult> {
  return lora.options["~standard"].validate(value);
}

async function issues(value: unknown): Promise<string> {
  const r = await validate(value);
  expect(r.issues, JSON.stringify(value)).toBeDefined();
  return r.issues!.map((i) => `${(i.path ?? []).map((p) => String(typeof p === "object" ? p.key : p)).join(".")}: ${i.message}`).join("\n");
}

describe("plugin", () => {
  it("is a v1 method plugin named lora that provides an adapter, as default and named export", () => {
    expect(lora).toBe(named);
    expect(lora.apiVersion).toBe(METHOD_API_VERSION);
    expect(lora.name).toBe("lora");
    expect(lora.provides).toEqual(["adapter"]);
    expect(lora.options).toBe(loraOptionsSchema);
  });
});

describe("options", () => {
  it("defaults are diffusers' DreamBooth LoRA script's", async () => {
    const r = await validate({});
    expect(r.issues).toBeUndefined();
    expect((r as { value: LoraOptions }).value).toEqual({
      rank: 4,
      alpha: 4,
      init: "gaussian",
      target_modules: ["to_q", "to_k", "to_v", "to_out.0"],
      text_encoder_target_modules: [],
      dropout: 0,
      lr_scale: 1,
      text_encoder_lr_scale: 1,
    });
  });

  it("alpha defaults to the rank given; explicit values are kept", async () => {
    const r = (await validate({ rank: 16 })) as { value: LoraOptions };
    expect(r.value.alpha).toBe(16);
    const s = (await validate({ rank: 8, alpha: 4, init: "kaiming", target_modules: ".*attn2\\.to_(k|v)", text_encoder_target_modules: ["q_proj", "v_proj"], lr_scale: 0.5 })) as {
      value: LoraOptions;
    };
    expect(s.value).toMatchObject({ rank: 8, alpha: 4, init: "kaiming", target_modules: ".*attn2\\.to_(k|v)", text_encoder_target_modules: ["q_proj", "v_proj"], lr_scale: 0.5 });
    // The text encoder's rate follows lr_scale unless given.
    expect(s.value.text_encoder_lr_scale).toBe(0.5);
    expect(((await validate({ lr_scale: 2, text_encoder_lr_scale: 0.25 })) as { value: LoraOptions }).value.text_encoder_lr_scale).toBe(0.25);
  });

  it("the defaults are fresh arrays for every validation", async () => {
    const a = (await validate({})) as { value: LoraOptions };
    (a.value.target_modules as string[]).push("proj_in");
    const b = (await validate({})) as { value: LoraOptions };
    expect(b.value.target_modules).toEqual(["to_q", "to_k", "to_v", "to_out.0"]);
  });

  it("rejects unknown options, so typos fail", async () => {
    expect(await issues({ rnak: 8 })).toMatch(/rnak/);
    expect(await issues({ rank: 4, target_module: ["to_q"] })).toMatch(/target_module/);
  });

  it("rejects bad types and values, naming the option", async () => {
    expect(await issues({ rank: "4" })).toMatch(/^rank:/);
    expect(await issues({ rank: 0 })).toMatch(/^rank:/);
    expect(await issues({ rank: 2.5 })).toMatch(/^rank:/);
    expect(await issues({ alpha: -1 })).toMatch(/^alpha:/);
    expect(await issues({ init: "xavier" })).toMatch(/^init:/);
    expect(await issues({ target_modules: 3 })).toMatch(/^target_modules:/);
    expect(await issues({ target_modules: "to_(q" })).toMatch(/not a valid regular expression/);
    expect(await issues({ lr_scale: 0 })).toMatch(/^lr_scale:/);
    expect(await issues({ text_encoder_lr_scale: -1 })).toMatch(/^text_encoder_lr_scale:/);
    expect(await issues("rank 4")).toBeTruthy();
  });

  it("dropout: only 0 is accepted, with a clear message", async () => {
    expect((await validate({ dropout: 0 })).issues).toBeUndefined();
    expect(await issues({ dropout: 0.1 })).toMatch(/^dropout: only 0 is supported/);
  });
});
