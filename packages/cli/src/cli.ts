/**
 * The `apt-run` program (commander): train (default), sample, methods, bench step.
 *
 * Exit codes: 0 done; 2 bad input (an AptError with exitCode 2, or a wrong
 * command line): its message is printed without a stack; 1 anything else
 * (the stack is printed).
 */
import { readFileSync } from "node:fs";
import { Command, CommanderError, InvalidArgumentError, Option } from "commander";
import { AptError } from "@apt/core";
import { processIo, type Io } from "./commands/io.js";

function version(): string {
  try {
    return (JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string }).version;
  } catch {
    return "0.0.0";
  }
}

function int(name: string, min = 0) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw new InvalidArgumentError(`${name} must be an integer ≥ ${min}`);
    return n;
  };
}

function num(v: string): number {
  const n = Number(v);
  if (!Number.isFinite(n)) throw new InvalidArgumentError("expected a number");
  return n;
}

const collect = (v: string, prev: string[] = []) => [...prev, v];

const BACKEND_HELP = "auto (cuda, then a real webgpu adapter, then cpu), cpu, webgpu or cuda";

export function buildProgram(io: Io, setCode: (code: number) => void): Command {
  const program = new Command("apt-run");
  program
    .description("Few-shot personalization of diffusion models: train with method plugins named in apt.config.ts, sample, list methods, benchmark.")
    .version(version(), "-v, --version")
    .exitOverride()
    .configureOutput({ writeOut: (s) => void io.stdout.write(s), writeErr: (s) => void io.stderr.write(s) })
    .showHelpAfterError("(run with --help for usage)")
    .addHelpText(
      "after",
      `
Exit codes: 0 done, 2 bad input (config, files, command line; nothing was run), 1 other errors.
Config: package.json "apt", .aptrc[.json|.yaml|.yml|.js|.ts|.mjs|.cjs], .config/aptrc*, apt.config.{js,ts,mjs,cjs,json}.`,
    );

  program
    .command("train", { isDefault: true })
    .description("train as the config says (the default command)")
    .option("-c, --config <file>", "config file (default: searched from the current folder up to the project root)")
    .option("--set <path=value>", "override a config value, e.g. --set train.steps=10 (repeatable; JSON values)", collect, [])
    .option("--backend <name>", BACKEND_HELP)
    .option("--resume <latest|dir>", 'resume from the latest checkpoint of the run folder, or from a checkpoint folder')
    .option("--dry-run", "check everything, print the resolved config and exit")
    .option("--log-every <n>", "without a terminal: one progress line every n steps", int("--log-every", 1), 10)
    .addOption(new Option("--no-progress-bar", "plain progress lines even on a terminal"))
    .action(async (o: { config?: string; set: string[]; backend?: string; resume?: string; dryRun?: boolean; logEvery: number; progressBar: boolean }) => {
      const { trainCommand } = await import("./commands/train.js");
      setCode(await trainCommand({ ...o, ...(o.progressBar ? {} : { tty: false }) }, io));
    });

  program
    .command("sample")
    .description("generate a grid of images from a model folder (optionally with a LoRA file)")
    .requiredOption("--model <dir|package>", "diffusers pipeline folder, or a package export such as @apt/shapes/base")
    .requiredOption("-p, --prompt <text>", "prompt (repeatable: one grid row per prompt)", collect, [])
    .option("--seed <n>", "noise seed", int("--seed"), 0)
    .option("--steps <n>", "DDIM steps", int("--steps", 1), 25)
    .option("--guidance <scale>", "classifier-free guidance scale (≤ 1: off)", num, 3)
    .option("--num <n>", "images per prompt", int("--num", 1), 4)
    .option("-o, --out <file>", "output PNG", "grid.png")
    .option("--lora <file>", "LoRA safetensors to load first (needs @apt/method-lora)")
    .option("--backend <name>", BACKEND_HELP, "auto")
    .action(async (o) => {
      const { sampleCommand } = await import("./commands/sample.js");
      setCode(await sampleCommand(o, io));
    });

  program
    .command("methods")
    .description("list the method plugins installed here (node_modules/@apt/method-*, apt-method-*) with their options")
    .option("--json", "print JSON")
    .action(async (o: { json?: boolean }) => {
      const { methodsCommand } = await import("./commands/methods.js");
      setCode(await methodsCommand(o, io));
    });

  const bench = program.command("bench").description("benchmarks");
  bench
    .command("step")
    .description("time one training or sampling step of random-weight networks (the work of ../shared/bench/torch_reference.py)")
    .requiredOption("--unet <file>", "UNet2DConditionModel config.json")
    .requiredOption("--text <file>", "CLIPTextModel config.json")
    .addOption(new Option("--mode <mode>", "lora: frozen UNet + LoRA; full: every UNet parameter; sample: one forward").choices(["lora", "full", "sample"]).default("lora"))
    .option("--batch <n>", "batch size", int("--batch", 1), 8)
    .option("--steps <n>", "timed steps", int("--steps", 1), 20)
    .option("--warmup <n>", "untimed steps first", int("--warmup"), 3)
    .option("--rank <n>", "LoRA rank (alpha = rank)", int("--rank", 1), 4)
    .option("--backend <name>", BACKEND_HELP, "auto")
    .option("--json", "print one JSON object (torch_reference.py's fields plus backend, device, tfjs)")
    .option("--compare", "also run the PyTorch reference on the same configs (needs /usr/bin/python3 with torch) and print the ratio")
    .option("--torch-reference <file>", "torch_reference.py", "../shared/bench/torch_reference.py")
    .option("--threads <n>", "PyTorch threads", int("--threads", 1), 2)
    .action(async (o) => {
      const { benchStepCommand } = await import("./commands/bench.js");
      setCode(await benchStepCommand(o, io));
    });

  return program;
}

/** Runs the CLI with `args` (without node and the script); returns the exit code. */
export async function main(args: string[], io: Io = processIo()): Promise<number> {
  let code = 0;
  const program = buildProgram(io, (c) => {
    code = c;
  });
  try {
    await program.parseAsync(args, { from: "user" });
    return code;
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.code === "commander.helpDisplayed" || e.code === "commander.help" || e.code === "commander.version") return 0;
      return 2; // commander has printed the message
    }
    if (AptError.isInstance(e) && e.exitCode === 2) {
      io.stderr.write(`error: ${e.message}\n`);
      return 2;
    }
    const err = e as Error;
    io.stderr.write(`${err?.stack ?? String(e)}\n`);
    return AptError.isInstance(e) ? e.exitCode || 1 : 1;
  }
}
