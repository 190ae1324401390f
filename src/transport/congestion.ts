// Congestion control behind a small interface, so another controller can be swapped in. The
// loss-recovery machinery (RACK, recovery episodes, undo decisions) lives in the sender and tells
// the controller what happened; the controller owns cwnd and ssthresh only.
import { MSS } from "../proto/types.ts";

/** Initial and loss window: 10 segments, as the reference. */
export const INITIAL_CWND = 10 * MSS;

export interface CongestionControl {
  /** Congestion window, bytes. */
  readonly cwnd: number;
  /** Slow-start threshold, bytes. */
  readonly ssthresh: number;
  /** A cumulative ACK newly acknowledged `acked` bytes outside fast recovery (slow start or a
   *  timeout episode), or inside fast recovery when `fastRecovery` (then only the cap applies). */
  onAck(acked: number, fastRecovery: boolean): void;
  /** The recovery episode ended; `afterRto` when it began with a retransmission timeout. */
  onRecoveryEnd(afterRto: boolean): void;
  /** Loss detected: fast recovery begins with `flight` bytes outstanding, `pipe` in the network. */
  onFastRecovery(flight: number, pipe: number): void;
  /** Every ACK during fast recovery: `delivered` bytes newly delivered (cumulative + SACKed);
   *  `entering` on the ACK that started the episode. */
  onRecoveryAck(delivered: number, entering: boolean, pipe: number): void;
  /** `bytes` of a segment were (re)transmitted during a recovery episode. */
  onRecoverySend(bytes: number): void;
  /** Retransmission timeout. `first`: first expiry of this outage; `inRecovery`: an episode was
   *  already running; `flight`: bytes outstanding. */
  onRto(first: boolean, inRecovery: boolean, flight: number): void;
  /** The last reduction proved spurious: restore the window from before it. */
  undo(): void;
}

/**
 * Multiplicative decrease on loss: 0.7 as CUBIC (RFC 9438 docs/protocol.md §6.3) rather than Reno's 0.5. Random
 * (non-congestion) loss is common on the paths this overlay crosses; with 0.5 a 5 % loss rate
 * pins the window at a few segments (Mathis bound). Still a decrease per loss round trip.
 */
const BETA = 0.7;

/**
 * Reno-style growth (slow start and additive increase, both counting bytes acknowledged), a 0.7
 * decrease per loss episode, PRR (RFC 6937) during fast recovery, and undo of spurious reductions.
 */
export class PrrCongestion implements CongestionControl {
  cwnd = INITIAL_CWND;
  ssthresh = 524288;
  private priorCwnd = 0;
  private priorSsthresh = 0;
  private prrDelivered = 0;
  private prrOut = 0;
  private recoverFS = 0;

  constructor(private readonly maxCwnd: number) {}

  onAck(acked: number, fastRecovery: boolean): void {
    if (fastRecovery) {
      // PRR sets cwnd on every ACK (onRecoveryAck). Partial ACKs need no NewReno special case:
      // the repaired head was sent later than the next hole, so RACK declares that hole lost.
    } else if (this.cwnd < this.ssthresh) {
      // Slow start, byte counting with no per-ACK limit (as the reference, docs/protocol.md §6.8):
      // receivers acknowledge up to a batch of segments at once (ours: a poll's worth), and a
      // per-ACK cap (RFC 3465's L = 2·MSS) would then grow the window by a fraction per round
      // trip instead of doubling it.
      this.cwnd += acked;
    } else {
      // Congestion avoidance, byte counting: about one MSS per round trip however the ACKs are batched.
      this.cwnd += Math.max(1, Math.floor((MSS * acked) / this.cwnd));
    }
    if (this.cwnd > this.maxCwnd) this.cwnd = this.maxCwnd;
  }

  onRecoveryEnd(afterRto: boolean): void {
    // After fast recovery PRR has brought cwnd to about ssthresh; after an RTO cwnd has been
    // slow-starting from the loss window and keeps its value.
    if (!afterRto) this.cwnd = Math.max(this.ssthresh, 2 * MSS);
    if (this.cwnd > this.maxCwnd) this.cwnd = this.maxCwnd;
  }

  onFastRecovery(flight: number, pipe: number): void {
    this.priorCwnd = this.cwnd;
    this.priorSsthresh = this.ssthresh;
    this.ssthresh = Math.max(Math.floor(Math.min(this.cwnd, flight) * BETA), 2 * MSS);
    this.prrDelivered = this.prrOut = 0;
    this.recoverFS = flight > 0 ? flight : 1;
    this.cwnd = pipe + MSS; // at least the first repair goes out now (timer path too)
  }

  /** PRR (RFC 6937) with slow-start reduction bound. */
  onRecoveryAck(delivered: number, entering: boolean, pipe: number): void {
    this.prrDelivered += delivered;
    let snd: number;
    if (pipe > this.ssthresh) snd = Math.ceil((this.prrDelivered * this.ssthresh) / this.recoverFS) - this.prrOut;
    else {
      const d = this.prrDelivered - this.prrOut;
      snd = Math.min(this.ssthresh - pipe, (d > delivered ? d : delivered) + MSS);
    }
    if (snd < 0) snd = 0;
    if (entering && snd < MSS) snd = MSS;
    this.cwnd = pipe + snd;
  }

  onRecoverySend(bytes: number): void {
    this.prrOut += bytes;
  }

  onRto(first: boolean, inRecovery: boolean, flight: number): void {
    if (first) {
      // first expiry of this outage: remember the state so a spurious timeout can be undone
      // (F-RTO/Eifel). Inside a fast recovery that is the already-reduced PRR window, so an undo
      // never reverts a reduction that a genuine loss caused.
      this.priorCwnd = this.cwnd;
      this.priorSsthresh = this.ssthresh;
      if (!inRecovery) this.ssthresh = Math.max(Math.floor(flight * BETA), 2 * MSS);
    }
    // Timeout: collapse to the reference's 10-segment loss window, then slow start.
    this.cwnd = INITIAL_CWND < this.ssthresh ? INITIAL_CWND : this.ssthresh;
  }

  undo(): void {
    if (this.priorCwnd > this.cwnd) this.cwnd = this.priorCwnd;
    if (this.priorSsthresh > this.ssthresh) this.ssthresh = this.priorSsthresh;
  }
}
