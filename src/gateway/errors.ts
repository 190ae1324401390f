// Typed gateway error. `code` is a pilotctl error code (docs/protocol.md §13.2): invalid_argument, not_found,
// already_exists, not_running, timeout, internal. `hint` is a human remedy (may be absent).
export class GatewayError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly hint?: string,
  ) {
    super(message);
    this.name = "GatewayError";
  }
  toJSON(): { code: string; message: string; hint?: string } {
    return this.hint ? { code: this.code, message: this.message, hint: this.hint } : { code: this.code, message: this.message };
  }
}

/** Wrap anything thrown into a GatewayError, prefixing the message. */
export function asGatewayError(e: unknown, prefix = "", code = "internal"): GatewayError {
  if (e instanceof GatewayError) return prefix ? new GatewayError(e.code, prefix + e.message, e.hint) : e;
  const err = e as { code?: string; message?: string; hint?: string };
  const msg = err && typeof err.message === "string" ? err.message : String(e);
  const c = err && typeof err.code === "string" && /^[a-z_]+$/.test(err.code) ? err.code : code;
  return new GatewayError(c, prefix + msg, err?.hint);
}
