// One IPC client of the daemon: its replies (strictly in request order), its connections and
// bound ports, and every bound on what it can make the daemon hold. Requests are read only while
// the client keeps up: reading stops while its unsent replies exceed a limit (a client that
// writes requests and never reads its replies used to grow the daemon without bound) and resumes
// once they drain; a client that stays stuck past a timeout is closed with a logged reason.
import { FrameDecoder, MAX_FRAME } from "../proto/framing.ts";
import { CMD_RECV, encodeIpcFrame, type IpcMsg } from "../proto/ipc.ts";
import type { StreamConn } from "../transport/api.ts";
import type { BufferedSocket } from "../sys/buffered-socket.ts";
import { freeBuffer } from "../sys/free-buffer.ts";

/** Client frames may exceed 1 MiB (the reference driver does not chunk its Sends). */
const MAX_CLIENT_FRAME = 16 * 1024 * 1024 + 64;
/**
 * Socket write-buffer level above which connection pushes pause (end-to-end backpressure). A
 * push the kernel did not take whole does not pause by itself: a Unix socket's buffer is smaller
 * than one coalesced Recv, so that happened on most pushes of a bulk transfer, and the
 * transport then copied every segment arriving meanwhile into its paused-reader queue (57 % of
 * a bulk stream's bytes, measured). Half the Recv buffers a client keeps for reuse, so the
 * oldest of them has been written by the time it is needed again.
 */
const PUSH_HIGH_WATER = 512 * 1024;
/** Largest data per Recv push so the frame stays within 1 MiB (cmd + conn_id = 5 bytes). */
const MAX_RECV_DATA = MAX_FRAME - 5;
/** Connections waiting for a BindOK (the reference's accept queue length). */
export const ACCEPT_QUEUE = 64;
/** Recv pushes coalesce up to this many bytes per connection per event-loop turn. */
const RECV_COALESCE = 256 * 1024;
/** Header of a Recv frame: u32 length, command byte, u32 conn_id. */
const RECV_HEAD = 9;
/** Recv frame buffers a client keeps for reuse. */
const RECV_POOL = 4;

function put32(b: Uint8Array, o: number, v: number): void {
  b[o] = v >>> 24;
  b[o + 1] = v >>> 16;
  b[o + 2] = v >>> 8;
  b[o + 3] = v;
}
/** How often connections that blocked a client's Sends are checked for having closed. */
const SEND_BLOCK_CHECK_MS = 500;

export type Reply = IpcMsg | null;

/** Per-client limits (IpcServer options; the defaults suit production). */
export interface ClientLimits {
  /** Unsent reply bytes above which the client's requests are no longer read (default 4 MiB). */
  replyHighWater: number;
  /** Replies still being computed above which requests are no longer read (default 4096). */
  maxPendingReplies: number;
  /** A client whose replies stay over the limit with no byte accepted for this long is closed (default 60 s). */
  stallTimeoutMs: number;
}

export const DEFAULT_CLIENT_LIMITS: ClientLimits = {
  replyHighWater: 4 * 1024 * 1024,
  maxPendingReplies: 4096,
  stallTimeoutMs: 60_000,
};

/** What a Client needs from its server. */
export interface ClientHost {
  readonly limits: ClientLimits;
  warn(msg: string, e: unknown): void;
  /** Log that a client is being closed, with the reason and its numbers. */
  dropped(reason: string, fields: Record<string, unknown>): void;
  /** Handle the client's queued request frames while it may (Client.nextFrame says when it may). */
  pump(c: Client): void;
  /** The client is gone: forget it and release what it held. */
  remove(c: Client): void;
}

const discard = (): void => {};

export class Client {
  readonly decoder = new FrameDecoder(MAX_CLIENT_FRAME);
  readonly ports = new Map<number, () => void>();
  readonly conns = new Map<number, StreamConn>();
  private replyChain: Promise<void> = Promise.resolve();
  private pausedConns = new Set<StreamConn>();
  /** Connections whose write() returned false: the client's socket is not read until all drain. */
  private sendBlocked = new Set<StreamConn>();
  private sendBlockTimer: ReturnType<typeof setInterval> | null = null;
  closed = false;
  dgramDropped = 0;
  /** Request frames read but not yet handled (reading stops while any wait). */
  private frames: Uint8Array[] = [];
  private frameHead = 0;
  /** Bytes of `frames` not yet handled. */
  queuedBytes = 0;
  /** Replies enqueued and not yet written. */
  pendingReplies = 0;
  /** Bytes of frame data the server's cross-client budget has granted this client. */
  reserved = 0;
  /** Waiting for the cross-client budget: reading stops until granted. */
  budgetWait = false;
  private stallTimer: ReturnType<typeof setInterval> | null = null;
  private stallMark = -1;
  private stallSince = 0;

  constructor(
    readonly sock: BufferedSocket,
    private readonly srv: ClientHost,
  ) {
    sock.on("drain", () => {
      this.congested = false;
      this.acceptsWhileCongested = 0;
      // Take the set first: resuming delivers buffered data, which may pause (and re-add) a
      // connection again before this loop ends.
      const paused = [...this.pausedConns];
      this.pausedConns.clear();
      for (const c of paused) c.resume();
      this.srv.pump(this);
    });
  }

  /** A write returned false and no 'drain' has followed yet: the client is not keeping up. */
  congested = false;
  /** Accepts written since the socket last reported congestion (reset on drain). */
  acceptsWhileCongested = 0;

  /** May one more Accept be pushed? False once 64 are queued behind a client that is not reading. */
  acceptSlot(): boolean {
    if (!this.congested) return true;
    return ++this.acceptsWhileCongested <= ACCEPT_QUEUE;
  }

  /**
   * Write one message; never throws. An oversized Recv is split into pushes of at most 1 MiB
   * (the stream is bytes to the receiver) and an unencodable reply is replaced by an Error
   * carrying the reason, so the client still gets exactly one reply.
   */
  write(msg: IpcMsg, reply = false): boolean {
    if (this.closed || this.sock.destroyed) return false;
    if (msg.cmd === "Recv" && msg.data.length > MAX_RECV_DATA) {
      let ok = true;
      for (let off = 0; off < msg.data.length; off += MAX_RECV_DATA) {
        ok = this.write({ cmd: "Recv", connId: msg.connId, data: msg.data.subarray(off, off + MAX_RECV_DATA) });
      }
      return ok;
    }
    let frame: Uint8Array;
    try {
      frame = encodeIpcFrame(msg, MAX_FRAME);
    } catch (e) {
      if (msg.cmd === "Error") return true;
      return this.write({ cmd: "Error", code: 1, message: (e as Error).message }, reply);
    }
    const ok = this.writeFrame(frame);
    if (!ok && reply) this.noteUnsentReply(frame.length);
    return ok;
  }

  /**
   * Recv frame buffers written (or queued) on the socket, oldest first, each with the socket's
   * byte count at which it is fully written; reused after that instead of allocating 256 KiB per
   * push. At most RECV_POOL are kept.
   */
  private recvPool: { buf: Uint8Array; end: number }[] = [];

  private recycleRecvBuf(buf: Uint8Array, written: boolean): void {
    if (this.recvPool.length >= RECV_POOL) {
      // nobody holds a frame the kernel took whole: free it now rather than at the next collection
      if (written) freeBuffer(buf.buffer);
      return;
    }
    this.recvPool.push({ buf, end: written ? 0 : this.sock.written + this.sock.writableLength });
  }

  private reusableRecvBuf(): Uint8Array | null {
    const p = this.recvPool[0];
    if (!p || p.end > this.sock.written) return null;
    this.recvPool.shift();
    return p.buf;
  }

  /** Write one complete, already encoded frame (a push). False when (part of) it was queued. */
  writeFrame(frame: Uint8Array): boolean {
    if (this.closed || this.sock.destroyed) return false;
    const ok = this.sock.write(frame);
    if (!ok) this.congested = true;
    return ok;
  }

  /**
   * Reply bytes still in the socket queue. Pushes (stream data, accepts, datagrams) have their own
   * bounds and a client may stop reading them on purpose (flow control of a stream it relays, while
   * it keeps sending on it); only replies it does not collect hold back its requests.
   */
  private replyEnds: { end: number; len: number }[] = [];
  private replyEndsHead = 0;
  private unsentReplies = 0;

  private noteUnsentReply(len: number): void {
    this.replyEnds.push({ end: this.sock.written + this.sock.writableLength, len });
    this.unsentReplies += len;
  }

  /** Bytes of replies not yet handed to the kernel (a reply partly written counts whole). */
  get unsentReplyBytes(): number {
    const written = this.sock.written;
    while (this.replyEndsHead < this.replyEnds.length && this.replyEnds[this.replyEndsHead].end <= written) {
      this.unsentReplies -= this.replyEnds[this.replyEndsHead].len;
      this.replyEndsHead++;
    }
    if (this.replyEndsHead === this.replyEnds.length) {
      this.replyEnds = [];
      this.replyEndsHead = 0;
    } else if (this.replyEndsHead >= 1024 && this.replyEndsHead * 2 >= this.replyEnds.length) {
      this.replyEnds = this.replyEnds.slice(this.replyEndsHead);
      this.replyEndsHead = 0;
    }
    return this.unsentReplies;
  }

  get backlog(): number {
    return this.sock.writableLength;
  }

  /** Queue a reply in request order. `p` resolves to the reply (or null: nothing to send). */
  enqueue(p: Promise<Reply> | Reply, after?: () => void): void {
    this.pendingReplies++;
    const prev = this.replyChain;
    this.replyChain = (async () => {
      let r: Reply;
      try {
        r = await p;
      } catch (e) {
        r = { cmd: "Error", code: 1, message: (e as Error).message };
      }
      await prev;
      // FIX: the chain must never reject (a rejected link loses every later reply and crashes
      // the daemon as an unhandled rejection); write() no longer throws and `after` is guarded.
      if (r) this.write(r, true);
      try {
        after?.();
      } catch (e) {
        this.srv.warn("ipc reply hook failed", e);
      }
      this.pendingReplies--;
      if (this.frameHead < this.frames.length || this.sock.paused) this.srv.pump(this);
    })();
  }

  /** Unsent replies are over the limit: requests are not handled (nor read) until they drain. */
  get backlogged(): boolean {
    const l = this.srv.limits;
    return this.pendingReplies >= l.maxPendingReplies || this.unsentReplyBytes > l.replyHighWater;
  }

  /** Queue request frames just decoded from the socket. */
  queueFrames(frames: Uint8Array[]): void {
    for (const f of frames) {
      this.frames.push(f);
      this.queuedBytes += f.length;
    }
  }

  /** Next request frame to handle, or null when none waits or the client must first catch up. */
  nextFrame(): Uint8Array | null {
    if (this.closed || this.frameHead >= this.frames.length || this.backlogged) return null;
    const f = this.frames[this.frameHead++];
    this.queuedBytes -= f.length;
    if (this.frameHead === this.frames.length) {
      this.frames = [];
      this.frameHead = 0;
    } else if (this.frameHead >= 1024 && this.frameHead * 2 >= this.frames.length) {
      this.frames = this.frames.slice(this.frameHead);
      this.frameHead = 0;
    }
    return f;
  }

  /**
   * Read the socket only while nothing holds the client back: a blocked Send, the cross-client
   * frame budget, unsent replies over the limit, or request frames still waiting to be handled.
   * While replies are over the limit, a client that accepts no byte for stallTimeoutMs is closed.
   */
  updateReading(): void {
    if (this.closed) return;
    const backlogged = this.backlogged;
    const stop = backlogged || this.budgetWait || this.sendBlocked.size > 0 || this.frameHead < this.frames.length;
    if (stop && !this.sock.paused) this.sock.pause();
    else if (!stop && this.sock.paused) this.sock.resume();
    if (backlogged && !this.stallTimer) {
      this.stallMark = this.sock.written;
      this.stallSince = Date.now();
      const every = Math.max(20, Math.min(1000, Math.floor(this.srv.limits.stallTimeoutMs / 4)));
      this.stallTimer = setInterval(() => this.checkStall(), every);
    } else if (!backlogged && this.stallTimer) {
      clearInterval(this.stallTimer);
      this.stallTimer = null;
    }
  }

  private checkStall(): void {
    if (this.closed || !this.backlogged) {
      this.updateReading();
      return;
    }
    // Stuck means replies wait and no byte was taken; replies still being computed (e.g. many
    // slow Dials) are not the client's fault.
    if (this.sock.written !== this.stallMark || this.unsentReplyBytes === 0) {
      this.stallMark = this.sock.written;
      this.stallSince = Date.now();
      return;
    }
    const stalled = Date.now() - this.stallSince;
    if (stalled < this.srv.limits.stallTimeoutMs) return;
    this.srv.dropped("not reading its replies", {
      unsent_bytes: this.sock.writableLength,
      unsent_reply_bytes: this.unsentReplyBytes,
      pending_replies: this.pendingReplies,
      stalled_ms: stalled,
    });
    this.cleanup();
    this.sock.destroy();
  }

  /** Own a connection: push its data (Recv), its end (CloseOK) and honour backpressure. */
  adopt(c: StreamConn): void {
    if (this.closed) {
      // FIX: a connection accepted (or dialed) for a client that has already gone used to be
      // recorded in a map nobody cleans any more, leaking an open connection. Close it instead.
      c.onData = discard;
      c.resume();
      c.end();
      return;
    }
    this.conns.set(c.id, c);
    let ended = false;
    // Recv coalescing: segments delivered during one event-loop turn are pushed
    // as one Recv of up to RECV_COALESCE bytes instead of one 4 KiB push each. Receivers treat
    // the stream as bytes, so fewer, larger pushes are invisible to them but cut
    // the frame count (and both sides' per-message cost) by up to 64x on bulk transfers.
    // The data is gathered straight into a complete Recv frame (RECV_HEAD bytes of header room),
    // so the push costs no second copy, and the buffer is reused when the socket took it whole.
    let pend: Uint8Array | null = null;
    let pendLen = 0;
    let scheduled = false;
    const flushRecv = (): void => {
      scheduled = false;
      if (!pend || pendLen === 0) return;
      const buf = pend;
      const n = pendLen;
      pend = null;
      pendLen = 0;
      if (this.closed) return;
      let ok: boolean;
      if (n <= MAX_RECV_DATA) {
        put32(buf, 0, n + 5);
        buf[4] = CMD_RECV;
        put32(buf, 5, c.id);
        ok = this.writeFrame(buf.subarray(0, RECV_HEAD + n));
        if (buf.length === RECV_HEAD + RECV_COALESCE) this.recycleRecvBuf(buf, ok);
      } else {
        ok = this.write({ cmd: "Recv", connId: c.id, data: buf.subarray(RECV_HEAD, RECV_HEAD + n) });
      }
      if (this.backlog > PUSH_HIGH_WATER) {
        c.pause();
        this.pausedConns.add(c);
      }
    };
    const fresh = (min: number): Uint8Array => (min <= RECV_COALESCE && this.reusableRecvBuf()) || new Uint8Array(RECV_HEAD + Math.max(RECV_COALESCE, min));
    const finish = () => {
      if (ended) return;
      ended = true;
      flushRecv(); // every Recv precedes the CloseOK that ends the stream
      this.conns.delete(c.id);
      this.write({ cmd: "CloseOK", connId: c.id });
    };
    c.onData = (chunk) => {
      if (this.closed) return;
      if (!pend) pend = fresh(chunk.length);
      else if (RECV_HEAD + pendLen + chunk.length > pend.length) {
        flushRecv();
        pend = fresh(chunk.length);
      }
      pend.set(chunk, RECV_HEAD + pendLen); // copy: the chunk may be a view into a transport buffer
      pendLen += chunk.length;
      if (pendLen >= RECV_COALESCE) flushRecv();
      else if (!scheduled) {
        scheduled = true;
        setImmediate(flushRecv);
      }
    };
    c.onEnd = finish;
    c.onClose = () => finish();
    if (c.state === "CLOSED") finish();
    c.resume();
  }

  /**
   * Send backpressure: stop reading the client until `conn` drains.
   * FIX: the socket used to be resumed only by the connection's onDrain. A connection that closed
   * (RST, abort, idle timeout) while blocked never drains, which froze the client for good: none
   * of its later requests (even Info) were read. Now the client is also released when the
   * connection is no longer writable, and it stays paused while ANY blocked connection is full
   * (several connections blocking at once used to resume on the first drain).
   */
  blockSend(conn: StreamConn): void {
    if (this.closed || this.sendBlocked.has(conn)) return;
    this.sendBlocked.add(conn);
    this.updateReading();
    const prev = conn.onDrain;
    const hook = (): void => {
      if (conn.onDrain === hook) conn.onDrain = prev;
      this.unblockSend(conn);
      prev?.();
    };
    conn.onDrain = hook;
    if (!this.sendBlockTimer) {
      this.sendBlockTimer = setInterval(() => {
        for (const b of this.sendBlocked) {
          if (b.state !== "ESTABLISHED") this.unblockSend(b);
        }
      }, SEND_BLOCK_CHECK_MS);
    }
  }

  private unblockSend(conn: StreamConn): void {
    if (!this.sendBlocked.delete(conn)) return;
    if (this.sendBlocked.size > 0) return;
    if (this.sendBlockTimer) clearInterval(this.sendBlockTimer);
    this.sendBlockTimer = null;
    this.srv.pump(this);
  }

  cleanup(): void {
    if (this.closed) return;
    this.closed = true;
    // Close owned connections (FIN), then unbind ports.
    for (const c of this.conns.values()) {
      // FIX: connections paused for this client's backpressure stayed paused forever, so their
      // receive side (and the peer's FIN behind the buffered data) was never processed and the
      // connection never finished closing. Discard further data and resume before the FIN.
      c.onData = discard;
      c.onEnd = c.onClose = null;
      try {
        c.resume();
        c.end();
      } catch {
        /* already closed */
      }
    }
    this.conns.clear();
    this.pausedConns.clear();
    this.sendBlocked.clear();
    if (this.sendBlockTimer) clearInterval(this.sendBlockTimer);
    this.sendBlockTimer = null;
    for (const unbind of this.ports.values()) unbind();
    this.ports.clear();
    if (this.stallTimer) clearInterval(this.stallTimer);
    this.stallTimer = null;
    this.frames = [];
    this.frameHead = 0;
    this.queuedBytes = 0;
    this.srv.remove(this);
  }
}
