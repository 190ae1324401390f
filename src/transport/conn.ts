// One stream connection (transport.md §4-§11). Driven by Transport: packets in via on*(),
// timers via onTimer(); packets out via Transport.out(). No closures or timers per packet.
import {
  type Addr,
  FLAG_ACK,
  FLAG_FIN,
  FLAG_RST,
  FLAG_SYN,
  MSS,
  type Packet,
  PROTO_STREAM,
} from "../proto/types.ts";
import { decodeSackInto, encodeSackFlat } from "../proto/sack.ts";
import { type StreamConn, type StreamStats, TransportError } from "./api.ts";
import type { Timed } from "./timers.ts";
import type { Transport } from "./transport.ts";

// Serial-number arithmetic (RFC 1982), correct across the 2^32 wrap (the reference's SACK code
// is not, T17; ours is everywhere).
export const seqLt = (a: number, b: number) => ((a - b) | 0) < 0;
export const seqLe = (a: number, b: number) => ((a - b) | 0) <= 0;
export const seqGt = (a: number, b: number) => ((a - b) | 0) > 0;
export const seqGe = (a: number, b: number) => ((a - b) | 0) >= 0;
const u32 = (x: number) => x >>> 0;

export const S_SYN_SENT = "SYN_SENT";
export const S_ESTABLISHED = "ESTABLISHED";
export const S_FIN_WAIT = "FIN_WAIT"; // local end(): draining queued data before our FIN (T6 fix)
export const S_TIME_WAIT = "TIME_WAIT";
export const S_CLOSED = "CLOSED";

export const INITIAL_CWND = 10 * MSS;
const RTO_INITIAL = 1000;
const RTO_MIN = 200;
const RTO_MAX = 10_000;
const CLOCK_G = 10;
const DELAYED_ACK_MS = 40;
const NAGLE_MS = 40;
const EMPTY = new Uint8Array(0);
// T10 mitigation (see Conn.sendKeepalive): a SACK option with one EMPTY block [A, A).
const SACK_EMPTY_BLOCK = new Uint8Array(13);
SACK_EMPTY_BLOCK.set([0x53, 0x41, 0x43, 0x4b, 1]);
/** Wrap guard for that block: no SACK keepalive when RecvAck is this close below 2^32. */
const SACK_KA_WRAP_GUARD = 2 * 1048576;
/**
 * Multiplicative decrease on loss: 0.7 as CUBIC (RFC 9438 §4.6) rather than Reno's 0.5. Random
 * (non-congestion) loss is common on the paths this overlay crosses; with 0.5 a 5 % loss rate
 * pins the window at a few segments (Mathis bound). Still a decrease per loss round trip.
 */
const BETA = 0.7;

/** One segment in the retransmission queue. Boundaries are permanent (§6.3). */
class Seg {
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

export interface ConnTuning {
  recvBufBytes: number; // soft: advertised window is derived from it
  recvHardBytes: number; // in-order data beyond this is dropped (not acked)
  oooMaxBytes: number; // out-of-order bytes buffered
  sendHighWater: number;
  maxCwnd: number;
  maxRetx: number; // consecutive RTO expiries (with a silent peer) before abort
  dupAckBurst: boolean;
}

export class Conn implements StreamConn, Timed {
  scheduled = Infinity;
  dead = false; // removed from the table
  active = false; // counted in connection limits (SYN_SENT/ESTABLISHED/FIN_WAIT)
  private _state = S_CLOSED;

  // ---- send side
  iss = 0; // reference ISN 0 (keeps the reference's non-wrap-safe SACK code happy, §4.2)
  sndUna = 1;
  sndNxt = 1;
  private wq: Uint8Array[] = [];
  private wqHead = 0;
  private wqOff = 0;
  private wqBytes = 0;
  private q: Seg[] = [];
  private qHead = 0;
  private sackedBytes = 0;
  private lostBytes = 0; // bytes of segments with lost = true
  private lostCount = 0;
  private sackSeen = false; // the peer has sent SACK blocks: loss detection is RACK-only
  cwnd = INITIAL_CWND;
  ssthresh = 524288;
  private inRecovery = false;
  private rtoRecovery = false; // the current episode began with an RTO (no PRR, slow start)
  private recoveryPoint = 0;
  private epoch = 0;
  private dupAcks = 0;
  // ---- RACK (RFC 8985): time-based loss detection
  private minRtt = Infinity; // lowest RTT sample of the connection
  private rackXmit = -1; // send time of the most recently SENT segment known delivered
  private rackEnd = 0; // its end seq (tie-break among segments sent in the same ms)
  private rackRtt = 0; // its RTT
  private reoMult = 1; // reordering window = reoMult · minRtt/4 (capped at srtt)
  private reoBumpAt = 0; // at most one window increase per round trip
  private reoQuiet = 0; // recovery episodes since the last increase (16 → reset)
  private reoAt = Infinity; // RACK reorder timer: the next segment that may become lost
  // ---- recovery bookkeeping: PRR (RFC 6937) and undo of spurious reductions (Eifel, RFC 3522)
  private prrDelivered = 0;
  private prrOut = 0;
  private recoverFS = 0;
  private priorCwnd = 0;
  private priorSsthresh = 0;
  private epRetx = 0; // retransmissions in this episode
  private epSpurious = 0; // of which shown spurious (+ lost marks undone by a late arrival)
  /** Recovery diagnostics (tests, bench): not part of the StreamConn contract. */
  readonly rec = { episodes: 0, rtos: 0, spurious: 0, undos: 0 };
  private srtt = 0; // 0 = no sample yet
  private rttvar = 0;
  rto = RTO_INITIAL;
  private rtoAt = Infinity;
  private rtoStreak = 0;
  private streakResponses = 0;
  peerWnd = 0; // segments, as received
  private noDelay = false;
  private nagleAt = Infinity;
  private nagleExpired = false;
  private wantDrain = false;

  // ---- receive side
  irs = 0;
  rcvNxt = 0;
  private ooo = new Map<number, Uint8Array>();
  private oooBytes = 0;
  private blocks: number[] = []; // flat sorted [left,right) pairs of buffered OOO data
  private pendingAcks = 0;
  private ackAt = Infinity;
  private paused = false;
  private rq: Uint8Array[] = [];
  private rqHead = 0;
  private recvBuffered = 0;
  private lastAdvWnd = 0;
  private recvClosed = false;
  private delivering = false;
  private _onData: ((chunk: Uint8Array) => void) | null = null;
  // Model of the PEER's duplicate-ACK counter for the ACKs we send (T10, transport.md §9.1): the
  // reference counts by ack value only; the first packet carrying a new ack resets it, every later
  // pure (payload-less) ACK with the same ack increments it, non-pure ones are ignored.
  private dupModelAck = 0; // reference LastAck starts at 0
  private dupModelCount = 0;

  // ---- lifecycle
  lastHeard = 0; // anything ACK-flagged/FIN from the peer
  lastSent = 0; // any ACK-flagged packet we sent (keepalive clock)
  lastActivity = 0; // TIME_WAIT reaping
  synAt = Infinity;
  /** When the peer first acknowledged anything after the handshake (Infinity: not yet). */
  private syncedAt = Infinity;
  synRetries = 0;
  synTimeout = 1000;
  dialResolve: ((c: StreamConn) => void) | null = null;
  dialReject: ((e: TransportError) => void) | null = null;
  private finAcked = false;
  private finRtxAt = Infinity;
  private finRetries = 0;
  private lingerSeq = 0;
  private lingerAt = Infinity;
  private closeNotified = false;

  // ---- stats
  private st = { bytesSent: 0, bytesRecv: 0, segsSent: 0, segsRecv: 0, retransmits: 0, fastRetransmits: 0, sackRecv: 0, sackSent: 0 };

  onEnd: (() => void) | null = null;
  onClose: ((err?: TransportError) => void) | null = null;
  onDrain: (() => void) | null = null;

  constructor(
    private readonly t: Transport,
    readonly id: number,
    readonly localAddr: Addr,
    readonly localPort: number,
    readonly remoteAddr: Addr,
    readonly remotePort: number,
    private readonly tune: ConnTuning,
  ) {
    const now = t.now;
    this.lastHeard = now;
    this.lastSent = now;
    this.lastActivity = now;
    this.lastAdvWnd = this.ourWindow();
  }

  get state(): string {
    return this._state;
  }

  setState(s: string): void {
    this._state = s;
    const act = s === S_SYN_SENT || s === S_ESTABLISHED || s === S_FIN_WAIT;
    if (act !== this.active) {
      this.active = act;
      this.t.countActive(this.localPort, act ? 1 : -1);
    }
  }

  get onData(): ((chunk: Uint8Array) => void) | null {
    return this._onData;
  }
  set onData(f: ((chunk: Uint8Array) => void) | null) {
    this._onData = f;
    // data that arrived before the application attached its handler is kept, not lost
    if (f && !this.paused && this.rqHead < this.rq.length) this.flushRecv();
  }

  // =====================================================================================
  // packet construction
  private mk(flags: number, seq: number, ack: number, window: number, payload: Uint8Array): Packet {
    return {
      version: 1,
      flags,
      protocol: PROTO_STREAM,
      src: this.localAddr,
      dst: this.remoteAddr,
      srcPort: this.localPort,
      dstPort: this.remotePort,
      seq: u32(seq),
      ack: u32(ack),
      window,
      payload,
    };
  }

  /**
   * Advertised window in segments (§10): free receive buffer / MSS, clamped to 1..65535.
   * Never 0 while the connection is usable: the reference sender reads 0 as "no limit" (T3).
   * The soft buffer may exceed the reference's 512 segments; the field keeps its meaning.
   */
  ourWindow(): number {
    const free = this.tune.recvBufBytes - this.recvBuffered;
    let w = Math.floor(free / MSS);
    if (w < 1) w = 1;
    else if (w > 65535) w = 65535;
    return w;
  }

  sendSyn(): void {
    this.t.out(this.mk(FLAG_SYN, this.iss, 0, this.ourWindow(), EMPTY));
  }

  /** SYN+ACK, always with the ORIGINAL ISN (fixes T2: the reference resends SendSeq-1). */
  sendSynAck(): void {
    this.t.out(this.mk(FLAG_SYN | FLAG_ACK, this.iss, u32(this.irs + 1), this.ourWindow(), EMPTY));
  }

  private sendAckNow(): void {
    this.pendingAcks = 0;
    this.ackAt = Infinity;
    const nb = this.blocks.length >> 1;
    const payload = nb > 0 ? encodeSackFlat(this.blocks, nb) : EMPTY;
    if (nb > 0) this.st.sackSent++;
    const w = this.ourWindow();
    this.lastAdvWnd = w;
    this.lastSent = this.t.now;
    this.noteAckSent(this.rcvNxt, payload.length === 0);
    this.t.out(this.mk(FLAG_ACK, this.sndNxt, this.rcvNxt, w, payload));
  }

  private sendPureAck(): void {
    const w = this.ourWindow();
    this.lastAdvWnd = w;
    this.lastSent = this.t.now;
    this.noteAckSent(this.rcvNxt, true);
    this.t.out(this.mk(FLAG_ACK, this.sndNxt, this.rcvNxt, w, EMPTY));
  }

  /** Update the peer dup-ACK model for an ACK-flagged, non-SYN, non-FIN packet we send. */
  private noteAckSent(ack: number, pure: boolean): void {
    if (ack !== this.dupModelAck) {
      this.dupModelAck = ack; // a new ACK at the peer: its DupAckCount = 0
      this.dupModelCount = 0;
    } else if (pure) this.dupModelCount++;
  }

  /**
   * Keepalive (§11.6) and other REDUNDANT ACKs (window updates): ACK, seq = SendSeq,
   * ack = RecvAck. Two deliberate differences from the reference's keepalive:
   *
   *  * Window: our real advertised window (>= 1), not the reference's 0. Every ACK-flagged
   *    packet overwrites the peer window (§10) and a reference sender reads 0 as "no limit"
   *    (T3), so a 0 keepalive would lift flow control; §10's interop guidance says never to
   *    advertise 0 while the connection is usable.
   *
   *  * T10: a reference sender counts duplicate ACKs by ack value alone (§9.1), even with
   *    nothing outstanding, and the third one halves its cwnd and fast-retransmits. An idle
   *    connection's keepalives all repeat the same ack, so from the point where this packet
   *    would be the peer's THIRD (or later) pure duplicate — counted by the model in
   *    noteAckSent, which also sees delayed ACKs, window updates and our T9 burst — it carries
   *    a SACK option instead of an empty payload. Why this is safe for a reference peer:
   *      - §7.1/§8.2/wire.md §2.7: a payload matching the SACK predicate is processed as SACK and
   *        then dropped (never data, never an error); §9.1 step 2 ignores a non-pure ACK with
   *        ack == LastAck, so the dup counter stays where it is (no reset, no increment);
   *      - it is still an ACK-flagged packet, so §7.1 step 1 refreshes the peer's last-activity
   *        (the keepalive's whole purpose, §11.6/T21) and step 2 takes our window;
   *      - the block is EMPTY, [RecvAck, RecvAck): truthful (it claims no byte), and the
   *        reference's match "Left <= seq && seq+len <= Right" (§8.3) cannot hold for a queued
   *        segment (len >= 1, seq >= RecvAck once this packet's cumulative ack — processed before
   *        the SACK, §7.1 — removed the rest). RFC-style processors (ours: processSack) discard
   *        a block with Left >= Right. An empty block rather than a D-SACK-like [A-1, A) so a
   *        D-SACK-aware sender does not read it as "a retransmission was spurious".
   *      - Exception: the reference's SACK compare is not wrap-safe (T17); with RecvAck within
   *        2 MiB below 2^32 a queued segment straddling the wrap (the reference has at most
   *        ~1 MiB in flight) could be falsely marked SACKed and then skipped by its
   *        retransmission. There we send the plain keepalive and accept T10's cwnd cut on an
   *        idle connection, the lesser harm. (ISN 0: only after ~4 GiB in that direction.)
   *    The first two keepalives after the last new ACK stay byte-identical to the reference's
   *    (apart from the window), so short idle periods look exactly like a reference peer.
   */
  private sendKeepalive(): void {
    const ack = this.rcvNxt;
    if (this.dupModelAck === ack && this.dupModelCount >= 2 && u32(-ack) > SACK_KA_WRAP_GUARD) {
      const w = this.ourWindow();
      this.lastAdvWnd = w;
      this.lastSent = this.t.now;
      const p = new Uint8Array(SACK_EMPTY_BLOCK); // payloads are handed off; never share one
      const dv = new DataView(p.buffer);
      dv.setUint32(5, ack);
      dv.setUint32(9, ack);
      this.noteAckSent(ack, false);
      this.t.out(this.mk(FLAG_ACK, this.sndNxt, ack, w, p));
    } else this.sendPureAck();
  }

  /** FIN: flags FIN only, seq = SendSeq, ack 0, window 0 (wire.md §2.8; FIN consumes no seq). */
  private sendFin(): void {
    this.t.out(this.mk(FLAG_FIN, this.sndNxt, 0, 0, EMPTY));
  }

  // =====================================================================================
  // handshake
  /** Active side: SYN-ACK received in SYN_SENT (§4.1 step 5). */
  onSynAck(p: Packet): void {
    if (this._state !== S_SYN_SENT) return; // duplicates / other states: ignored (reference)
    this.irs = p.seq;
    this.rcvNxt = u32(p.seq + 1);
    this.peerWnd = p.window;
    this.lastHeard = this.t.now;
    this.synAt = Infinity;
    this.setState(S_ESTABLISHED);
    this.sendPureAck();
    const res = this.dialResolve;
    this.dialResolve = this.dialReject = null;
    this.rearm();
    if (res) res(this);
  }

  /** Passive side: called by Transport after creating the connection from a SYN (§4.2). */
  acceptSyn(p: Packet): void {
    this.irs = p.seq;
    this.rcvNxt = u32(p.seq + 1);
    this.peerWnd = p.window;
    this.sndUna = this.sndNxt = u32(this.iss + 1);
    this.setState(S_ESTABLISHED);
    this.sendSynAck();
    this.rearm();
  }

  /**
   * A SYN on this connection's 4-tuple: is it from a new incarnation of the peer (restarted, same
   * port) rather than a retransmission of the SYN that opened this connection? A different ISN
   * says so at once. With the same ISN (everyone uses 0) a retransmission can only have been sent
   * before the peer received our SYN+ACK, so it cannot arrive long after the peer's first ACK:
   * beyond twice the RTO (at least 1 s) of reordering slack, the SYN is a new connection.
   */
  isNewIncarnation(syn: Packet): boolean {
    if (this._state === S_SYN_SENT) return false;
    if (syn.seq !== this.irs) return true;
    if (this.syncedAt === Infinity) return false;
    return this.t.now - this.syncedAt > Math.max(2 * this.rto, 1000);
  }

  startDial(): void {
    this.sndUna = this.sndNxt = u32(this.iss + 1);
    this.setState(S_SYN_SENT);
    this.sendSyn();
    this.synTimeout = 1000;
    this.synAt = this.t.now + this.synTimeout;
    this.rearm();
  }

  // SYN retransmission (§4.3): 1 s doubling to 8 s, 6 retransmissions, then dial_timeout.
  private synExpired(): void {
    this.synRetries++;
    const switched = this.t.host.onSynTimeout?.(this.remoteAddr, this.synRetries) === true;
    if (this.synRetries > this.t.dialMaxRetries) {
      this.failDial(new TransportError("dial_timeout", "dial timeout"));
      return;
    }
    if (switched) this.synTimeout = 1000; // path changed (relay): restart the backoff
    this.sendSyn();
    this.synTimeout = Math.min(this.synTimeout * 2, 8000);
    this.synAt = this.t.now + this.synTimeout;
  }

  failDial(err: TransportError): void {
    const rej = this.dialReject;
    this.dialResolve = this.dialReject = null;
    this.closeNotified = true;
    this.setState(S_CLOSED);
    this.t.remove(this);
    if (rej) rej(err);
  }

  // =====================================================================================
  // inbound ACK / data (§7.1)
  private sackTmp = new Uint32Array(8);

  onAck(p: Packet): void {
    const now = this.t.now;
    this.lastHeard = now;
    this.lastActivity = now;
    const oldWnd = this.peerWnd;
    this.peerWnd = p.window;
    if (this.rtoStreak > 0) this.streakResponses++;
    const st = this._state;
    if (st === S_SYN_SENT || st === S_CLOSED) return;
    if (this.syncedAt === Infinity) this.syncedAt = now;
    const payload = p.payload;
    const nS = payload.length >= 5 ? decodeSackInto(payload, this.sackTmp) : 0;
    if (nS > 0) this.st.sackRecv++;
    const isPure = payload.length === 0;

    if (st !== S_TIME_WAIT) {
      const a = p.ack;
      if (this.sndUna !== this.sndNxt) {
        const una0 = this.sndUna, sacked0 = this.sackedBytes, ep0 = this.rec.episodes;
        if (nS > 0) this.sackSeen = true;
        // T13 fix: an ack beyond SendSeq is ignored instead of trusted
        if (seqGt(a, this.sndUna) && seqLe(a, this.sndNxt)) this.newAck(a);
        // Duplicate ACKs only matter for a peer that never SACKs: with SACK, RACK decides (a
        // pure duplicate is then a keepalive, a window update or our own T9 burst — no signal).
        else if (!this.sackSeen && a === this.sndUna && isPure && p.window === oldWnd) this.dupAcks++;
        if (nS > 0) this.processSack(nS);
        if (this.pendSpurious > 0) this.onSpurious(now);
        this.lossDetect();
        if (this.inRecovery && !this.rtoRecovery) {
          // PRR: DeliveredData = advance of the cumulative ACK + change in SACKed bytes
          this.prrUpdate(u32(this.sndUna - una0) + this.sackedBytes - sacked0, this.rec.episodes !== ep0);
        }
        // window re-opened after our probe was dropped by a full receiver: resend now rather than
        // wait out a backed-off RTO (slow-reader recovery).
        if (this.rtoStreak > 0 && p.window > oldWnd && oldWnd <= 1 && this.sndUna !== this.sndNxt) {
          const s = this.firstUnsacked();
          if (s) this.xmit(s, true);
          this.rtoStreak = 0;
          this.rto = this.computeRto();
          this.rtoAt = now + this.rto;
        }
      }
      if (payload.length > 0 && nS === 0) this.recvData(p.seq, payload);
      if (!this.dead) this.pump();
    } else if (this.lingerAt !== Infinity && payload.length > 0 && nS === 0) {
      this.recvData(p.seq, payload); // T6: late in-flight data after the peer's FIN
    }
    if (!this.dead) this.rearm();
  }

  private newAck(a: number): void {
    const now = this.t.now;
    const acked = u32(a - this.sndUna);
    this.sndUna = a;
    this.dupAcks = 0;
    this.rtoStreak = 0;
    // pop fully acknowledged segments from the head: O(segments acked)
    const q = this.q;
    let i = this.qHead;
    let sampleAt = -1;
    let clean = !this.inRecovery;
    while (i < q.length) {
      const s = q[i];
      if (!seqLe(s.seq + s.data.length, a)) break;
      if (s.sacked) {
        this.sackedBytes -= s.data.length;
        clean = false;
      } else {
        this.delivered(s, now);
        if (s.tx === 1) sampleAt = s.sentAt; // Karn: only never-retransmitted segments
        else clean = false;
      }
      q[i] = undefined as unknown as Seg;
      i++;
    }
    // An ACK that jumps over a repaired hole was delayed by the repair, not by the path:
    // no sample from it (SACK arrivals give precise samples instead, see processSack).
    if (!clean) sampleAt = -1;
    this.qHead = i;
    if (i === q.length) {
      q.length = 0;
      this.qHead = 0;
    } else if (i > 1024 && i * 2 > q.length) {
      this.q = q.slice(i);
      this.qHead = 0;
    }
    if (sampleAt >= 0) this.rttSample(now - sampleAt);
    if (this.inRecovery && seqGe(a, this.recoveryPoint)) {
      // episode over. After fast recovery PRR has brought cwnd to about ssthresh; after an RTO
      // cwnd has been slow-starting from the loss window and keeps its value.
      this.inRecovery = false;
      if (!this.rtoRecovery) this.cwnd = Math.max(this.ssthresh, 2 * MSS);
      this.rtoRecovery = false;
    } else if (this.inRecovery && !this.rtoRecovery) {
      // fast recovery: PRR sets cwnd in onAck. Partial ACKs need no NewReno special case: the
      // repaired head was sent later than the next hole, so RACK declares that hole lost.
    } else if (this.cwnd < this.ssthresh) {
      // slow start with appropriate byte counting, L = 2·MSS per ACK (RFC 3465)
      this.cwnd += Math.min(acked, 2 * MSS);
    } else {
      this.cwnd += Math.max(1, Math.floor((MSS * Math.min(acked, 2 * MSS)) / this.cwnd));
    }
    if (this.cwnd > this.tune.maxCwnd) this.cwnd = this.tune.maxCwnd;
    this.rtoAt = this.sndUna === this.sndNxt ? Infinity : now + this.rto;
    if (this.sndUna === this.sndNxt) this.nagleExpired = true; // all acked: Nagle releases
  }

  private rttSample(r: number): void {
    if (r < 0) r = 0;
    if (r > 0 && r < this.minRtt) this.minRtt = r;
    if (this.srtt === 0) {
      this.srtt = r || 1;
      this.rttvar = r / 2;
    } else {
      this.rttvar = 0.75 * this.rttvar + 0.25 * Math.abs(this.srtt - r);
      this.srtt = 0.875 * this.srtt + 0.125 * r;
    }
    this.rto = this.computeRto();
  }

  private computeRto(): number {
    if (this.srtt === 0) return RTO_INITIAL;
    const r = this.srtt + Math.max(CLOCK_G, 4 * this.rttvar);
    return r < RTO_MIN ? RTO_MIN : r > RTO_MAX ? RTO_MAX : r;
  }

  /** Index of the first queued segment with seq >= x (binary search; segments are seq-ordered). */
  private idxAtOrAfter(x: number): number {
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

  private processSack(n: number): void {
    const q = this.q;
    const tmp = this.sackTmp;
    const base = this.sndUna;
    const span = u32(this.sndNxt - base);
    let sampleAt = -1;
    for (let b = 0; b < n; b++) {
      const L = tmp[2 * b], R = tmp[2 * b + 1];
      const lo = u32(L - base), hi = u32(R - base);
      if (hi === 0 || hi > span || lo >= hi) continue; // stale, bogus, or beyond SendSeq
      // mark from both edges (blocks grow at their edges); stop at already-marked segments
      let i = this.idxAtOrAfter(L);
      while (i < q.length) {
        const s = q[i];
        if (u32(s.seq + s.data.length - base) > hi || s.sacked) break;
        s.sacked = true;
        this.sackedBytes += s.data.length;
        this.delivered(s, this.t.now);
        if (s.tx === 1 && s.sentAt > sampleAt) sampleAt = s.sentAt;
        i++;
      }
      let j = this.idxAtOrAfter(R) - 1;
      while (j > i && j >= this.qHead) {
        const s = q[j];
        if (s.sacked || u32(s.seq - base) < lo) break;
        if (u32(s.seq + s.data.length - base) <= hi) {
          s.sacked = true;
          this.sackedBytes += s.data.length;
          this.delivered(s, this.t.now);
          if (s.tx === 1 && s.sentAt > sampleAt) sampleAt = s.sentAt;
        }
        j--;
      }
    }
    // the receiver SACKs immediately on an out-of-order arrival: the newest newly-SACKed
    // original transmission is what triggered this ACK, a clean RTT sample
    if (sampleAt >= 0) this.rttSample(this.t.now - sampleAt);
  }

  // =====================================================================================
  // Loss detection and recovery (sender). Nothing here is visible on the wire except timing.
  //
  // The reference (and our first version) treated "3 duplicate ACKs" as loss. Under per-packet
  // jitter nearly every ACK carries SACK blocks for segments that merely overtook others, so
  // reordering was read as loss: spurious retransmissions and a cwnd halving per "loss" (a 2 MiB
  // transfer over 100 ms RTT with 50–200 ms jitter took 29 s instead of 0.65 s). Now:
  //  * RACK (RFC 8985): a segment is lost only when a segment SENT LATER has been delivered
  //    (SACKed or cumulatively ACKed) and more than that segment's RTT + a reordering window has
  //    passed since our segment was sent. Time, not packet counts, so reordering depth is moot.
  //  * The reordering window starts at minRtt/4 and grows by minRtt/4 each round trip in which a
  //    loss verdict proves wrong; it falls back after 16 clean recoveries. RFC 8985 caps it at
  //    srtt; we cap at srtt + 4·rttvar (the unclamped RTO): per-packet jitter reorders by more
  //    than srtt (50–200 ms one-way: up to 150 ms of overtaking at srtt ≈ 250 ms; a 60 ms
  //    detour on a 20 ms path: 3·srtt), and a verdict later than that is no quicker than the
  //    RTO anyway. The wrong verdicts that remain are cheap: their reduction is undone.
  //  * A verdict is proven wrong when a retransmitted segment is acknowledged sooner than minRtt
  //    after the retransmission (that ACK can only be for the original — Eifel's idea, RFC 3522,
  //    with the min-RTT test of RFC 8985 §6.2 instead of timestamps, which the wire lacks), or
  //    when a segment declared lost arrives before we got round to resending it.
  //  * If every retransmission of an episode proves spurious, the window reduction is undone.
  //  * PRR (RFC 6937) spreads the reduction over the recovery round instead of halving at once
  //    and then stalling; it also paces the repairs by the ACK clock.
  //  * Peers that never send SACK (no reference build does that, but be safe) keep the classic
  //    duplicate-ACK trigger with early retransmit (RFC 5827); RACK then handles partial ACKs.

  /** Reordering window (ms): the extra time a segment gets before it is declared lost. */
  private reoWnd(): number {
    if (this.minRtt === Infinity) return 0;
    const w = (this.reoMult * this.minRtt) / 4;
    const cap = this.srtt + 4 * this.rttvar;
    return w < cap ? w : cap;
  }

  private markLost(s: Seg): void {
    s.lost = true;
    this.lostBytes += s.data.length;
    this.lostCount++;
  }

  private pendSpurious = 0; // verdicts proven wrong by this ACK (handled after it is parsed)
  private pendSpEpoch = 0; // ... of which retransmissions from the current episode

  /** A segment was newly delivered (cumulative ACK or SACK): RACK bookkeeping (RFC 8985 §6.2). */
  private delivered(s: Seg, now: number): void {
    if (s.lost) {
      // declared lost, arrived before its retransmission: the reordering window was too short
      s.lost = false;
      this.lostBytes -= s.data.length;
      this.lostCount--;
      this.pendSpurious++;
    }
    if (s.tx > 1 && now - s.sentAt < this.minRtt) {
      // too soon to answer the retransmission: the original got through, the resend was spurious.
      // Ambiguous as an RTT, so RACK's clock is not advanced by it.
      this.pendSpurious++;
      if (s.epoch === this.epoch) this.pendSpEpoch++;
      return;
    }
    const end = u32(s.seq + s.data.length);
    if (s.sentAt > this.rackXmit || (s.sentAt === this.rackXmit && seqGt(end, this.rackEnd))) {
      this.rackXmit = s.sentAt;
      this.rackEnd = end;
      this.rackRtt = now - s.sentAt;
    }
  }

  private onSpurious(now: number): void {
    this.rec.spurious += this.pendSpurious;
    this.pendSpurious = 0;
    if (now >= this.reoBumpAt) {
      if ((this.reoMult * this.minRtt) / 4 < this.srtt + 4 * this.rttvar) this.reoMult++;
      this.reoBumpAt = now + this.srtt;
      this.reoQuiet = 0;
    }
    this.epSpurious += this.pendSpEpoch;
    this.pendSpEpoch = 0;
    // Undo when every retransmission of the episode was spurious and no other verdict is pending
    // (an RTO episode resends only its head until the first ACK, so its undo is complete too).
    if (this.inRecovery && this.epSpurious >= this.epRetx && (this.lostCount === 0 || this.rtoRecovery)) this.undo();
  }

  private undo(): void {
    this.rec.undos++;
    if (this.priorCwnd > this.cwnd) this.cwnd = this.priorCwnd;
    if (this.priorSsthresh > this.ssthresh) this.ssthresh = this.priorSsthresh;
    this.inRecovery = false;
    this.rtoRecovery = false;
    this.rtoStreak = 0;
    this.rto = this.computeRto(); // a spurious timeout must not leave the backoff behind
    if (this.lostCount > 0) {
      const q = this.q;
      for (let i = this.qHead; i < q.length; i++) if (q[i].lost) q[i].lost = false;
      this.lostBytes = this.lostCount = 0;
    }
  }

  private lossDetect(): void {
    if (this.sndUna === this.sndNxt) {
      this.reoAt = Infinity;
      return;
    }
    if (!this.sackSeen && !this.inRecovery) {
      // Early retransmit (RFC 5827): with fewer than 4 segments outstanding three duplicates
      // can never arrive; lower the threshold instead of waiting for the RTO.
      const outSegs = this.q.length - this.qHead;
      const thresh = outSegs >= 4 ? 3 : Math.max(1, outSegs - 1);
      if (this.dupAcks >= thresh) {
        const h = this.firstUnsacked();
        if (h && !h.lost) this.markLost(h);
      }
    }
    this.rackDetect(this.t.now);
    if (this.lostCount > 0 && !this.inRecovery) this.enterRecovery();
  }

  /** RFC 8985 §6.2 step 5, and the reorder timer for segments not yet overdue. */
  private rackDetect(now: number): void {
    this.reoAt = Infinity;
    const rx = this.rackXmit;
    if (rx < 0) return;
    const allow = this.rackRtt + this.reoWnd();
    const re = this.rackEnd;
    const q = this.q;
    for (let i = this.qHead; i < q.length; i++) {
      const s = q[i];
      if (!(s.sentAt < rx || (s.sentAt === rx && seqLt(u32(s.seq + s.data.length), re)))) {
        if (s.tx === 1) break; // originals go out in seq order: all later ones were sent later
        continue;
      }
      if (s.sacked || s.lost) continue;
      const due = s.sentAt + allow;
      if (due <= now) this.markLost(s);
      else if (due < this.reoAt) this.reoAt = due;
    }
  }

  private enterRecovery(): void {
    this.rec.episodes++;
    this.st.fastRetransmits++;
    if (++this.reoQuiet > 16) {
      this.reoMult = 1; // RFC 8985 §6.2: the reordering seen long ago may be gone
      this.reoQuiet = 0;
    }
    this.priorCwnd = this.cwnd;
    this.priorSsthresh = this.ssthresh;
    const flight = u32(this.sndNxt - this.sndUna);
    this.ssthresh = Math.max(Math.floor(Math.min(this.cwnd, flight) * BETA), 2 * MSS);
    this.inRecovery = true;
    this.rtoRecovery = false;
    this.recoveryPoint = this.sndNxt;
    this.epoch++;
    this.epRetx = this.epSpurious = 0;
    this.prrDelivered = this.prrOut = 0;
    this.recoverFS = flight > 0 ? flight : 1;
    this.cwnd = this.pipe() + MSS; // at least the first repair goes out now (timer path too)
  }

  /** PRR (RFC 6937) with slow-start reduction bound, run on every ACK during fast recovery. */
  private prrUpdate(deliveredData: number, entering: boolean): void {
    this.prrDelivered += deliveredData;
    const p = this.pipe();
    let snd: number;
    if (p > this.ssthresh) snd = Math.ceil((this.prrDelivered * this.ssthresh) / this.recoverFS) - this.prrOut;
    else {
      const d = this.prrDelivered - this.prrOut;
      snd = Math.min(this.ssthresh - p, (d > deliveredData ? d : deliveredData) + MSS);
    }
    if (snd < 0) snd = 0;
    if (entering && snd < MSS) snd = MSS;
    this.cwnd = p + snd;
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

  private firstUnsacked(): Seg | null {
    const q = this.q;
    for (let i = this.qHead; i < q.length; i++) if (!q[i].sacked) return q[i];
    return null;
  }

  /** RFC 6675 pipe: bytes in flight, not counting SACKed segments nor those declared lost. */
  private pipe(): number {
    return u32(this.sndNxt - this.sndUna) - this.sackedBytes - this.lostBytes;
  }

  /**
   * Effective send window: cwnd limited by the peer window. A peer window of 0 is "unknown"
   * (reference keepalive artefact, or a genuinely full reference receiver, T3): allow one
   * segment, which doubles as a data-carrying probe the reference acknowledges with its true
   * window (T5) — never a hard stop, never "no limit".
   */
  private effWindow(): number {
    const pw = this.peerWnd === 0 ? MSS : this.peerWnd * MSS;
    // limited transmit (RFC 3042): each of the first two duplicate ACKs releases one segment
    const cw = this.inRecovery || this.dupAcks === 0 ? this.cwnd : this.cwnd + (this.dupAcks < 2 ? this.dupAcks : 2) * MSS;
    return cw < pw ? cw : pw;
  }

  // =====================================================================================
  // receive path (§7.2, §7.3)
  private recvData(seq: number, payload: Uint8Array): void {
    if (this.recvClosed) return;
    const len = payload.length;
    this.st.segsRecv++;
    if (seq === this.rcvNxt) {
      if (this.recvBuffered >= this.tune.recvHardBytes) {
        // receiver overrun (peer ignored our window): drop without ACK beyond a pure ACK
        // advertising our state, so the sender knows we are alive (persist behaviour).
        this.sendPureAck();
        return;
      }
      const hadOoo = this.ooo.size > 0;
      this.rcvNxt = u32(seq + len);
      // No copy: the transport owns inbound payloads (see Transport.handlePacket).
      this.deliver(payload);
      if (hadOoo) this.drainOoo();
      if (this.lingerAt !== Infinity && seqGe(this.rcvNxt, this.lingerSeq)) {
        this.finishPeerClose(undefined);
        return;
      }
      if (this.dead || this.recvClosed) return;
      if (hadOoo) this.sendAckNow();
      else if (++this.pendingAcks >= 2) this.sendAckNow();
      else if (this.ackAt === Infinity) this.ackAt = this.t.now + DELAYED_ACK_MS;
      return;
    }
    if (seqGt(seq, this.rcvNxt)) {
      const first = this.ooo.size === 0;
      if (!this.ooo.has(seq) && this.oooBytes + len <= this.tune.oooMaxBytes) {
        this.ooo.set(seq, payload);
        this.oooBytes += len;
        this.addBlock(seq, u32(seq + len));
      }
      this.sendAckNow(); // immediately, with SACK blocks
      if (first && this.tune.dupAckBurst) {
        // T9: the reference sender ignores SACK ACKs for dup counting; three pure duplicate
        // ACKs let it fast-retransmit the first hole instead of waiting for its RTO.
        this.sendPureAck();
        this.sendPureAck();
        this.sendPureAck();
      }
      return;
    }
    // seq before rcvNxt
    const end = u32(seq + len);
    if (seqGt(end, this.rcvNxt) && this.recvBuffered < this.tune.recvHardBytes) {
      // overlapping segment: deliver the new tail (the reference drops it whole, T7)
      const hadOoo = this.ooo.size > 0;
      const tail = payload.slice(u32(this.rcvNxt - seq));
      this.rcvNxt = end;
      this.deliver(tail);
      if (hadOoo) this.drainOoo();
      if (this.dead || this.recvClosed) return;
    }
    this.sendAckNow(); // duplicate: ACK at once so the sender learns what we have
  }

  private drainOoo(): void {
    const ooo = this.ooo;
    for (;;) {
      const d = ooo.get(this.rcvNxt);
      if (!d) break;
      ooo.delete(this.rcvNxt);
      this.oooBytes -= d.length;
      this.rcvNxt = u32(this.rcvNxt + d.length);
      this.deliver(d);
      if (this.recvClosed) return;
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

  /** Insert [l, r) into the sorted, merged block list (touching blocks merge, as in §8.1). */
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

  private deliver(chunk: Uint8Array): void {
    this.st.bytesRecv += chunk.length;
    if (this.paused || this.delivering || this.rqHead < this.rq.length || !this._onData) {
      this.rq.push(chunk);
      this.recvBuffered += chunk.length;
      if (!this.paused && !this.delivering && this._onData) this.flushRecv();
      return;
    }
    this.delivering = true;
    try {
      this._onData(chunk);
    } finally {
      this.delivering = false;
    }
    if (!this.paused && this.rqHead < this.rq.length) this.flushRecv();
  }

  private flushRecv(): void {
    if (this.delivering) return;
    this.delivering = true;
    try {
      while (!this.paused && this._onData && this.rqHead < this.rq.length && !this.recvClosed) {
        const c = this.rq[this.rqHead];
        this.rq[this.rqHead++] = EMPTY;
        this.recvBuffered -= c.length;
        this._onData(c);
      }
    } finally {
      this.delivering = false;
    }
    if (this.rqHead === this.rq.length) {
      this.rq.length = 0;
      this.rqHead = 0;
    }
  }

  pause(): void {
    this.paused = true;
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    this.t.enter();
    this.flushRecv();
    if (this.dead || this.paused) return;
    // Window update: the reference never sends one (§10); a pure ACK is harmless to it and lets
    // a sender stalled by our small window continue at once (slow-reader fix, T4).
    const w = this.ourWindow();
    if ((this._state === S_ESTABLISHED || this._state === S_FIN_WAIT) && w > this.lastAdvWnd && this.lastAdvWnd < 64) {
      this.sendKeepalive(); // a redundant ACK too: same T10 handling as keepalives
      this.rearm();
    }
  }

  // =====================================================================================
  // send path (§6)
  write(data: Uint8Array, owned = false): boolean {
    if (this._state !== S_ESTABLISHED) throw new TransportError("closed", `connection ${this.id} is ${this._state}`);
    if (data.length === 0) return this.wqBytes < this.tune.sendHighWater;
    this.t.enter();
    this.wq.push(owned ? data : data.slice()); // own copy unless handed over: callers may reuse their buffer
    this.wqBytes += data.length;
    this.pump();
    this.rearm();
    const ok = this.wqBytes < this.tune.sendHighWater;
    if (!ok) this.wantDrain = true;
    return ok;
  }

  setNoDelay(on: boolean): void {
    this.noDelay = on;
    if (on && this.wqBytes > 0) {
      this.t.enter();
      this.pump();
      this.rearm();
    }
  }

  private peek(k: number): number {
    let i = this.wqHead, off = this.wqOff + k;
    while (i < this.wq.length) {
      const c = this.wq[i];
      if (off < c.length) return c[off];
      off -= c.length;
      i++;
    }
    return -1;
  }

  /** Remove n bytes from the write queue (zero-copy when they lie in one chunk). */
  private cut(n: number): Uint8Array {
    const c = this.wq[this.wqHead];
    let out: Uint8Array;
    if (c.length - this.wqOff >= n) {
      out = c.subarray(this.wqOff, this.wqOff + n);
      this.wqOff += n;
      if (this.wqOff === c.length) {
        this.wq[this.wqHead++] = EMPTY;
        this.wqOff = 0;
      }
    } else {
      out = new Uint8Array(n);
      let o = 0;
      while (o < n) {
        const h = this.wq[this.wqHead];
        const take = Math.min(h.length - this.wqOff, n - o);
        out.set(h.subarray(this.wqOff, this.wqOff + take), o);
        o += take;
        this.wqOff += take;
        if (this.wqOff === h.length) {
          this.wq[this.wqHead++] = EMPTY;
          this.wqOff = 0;
        }
      }
    }
    this.wqBytes -= n;
    if (this.wqHead === this.wq.length) {
      this.wq.length = 0;
      this.wqHead = 0;
    } else if (this.wqHead > 256 && this.wqHead * 2 > this.wq.length) {
      this.wq = this.wq.slice(this.wqHead);
      this.wqHead = 0;
    }
    return out;
  }

  /** Send as much queued data as the windows and Nagle allow. */
  pump(): void {
    const st = this._state;
    if (st !== S_ESTABLISHED && st !== S_FIN_WAIT) return;
    if (this.lostCount > 0) this.sendLost(); // repairs before new data (RFC 6675 §5 rule 1)
    while (this.wqBytes > 0) {
      if (this.pipe() >= this.effWindow()) break; // window test "strictly less than" (§6.2)
      let n = this.wqBytes < MSS ? this.wqBytes : MSS;
      if (n < MSS && !this.noDelay && st !== S_FIN_WAIT && this.sndUna !== this.sndNxt && !this.nagleExpired) {
        // Nagle (§6.1): hold a sub-MSS tail while data is in flight, at most 40 ms
        if (this.nagleAt === Infinity) this.nagleAt = this.t.now + NAGLE_MS;
        break;
      }
      // T8: never emit a segment that a reference receiver would swallow as a SACK option;
      // send the 4 magic bytes alone (boundaries are then kept for retransmission).
      if (n >= 13 && this.peek(0) === 0x53 && this.peek(1) === 0x41 && this.peek(2) === 0x43 && this.peek(3) === 0x4b) {
        const cnt = this.peek(4);
        if (cnt >= 1 && cnt <= 4 && n >= 5 + 8 * cnt) n = 4;
      }
      const seg = new Seg(this.sndNxt, this.cut(n));
      // T12 fix: queued before it is transmitted
      this.q.push(seg);
      this.sndNxt = u32(this.sndNxt + n);
      if (n < MSS) {
        this.nagleAt = Infinity;
        this.nagleExpired = false;
      }
      this.xmit(seg, false);
      if (this.rtoAt === Infinity) this.rtoAt = this.t.now + this.rto;
    }
    if (this.wqBytes === 0) {
      this.nagleAt = Infinity;
      this.nagleExpired = false;
    }
    if (this.wantDrain && this.wqBytes <= this.tune.sendHighWater >> 1) {
      this.wantDrain = false;
      const d = this.onDrain;
      if (d) d();
    }
    if (this._state === S_FIN_WAIT) this.maybeFin();
  }

  private xmit(s: Seg, retx: boolean): void {
    const now = this.t.now;
    s.sentAt = now;
    s.tx++;
    this.pendingAcks = 0;
    this.ackAt = Infinity;
    this.lastSent = now;
    const w = this.ourWindow();
    this.lastAdvWnd = w;
    this.st.segsSent++;
    if (s.lost) {
      s.lost = false;
      this.lostBytes -= s.data.length;
      this.lostCount--;
    }
    if (this.inRecovery) this.prrOut += s.data.length;
    if (retx) {
      this.st.retransmits++;
      s.epoch = this.epoch;
      if (this.inRecovery) this.epRetx++;
    } else this.st.bytesSent += s.data.length;
    // data segments always carry ACK (§3) and the current ack/window
    this.noteAckSent(this.rcvNxt, false);
    this.t.out(this.mk(FLAG_ACK, s.seq, this.rcvNxt, w, s.data));
  }

  // =====================================================================================
  // timers
  onTimer(now: number): void {
    if (this.dead) return;
    this.t.enter();
    if (this._state === S_SYN_SENT) {
      if (this.synAt <= now) this.synExpired();
      if (!this.dead) this.rearm();
      return;
    }
    if (this.ackAt <= now) this.sendAckNow();
    if (this.nagleAt <= now) {
      this.nagleAt = Infinity;
      this.nagleExpired = true;
      this.pump();
    }
    if (this.reoAt <= now) {
      // RACK reorder timer: a segment's reordering allowance ran out without a later ACK
      this.reoAt = Infinity;
      this.lossDetect();
      this.pump();
    }
    if (this.rtoAt <= now) this.onRto(now);
    if (this.dead) return;
    if (this.finRtxAt <= now) {
      // our FIN got no FIN+ACK: resend (the reference answers every bare FIN; bounded)
      if (!this.finAcked && this.finRetries < 3 && this._state === S_TIME_WAIT) {
        this.finRetries++;
        this.sendFin();
        this.finRtxAt = now + Math.min(this.rto * (1 << this.finRetries), RTO_MAX);
      } else this.finRtxAt = Infinity;
    }
    if (this.lingerAt <= now) {
      // the peer's FIN overtook data that never arrived: abnormal end (T6)
      this.finishPeerClose(new TransportError("truncated", "peer closed with data missing"));
    }
    if (this.dead) return;
    const st = this._state;
    if (st === S_TIME_WAIT) {
      if (now - this.lastActivity >= this.t.timeWaitMs && this.lingerAt === Infinity) {
        this.setState(S_CLOSED);
        this.t.remove(this);
        return;
      }
    } else if (st === S_ESTABLISHED || st === S_FIN_WAIT) {
      if (now - this.lastHeard >= this.t.idleTimeoutMs) {
        this.event("conn.idle_timeout");
        this.localClose(new TransportError("timeout", "idle timeout"));
        return;
      }
      if (now - this.lastSent >= this.t.keepaliveMs) {
        // Keepalive (§11.6): real window (T3) and T10-safe, see sendKeepalive.
        this.sendKeepalive();
      }
    }
    this.rearm();
  }

  private onRto(now: number): void {
    if (this.sndUna === this.sndNxt) {
      this.rtoAt = Infinity;
      return;
    }
    // The timer runs from the last cumulative advance. If RACK resent the first hole less than an
    // RTO ago, that repair is still on its way: wait for it (as the reference does, §9.3 step 3)
    // instead of sending a duplicate whose early "ACK" would then look like a spurious timeout.
    const head = this.firstUnsacked();
    if (head && head.tx > 1 && now - head.sentAt < this.rto) {
      this.rtoAt = head.sentAt + this.rto;
      return;
    }
    if (this.rtoStreak === 0) this.streakResponses = 0;
    this.rtoStreak++;
    // Patience (T11): abort after maxRetx consecutive expiries unless the peer answers most of
    // our retransmissions (a live receiver whose buffer is full answers each probe with an ACK;
    // an occasional keepalive from a one-way-broken path does not count as answering).
    if (this.rtoStreak > this.tune.maxRetx && this.streakResponses * 2 < this.rtoStreak) {
      this.abortWith(new TransportError("timeout", "retransmission limit reached"));
      return;
    }
    this.rec.rtos++;
    if (!this.rtoRecovery) {
      // first expiry of this outage: remember the state so a spurious timeout can be undone
      // (F-RTO/Eifel). Inside a fast recovery that is the already-reduced PRR window, so an undo
      // never reverts a reduction that a genuine loss caused.
      this.priorCwnd = this.cwnd;
      this.priorSsthresh = this.ssthresh;
      if (!this.inRecovery) this.ssthresh = Math.max(Math.floor(u32(this.sndNxt - this.sndUna) * BETA), 2 * MSS);
    }
    // Timeout collapse to the reference's 10-segment loss window (T11), then slow start.
    this.cwnd = INITIAL_CWND < this.ssthresh ? INITIAL_CWND : this.ssthresh;
    this.inRecovery = true;
    this.rtoRecovery = true;
    this.recoveryPoint = this.sndNxt;
    this.epoch++;
    this.epRetx = this.epSpurious = 0;
    this.dupAcks = 0;
    this.rto = Math.min(this.rto * 2, RTO_MAX);
    // Only the head is resent now (like F-RTO's first step). The rest is NOT marked lost: if the
    // head's ACK proves the timeout spurious (it returns sooner than minRtt), nothing else was
    // resent and the undo is complete; if it was real, the head's retransmission is now the
    // latest delivered segment and RACK declares every older un-SACKed segment lost at once.
    const s = this.firstUnsacked() ?? this.q[this.qHead];
    if (s) this.xmit(s, true);
    this.rtoAt = now + this.rto;
  }

  rearm(): void {
    if (this.dead) return;
    let t = this.synAt;
    if (this.ackAt < t) t = this.ackAt;
    if (this.nagleAt < t) t = this.nagleAt;
    if (this.rtoAt < t) t = this.rtoAt;
    if (this.reoAt < t) t = this.reoAt;
    if (this.finRtxAt < t) t = this.finRtxAt;
    if (this.lingerAt < t) t = this.lingerAt;
    const st = this._state;
    if (st === S_ESTABLISHED || st === S_FIN_WAIT) {
      const ka = this.lastSent + this.t.keepaliveMs;
      const idle = this.lastHeard + this.t.idleTimeoutMs;
      if (ka < t) t = ka;
      if (idle < t) t = idle;
    } else if (st === S_TIME_WAIT) {
      const tw = this.lastActivity + this.t.timeWaitMs;
      if (tw < t) t = tw;
    }
    const now = this.t.now;
    if (t <= now) t = now + 1;
    this.t.timers.arm(this, t);
  }

  // =====================================================================================
  // closing (§11)
  /** FIN or FIN+ACK received (§11.2). */
  /** Webhook hook (services.md §11.3): conn.fin / conn.rst / conn.idle_timeout. */
  private event(name: string): void {
    this.t.host.onEvent?.(name, { conn_id: this.id, local_port: this.localPort, remote_addr: this.remoteAddr, remote_port: this.remotePort });
  }

  onFin(p: Packet): void {
    const now = this.t.now;
    const isFinAck = (p.flags & FLAG_ACK) !== 0;
    if (this._state !== S_TIME_WAIT) this.event("conn.fin");
    this.lastHeard = now;
    this.lastActivity = now;
    // Never answer a FIN+ACK (T1: the reference answers every FIN+ACK, looping forever).
    // A bare FIN is answered with FIN+ACK (seq = SendSeq, ack = FIN seq + 1, window 0).
    if (!isFinAck) this.t.out(this.mk(FLAG_FIN | FLAG_ACK, this.sndNxt, u32(p.seq + 1), 0, EMPTY));
    const st = this._state;
    if (st === S_TIME_WAIT) {
      this.finAcked = true;
      this.finRtxAt = Infinity;
      this.rearm();
      return;
    }
    if (st === S_SYN_SENT) {
      this.failDial(new TransportError("connection_reset", "peer closed during handshake"));
      return;
    }
    // ESTABLISHED / FIN_WAIT: full close, no half-close (§11.2)
    this.setState(S_TIME_WAIT);
    this.finAcked = true; // the peer is closing; our FIN is not needed
    this.dropSendState();
    if (seqGt(p.seq, this.rcvNxt)) {
      // T6: FIN seq beyond what we have: data is still in flight (reordered) or lost. Keep
      // accepting for a short while; report an abnormal end if the gap is not filled.
      this.lingerSeq = p.seq;
      this.lingerAt = now + Math.max(2 * this.rto, 1000);
      this.rearm();
      return;
    }
    this.finishPeerClose(undefined);
  }

  private finishPeerClose(err: TransportError | undefined): void {
    this.lingerAt = Infinity;
    this.recvClosed = true;
    this.clearRecv();
    if (!err) {
      const e = this.onEnd;
      if (e && !this.closeNotified) e();
    }
    this.notifyClose(err);
    if (!this.dead) this.rearm();
  }

  /** Graceful close: FIN once everything queued is sent and acknowledged (T6 fix). */
  end(): void {
    const st = this._state;
    if (st === S_ESTABLISHED) {
      this.t.enter();
      this.setState(S_FIN_WAIT);
      this.pump(); // Nagle no longer holds the tail
      if (!this.dead) this.rearm();
    } else if (st === S_SYN_SENT) {
      this.failDial(new TransportError("closed", "closed before established"));
    }
  }

  private maybeFin(): void {
    if (this.wqBytes === 0 && this.sndUna === this.sndNxt) this.localClose(undefined);
  }

  /** Send FIN now (no drain), enter TIME_WAIT and tell the application (§11.1). */
  localClose(err: TransportError | undefined): void {
    const st = this._state;
    if (st === S_ESTABLISHED || st === S_FIN_WAIT) {
      this.sendFin();
      this.finRtxAt = this.t.now + Math.max(this.rto, 500);
    }
    this.setState(S_TIME_WAIT);
    this.lastActivity = this.t.now;
    this.dropSendState();
    this.recvClosed = true;
    this.clearRecv();
    this.notifyClose(err);
    if (!this.dead) this.rearm();
  }

  abort(): void {
    if (this.dead) return;
    this.t.enter();
    this.abortWith(undefined);
  }

  /** RST (reference format: seq 0, ack 0, window 0) and remove. */
  abortWith(err: TransportError | undefined): void {
    if (this._state !== S_TIME_WAIT && this._state !== S_CLOSED) this.t.out(this.mk(FLAG_RST, 0, 0, 0, EMPTY));
    if (this._state === S_SYN_SENT) {
      this.failDial(err ?? new TransportError("closed", "aborted"));
      return;
    }
    this.gone(err);
  }

  /** RST received (§11.4): no sequence check (the reference's RSTs carry seq 0). */
  onRst(): void {
    this.event("conn.rst");
    if (this._state === S_SYN_SENT) {
      this.failDial(new TransportError("connection_refused", "connection refused"));
      return;
    }
    this.gone(this._state === S_TIME_WAIT ? undefined : new TransportError("connection_reset", "connection reset by peer"));
  }

  /** Remove immediately (shutdown, RST, abort). */
  gone(err: TransportError | undefined): void {
    this.setState(S_CLOSED);
    this.dropSendState();
    this.recvClosed = true;
    this.clearRecv();
    this.notifyClose(err);
    this.t.remove(this);
  }

  private dropSendState(): void {
    this.wq.length = 0;
    this.wqHead = this.wqOff = this.wqBytes = 0;
    this.q.length = 0;
    this.qHead = 0;
    this.sackedBytes = 0;
    this.lostBytes = this.lostCount = 0;
    this.sndUna = this.sndNxt;
    this.rtoAt = this.nagleAt = this.ackAt = this.synAt = this.reoAt = Infinity;
    this.pendingAcks = 0;
  }

  private clearRecv(): void {
    this.ooo.clear();
    this.oooBytes = 0;
    this.blocks.length = 0;
    this.rq.length = 0;
    this.rqHead = 0;
    this.recvBuffered = 0;
  }

  notifyClose(err: TransportError | undefined): void {
    if (this.closeNotified) return;
    this.closeNotified = true;
    const c = this.onClose;
    if (c) c(err);
  }

  stats(): StreamStats {
    return {
      ...this.st,
      srttMs: this.srtt,
      rttvarMs: this.rttvar,
      rtoMs: this.rto,
      cwnd: this.cwnd,
      ssthresh: this.ssthresh,
      inFlight: u32(this.sndNxt - this.sndUna),
      peerWindow: this.peerWnd,
      sendBuffered: this.wqBytes,
      recvBuffered: this.recvBuffered,
      dupAcks: this.dupAcks,
      inRecovery: this.inRecovery,
      oooSegments: this.ooo.size,
      recvWindow: this.ourWindow(),
    };
  }
}
