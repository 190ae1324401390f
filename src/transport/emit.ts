// Everything a connection puts on the wire: SYN, SYN+ACK, data segments, ACKs (immediate, pure,
// keepalive / window update), FIN; plus the state that ACK emission keeps (the pending
// delayed ACK, the last advertised window, the keepalive clock, and a model of the peer's
// duplicate-ACK counter).
import { encodeSackFlat } from "../proto/sack.ts";
import { type Addr, FLAG_ACK, FLAG_FIN, FLAG_SYN, type Packet, PROTO_STREAM } from "../proto/types.ts";
import type { ConnHost } from "./conn-types.ts";
import type { Receiver } from "./receiver.ts";
import type { SendQueue } from "./sendq.ts";
import { u32 } from "./seq.ts";

const EMPTY = new Uint8Array(0);
const DELAYED_ACK_MS = 40;
// Keepalive SACK form (see keepalive()): a SACK option with one EMPTY block [A, A).
const SACK_EMPTY_BLOCK = new Uint8Array(13);
SACK_EMPTY_BLOCK.set([0x53, 0x41, 0x43, 0x4b, 1]);
/** Wrap guard for that block: no SACK keepalive when RecvAck is this close below 2^32. */
const SACK_KA_WRAP_GUARD = 2 * 1048576;

export interface FourTuple {
  src: Addr;
  srcPort: number;
  dst: Addr;
  dstPort: number;
}

export class Emitter {
  /** In-order segments received since our last ACK (delayed ACK: every second one). */
  pendingAcks = 0;
  /** Delayed-ACK deadline. */
  ackAt = Infinity;
  /** Registered with the host for its next flushAcks(). */
  private ackDeferred = false;
  lastAdvWnd: number;
  /** Last ACK-flagged packet we sent (keepalive clock). */
  lastSent: number;
  sackSent = 0;
  // Model of the PEER's duplicate-ACK counter for the ACKs we send: the reference counts by ack
  // value only; the first packet carrying a new ack resets it, every later pure (payload-less)
  // ACK with the same ack increments it, non-pure ones are ignored.
  private dupModelAck = 0; // reference LastAck starts at 0
  private dupModelCount = 0;

  constructor(
    private readonly t: ConnHost,
    private readonly id: FourTuple,
    private readonly rx: Receiver,
    private readonly snd: SendQueue,
  ) {
    this.lastSent = t.now;
    this.lastAdvWnd = rx.window();
  }

  mk(flags: number, seq: number, ack: number, window: number, payload: Uint8Array): Packet {
    const id = this.id;
    return {
      version: 1,
      flags,
      protocol: PROTO_STREAM,
      src: id.src,
      dst: id.dst,
      srcPort: id.srcPort,
      dstPort: id.dstPort,
      seq: u32(seq),
      ack: u32(ack),
      window,
      payload,
    };
  }

  /** SYN: seq = ISN, ack 0, our window. */
  syn(iss: number): void {
    this.t.out(this.mk(FLAG_SYN, iss, 0, this.rx.window(), EMPTY));
  }

  /** SYN+ACK: seq = our ISN, ack = the peer's ISN + 1, our window. */
  synAck(iss: number, irs: number): void {
    this.t.out(this.mk(FLAG_SYN | FLAG_ACK, iss, u32(irs + 1), this.rx.window(), EMPTY));
  }

  /** ACK now, with our SACK blocks. */
  ackNow(): void {
    this.pendingAcks = 0;
    this.ackAt = Infinity;
    const blocks = this.rx.blocks;
    const nb = blocks.length >> 1;
    const payload = nb > 0 ? encodeSackFlat(blocks, nb) : EMPTY;
    if (nb > 0) this.sackSent++;
    const w = this.rx.window();
    this.lastAdvWnd = w;
    this.lastSent = this.t.now;
    this.noteAckSent(this.rx.rcvNxt, payload.length === 0);
    this.t.out(this.mk(FLAG_ACK, this.snd.sndNxt, this.rx.rcvNxt, w, payload));
  }

  /** ACK policy after an in-order segment: at once when it filled a hole, else every
   *  `ackEvery` segments (2 unless the host batches ACKs), else at the host's next flushAcks()
   *  when two or more are owed, else within 40 ms (delayed ACK). */
  ackInOrder(hadOoo: boolean): void {
    if (hadOoo) this.ackNow();
    else if (++this.pendingAcks >= this.t.ackEvery) this.ackNow();
    else {
      if (this.ackAt === Infinity) this.ackAt = this.t.now + DELAYED_ACK_MS;
      if (!this.ackDeferred) {
        this.ackDeferred = true;
        this.t.deferAck(this);
      }
    }
  }

  /** The host's input batch ended: ACK when two or more segments are owed (a lone segment keeps
   *  its delayed ACK, so ACKs are never more frequent than every second segment). */
  flushAck(): void {
    this.ackDeferred = false;
    if (this.pendingAcks >= 2) this.ackNow();
  }

  /** ACK policy after a segment beyond the next expected one: at once, with SACK blocks. */
  ackAhead(firstHole: boolean, dupAckBurst: boolean): void {
    this.ackNow();
    if (firstHole && dupAckBurst) {
      // the reference sender ignores SACK ACKs for dup counting; three pure duplicate ACKs
      // let it fast-retransmit the first hole instead of waiting for its RTO.
      this.pureAck();
      this.pureAck();
      this.pureAck();
    }
  }

  pureAck(): void {
    const w = this.rx.window();
    this.lastAdvWnd = w;
    this.lastSent = this.t.now;
    this.noteAckSent(this.rx.rcvNxt, true);
    this.t.out(this.mk(FLAG_ACK, this.snd.sndNxt, this.rx.rcvNxt, w, EMPTY));
  }

  /** A data segment: flags ACK with the current ack and window (it carries our ACK). */
  segment(seq: number, data: Uint8Array): void {
    this.pendingAcks = 0;
    this.ackAt = Infinity;
    this.lastSent = this.t.now;
    const w = this.rx.window();
    this.lastAdvWnd = w;
    this.noteAckSent(this.rx.rcvNxt, false);
    this.t.out(this.mk(FLAG_ACK, seq, this.rx.rcvNxt, w, data));
  }

  /** Update the peer dup-ACK model for an ACK-flagged, non-SYN, non-FIN packet we send. */
  private noteAckSent(ack: number, pure: boolean): void {
    if (ack !== this.dupModelAck) {
      this.dupModelAck = ack; // a new ACK at the peer: its DupAckCount = 0
      this.dupModelCount = 0;
    } else if (pure) this.dupModelCount++;
  }

  /**
   * Keepalive and other REDUNDANT ACKs (window updates): ACK, seq = SendSeq, ack = RecvAck. Two
   * deliberate differences from the reference's keepalive:
   *
   *  * Window: our real advertised window (>= 1), not the reference's 0. Every ACK-flagged
   *    packet overwrites the peer window and a reference sender reads 0 as "no limit", so a 0
   *    keepalive would lift flow control.
   *
   *  * A reference sender counts duplicate ACKs by ack value alone, even with nothing
   *    outstanding, and the third one cuts its cwnd and fast-retransmits. An idle connection's
   *    keepalives all repeat the same ack, so from the point where this packet would be the
   *    peer's THIRD (or later) pure duplicate — counted by the model in noteAckSent, which also
   *    sees delayed ACKs, window updates and our dup-ACK burst — it carries a SACK option
   *    instead of an empty payload. Why this is safe for a reference peer:
   *      - a payload matching the SACK predicate is processed as SACK and then dropped (never
   *        data, never an error); a non-pure ACK with ack == LastAck is ignored by the dup
   *        counter (no reset, no increment);
   *      - it is still an ACK-flagged packet, so it refreshes the peer's last-activity (the
   *        keepalive's whole purpose) and carries our window;
   *      - the block is EMPTY, [RecvAck, RecvAck): truthful (it claims no byte), and the
   *        reference's match "Left <= seq && seq+len <= Right" cannot hold for a queued segment
   *        (len >= 1, seq >= RecvAck once this packet's cumulative ack, processed before the
   *        SACK, removed the rest). RFC-style processors (ours: Sender.processSack) discard a
   *        block with Left >= Right. An empty block rather than a D-SACK-like [A-1, A) so a
   *        D-SACK-aware sender does not read it as "a retransmission was spurious".
   *      - Exception: the reference's SACK compare is not wrap-safe; with RecvAck within 2 MiB
   *        below 2^32 a queued segment straddling the wrap (the reference has at most ~1 MiB in
   *        flight) could be falsely marked SACKed and then skipped by its retransmission. There
   *        we send the plain keepalive and accept the cwnd cut on an idle connection, the lesser
   *        harm. (ISN 0: only after ~4 GiB in that direction.)
   *    The first two keepalives after the last new ACK stay byte-identical to the reference's
   *    (apart from the window), so short idle periods look exactly like a reference peer.
   */
  keepalive(): void {
    const ack = this.rx.rcvNxt;
    if (this.dupModelAck === ack && this.dupModelCount >= 2 && u32(-ack) > SACK_KA_WRAP_GUARD) {
      const w = this.rx.window();
      this.lastAdvWnd = w;
      this.lastSent = this.t.now;
      const p = new Uint8Array(SACK_EMPTY_BLOCK); // payloads are handed off; never share one
      const dv = new DataView(p.buffer);
      dv.setUint32(5, ack);
      dv.setUint32(9, ack);
      this.noteAckSent(ack, false);
      this.t.out(this.mk(FLAG_ACK, this.snd.sndNxt, ack, w, p));
    } else this.pureAck();
  }

  /** FIN: flags FIN only, seq = SendSeq, ack 0, window 0 (FIN consumes no sequence number). */
  fin(): void {
    this.t.out(this.mk(FLAG_FIN, this.snd.sndNxt, 0, 0, EMPTY));
  }
}
