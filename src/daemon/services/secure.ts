// Secure channel, port 443 (services.md §6, MUST-match): ephemeral X25519 exchange over a stream,
// key = SHA-256("pilot-secure-v1:" ‖ shared), AES-256-GCM records `u32 L | 12-byte nonce | ct‖tag`.
// Not a built-in daemon service in the reference; applications (or the daemon, if it chooses) run
// it on any StreamConn.
//
// Fix (services.md §13.4-2, compatible with reference senders, which always use their role prefix
// and consecutive counters from 1): a receiver rejects records carrying its own role prefix
// (reflection) or a counter other than the expected next one (reordering/replay).
import { createCipheriv, createDecipheriv, createHash } from "node:crypto";
import { x25519 } from "@noble/curves/ed25519.js";
import { ProtoError } from "../../proto/types.ts";
import { TransportError, type Listener, type StreamConn } from "../../transport/api.ts";
import type { ServiceContext } from "./context.ts";

export const SECURE_MAX_RECORD = 1 << 24;
export const SECURE_HANDSHAKE_TIMEOUT_MS = 10_000;
const PREFIX_SERVER = 1;
const PREFIX_CLIENT = 2;

export function deriveSecureKey(shared: Uint8Array): Buffer {
  return createHash("sha256").update("pilot-secure-v1:").update(shared).digest();
}

/** One record for `plain` (nonce = prefix ‖ u64 counter). */
export function sealRecord(key: Uint8Array, prefix: number, counter: bigint, plain: Uint8Array): Uint8Array {
  const nonce = Buffer.alloc(12);
  nonce.writeUInt32BE(prefix, 0);
  nonce.writeBigUInt64BE(counter, 4);
  const c = createCipheriv("aes-256-gcm", key, nonce);
  const ct = c.update(plain);
  c.final();
  const tag = c.getAuthTag();
  const out = new Uint8Array(4 + 12 + ct.length + 16);
  new DataView(out.buffer).setUint32(0, 12 + ct.length + 16);
  out.set(nonce, 4);
  out.set(ct, 16);
  out.set(tag, 16 + ct.length);
  return out;
}

export function openRecord(key: Uint8Array, nonce: Uint8Array, body: Uint8Array): Uint8Array {
  if (body.length < 16) throw new ProtoError("decrypt_failed", "decrypt: message authentication failed", "the record is shorter than a GCM tag");
  try {
    const d = createDecipheriv("aes-256-gcm", key, nonce);
    d.setAuthTag(body.subarray(body.length - 16));
    const pt = d.update(body.subarray(0, body.length - 16));
    d.final();
    return new Uint8Array(pt);
  } catch {
    throw new ProtoError("decrypt_failed", "decrypt: message authentication failed", "wrong key or tampered record");
  }
}

export class SecureConn {
  /** One call per received record, with its plaintext. */
  onData: ((plain: Uint8Array) => void) | null = null;
  /** Channel ended: peer closed (no error) or a record was invalid (ProtoError) — the stream is aborted then. */
  onClose: ((err?: Error) => void) | null = null;
  private sendCtr = 1n;
  private recvCtr = 1n;
  private buf: Uint8Array = new Uint8Array(0);
  private closed = false;

  constructor(readonly conn: StreamConn, private readonly key: Uint8Array, readonly role: "client" | "server", pending: Uint8Array) {
    conn.onData = (c) => this.feed(c);
    conn.onEnd = () => this.close();
    conn.onClose = (e) => this.close(e);
    if (pending.length) queueMicrotask(() => this.feed(pending));
  }

  private get ownPrefix() { return this.role === "server" ? PREFIX_SERVER : PREFIX_CLIENT; }
  private get peerPrefix() { return this.role === "server" ? PREFIX_CLIENT : PREFIX_SERVER; }

  write(plain: Uint8Array): boolean {
    return this.conn.write(sealRecord(this.key, this.ownPrefix, this.sendCtr++, plain));
  }

  end(): void { this.conn.end(); }

  private close(err?: Error) {
    if (this.closed) return;
    this.closed = true;
    this.onClose?.(err);
  }

  private fail(e: ProtoError) {
    this.close(e);
    try { this.conn.abort(); } catch {}
  }

  private feed(chunk: Uint8Array) {
    if (this.closed) return;
    let b = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    let off = 0;
    while (b.length - off >= 4) {
      const L = new DataView(b.buffer, b.byteOffset + off, 4).getUint32(0);
      if (L < 12) return this.fail(new ProtoError("record_too_short", "encrypted message too short", "records carry a 12-byte nonce"));
      if (L > SECURE_MAX_RECORD) return this.fail(new ProtoError("record_too_large", `encrypted message too large: ${L} bytes`, `records are limited to ${SECURE_MAX_RECORD} bytes`));
      if (b.length - off < 4 + L) break;
      const nonce = b.subarray(off + 4, off + 16);
      const dv = new DataView(nonce.buffer, nonce.byteOffset, 12);
      if (dv.getUint32(0) !== this.peerPrefix || dv.getBigUint64(4) !== this.recvCtr) {
        return this.fail(new ProtoError("bad_nonce", "unexpected record nonce (reflected or out of order)", "records must carry the peer's role prefix and consecutive counters"));
      }
      let plain: Uint8Array;
      try {
        plain = openRecord(this.key, nonce, b.subarray(off + 16, off + 4 + L));
      } catch (e) {
        return this.fail(e as ProtoError);
      }
      this.recvCtr++;
      off += 4 + L;
      this.onData?.(plain);
      if (this.closed) return;
    }
    this.buf = off === b.length ? new Uint8Array(0) : b.slice(off);
  }
}

/** Run the handshake on a fresh stream: client writes first, server reads first. */
export function secureHandshake(conn: StreamConn, role: "client" | "server", timeoutMs = SECURE_HANDSHAKE_TIMEOUT_MS): Promise<SecureConn> {
  return new Promise((resolve, reject) => {
    const priv = x25519.utils.randomSecretKey();
    const pub = x25519.getPublicKey(priv);
    let got: Uint8Array = new Uint8Array(0);
    let done = false;
    const timer = setTimeout(() => finish(new TransportError("timeout", "secure handshake timed out")), timeoutMs);
    const finish = (err: Error | null, peer?: Uint8Array, rest?: Uint8Array) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      conn.onData = null;
      if (err) {
        try { conn.abort(); } catch {}
        return reject(err);
      }
      try {
        if (role === "server") conn.write(pub);
        const shared = x25519.getSharedSecret(priv, peer!);
        if (shared.every((x) => x === 0)) throw new ProtoError("low_order_key", "peer public key is low-order", "abort");
        resolve(new SecureConn(conn, deriveSecureKey(shared), role, rest!));
      } catch (e) {
        try { conn.abort(); } catch {}
        reject(e instanceof ProtoError || e instanceof TransportError ? e : new ProtoError("handshake_failed", String((e as Error).message), "invalid peer key"));
      }
    };
    conn.onData = (c) => {
      got = got.length ? Buffer.concat([got, c]) : c;
      if (got.length >= 32) finish(null, got.slice(0, 32), got.slice(32));
    };
    conn.onEnd = () => finish(new TransportError("closed", "connection closed during secure handshake"));
    conn.onClose = (e) => finish(e ?? new TransportError("closed", "connection closed during secure handshake"));
    if (role === "client") {
      try { conn.write(pub); } catch (e) { finish(e as Error); }
    }
  });
}

/** Serve the secure channel on `port` (default 443); `onConn` receives each established channel. */
export function startSecureServer(ctx: ServiceContext, onConn: (s: SecureConn) => void, port = 443): Listener {
  return ctx.listen(port, (conn) => {
    secureHandshake(conn, "server").then(onConn, (e) => ctx.log.debug("secure handshake failed", { error: String(e?.message ?? e) }));
  });
}
