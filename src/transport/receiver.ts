// Receive side: reassembly of out-of-order segments, the SACK blocks describing them, in-order
// delivery to the application (with flow control while paused), and the advertised window.
// Pure bookkeeping: the connection decides when to acknowledge.
import { MSS } from "../proto/types.ts";
import { freeBuffer } from "../sys/free-buffer.ts";
import type { ConnTuning } from "./conn-types.ts";
import { seqGt, seqLe, seqLt, u32 } from "./seq.ts";

const EMPTY = new Uint8Array(0);
/** Data held for a paused reader is copied into blocks of this size (one allocation per 16 segments). */
const KEEP_BLOCK = 64 * 1024;
/** Delivered blocks kept for reuse per connection (the rest go to the collector). */
const SPARE_BLOCKS = 8;

export class Receiver {
  /** Next expected sequence number (our cumulative ack). */
  rcvNxt = 0;
  private ooo = new Map<number, Uint8Array>();
  private oooBytes = 0;
  /** Flat sorted [left, right) pairs of buffered out-of-order data (our SACK blocks). */
  readonly blocks: number[] = [];
  paused = false;
  private rq: Uint8Array[] = [];
  private rqHead = 0;
  // The block copies for `rq` go into, and how much of it is used.
  private blk: Uint8Array | null = null;
  private blkOff = 0;
  // Filled blocks whose data still waits in `rq` (each a view ending where its data ends), oldest
  // first, and blocks whose data was all delivered, reused instead of allocating: a reader paused
  // for a whole transfer used to leave a new 64 KiB block behind every 16 segments for the
  // collector (90 MB of them in one benchmark run), and with it the daemon's peak memory.
  private sealed: Uint8Array[] = [];
  private sealedHead = 0;
  private spare: Uint8Array[] = [];
  /** Bytes received in order, not yet delivered to onData. */
  buffered = 0;
  /** No more data is accepted or delivered (connection closing). */
  closed = false;
  private delivering = false;
  // The peer's end, held until the queued data is delivered (holdEnd).
  private onDrained: (() => void) | null = null;
  private onDataFn: ((chunk: Uint8Array) => void) | null = null;
  bytesRecv = 0;
  segsRecv = 0;

  constructor(private readonly tune: ConnTuning) {}

  get onData(): ((chunk: Uint8Array) => void) | null {
    return this.onDataFn;
  }
  set onData(f: ((chunk: Uint8Array) => void) | null) {
    this.onDataFn = f;
    // data that arrived before the application attached its handler is kept, not lost
    if (f && !this.paused && this.rqHead < this.rq.length) this.flush();
  }

  /** Out-of-order segments held for reassembly. */
  get oooSegments(): number {
    return this.ooo.size;
  }

  /**
   * Advertised window in segments: free receive buffer / MSS, clamped to 1..65535. Never 0 while
   * the connection is usable: a reference sender reads 0 as "no limit". The soft buffer may
   * exceed the reference's 512 segments; the field keeps its meaning.
   */
  window(): number {
    const free = this.tune.recvBufBytes - this.buffered;
    let w = Math.floor(free / MSS);
    if (w < 1) w = 1;
    else if (w > 65535) w = 65535;
    return w;
  }

  /** Beyond the hard limit in-order data is dropped (the peer ignored our window). */
  overrun(): boolean {
    return this.buffered >= this.tune.recvHardBytes;
  }

  /**
   * The segment at rcvNxt: deliver it and whatever it makes contiguous. `payload` is only valid
   * during the call: it is delivered as a view, and copied only if it has to wait. Returns whether
   * out-of-order data was buffered before it.
   */
  acceptInOrder(payload: Uint8Array): boolean {
    const hadOoo = this.ooo.size > 0;
    this.rcvNxt = u32(this.rcvNxt + payload.length);
    this.deliver(payload);
    if (hadOoo) this.drainOoo();
    return hadOoo;
  }

  /** A segment beyond rcvNxt: buffer it (bounded). Returns whether it opened the first hole. */
  acceptAhead(seq: number, payload: Uint8Array): boolean {
    const first = this.ooo.size === 0;
    const len = payload.length;
    if (!this.ooo.has(seq) && this.oooBytes + len <= this.tune.oooMaxBytes) {
      this.ooo.set(seq, this.tune.payloadsOwned ? payload : new Uint8Array(payload)); // kept beyond the call: a copy
      this.oooBytes += len;
      this.addBlock(seq, u32(seq + len));
    }
    return first;
  }

  /** A segment starting before rcvNxt: deliver its new tail, if any (the reference drops it whole). */
  acceptOverlap(seq: number, payload: Uint8Array): void {
    const end = u32(seq + payload.length);
    if (seqGt(end, this.rcvNxt) && this.buffered < this.tune.recvHardBytes) {
      const hadOoo = this.ooo.size > 0;
      const tail = new Uint8Array(payload.subarray(u32(this.rcvNxt - seq))); // a copy (a Buffer's slice() is a view)
      this.rcvNxt = end;
      this.deliver(tail, true);
      if (hadOoo) this.drainOoo();
    }
  }

  private drainOoo(): void {
    const ooo = this.ooo;
    for (;;) {
      const d = ooo.get(this.rcvNxt);
      if (!d) break;
      ooo.delete(this.rcvNxt);
      this.oooBytes -= d.length;
      this.rcvNxt = u32(this.rcvNxt + d.length);
      this.deliver(d, true);
      if (this.closed) return;
    }
    // drop SACK blocks now covered by the cumulative ack
    const b = this.blocks;
    let k = 0;
    while (k < b.length && seqLe(b[k + 1], this.rcvNxt)) k += 2;
    if (k > 0) b.splice(0, k);
    if (b.length > 0 && seqLt(b[0], this.rcvNxt)) b[0] = this.rcvNxt;
    if (b.length === 0 && ooo.size > 0) {
      // only stale entries (a peer that re-sliced its data) remain: purge them
      ooo.clear();
      this.oooBytes = 0;
    }
  }

  /** Insert [l, r) into the sorted, merged block list (touching blocks merge, as the reference). */
  private addBlock(l: number, r: number): void {
    const b = this.blocks;
    let i = 0;
    while (i < b.length && seqLt(b[i + 1], l)) i += 2;
    if (i === b.length || seqLt(r, b[i])) {
      b.splice(i, 0, l, r);
      return;
    }
    if (seqLt(l, b[i])) b[i] = l;
    if (seqGt(r, b[i + 1])) b[i + 1] = r;
    // merge following blocks now overlapped
    while (i + 2 < b.length && seqLe(b[i + 2], b[i + 1])) {
      if (seqGt(b[i + 3], b[i + 1])) b[i + 1] = b[i + 3];
      b.splice(i + 2, 2);
    }
  }

  /** `owned`: a copy already (it may be kept as it is). */
  private deliver(chunk: Uint8Array, owned = false): void {
    this.bytesRecv += chunk.length;
    const f = this.onDataFn;
    if (this.paused || this.delivering || this.rqHead < this.rq.length || !f) {
      if (owned || this.tune.payloadsOwned) this.rq.push(chunk);
      else this.keep(chunk); // kept beyond the call: copied
      this.buffered += chunk.length;
      if (!this.paused && !this.delivering && this.onDataFn) this.flush();
      return;
    }
    this.delivering = true;
    try {
      f(chunk);
    } finally {
      this.delivering = false;
    }
    if (!this.paused && this.rqHead < this.rq.length) this.flush();
  }

  /**
   * Queue a copy of `chunk` for later delivery: appended to the current block, and merged into
   * the queue's last entry when that ends where the copy starts (fewer, larger deliveries).
   */
  private keep(chunk: Uint8Array): void {
    const n = chunk.length;
    let b = this.blk;
    if (!b || this.blkOff + n > b.length) {
      if (b && this.blkOff > 0) this.sealed.push(b.subarray(0, this.blkOff));
      b = this.blk = (n <= KEEP_BLOCK && this.spare.pop()) || new Uint8Array(Math.max(KEEP_BLOCK, n));
      this.blkOff = 0;
    }
    const at = this.blkOff;
    b.set(chunk, at);
    this.blkOff = at + n;
    const rq = this.rq;
    const last = rq.length > this.rqHead ? rq[rq.length - 1] : null;
    if (last && last.buffer === b.buffer && last.byteOffset + last.length === at) rq[rq.length - 1] = b.subarray(last.byteOffset, at + n);
    else rq.push(b.subarray(at, at + n));
  }

  /** The peer ended: with data still queued, run `end` once it is delivered and say true. */
  holdEnd(end: () => void): boolean {
    if (this.rqHead === this.rq.length || this.closed) return false;
    this.onDrained = end;
    return true;
  }

  /** An end is held for queued data. */
  get endHeld(): boolean {
    return this.onDrained !== null;
  }

  /** Deliver buffered data while not paused. */
  flush(): void {
    if (this.delivering) return;
    this.delivering = true;
    try {
      while (!this.paused && this.onDataFn && this.rqHead < this.rq.length && !this.closed) {
        const c = this.rq[this.rqHead];
        this.rq[this.rqHead++] = EMPTY;
        this.buffered -= c.length;
        this.onDataFn(c);
        if (this.sealedHead < this.sealed.length) this.release(c);
      }
    } finally {
      this.delivering = false;
    }
    if (this.rqHead === this.rq.length) {
      this.rq.length = 0;
      this.rqHead = 0;
      // everything copied so far was delivered (delivered data is only valid during the call)
      this.blkOff = 0;
      if (this.sealedHead > 0) this.sealed.length = this.sealedHead = 0;
      const end = this.onDrained;
      if (end && !this.closed) {
        this.onDrained = null;
        end();
      }
    }
  }

  /** `c` was delivered: when it is the last data of the oldest filled block, that block is free. */
  private release(c: Uint8Array): void {
    const s = this.sealed[this.sealedHead];
    if (c.buffer !== s.buffer || c.byteOffset + c.length !== s.byteOffset + s.length) return;
    this.sealed[this.sealedHead++] = EMPTY;
    if (this.sealedHead === this.sealed.length) this.sealed.length = this.sealedHead = 0;
    if (s.buffer.byteLength === KEEP_BLOCK && this.spare.length < SPARE_BLOCKS) this.spare.push(new Uint8Array(s.buffer));
    else freeBuffer(s.buffer);
  }

  clear(): void {
    this.ooo.clear();
    this.oooBytes = 0;
    this.blocks.length = 0;
    this.rq.length = 0;
    this.rqHead = 0;
    this.buffered = 0;
    this.blk = null;
    this.blkOff = 0;
    this.onDrained = null;
    this.sealed.length = this.sealedHead = 0;
    for (const b of this.spare) freeBuffer(b.buffer);
    this.spare.length = 0;
  }
}
