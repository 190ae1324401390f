// The stream side of the trust handshake on port 444: one message per stream. Sending writes the
// whole message in ONE write (a reference receiver reads a single segment) and closes shortly
// after; receiving accumulates segments until the JSON is complete, within a size and time bound.
import { encodeHandshakeMsg, MAX_MESSAGE_BYTES, type HandshakeMsg } from "../../proto/handshake.ts";
import { PORT_HANDSHAKE } from "../../proto/types.ts";
import type { StreamConn } from "../../transport/api.ts";
import type { ServiceContext } from "./context.ts";
import { TrustError, type Verdict } from "./trust-decide.ts";
import { utf8, utf8Lossy } from "./util.ts";

/** An inbound stream that has not delivered a complete message by then is closed. */
export const RECV_TIMEOUT_MS = 10_000;
/** A sending stream is closed this long after its write (the receiver never answers on it). */
export const SEND_CLOSE_DELAY_MS = 500;
/** Our receiver accumulates up to this many bytes of a segmented message. */
const MAX_ACCUMULATE = 64 * 1024;

/** Dial node `to` on port 444 and send `m`. Rejects on dial or write failure, or an oversized message. */
export async function sendHandshake(ctx: Pick<ServiceContext, "dial">, to: number, m: HandshakeMsg): Promise<void> {
  const bytes = utf8.encode(encodeHandshakeMsg(m));
  if (bytes.length > MAX_MESSAGE_BYTES) {
    throw new TrustError("message_too_large", `handshake message too large (${bytes.length} bytes, max ${MAX_MESSAGE_BYTES}); shorten the justification`);
  }
  const conn = await ctx.dial({ network: 0, node: to >>> 0 }, PORT_HANDSHAKE);
  try {
    conn.write(bytes);
  } catch (e) {
    conn.abort();
    throw e;
  }
  conn.onData = () => {}; // the receiver never replies on this stream
  const t = setTimeout(() => {
    try {
      conn.end();
    } catch {
      /* already closed */
    }
  }, SEND_CLOSE_DELAY_MS);
  (t as { unref?: () => void }).unref?.();
}

/**
 * Receive one message from an inbound stream. `done` is called exactly once: with the raw bytes
 * of a complete JSON text, or with the reason there is none ("decode": not JSON / too long,
 * "timeout": nothing complete in time). `closed` is called when the stream has closed.
 */
export function receiveHandshake(conn: StreamConn, done: (verdict: Verdict | null, raw: Uint8Array | null) => void, closed: () => void): void {
  const parts: Uint8Array[] = [];
  let total = 0;
  let finished = false;
  const finish = (verdict: Verdict | null, raw: Uint8Array | null): void => {
    if (finished) return;
    finished = true;
    clearTimeout(timer);
    conn.onData = () => {};
    done(verdict, raw);
  };
  const timer = setTimeout(() => {
    finish("timeout", null);
    try {
      conn.end();
    } catch {
      /* already closed */
    }
  }, RECV_TIMEOUT_MS);
  (timer as { unref?: () => void }).unref?.();
  const tryParse = (final: boolean): void => {
    const buf = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
    // Accept the message once it is complete JSON, however it was segmented.
    try {
      JSON.parse(utf8Lossy.decode(buf));
    } catch {
      if (final || total > MAX_ACCUMULATE) finish("decode", null);
      return;
    }
    finish(null, buf);
  };
  conn.onData = (chunk) => {
    if (finished) return;
    parts.push(chunk.slice()); // the chunk may be a view into a transport buffer
    total += chunk.length;
    tryParse(false);
  };
  conn.onEnd = () => {
    if (finished) return;
    if (total > 0) tryParse(true);
    else finish("decode", null);
  };
  conn.onClose = () => {
    closed();
    if (!finished) finish(total > 0 ? "decode" : "timeout", null);
  };
}
