// Send side, part 2: ACK and SACK processing, loss detection (RACK), recovery episodes with
// undo of spurious reductions, and the retransmission timeout. Nothing here is visible on the
// wire except timing.
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
//    with the min-RTT test of RFC 8985 docs/protocol.md §6.4 instead of timestamps, which the wire lacks), or
//    when a segment declared lost arrives before we got round to resending it.
//  * If every retransmission of an episode proves spurious, the window reduction is undone.
//  * PRR (RFC 6937, in the congestion controller) spreads the reduction over the recovery round
//    instead of halving at once and then stalling; it also paces the repairs by the ACK clock.
//  * Peers that never send SACK (no reference build does that, but be safe) keep the classic
//    duplicate-ACK trigger with early retransmit (RFC 5827); RACK then handles partial ACKs.
import { TransportError } from "./api.ts";
import type { CongestionControl } from "./congestion.ts";
import type { ConnHost, ConnTuning } from "./conn-types.ts";
import { Seg, SendQueue, type SendOwner } from "./sendq.ts";
import { seqGe, seqGt, seqLe, seqLt, u32 } from "./seq.ts";

/** What the sender additionally needs: giving up after the retransmission limit. */
export interface SenderOwner extends SendOwner {
  giveUp(err: TransportError): void;
}

export class Sender extends SendQueue {
  private sackSeen = false; // the peer has sent SACK blocks: loss detection is RACK-only
  rtoRecovery = false; // the current episode began with an RTO (no PRR, slow start)
  private recoveryPoint = 0;
  // ---- RACK (RFC 8985): time-based loss detection
  private rackXmit = -1; // send time of the most recently SENT segment known delivered
  private rackEnd = 0; // its end seq (tie-break among segments sent in the same ms)
  private rackRtt = 0; // its RTT
  private reoMult = 1; // reordering window = reoMult · minRtt/4 (capped at srtt)
  private reoBumpAt = 0; // at most one window increase per round trip
  private reoQuiet = 0; // recovery episodes since the last increase (16 → reset)
  reoAt = Infinity; // RACK reorder timer: the next segment that may become lost
  private epSpurious = 0; // retransmissions of this episode shown spurious (+ lost marks undone)
  private pendSpurious = 0; // verdicts proven wrong by this ACK (handled after it is parsed)
  private pendSpEpoch = 0; // ... of which retransmissions from the current episode
  /** Consecutive RTO expiries, and how many of them the peer answered. */
  rtoStreak = 0;
  streakResponses = 0;
  /** Recovery diagnostics (tests, bench): not part of the StreamConn contract. */
  readonly rec = { episodes: 0, rtos: 0, spurious: 0, undos: 0 };
  /** Decoded SACK blocks of the current ACK (flat [left, right) pairs). */
  readonly sackTmp = new Uint32Array(8);

  constructor(t: ConnHost, private readonly owner: SenderOwner, tune: ConnTuning, cc: CongestionControl) {
    super(t, owner, tune, cc);
  }

  /** The send-side part of an inbound ACK: `nS` SACK blocks are in sackTmp. */
  onAck(a: number, window: number, oldWnd: number, nS: number, isPure: boolean): void {
    if (this.sndUna === this.sndNxt) return;
    const now = this.t.now;
    const una0 = this.sndUna, sacked0 = this.sackedBytes, ep0 = this.rec.episodes;
    if (nS > 0) this.sackSeen = true;
    // an ack beyond SendSeq is ignored instead of trusted (the reference trusts it)
    if (seqGt(a, this.sndUna) && seqLe(a, this.sndNxt)) this.newAck(a);
    // Duplicate ACKs only matter for a peer that never SACKs: with SACK, RACK decides (a pure
    // duplicate is then a keepalive, a window update or our own dup-ACK burst — no signal).
    else if (!this.sackSeen && a === this.sndUna && isPure && window === oldWnd) this.dupAcks++;
    if (nS > 0) this.processSack(nS);
    if (this.pendSpurious > 0) this.onSpurious(now);
    this.lossDetect();
    if (this.inRecovery && !this.rtoRecovery) {
      // PRR: DeliveredData = advance of the cumulative ACK + change in SACKed bytes
      this.cc.onRecoveryAck(u32(this.sndUna - una0) + this.sackedBytes - sacked0, this.rec.episodes !== ep0, this.pipe());
    }
    // window re-opened after our probe was dropped by a full receiver: resend now rather than
    // wait out a backed-off RTO (slow-reader recovery).
    if (this.rtoStreak > 0 && window > oldWnd && oldWnd <= 1 && this.sndUna !== this.sndNxt) {
      const s = this.firstUnsacked();
      if (s) this.xmit(s, true);
      this.rtoStreak = 0;
      this.rtt.resetBackoff();
      this.rtoAt = now + this.rtt.rto;
    }
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
    if (sampleAt >= 0) this.rtt.sample(now - sampleAt);
    if (this.inRecovery && seqGe(a, this.recoveryPoint)) {
      this.inRecovery = false; // episode over
      this.cc.onRecoveryEnd(this.rtoRecovery);
      this.rtoRecovery = false;
    } else this.cc.onAck(acked, this.inRecovery && !this.rtoRecovery);
    this.rtoAt = this.sndUna === this.sndNxt ? Infinity : now + this.rtt.rto;
    if (this.sndUna === this.sndNxt) this.nagleExpired = true; // all acked: Nagle releases
    this.releaseAcked();
  }

  private processSack(n: number): void {
    const q = this.q;
    const tmp = this.sackTmp;
    const base = this.sndUna;
    const span = u32(this.sndNxt - base);
    const now = this.t.now;
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
        this.delivered(s, now);
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
          this.delivered(s, now);
          if (s.tx === 1 && s.sentAt > sampleAt) sampleAt = s.sentAt;
        }
        j--;
      }
    }
    // the receiver SACKs immediately on an out-of-order arrival: the newest newly-SACKed
    // original transmission is what triggered this ACK, a clean RTT sample
    if (sampleAt >= 0) this.rtt.sample(now - sampleAt);
  }

  /** Reordering window (ms): the extra time a segment gets before it is declared lost. */
  private reoWnd(): number {
    const r = this.rtt;
    if (r.minRtt === Infinity) return 0;
    const w = (this.reoMult * r.minRtt) / 4;
    const cap = r.srtt + 4 * r.rttvar;
    return w < cap ? w : cap;
  }

  /** A segment was newly delivered (cumulative ACK or SACK): RACK bookkeeping (RFC 8985 docs/protocol.md §6.4). */
  private delivered(s: Seg, now: number): void {
    if (s.lost) {
      // declared lost, arrived before its retransmission: the reordering window was too short
      s.lost = false;
      this.lostBytes -= s.data.length;
      this.lostCount--;
      this.pendSpurious++;
    }
    if (s.tx > 1 && now - s.sentAt < this.rtt.minRtt) {
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
    const r = this.rtt;
    this.rec.spurious += this.pendSpurious;
    this.pendSpurious = 0;
    if (now >= this.reoBumpAt) {
      if ((this.reoMult * r.minRtt) / 4 < r.srtt + 4 * r.rttvar) this.reoMult++;
      this.reoBumpAt = now + r.srtt;
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
    this.cc.undo();
    this.inRecovery = false;
    this.rtoRecovery = false;
    this.rtoStreak = 0;
    this.rtt.resetBackoff(); // a spurious timeout must not leave the backoff behind
    if (this.lostCount > 0) {
      const q = this.q;
      for (let i = this.qHead; i < q.length; i++) if (q[i].lost) q[i].lost = false;
      this.lostBytes = this.lostCount = 0;
    }
  }

  lossDetect(): void {
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

  /** RFC 8985 docs/protocol.md §6.4 step 5, and the reorder timer for segments not yet overdue. */
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
      this.reoMult = 1; // RFC 8985 docs/protocol.md §6.4: the reordering seen long ago may be gone
      this.reoQuiet = 0;
    }
    const flight = u32(this.sndNxt - this.sndUna);
    this.inRecovery = true;
    this.rtoRecovery = false;
    this.recoveryPoint = this.sndNxt;
    this.epoch++;
    this.epRetx = this.epSpurious = 0;
    this.cc.onFastRecovery(flight, this.pipe());
  }

  /** The retransmission timer expired. */
  onRto(now: number): void {
    if (this.sndUna === this.sndNxt) {
      this.rtoAt = Infinity;
      return;
    }
    const rto = this.rtt.rto;
    // The timer runs from the last cumulative advance. If RACK resent the first hole less than an
    // RTO ago, that repair is still on its way: wait for it (as the reference does) instead of
    // sending a duplicate whose early "ACK" would then look like a spurious timeout.
    const head = this.firstUnsacked();
    if (head && head.tx > 1 && now - head.sentAt < rto) {
      this.rtoAt = head.sentAt + rto;
      return;
    }
    if (this.rtoStreak === 0) this.streakResponses = 0;
    this.rtoStreak++;
    // Patience: abort after maxRetx consecutive expiries unless the peer answers most of our
    // retransmissions (a live receiver whose buffer is full answers each probe with an ACK; an
    // occasional keepalive from a one-way-broken path does not count as answering).
    if (this.rtoStreak > this.tune.maxRetx && this.streakResponses * 2 < this.rtoStreak) {
      this.owner.giveUp(new TransportError("timeout", "retransmission limit reached"));
      return;
    }
    this.rec.rtos++;
    this.cc.onRto(!this.rtoRecovery, this.inRecovery, u32(this.sndNxt - this.sndUna));
    this.inRecovery = true;
    this.rtoRecovery = true;
    this.recoveryPoint = this.sndNxt;
    this.epoch++;
    this.epRetx = this.epSpurious = 0;
    this.dupAcks = 0;
    this.rtt.backoff();
    // Only the head is resent now (like F-RTO's first step). The rest is NOT marked lost: if the
    // head's ACK proves the timeout spurious (it returns sooner than minRtt), nothing else was
    // resent and the undo is complete; if it was real, the head's retransmission is now the
    // latest delivered segment and RACK declares every older un-SACKed segment lost at once.
    const s = this.firstUnsacked() ?? this.q[this.qHead];
    if (s) this.xmit(s, true);
    this.rtoAt = now + this.rtt.rto;
  }

  /** Everything unsent and unacknowledged is dropped (connection closing). */
  override clear(): void {
    super.clear();
    this.reoAt = Infinity;
  }
}
