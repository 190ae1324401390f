// The one TCP dial of the registry protocol's clients (daemon registry client, hot standby,
// pilotctl): a deadline, and optional TLS pinned to the SHA-256 of the server's leaf certificate
// (a self-signed registry cannot be verified by a CA; the pin is what authenticates it).
import type { Socket } from "bun";

export type DialErrorCode = "dial_timeout" | "connect_failed" | "tls_failed" | "tls_pin_mismatch";

export class DialError extends Error {
  constructor(
    readonly code: DialErrorCode,
    message: string,
    /** The certificate fingerprint seen (tls_pin_mismatch), "" when none. */
    readonly fingerprint = "",
  ) {
    super(message);
    this.name = "DialError";
  }
}

/** Socket events after the connection is ready (before that, they settle the dial instead). */
export interface DialHandlers<D> {
  data(s: Socket<D>, chunk: Uint8Array): void;
  drain?(s: Socket<D>): void;
  close?(s: Socket<D>): void;
  /** Defaults to close. */
  error?(s: Socket<D>, err: Error): void;
  timeout?(s: Socket<D>): void;
}

export interface DialOptions<D> {
  host: string;
  port: number;
  /** Lower-case hex SHA-256 of the leaf certificate DER: dial TLS and accept only that certificate. */
  pin?: string;
  timeoutMs: number;
  /** Runs synchronously once connected (and the pin checked), before any data event. */
  ready(s: Socket<D>): void;
  on: DialHandlers<D>;
}

/** SHA-256 (lower-case hex) of the peer's leaf certificate, "" when there is none. */
function peerFingerprint(s: Socket<unknown>): string {
  try {
    const der = (s as unknown as { getPeerX509Certificate?: () => { raw?: Uint8Array } | undefined }).getPeerX509Certificate?.()?.raw;
    return der ? new Bun.CryptoHasher("sha256").update(der).digest("hex") : "";
  } catch {
    return "";
  }
}

/** Connect; resolves with the ready socket or rejects with a DialError (the socket is then closed). */
export function dialTcp<D = undefined>(o: DialOptions<D>): Promise<Socket<D>> {
  return new Promise((resolve, reject) => {
    let settled = false;
    let live = false;
    let sock: Socket<D> | null = null;
    const done = (e: DialError | null, s?: Socket<D>) => {
      if (settled) {
        if (s) s.terminate(); // connected after the deadline
        return;
      }
      settled = true;
      clearTimeout(timer);
      if (e) {
        try {
          sock?.terminate();
        } catch {}
        reject(e);
        return;
      }
      live = true;
      o.ready(s!);
      resolve(s!);
    };
    const timer = setTimeout(() => done(new DialError("dial_timeout", "timed out")), o.timeoutMs);
    Bun.connect<D>({
      hostname: o.host,
      port: o.port,
      tls: o.pin !== undefined ? { rejectUnauthorized: false } : undefined,
      socket: {
        open(s) {
          sock = s;
          if (o.pin === undefined) done(null, s);
        },
        handshake(s, success) {
          if (o.pin === undefined) return;
          const fp = peerFingerprint(s);
          if (!success && !fp) return done(new DialError("tls_failed", "TLS handshake failed"));
          if (fp !== o.pin) return done(new DialError("tls_pin_mismatch", `certificate fingerprint ${fp || "(none)"} does not match the pinned one`, fp));
          done(null, s);
        },
        data(s, chunk) {
          if (live) o.on.data(s, chunk);
        },
        drain(s) {
          if (live) o.on.drain?.(s);
        },
        timeout(s) {
          if (live) o.on.timeout?.(s);
        },
        close(s) {
          if (live) o.on.close?.(s);
          else done(new DialError("connect_failed", "connection closed"));
        },
        error(s, err) {
          if (!live) return done(new DialError("connect_failed", err?.message ?? String(err)));
          if (o.on.error) o.on.error(s, err);
          else o.on.close?.(s);
        },
        connectError(_s, err) {
          done(new DialError("connect_failed", err?.message ?? String(err)));
        },
      },
    }).catch((e: Error) => done(new DialError("connect_failed", e?.message ?? String(e))));
  });
}
