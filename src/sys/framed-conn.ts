// The one framed-message TCP connection of the registry protocol's clients (daemon registry client,
// hot standby, pilotctl): dialed through dialTcp (deadline, optional pinned TLS); messages are
// encoded and decoded by an injected codec (the registry's u32 length + JSON framing lives with
// the other codecs); a bounded write backlog and a bounded receive queue; one close reason.
//
// Sends issued in the same event-loop turn leave in one socket write. Decoded messages go either
// to an `onMessage` callback or, without one, to the `messages()` async iterator, which pauses
// reading while the consumer lags. A codec error (oversized, empty or malformed frame) closes the
// connection with the codec's error code as the reason: the stream cannot be resynchronised.
import type { Socket } from "bun";
import { dialTcp } from "./tcp-dial.ts";

/** Incremental decoder of one connection: bytes in, whole messages out. */
export interface MessageDecoder {
  /** Throws an Error with a string `code` on a frame that cannot be decoded. */
  push(chunk: Uint8Array): unknown[];
  /** Bytes buffered, not yet returned as messages (the codec bounds it by its frame limit). */
  readonly pending: number;
  /** Set when a frame failed after push() returned the messages before it; checked after them. */
  readonly error?: Error | null;
}

export interface FrameCodec {
  /** One message as one frame; throws an Error with a string `code` when it cannot be framed. */
  encode(msg: unknown): Uint8Array;
  decoder(): MessageDecoder;
}

export interface CloseReason {
  /**
   * `closed` (local close), `eof` (the peer closed), `socket_error`, `idle_timeout`,
   * `write_backlog`, `receive_backlog`, or the codec's error code (`frame_too_large`, ...).
   */
  code: string;
  message: string;
}

export type FramedConnErrorCode = "closed";

export class FramedConnError extends Error {
  constructor(readonly code: FramedConnErrorCode, message: string, readonly hint = "") {
    super(message);
    this.name = "FramedConnError";
  }
}

export interface FramedConnOptions {
  codec: FrameCodec;
  /** Runs synchronously once connected, before any message or close event. */
  ready?(conn: FramedConn): void;
  /** Without it, messages queue for messages(). */
  onMessage?(msg: unknown, conn: FramedConn): void;
  /** Runs once, after the socket is gone. */
  onClose?(reason: CloseReason, conn: FramedConn): void;
  /** Close after this many seconds without inbound bytes (0 = never). */
  idleTimeoutS?: number;
  /** TCP keepalive with this initial delay. */
  keepAliveMs?: number;
  /** Unsent bytes above which the connection is closed (`write_backlog`). Default 16 MiB. */
  maxWriteBacklog?: number;
  /** Queued messages (iterator mode) above which reading pauses. Default 64. */
  maxQueued?: number;
}

export interface FramedDialOptions extends FramedConnOptions {
  host: string;
  port: number;
  /** Lower-case hex SHA-256 of the server's leaf certificate: dial TLS and accept only that one. */
  pin?: string;
  timeoutMs: number;
}

const DEFAULT_WRITE_BACKLOG = 16 << 20;
const DEFAULT_MAX_QUEUED = 64;

export class FramedConn {
  private readonly dec: MessageDecoder;
  private batch: Uint8Array[] = [];
  private batchBytes = 0;
  private batchQueued = false;
  private outq: Uint8Array[] = [];
  private outBytes = 0;
  private reason: CloseReason | null = null;
  private localReason: CloseReason | null = null;
  private queue: unknown[] = [];
  private paused = false;
  private wake: (() => void) | null = null;
  private resolveClosed!: (r: CloseReason) => void;
  /** Settles with the close reason once the socket is gone. */
  readonly closed: Promise<CloseReason> = new Promise((r) => (this.resolveClosed = r));

  constructor(private readonly sock: Socket<undefined>, private readonly o: FramedConnOptions) {
    this.dec = o.codec.decoder();
    if (o.idleTimeoutS) sock.timeout(o.idleTimeoutS);
    if (o.keepAliveMs !== undefined) {
      try { (sock as unknown as { setKeepAlive?(on: boolean, ms: number): void }).setKeepAlive?.(true, o.keepAliveMs); } catch {}
    }
  }

  /** True once close() was called or the socket is gone. */
  get isClosed(): boolean {
    return this.reason !== null || this.localReason !== null;
  }

  /** Bytes received but not yet decoded into a message. */
  get pendingBytes(): number {
    return this.dec.pending;
  }

  /** Encode and queue one message (throws the codec's error, or FramedConnError `closed`). */
  send(msg: unknown): void {
    this.sendRaw(this.o.codec.encode(msg));
  }

  /** Queue bytes as they are (already framed, or filler a peer ignores). */
  sendRaw(bytes: Uint8Array): void {
    if (this.isClosed) throw new FramedConnError("closed", "connection closed", "reconnect");
    this.batch.push(bytes);
    this.batchBytes += bytes.length;
    if (this.batchQueued) return;
    this.batchQueued = true;
    setImmediate(() => this.writeBatch());
  }

  /**
   * Close with a reason (reported to onClose and `closed`). Graceful (queued bytes are flushed
   * first) unless `abort`.
   */
  close(code = "closed", message = "connection closed", abort = false): void {
    if (this.isClosed) return;
    this.localReason = { code, message };
    this.batch = [];
    try {
      if (abort) this.sock.terminate();
      else this.sock.end();
    } catch {}
  }

  /**
   * Decoded messages (when no onMessage callback is set), for one reader; returns the close
   * reason when the connection is gone. Reading pauses while more than `maxQueued` messages wait
   * (the queue can exceed it by the messages of one received chunk).
   */
  async *messages(): AsyncGenerator<unknown, CloseReason, void> {
    for (;;) {
      if (this.queue.length) {
        const m = this.queue.shift();
        if (this.paused && this.queue.length <= (this.o.maxQueued ?? DEFAULT_MAX_QUEUED) / 2) {
          this.paused = false;
          this.sock.resume();
        }
        yield m;
        continue;
      }
      if (this.reason) return this.reason;
      await new Promise<void>((r) => (this.wake = r));
    }
  }

  // ------------------------------------------------------------------ socket events

  /** @internal */
  onData(chunk: Uint8Array): void {
    if (this.reason) return;
    let msgs: unknown[];
    try {
      msgs = this.dec.push(chunk);
    } catch (e) {
      this.failed(e as Error);
      return;
    }
    for (const m of msgs) {
      if (this.localReason) return; // closed by a handler: drop the rest
      if (this.o.onMessage) {
        this.o.onMessage(m, this);
        continue;
      }
      this.queue.push(m);
    }
    const late = this.dec.error;
    if (late && !this.localReason) {
      this.failed(late);
      return;
    }
    if (!this.o.onMessage && msgs.length) {
      if (!this.paused && this.queue.length > (this.o.maxQueued ?? DEFAULT_MAX_QUEUED)) {
        this.paused = true;
        this.sock.pause();
      }
      this.wakeReader();
    }
  }

  /** @internal */
  onDrain(): void {
    while (this.outq.length) {
      const f = this.outq[0];
      const n = this.sock.write(f);
      if (n < f.length) {
        this.outq[0] = f.subarray(Math.max(0, n));
        this.outBytes -= Math.max(0, n);
        return;
      }
      this.outq.shift();
      this.outBytes -= f.length;
    }
  }

  /** @internal */
  onTimeout(): void {
    this.close("idle_timeout", `no data for ${this.o.idleTimeoutS} s`, true);
  }

  /** @internal */
  onSocketClose(err?: Error): void {
    if (this.reason) return;
    this.reason = this.localReason ?? (err ? { code: "socket_error", message: err.message } : { code: "eof", message: "connection closed by the peer" });
    this.batch = [];
    this.outq = [];
    this.outBytes = 0;
    this.wakeReader();
    this.resolveClosed(this.reason);
    this.o.onClose?.(this.reason, this);
  }

  private failed(e: Error & { code?: unknown }): void {
    this.close(typeof e.code === "string" ? e.code : "malformed_frame", e.message, true);
  }

  private wakeReader(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  private writeBatch(): void {
    this.batchQueued = false;
    const parts = this.batch;
    const total = this.batchBytes;
    this.batch = [];
    this.batchBytes = 0;
    if (!parts.length || this.isClosed) return;
    let frame = parts[0];
    if (parts.length > 1) {
      frame = new Uint8Array(total);
      let o = 0;
      for (const f of parts) { frame.set(f, o); o += f.length; }
    }
    if (!this.outq.length) {
      const n = this.sock.write(frame);
      if (n >= frame.length) return;
      frame = frame.subarray(Math.max(0, n));
    }
    this.outq.push(frame);
    this.outBytes += frame.length;
    const max = this.o.maxWriteBacklog ?? DEFAULT_WRITE_BACKLOG;
    if (this.outBytes > max) this.close("write_backlog", `peer not reading: more than ${max} bytes unsent`, true);
  }
}

/** Dial and wrap; rejects with the DialError of dialTcp. */
export async function dialFramed(o: FramedDialOptions): Promise<FramedConn> {
  let conn: FramedConn | null = null;
  await dialTcp<undefined>({
    host: o.host,
    port: o.port,
    pin: o.pin,
    timeoutMs: o.timeoutMs,
    ready(s) {
      conn = new FramedConn(s, o);
      o.ready?.(conn);
    },
    on: {
      data: (_s, chunk) => conn?.onData(chunk),
      drain: () => conn?.onDrain(),
      timeout: () => conn?.onTimeout(),
      close: () => conn?.onSocketClose(),
      error: (_s, e) => conn?.onSocketClose(e),
    },
  });
  return conn!;
}
