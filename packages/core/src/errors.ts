/**
 * Errors that @apt raises on purpose. Each carries a stable `code` and an exit
 * code for the CLI (2 = bad input: a file, a config value, a missing package the
 * user must install). `AptError.isInstance` works across duplicated copies of
 * @apt/core (a plugin may bring its own), the way vercel/ai marks its errors.
 */
const marker = Symbol.for("@apt/core.error");

export type AptErrorCode =
  | "BAD_INPUT"
  | "BAD_SAFETENSORS"
  | "DUPLICATE_TFJS"
  | "BACKEND_UNAVAILABLE"
  | "DIVERGED"
  | "INTERNAL";

export class AptError extends Error {
  readonly [marker] = true;
  readonly code: AptErrorCode;
  /** Process exit code the CLI uses for this error: 2 for bad input, 1 otherwise. */
  readonly exitCode: number;

  constructor(code: AptErrorCode, message: string, options?: { cause?: unknown; exitCode?: number }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = "AptError";
    this.code = code;
    this.exitCode = options?.exitCode ?? (code === "INTERNAL" || code === "DIVERGED" ? 1 : 2);
  }

  static isInstance(e: unknown): e is AptError {
    return typeof e === "object" && e !== null && (e as Record<symbol, unknown>)[marker] === true;
  }
}
