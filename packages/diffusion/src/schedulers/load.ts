import { AptError } from "@apt/core";
import { readSchedulerConfigFile, resolveSchedulerConfig, SCHEDULER_CLASSES } from "./config.js";
import { DDIMScheduler } from "./ddim.js";
import { DDPMScheduler } from "./ddpm.js";

export type AnyScheduler = DDPMScheduler | DDIMScheduler;

/** Loads the scheduler class that `dir/scheduler_config.json` names in `_class_name`. */
export async function loadScheduler(dir: string): Promise<AnyScheduler> {
  const { file, raw } = await readSchedulerConfigFile(dir);
  const name = raw._class_name;
  if (name === "DDPMScheduler") return new DDPMScheduler(resolveSchedulerConfig(raw, file));
  if (name === "DDIMScheduler") return new DDIMScheduler(resolveSchedulerConfig(raw, file));
  const got = name === undefined ? "no _class_name" : `_class_name ${JSON.stringify(name)}`;
  throw new AptError(
    "BAD_INPUT",
    `${file}: ${got}; supported scheduler classes: ${SCHEDULER_CLASSES.join(", ")} ` +
      "(to sample with another diffusers scheduler's config, use DDIMScheduler.fromPretrained or DDPMScheduler.fromPretrained)",
  );
}
