// Send side, part 1: the write buffer, the retransmission queue of sent segments, the windows,
// and transmission (Nagle, repairs before new data). ACK processing, loss detection and recovery
// build on this in sender.ts.
import { MSS } from "../proto/types.ts";
import type { StreamStats } from "./api.ts";
import type { CongestionControl } from "./congestion.ts";
import type { ConnHost, ConnState, ConnTuning } from "./conn-types.ts";
import { RttEstimator } from "./rtt.ts";
import { SendBuffer } from "./sendbuf.ts";
import { seqLe, u32 } from "./seq.ts";

const NAGLE_MS = 40;
const EMPTY = new Uint8Array(0);

/** One segment in the retransmission queue. Boundaries are permanent (never re-sliced). */
export class Seg {
  sentAt = 0;
  tx = 0; // transmissions so far
  sacked = false;
  lost = false; // declared lost (RACK or RTO) and not yet retransmitted: excluded from pipe
  epoch = -1; // recovery epoch in which it was last retransmitted
  constructor(
    readonly seq: number,
    readonly data: Uint8Array,
  ) {}
}

/** What the send side needs from its connection. */
export interface SendOwner {
  readonly state: ConnState;
  /** Put one data segment on the wire (flags ACK, the current ack and window). */
  emitSegment(seq: number, data: Uint8Array): void;
  /** The write buffer fell below the low-water mark after write() returned false. */
  drained(): void;
  /** FIN_WAIT and everything sent and acknowledged: time for our FIN. */
  sendDone(): void;
  /** Told of each tracked chunk once all its bytes are acknowledged (StreamConn.onAcked). */
  readonly onAcked: ((chunk: Uint8Array) => void) | null;
}

export type SendCounters = Pick<StreamStats, "bytesSent" | "segsSent" | "retransmits" | "fastRetransmits">;

export class SendQueue {
  sndUna = 1;
  sndNxt = 1;
  readonly buf = new SendBuffer();
  protected q: Seg[] = [];
  protected qHead = 0;
  protected sackedBytes = 0;
  protected lostBytes = 0; // bytes of segments with lost = true
  protected lostCount = 0;
  /** Peer's advertised window, segments, as received. */
  peerWnd = 0;
  protected noDelay = false;
  nagleAt = Infinity;
  nagleExpired = false;
  protected wantDrain = false;
  /** Retransmission timer deadline. */
  rtoAt = Infinity;
  // recovery state read by transmission (set by the loss detection in Sender)
  inRecovery = false;
  protected epoch = 0;
  protected epRetx = 0; // retransmissions in this episode
  dupAcks = 0;
  readonly rtt = new RttEstimator();
  readonly st: SendCounters = { bytesSent: 0, segsSent: 0, retransmits: 0, fastRetransmits: 0 };

  constructor(
    protected readonly t: ConnHost,
    protected readonly o: SendOwner,
    protected readonly tune: ConnTuning,
    readonly cc: CongestionControl,
  ) {}

  // Tracked chunks, oldest first, and the sequence number just past each one's last byte.
  private held: Uint8Array[] = [];
  private heldEnd: number[] = [];
  private heldHead = 0;

  /**
   * Queue application bytes (already copied or handed over by the caller). `track`: report the
   * chunk to the owner's onAcked once it is acknowledged: no segment is sent from it again.
   */
  enqueue(data: Uint8Array, track = false): void {
    this.buf.push(data);
    if (track) {
      this.held.push(data);
      this.heldEnd.push(u32(this.sndNxt + this.buf.bytes));
    }
  }

  /** Report the tracked chunks the cumulative ACK now covers. */
  protected releaseAcked(): void {
    const held = this.held, ends = this.heldEnd;
    let i = this.heldHead;
    if (i === held.length) return;
    const f = this.o.onAcked;
    while (i < held.length && seqLe(ends[i], this.sndUna)) {
      const c = held[i];
      held[i++] = EMPTY;
      f?.(c);
    }
    if (i === held.length) {
      held.length = ends.length = 0;
      i = 0;
    } else if (i > 256 && i * 2 > held.length) {
      this.held = held.slice(i);
      this.heldEnd = ends.slice(i);
      i = 0;
    }
    this.heldHead = i;
  }

  setNoDelay(on: boolean): void {
    this.noDelay = on;
  }

  /** Send as much queued data as the windows and Nagle allow. */
  pump(): void {
    const st = this.o.state;
    if (st !== "ESTABLISHED" && st !== "FIN_WAIT") return;
    if (this.lostCount > 0) this.sendLost(); // repairs before new data (RFC 6675 docs/protocol.md §6.4 rule 1)
    const buf = this.buf;
    while (buf.bytes > 0) {
      if (this.pipe() >= this.effWindow()) break; // window test "strictly less than"
      let n = buf.bytes < MSS ? buf.bytes : MSS;
      if (n < MSS && !this.noDelay && st !== "FIN_WAIT" && this.sndUna !== this.sndNxt && !this.nagleExpired) {
        // Nagle: hold a sub-MSS tail while data is in flight, at most 40 ms
        if (this.nagleAt === Infinity) this.nagleAt = this.t.now + NAGLE_MS;
        break;
      }
      // Never emit a segment that a reference receiver would swallow as a SACK option (it
      // matches the option's magic and length): send the 4 magic bytes alone (boundaries are
      // then kept for retransmission).
      if (n >= 13 && buf.peek(0) === 0x53 && buf.peek(1) === 0x41 && buf.peek(2) === 0x43 && buf.peek(3) === 0x4b) {
        const cnt = buf.peek(4);
        if (cnt >= 1 && cnt <= 4 && n >= 5 + 8 * cnt) n = 4;
      }
      const seg = new Seg(this.sndNxt, buf.cut(n));
      // queued before it is transmitted (the reference queues after, racing the ACK)
      this.q.push(seg);
      this.sndNxt = u32(this.sndNxt + n);
      if (n < MSS) {
        this.nagleAt = Infinity;
        this.nagleExpired = false;
      }
      this.xmit(seg, false);
      if (this.rtoAt === Infinity) this.rtoAt = this.t.now + this.rtt.rto;
    }
    if (buf.bytes === 0) {
      this.nagleAt = Infinity;
      this.nagleExpired = false;
    }
    if (this.wantDrain && buf.bytes <= this.tune.sendHighWater >> 1) {
      this.wantDrain = false;
      this.o.drained();
    }
    if (this.o.state === "FIN_WAIT" && buf.bytes === 0 && this.sndUna === this.sndNxt) this.o.sendDone();
  }

  /** write() accepted bytes: false (and a later drained()) above the high-water mark. */
  belowHighWater(): boolean {
    const ok = this.buf.bytes < this.tune.sendHighWater;
    if (!ok) this.wantDrain = true;
    return ok;
  }

  protected xmit(s: Seg, retx: boolean): void {
    s.sentAt = this.t.now;
    s.tx++;
    this.st.segsSent++;
    if (s.lost) {
      s.lost = false;
      this.lostBytes -= s.data.length;
      this.lostCount--;
    }
    if (this.inRecovery) this.cc.onRecoverySend(s.data.length);
    if (retx) {
      this.st.retransmits++;
      s.epoch = this.epoch;
      if (this.inRecovery) this.epRetx++;
    } else this.st.bytesSent += s.data.length;
    this.o.emitSegment(s.seq, s.data);
  }

  protected markLost(s: Seg): void {
    s.lost = true;
    this.lostBytes += s.data.length;
    this.lostCount++;
  }

  /** Resend segments declared lost, lowest first, while the window allows. */
  private sendLost(): void {
    const q = this.q;
    for (let i = this.qHead; i < q.length && this.lostCount > 0; i++) {
      const s = q[i];
      if (!s.lost) continue;
      if (this.pipe() >= this.effWindow()) return;
      this.xmit(s, true);
    }
  }

  protected firstUnsacked(): Seg | null {
    const q = this.q;
    for (let i = this.qHead; i < q.length; i++) if (!q[i].sacked) return q[i];
    return null;
  }

  /** Index of the first queued segment with seq >= x (binary search; segments are seq-ordered). */
  protected idxAtOrAfter(x: number): number {
    const q = this.q;
    const base = this.sndUna;
    const off = u32(x - base);
    let lo = this.qHead, hi = q.length;
    while (lo < hi) {
      const m = (lo + hi) >> 1;
      if (u32(q[m].seq - base) < off) lo = m + 1;
      else hi = m;
    }
    return lo;
  }

  /** RFC 6675 pipe: bytes in flight, not counting SACKed segments nor those declared lost. */
  protected pipe(): number {
    return u32(this.sndNxt - this.sndUna) - this.sackedBytes - this.lostBytes;
  }

  /**
   * Effective send window: cwnd limited by the peer window. A peer window of 0 is "unknown" (a
   * reference keepalive carries 0, and a reference sender reads 0 as "no limit"): allow one
   * segment, which doubles as a data-carrying probe the reference acknowledges with its true
   * window — never a hard stop, never "no limit".
   */
  protected effWindow(): number {
    const pw = this.peerWnd === 0 ? MSS : this.peerWnd * MSS;
    // limited transmit (RFC 3042): each of the first two duplicate ACKs releases one segment
    const cwnd = this.cc.cwnd;
    const cw = this.inRecovery || this.dupAcks === 0 ? cwnd : cwnd + (this.dupAcks < 2 ? this.dupAcks : 2) * MSS;
    return cw < pw ? cw : pw;
  }

  /** Everything unsent and unacknowledged is dropped (connection closing). */
  clear(): void {
    this.buf.clear();
    this.held.length = this.heldEnd.length = this.heldHead = 0; // dropped unacknowledged: never reported
    this.q.length = 0;
    this.qHead = 0;
    this.sackedBytes = 0;
    this.lostBytes = this.lostCount = 0;
    this.sndUna = this.sndNxt;
    this.rtoAt = this.nagleAt = Infinity;
  }
}
