// One stream connection: the state machine (handshake, data transfer, close, timers). It owns its
// parts: the send side (sender.ts, with a congestion controller), the receive side
// (receiver.ts) and ACK emission (emit.ts); the transport is reached through the small ConnHost
// interface. Packets in via on*(), timers via onTimer(). No closures or timers per packet.
import { type Addr, FLAG_ACK, FLAG_FIN, FLAG_RST, type Packet } from "../proto/types.ts";
import { decodeSackInto } from "../proto/sack.ts";
import { type StreamConn, type StreamStats, TransportError } from "./api.ts";
import { PrrCongestion } from "./congestion.ts";
import { Emitter } from "./emit.ts";
import { type ConnHost, type ConnState, type ConnTuning, S_CLOSED, S_ESTABLISHED, S_FIN_WAIT, S_SYN_SENT, S_TIME_WAIT } from "./conn-types.ts";
import { Receiver } from "./receiver.ts";
import { RTO_MAX } from "./rtt.ts";
import { Sender, type SenderOwner } from "./sender.ts";
import { connStats } from "./stats.ts";
import { seqGe, seqGt, u32 } from "./seq.ts";
import type { Timed } from "./timers.ts";

const EMPTY = new Uint8Array(0);

export class Conn implements StreamConn, Timed, SenderOwner {
  scheduled = Infinity;
  dead = false; // removed from the table
  active = false; // counted in connection limits (SYN_SENT/ESTABLISHED/FIN_WAIT)
  private _state: ConnState = S_CLOSED;
  iss = 0; // ISN 0 as the reference (keeps the reference's non-wrap-safe SACK code happy)
  irs = 0;
  private readonly snd: Sender;
  private readonly rx: Receiver;
  private readonly tx: Emitter;
  private sackRecv = 0;
  /** Recovery diagnostics (tests, bench): not part of the StreamConn contract. */
  readonly rec: Sender["rec"];

  // ---- lifecycle
  lastHeard = 0; // anything ACK-flagged/FIN from the peer
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

  onEnd: (() => void) | null = null;
  onClose: ((err?: TransportError) => void) | null = null;
  onDrain: (() => void) | null = null;
  onAcked: ((chunk: Uint8Array) => void) | null = null;

  constructor(
    private readonly t: ConnHost,
    readonly id: number,
    readonly localAddr: Addr,
    readonly localPort: number,
    readonly remoteAddr: Addr,
    readonly remotePort: number,
    private readonly tune: ConnTuning,
  ) {
    this.snd = new Sender(t, this, tune, new PrrCongestion(tune.maxCwnd));
    this.rx = new Receiver(tune);
    this.tx = new Emitter(t, { src: localAddr, srcPort: localPort, dst: remoteAddr, dstPort: remotePort }, this.rx, this.snd);
    this.rec = this.snd.rec;
    const now = t.now;
    this.lastHeard = now;
    this.lastActivity = now;
  }

  get state(): ConnState {
    return this._state;
  }

  setState(s: ConnState): void {
    this._state = s;
    const act = s === S_SYN_SENT || s === S_ESTABLISHED || s === S_FIN_WAIT;
    if (act !== this.active) {
      this.active = act;
      this.t.countActive(this.localPort, act ? 1 : -1);
    }
  }

  get onData(): ((chunk: Uint8Array) => void) | null {
    return this.rx.onData;
  }
  set onData(f: ((chunk: Uint8Array) => void) | null) {
    this.rx.onData = f;
  }

  // ---- handshake
  /** SYN+ACK, always with the ORIGINAL ISN (the reference resends SendSeq - 1, wrong after data). */
  sendSynAck(): void {
    this.tx.synAck(this.iss, this.irs);
  }

  /** Active side: SYN-ACK received in SYN_SENT. */
  onSynAck(p: Packet): void {
    if (this._state !== S_SYN_SENT) return; // duplicates / other states: ignored (reference)
    this.irs = p.seq;
    this.rx.rcvNxt = u32(p.seq + 1);
    this.snd.peerWnd = p.window;
    this.lastHeard = this.t.now;
    this.synAt = Infinity;
    this.setState(S_ESTABLISHED);
    this.tx.pureAck();
    const res = this.dialResolve;
    this.dialResolve = this.dialReject = null;
    this.rearm();
    if (res) res(this);
  }

  /** Passive side: called by Transport after creating the connection from a SYN. */
  acceptSyn(p: Packet): void {
    this.irs = p.seq;
    this.rx.rcvNxt = u32(p.seq + 1);
    this.snd.peerWnd = p.window;
    this.snd.sndUna = this.snd.sndNxt = u32(this.iss + 1);
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
    return this.t.now - this.syncedAt > Math.max(2 * this.snd.rtt.rto, 1000);
  }

  startDial(): void {
    this.snd.sndUna = this.snd.sndNxt = u32(this.iss + 1);
    this.setState(S_SYN_SENT);
    this.tx.syn(this.iss);
    this.synTimeout = 1000;
    this.synAt = this.t.now + this.synTimeout;
    this.rearm();
  }

  // SYN retransmission: 1 s doubling to 8 s, 6 retransmissions, then dial_timeout.
  private synExpired(): void {
    this.synRetries++;
    const switched = this.t.host.onSynTimeout?.(this.remoteAddr, this.synRetries) === true;
    if (this.synRetries > this.t.dialMaxRetries) {
      this.failDial(new TransportError("dial_timeout", "dial timeout"));
      return;
    }
    if (switched) this.synTimeout = 1000; // path changed (relay): restart the backoff
    this.tx.syn(this.iss);
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

  // ---- inbound ACK / data
  onAck(p: Packet): void {
    const now = this.t.now;
    const snd = this.snd;
    this.lastHeard = now;
    this.lastActivity = now;
    const oldWnd = snd.peerWnd;
    snd.peerWnd = p.window;
    if (snd.rtoStreak > 0) snd.streakResponses++;
    const st = this._state;
    if (st === S_SYN_SENT || st === S_CLOSED) return;
    if (this.syncedAt === Infinity) this.syncedAt = now;
    const payload = p.payload;
    const nS = payload.length >= 5 ? decodeSackInto(payload, snd.sackTmp) : 0;
    if (nS > 0) this.sackRecv++;
    if (st !== S_TIME_WAIT) {
      snd.onAck(p.ack, p.window, oldWnd, nS, payload.length === 0);
      if (payload.length > 0 && nS === 0) this.recvData(p.seq, payload);
      if (!this.dead) snd.pump();
    } else if (this.lingerAt !== Infinity && payload.length > 0 && nS === 0) {
      this.recvData(p.seq, payload); // late in-flight data after the peer's FIN
    }
    if (!this.dead) this.rearm();
  }

  /** Inbound data: reassembly in the receiver, the ACK policy here. */
  private recvData(seq: number, payload: Uint8Array): void {
    const rx = this.rx;
    if (rx.closed) return;
    rx.segsRecv++;
    if (seq === rx.rcvNxt) {
      if (rx.overrun()) {
        // overrun (peer ignored our window): drop; a pure ACK says we are alive (persist)
        this.tx.pureAck();
        return;
      }
      const hadOoo = rx.acceptInOrder(payload);
      if (this.lingerAt !== Infinity && seqGe(rx.rcvNxt, this.lingerSeq)) {
        this.finishPeerClose(undefined);
        return;
      }
      if (!this.dead && !rx.closed) this.tx.ackInOrder(hadOoo);
      return;
    }
    if (seqGt(seq, rx.rcvNxt)) {
      this.tx.ackAhead(rx.acceptAhead(seq, payload), this.tune.dupAckBurst);
      return;
    }
    rx.acceptOverlap(seq, payload);
    if (this.dead || rx.closed) return;
    this.tx.ackNow(); // duplicate: ACK at once so the sender learns what we have
  }

  pause(): void {
    this.rx.paused = true;
  }

  resume(): void {
    const rx = this.rx;
    if (!rx.paused) return;
    rx.paused = false;
    this.t.enter();
    rx.flush();
    if (this.dead || rx.paused) return;
    // Window update: the reference never sends one; a pure ACK is harmless to it and lets a
    // sender stalled by our small window continue at once (slow-reader fix).
    const w = rx.window();
    if ((this._state === S_ESTABLISHED || this._state === S_FIN_WAIT) && w > this.tx.lastAdvWnd && this.tx.lastAdvWnd < 64) {
      this.tx.keepalive(); // a redundant ACK too: same duplicate-ACK handling as keepalives
      this.rearm();
    }
  }

  // ---- send path
  write(data: Uint8Array, owned = false): boolean {
    if (this._state !== S_ESTABLISHED) throw new TransportError("closed", `connection ${this.id} is ${this._state}`);
    if (data.length === 0) return this.snd.buf.bytes < this.tune.sendHighWater;
    this.t.enter(); // own copy unless handed over (callers may reuse theirs; a Buffer's slice() is a view)
    this.snd.enqueue(owned ? data : new Uint8Array(data), owned && this.onAcked !== null);
    this.snd.pump();
    this.rearm();
    return this.snd.belowHighWater();
  }

  setNoDelay(on: boolean): void {
    this.snd.setNoDelay(on);
    if (on && this.snd.buf.bytes > 0) {
      this.t.enter();
      this.snd.pump();
      this.rearm();
    }
  }

  /** A data segment from the sender. */
  emitSegment(seq: number, data: Uint8Array): void {
    this.tx.segment(seq, data);
  }

  drained(): void { this.onDrain?.(); }
  sendDone(): void { this.localClose(undefined); }
  giveUp(err: TransportError): void { this.abortWith(err); }

  // ---- timers
  onTimer(now: number): void {
    if (this.dead) return;
    this.t.enter();
    if (this._state === S_SYN_SENT) {
      if (this.synAt <= now) this.synExpired();
      if (!this.dead) this.rearm();
      return;
    }
    const snd = this.snd;
    if (this.tx.ackAt <= now) this.tx.ackNow();
    if (snd.nagleAt <= now) {
      snd.nagleAt = Infinity;
      snd.nagleExpired = true;
      snd.pump();
    }
    if (snd.reoAt <= now) {
      // RACK reorder timer: a segment's reordering allowance ran out without a later ACK
      snd.reoAt = Infinity;
      snd.lossDetect();
      snd.pump();
    }
    if (snd.rtoAt <= now) snd.onRto(now);
    if (this.dead) return;
    if (this.finRtxAt <= now) {
      // our FIN got no FIN+ACK: resend (the reference answers every bare FIN; bounded)
      if (!this.finAcked && this.finRetries < 3 && this._state === S_TIME_WAIT) {
        this.finRetries++;
        this.tx.fin();
        this.finRtxAt = now + Math.min(snd.rtt.rto * (1 << this.finRetries), RTO_MAX);
      } else this.finRtxAt = Infinity;
    }
    if (this.lingerAt <= now) {
      // the peer's FIN overtook data that never arrived: abnormal end
      this.finishPeerClose(new TransportError("truncated", this.rx.endHeld ? "the reader took no data before the idle timeout" : "peer closed with data missing"));
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
      // keepalive: real window and duplicate-ACK safe, see Emitter.keepalive
      if (now - this.tx.lastSent >= this.t.keepaliveMs) this.tx.keepalive();
    }
    this.rearm();
  }

  rearm(): void {
    if (this.dead) return;
    const snd = this.snd;
    let t = this.synAt;
    if (this.tx.ackAt < t) t = this.tx.ackAt;
    if (snd.nagleAt < t) t = snd.nagleAt;
    if (snd.rtoAt < t) t = snd.rtoAt;
    if (snd.reoAt < t) t = snd.reoAt;
    if (this.finRtxAt < t) t = this.finRtxAt;
    if (this.lingerAt < t) t = this.lingerAt;
    const st = this._state;
    if (st === S_ESTABLISHED || st === S_FIN_WAIT) {
      const ka = this.tx.lastSent + this.t.keepaliveMs;
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

  // ---- closing
  /** Webhook hook: conn.fin / conn.rst / conn.idle_timeout. */
  private event(name: string): void {
    this.t.host.onEvent?.(name, { conn_id: this.id, local_port: this.localPort, remote_addr: this.remoteAddr, remote_port: this.remotePort });
  }

  /** FIN or FIN+ACK received. */
  onFin(p: Packet): void {
    const now = this.t.now;
    const isFinAck = (p.flags & FLAG_ACK) !== 0;
    if (this._state !== S_TIME_WAIT) this.event("conn.fin");
    this.lastHeard = now;
    this.lastActivity = now;
    // Never answer a FIN+ACK (two reference daemons answer each other's forever).
    // A bare FIN is answered with FIN+ACK (seq = SendSeq, ack = FIN seq + 1, window 0).
    if (!isFinAck) this.t.out(this.tx.mk(FLAG_FIN | FLAG_ACK, this.snd.sndNxt, u32(p.seq + 1), 0, EMPTY));
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
    // ESTABLISHED / FIN_WAIT: full close, no half-close
    this.setState(S_TIME_WAIT);
    this.finAcked = true; // the peer is closing; our FIN is not needed
    this.dropSendState();
    if (seqGt(p.seq, this.rx.rcvNxt)) {
      // FIN seq beyond what we have: data is still in flight (reordered) or lost. Keep
      // accepting for a short while; report an abnormal end if the gap is not filled.
      this.lingerSeq = p.seq;
      this.lingerAt = now + Math.max(2 * this.snd.rtt.rto, 1000);
      this.rearm();
      return;
    }
    this.finishPeerClose(undefined);
  }

  private finishPeerClose(err: TransportError | undefined): void {
    // Data still queued for a paused (or not yet attached) reader goes first: the end waits for
    // it, up to the idle timeout (it used to be dropped with the queue: lost at the reader).
    if (!err && this.rx.holdEnd(() => this.finishPeerClose(undefined))) {
      this.lingerAt = this.t.now + this.t.idleTimeoutMs;
      return this.rearm();
    }
    this.lingerAt = Infinity;
    this.rx.closed = true;
    this.rx.clear();
    if (!err) {
      const e = this.onEnd;
      if (e && !this.closeNotified) e();
    }
    this.notifyClose(err);
    if (!this.dead) this.rearm();
  }

  /** Graceful close: FIN once everything queued is sent and acknowledged. */
  end(): void {
    const st = this._state;
    if (st === S_ESTABLISHED) {
      this.t.enter();
      this.setState(S_FIN_WAIT);
      this.snd.pump(); // Nagle no longer holds the tail
      if (!this.dead) this.rearm();
    } else if (st === S_SYN_SENT) {
      this.failDial(new TransportError("closed", "closed before established"));
    }
  }

  /** Send FIN now (no drain), enter TIME_WAIT and tell the application. */
  localClose(err: TransportError | undefined): void {
    const st = this._state;
    if (st === S_ESTABLISHED || st === S_FIN_WAIT) {
      this.tx.fin();
      this.finRtxAt = this.t.now + Math.max(this.snd.rtt.rto, 500);
    }
    this.setState(S_TIME_WAIT);
    this.lastActivity = this.t.now;
    this.dropSendState();
    this.rx.closed = true;
    this.rx.clear();
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
    if (this._state !== S_TIME_WAIT && this._state !== S_CLOSED) this.t.out(this.tx.mk(FLAG_RST, 0, 0, 0, EMPTY));
    if (this._state === S_SYN_SENT) {
      this.failDial(err ?? new TransportError("closed", "aborted"));
      return;
    }
    this.gone(err);
  }

  /** RST received: no sequence check (the reference's RSTs carry seq 0). */
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
    this.rx.closed = true;
    this.rx.clear();
    this.notifyClose(err);
    this.t.remove(this);
  }

  private dropSendState(): void {
    this.snd.clear();
    this.tx.ackAt = this.synAt = Infinity;
    this.tx.pendingAcks = 0;
  }

  notifyClose(err: TransportError | undefined): void {
    if (this.closeNotified) return;
    this.closeNotified = true;
    const c = this.onClose;
    if (c) c(err);
  }

  stats(): StreamStats {
    return connStats(this.snd, this.rx, this.sackRecv, this.tx.sackSent);
  }
}
