// The one error class of the SDK. `code` is one of pilotctl's machine-readable error codes, so a
// program, pilotctl's JSON envelope and an MCP client all see the same vocabulary.

/** Error codes shared by the SDK, pilotctl (`--json` error envelope) and the MCP server. */
export type ErrorCode =
  | "already_exists"
  | "connection_failed"
  | "internal"
  | "invalid_argument"
  | "not_found"
  | "not_running"
  | "timeout"
  | "unavailable"
  | "invalid_state"
  | "expired"
  | "internal_error"
  | "unsupported"
  | "refused"
  | "aborted";

/** Every code with a one-line meaning (what a caller should do about it). */
export const ERROR_CODE_MEANINGS: Readonly<Record<ErrorCode, string>> = {
  already_exists: "Duplicate operation (daemon/gateway already running)",
  connection_failed: "Network or dial failure (may retry)",
  internal: "Unexpected system error",
  invalid_argument: "Bad input or usage error (do not retry)",
  not_found: "Resource not found (hostname/name resolve failure)",
  not_running: "Service not available (daemon/gateway not running)",
  timeout: "Operation timed out (may retry with longer timeout)",
  unavailable: "Feature not available in this version (do not retry)",
  invalid_state: "Operation not allowed in the resource's current state",
  expired: "Deadline passed (task accept window)",
  internal_error: "Unexpected task file/directory error",
  unsupported: "The peer cannot do this (e.g. an implementation without the extension); do not retry as is",
  refused: "The peer refused or failed to store what was sent (see the message)",
  aborted: "The caller cancelled the operation (AbortSignal)",
};

export function isErrorCode(s: string): s is ErrorCode {
  return Object.prototype.hasOwnProperty.call(ERROR_CODE_MEANINGS, s);
}

/** A failed SDK call: `code` says what kind of failure, `hint` what to try next (when known). */
export class PilotError extends Error {
  readonly code: ErrorCode;
  readonly hint?: string;
  constructor(code: ErrorCode, message: string, hint?: string) {
    super(message);
    this.name = "PilotError";
    this.code = code;
    if (hint !== undefined) this.hint = hint;
  }
  /** Plain-object form (the shape of pilotctl's JSON error envelope, minus `status`). */
  toJSON(): { code: ErrorCode; message: string; hint?: string } {
    return this.hint === undefined ? { code: this.code, message: this.message } : { code: this.code, message: this.message, hint: this.hint };
  }
}

/** The rejection used when an AbortSignal fires. */
export function abortError(label: string, signal?: AbortSignal): PilotError {
  const r = signal?.reason;
  if (r instanceof PilotError) return r;
  const why = r instanceof Error && r.name !== "AbortError" ? `: ${r.message}` : "";
  return new PilotError("aborted", `${label}: aborted${why}`);
}

/** Options every SDK call accepts. */
export interface CallOptions {
  /** Milliseconds before the call fails with code "timeout" (default: no timeout). */
  timeoutMs?: number;
  /** Cancels the call; it then rejects with code "aborted". */
  signal?: AbortSignal;
}

/**
 * Arms the timeout and abort signal of one pending operation. `fail` is called at most once with
 * the error; the returned function disarms both (call it when the operation settles).
 */
export function arm(opts: CallOptions | undefined, label: string, fail: (e: PilotError) => void, timeoutText?: string): () => void {
  let t: ReturnType<typeof setTimeout> | undefined;
  const sig = opts?.signal;
  let onAbort: (() => void) | undefined;
  const disarm = () => {
    if (t) clearTimeout(t);
    t = undefined;
    if (onAbort) sig?.removeEventListener("abort", onAbort);
    onAbort = undefined;
  };
  if (sig) {
    if (sig.aborted) {
      queueMicrotask(() => fail(abortError(label, sig)));
      return disarm;
    }
    onAbort = () => {
      disarm();
      fail(abortError(label, sig));
    };
    sig.addEventListener("abort", onAbort, { once: true });
  }
  if (opts?.timeoutMs !== undefined) {
    const ms = opts.timeoutMs;
    t = setTimeout(() => {
      disarm();
      fail(new PilotError("timeout", timeoutText ?? `${label}: no reply within ${ms}ms`));
    }, Math.max(0, ms));
  }
  return disarm;
}
