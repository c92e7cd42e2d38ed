/**
 * The zod schema of the config file (everything except the entries of
 * `methods`, which resolve-methods.ts checks one by one) and the translation
 * of zod's issues into problems with a path, the value found and the fix.
 */
import { z } from "zod";
import type { TrainOptions } from "@apt/core";
import type { PathSegment, Problems } from "./problems.js";
import { didYouMean } from "../util/suggest.js";

export const BACKENDS = ["auto", "cpu", "webgpu", "cuda"] as const;
export const LR_SCHEDULES = ["constant", "cosine", "linear"] as const;

const int = (min: number) => z.number().int().min(min);
const prompt = z.string().min(1);

const trainShape = {
  steps: int(1),
  batchSize: int(1),
  lr: z.number().positive(),
  lrSchedule: z.enum(LR_SCHEDULES),
  warmupSteps: int(0),
  weightDecay: z.number().min(0),
  adamBetas: z.tuple([z.number().min(0).lt(1), z.number().min(0).lt(1)]),
  adamEps: z.number().positive(),
  maxGradNorm: z.number().min(0),
  emaDecay: z.number().min(0).lt(1),
  trainTextEncoder: z.boolean(),
  snrGamma: z.number().min(0),
  seed: z.number().int(),
  checkpointEvery: int(0),
  checkpointsTotalLimit: int(0),
  sampleEvery: int(0),
  samplePrompts: z.array(z.string()),
  sampleSteps: int(1),
  sampleGuidance: z.number().min(0),
  sampleSeed: z.number().int(),
} satisfies Record<keyof TrainOptions, z.ZodType>;

export const trainSchema = z.strictObject(trainShape).partial();

const conceptShape = {
  name: z.string().min(1),
  images: z.string().min(1),
  prompt,
  classPrompt: prompt.optional(),
  trigger: z.string().min(1).optional(),
};
const conceptSchema = z.strictObject(conceptShape);

const personalizeShape = {
  kind: z.literal("personalize"),
  images: z.string().min(1),
  prompt,
  classPrompt: prompt.optional(),
  trigger: z.string().min(1).optional(),
};
const continualShape = {
  kind: z.literal("continual"),
  concepts: z.array(conceptSchema).min(1),
};

const sampleShape = {
  prompts: z.array(z.string()).optional(),
  every: int(0).optional(),
  steps: int(1).optional(),
  guidance: z.number().min(0).optional(),
  seed: z.number().int().optional(),
};

const topShape = {
  backend: z.enum(BACKENDS).optional(),
  model: z.string().min(1),
  task: z.discriminatedUnion("kind", [z.strictObject(personalizeShape), z.strictObject(continualShape)]),
  train: trainSchema.optional(),
  // Entries are checked by resolve-methods.ts (strings, tuples, plugin objects).
  methods: z.array(z.unknown()),
  output: z.string().min(1),
  sample: z.strictObject(sampleShape).optional(),
};

export const configSchema = z.strictObject(topShape);
export type ParsedConfig = z.output<typeof configSchema>;

export const KEYS = {
  top: Object.keys(topShape),
  train: Object.keys(trainShape),
  sample: Object.keys(sampleShape),
  personalize: Object.keys(personalizeShape),
  continual: Object.keys(continualShape),
  concept: Object.keys(conceptShape),
};

/** The keys an object at `path` may have (for "did you mean"). */
function knownKeys(path: readonly PathSegment[], raw: unknown): string[] {
  const [a, b, c] = path;
  if (path.length === 0) return KEYS.top;
  if (a === "train" && path.length === 1) return KEYS.train;
  if (a === "sample" && path.length === 1) return KEYS.sample;
  if (a === "task" && path.length === 1) {
    const kind = (raw as { task?: { kind?: unknown } } | null)?.task?.kind;
    return kind === "continual" ? KEYS.continual : kind === "personalize" ? KEYS.personalize : [...new Set([...KEYS.personalize, ...KEYS.continual])];
  }
  if (a === "task" && b === "concepts" && typeof c === "number" && path.length === 3) return KEYS.concept;
  return [];
}

export function valueAt(raw: unknown, path: readonly PathSegment[]): unknown {
  let v = raw;
  for (const seg of path) {
    if (v === null || typeof v !== "object") return undefined;
    v = (v as Record<string | number, unknown>)[seg];
  }
  return v;
}

export function describeValue(v: unknown): string {
  if (v === undefined) return "nothing";
  if (v === null) return "null";
  if (Array.isArray(v)) return `an array of ${v.length}`;
  if (typeof v === "string") return JSON.stringify(v.length > 40 ? `${v.slice(0, 37)}...` : v);
  if (typeof v === "number" || typeof v === "boolean") return String(v);
  if (typeof v === "function") return "a function";
  return `an ${typeof v}`;
}

/** A zod- (or Standard-Schema-) style issue, with the fields this formatter reads. */
export interface IssueLike {
  message: string;
  path?: ReadonlyArray<PropertyKey | { readonly key: PropertyKey }>;
  code?: string;
  expected?: string;
  keys?: string[];
  values?: unknown[];
  options?: unknown[];
  discriminator?: string;
  minimum?: number | bigint;
  maximum?: number | bigint;
  origin?: string;
}

export function issuePath(issue: IssueLike): PathSegment[] {
  return (issue.path ?? []).map((seg) => {
    const key = typeof seg === "object" && seg !== null && "key" in seg ? seg.key : seg;
    return typeof key === "number" ? key : String(key);
  });
}

/**
 * Turns one issue into problems (an "unrecognized keys" issue gives one per
 * key). `raw` is the validated value (for what was found), `base` the path of
 * that value in the config, `keysAt` the known keys of an object inside it.
 */
export function addIssue(
  problems: Problems,
  issue: IssueLike,
  raw: unknown,
  base: PathSegment[],
  keysAt: (path: PathSegment[]) => string[],
  what = "key",
): void {
  const path = issuePath(issue);
  const full = [...base, ...path];
  const found = valueAt(raw, path);
  switch (issue.code) {
    case "unrecognized_keys": {
      for (const key of issue.keys ?? []) {
        const known = keysAt(path);
        const hint = didYouMean(key, known);
        problems.add([...full, key], `unknown ${what} "${key}".${hint}`, known.length ? `${hint ? "use one of" : "allowed"}: ${known.join(", ")}` : undefined);
      }
      return;
    }
    case "invalid_value": {
      const values = (issue.values ?? []).map((v) => JSON.stringify(v));
      const hint = typeof found === "string" ? didYouMean(found, (issue.values ?? []).map(String)) : "";
      problems.add(full, `${describeValue(found)} is not allowed.${hint}`, `allowed values: ${values.join(", ")}`);
      return;
    }
    case "invalid_union": {
      if (issue.discriminator) {
        const options = (issue.options ?? []).map((v) => JSON.stringify(v));
        const d = path[path.length - 1] === issue.discriminator ? full : [...full, issue.discriminator];
        const value = path[path.length - 1] === issue.discriminator ? found : valueAt(found, [issue.discriminator]);
        const hint = typeof value === "string" ? didYouMean(value, (issue.options ?? []).map(String)) : "";
        problems.add(d, value === undefined ? `missing (one of ${options.join(", ")})` : `${describeValue(value)} is not allowed.${hint}`, `allowed values: ${options.join(", ")}`);
        return;
      }
      problems.add(full, cleanMessage(issue.message));
      return;
    }
    case "invalid_type": {
      if (found === undefined) problems.add(full, `missing (expected ${issue.expected ?? "a value"})`);
      else problems.add(full, `expected ${issue.expected ?? "another type"}, received ${describeValue(found)}`);
      return;
    }
    case "too_small":
    case "too_big": {
      problems.add(full, `${cleanMessage(issue.message)} (found ${describeValue(found)})`);
      return;
    }
    default:
      problems.add(full, cleanMessage(issue.message));
  }
}

/** zod's messages without their "Invalid input: " preamble. */
export function cleanMessage(message: string): string {
  return message.replace(/^Invalid input: /, "").replace(/^Too small: /, "").replace(/^Too big: /, "");
}

/** Validates the config object; every issue becomes a problem. Returns the parsed config, or undefined when invalid. */
export function validateConfig(raw: unknown, problems: Problems): ParsedConfig | undefined {
  const r = configSchema.safeParse(raw);
  if (r.success) return r.data;
  for (const issue of r.error.issues) addIssue(problems, issue as IssueLike, raw, [], (p) => knownKeys(p, raw));
  return undefined;
}
