// In-memory StreamConn pairs and a tiny in-memory "network" of listeners, for testing services
// without the real transport. Models the properties services depend on, with the real
// connection's states (ESTABLISHED, FIN_WAIT after end(), TIME_WAIT after the peer's end, CLOSED):
//  * each write is split into segments of at most `mss` bytes (4096), delivered one onData call
//    per segment, asynchronously and in order; optional random splitting exercises decoders;
//  * write() returns false above a high-water mark of undelivered bytes, onDrain fires once the
//    backlog falls below the low-water mark; pause() on the receiver stops delivery, so a slow
//    reader pushes back on the writer exactly like a closed receive window;
//  * no half-close: end() delivers queued data then onEnd at the peer, after which neither side
//    can write (TIME_WAIT); onClose fires on both sides afterwards; abort() resets both.
import type { Addr } from "../../src/proto/types.ts";
import { TransportError, type Listener, type StreamConn, type StreamStats } from "../../src/transport/api.ts";

export interface MemConnOptions {
  mss?: number;
  highWater?: number;
  lowWater?: number;
  /** Split each write at random points (1..mss bytes per segment); value = seed. */
  randomSplitSeed?: number;
}

let nextId = 1;

function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13; s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5; s >>>= 0;
    return s / 0x100000000;
  };
}

export class MemConn implements StreamConn {
  readonly id = nextId++;
  peer!: MemConn;
  state = "ESTABLISHED";
  onData: ((chunk: Uint8Array) => void) | null = null;
  onEnd: (() => void) | null = null;
  onClose: ((err?: import("../../src/transport/api.ts").TransportError) => void) | null = null;
  onDrain: (() => void) | null = null;
  /** Reported at once for handed-over buffers: write() copies, so no view is kept. */
  onAcked: ((chunk: Uint8Array) => void) | null = null;

  /** segments queued towards the peer */
  private q: Uint8Array[] = [];
  private qHead = 0;
  private qBytes = 0;
  private finQueued = false;
  private needDrain = false;
  private paused = false;
  private scheduled = false;
  private closed = false;
  private bytesSent = 0;
  private bytesRecv = 0;
  private segsSent = 0;
  private segsRecv = 0;
  private readonly mss: number;
  private readonly high: number;
  private readonly low: number;
  private readonly rand: (() => number) | null;

  constructor(
    readonly localAddr: Addr,
    readonly localPort: number,
    readonly remoteAddr: Addr,
    readonly remotePort: number,
    opts: MemConnOptions = {},
  ) {
    this.mss = opts.mss ?? 4096;
    this.high = opts.highWater ?? 256 * 1024;
    this.low = opts.lowWater ?? 64 * 1024;
    this.rand = opts.randomSplitSeed !== undefined ? rng(opts.randomSplitSeed) : null;
  }

  write(data: Uint8Array, owned?: boolean): boolean {
    if (this.state !== "ESTABLISHED") {
      throw new TransportError("closed", "connection closed");
    }
    let off = 0;
    while (off < data.length) {
      let n = Math.min(this.mss, data.length - off);
      if (this.rand) n = 1 + Math.floor(this.rand() * n);
      // copy: the caller may reuse its buffer after write() returns (not data.slice(): on a
      // Node Buffer, such as a socket read, slice() is a view)
      this.q.push(Uint8Array.prototype.slice.call(data, off, off + n));
      this.qBytes += n;
      off += n;
    }
    if (owned) this.onAcked?.(data);
    this.schedule();
    if (this.qBytes > this.high) {
      this.needDrain = true;
      return false;
    }
    return true;
  }

  end(): void {
    if (this.closed || this.finQueued) return;
    if (this.state === "TIME_WAIT") { this.finish(); return; }
    this.finQueued = true;
    this.state = "FIN_WAIT";
    this.schedule();
  }

  abort(): void {
    if (this.closed) return;
    const p = this.peer;
    this.dropQueue();
    this.finish();
    if (!p.closed) {
      p.dropQueue();
      p.finish(new TransportError("connection_reset", "connection reset by peer"));
    }
  }

  setNoDelay(_on: boolean): void {}
  pause(): void { this.paused = true; }
  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    this.peer.schedule();
  }

  stats(): StreamStats {
    return {
      bytesSent: this.bytesSent, bytesRecv: this.bytesRecv, segsSent: this.segsSent, segsRecv: this.segsRecv,
      retransmits: 0, fastRetransmits: 0, srttMs: 0, rttvarMs: 0, rtoMs: 0, cwnd: 0, ssthresh: 0,
      inFlight: 0, peerWindow: 0, sendBuffered: this.qBytes, recvBuffered: 0,
    };
  }

  private dropQueue(): void {
    this.q = []; this.qHead = 0; this.qBytes = 0; this.finQueued = false;
  }

  private finish(err?: TransportError): void {
    if (this.closed) return;
    this.closed = true;
    this.state = "CLOSED";
    const cb = this.onClose;
    setImmediate(() => cb?.(err));
  }

  private schedule(): void {
    if (this.scheduled || this.closed) return;
    this.scheduled = true;
    setImmediate(() => this.pump());
  }

  /** Deliver queued segments to the peer (up to 64 per tick so timers/IO interleave). */
  private pump(): void {
    this.scheduled = false;
    if (this.closed) return;
    const p = this.peer;
    let budget = 64;
    while (this.qHead < this.q.length && budget-- > 0) {
      if (p.paused || p.closed) break;
      if (!p.onData) break; // receiver has not attached yet: hold data (as a real receive buffer would)
      const seg = this.q[this.qHead]!;
      this.q[this.qHead++] = undefined as unknown as Uint8Array;
      this.qBytes -= seg.length;
      this.bytesSent += seg.length; this.segsSent++;
      p.bytesRecv += seg.length; p.segsRecv++;
      try { p.onData(seg); } catch { /* a throwing handler must not break the pump */ }
      if (this.closed) return;
    }
    if (this.qHead === this.q.length) { this.q = []; this.qHead = 0; }
    if (this.needDrain && this.qBytes <= this.low) {
      this.needDrain = false;
      try { this.onDrain?.(); } catch {}
    }
    if (this.qHead < this.q.length) {
      if (!p.paused && !p.closed && p.onData) this.schedule();
      else if (!p.onData && !p.closed) setTimeout(() => this.schedule(), 1);
      return;
    }
    if (this.finQueued && !p.closed) {
      this.finQueued = false;
      // No half-close: the receiver of the FIN can no longer send.
      p.state = "TIME_WAIT";
      p.dropQueue();
      try { p.onEnd?.(); } catch {}
      const self = this;
      setImmediate(() => { p.finish(); self.finish(); });
    }
  }
}

export function memConnPair(
  a: { addr: Addr; port: number },
  b: { addr: Addr; port: number },
  opts: MemConnOptions = {},
): [MemConn, MemConn] {
  const x = new MemConn(a.addr, a.port, b.addr, b.port, opts);
  const y = new MemConn(b.addr, b.port, a.addr, a.port, opts);
  x.peer = y;
  y.peer = x;
  return [x, y];
}

/** Nodes with listeners; dial(from, to, port) connects in memory. */
export class MemNet {
  private listeners = new Map<string, (c: StreamConn) => void>();
  private nextPort = 49152;
  opts: MemConnOptions = {};

  listen(addr: Addr, port: number, onAccept: (c: StreamConn) => void): Listener {
    const k = addr.network + ":" + addr.node + ":" + port;
    if (this.listeners.has(k)) throw new TransportError("port_in_use", `port ${port} already bound`);
    this.listeners.set(k, onAccept);
    return { port, close: () => { this.listeners.delete(k); } };
  }

  async dial(from: Addr, to: Addr, port: number): Promise<StreamConn> {
    // Handshake messages are addressed to `0:<node>` (docs/protocol.md §10.2): match on node only when
    // the target network is 0.
    let cb = this.listeners.get(to.network + ":" + to.node + ":" + port);
    if (!cb && to.network === 0) {
      for (const [k, v] of this.listeners) {
        const [, n, p] = k.split(":");
        if (Number(n) === to.node && Number(p) === port) { cb = v; break; }
      }
    }
    if (!cb) throw new TransportError("connection_refused", `connection refused: port ${port}`);
    const [client, server] = memConnPair({ addr: from, port: this.nextPort++ }, { addr: to, port }, this.opts);
    if (this.nextPort > 65535) this.nextPort = 49152;
    await Promise.resolve();
    cb(server);
    return client;
  }
}
