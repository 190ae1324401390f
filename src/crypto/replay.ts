// Anti-replay window for PILS counters (docs/protocol.md §4.4; vectors in test/crypto-replay.test.ts).
//
// Acceptance decisions are exactly the reference's: counters in (max − 256, max] are accepted once
// each, a counter above max slides the window, anything ≥ 256 behind max is "too old".
//
// Two deliberate, wire-compatible differences from the reference:
//  * W5 fix — the reference records the counter BEFORE authenticating the frame and never rolls back
//    `max` on GCM failure, so one forged frame with counter 2^64−1 kills the tunnel. Here `check()`
//    is side-effect free and `record()` is called by TunnelSession only AFTER the GCM tag verified.
//    (JS is single-threaded and decryption is synchronous, so check→decrypt→record cannot interleave.)
//  * W15 fix — the reference uses `max == 0` to mean "nothing received yet", so counter 0 is
//    replayable until something else is accepted. We track "empty" separately; counter 0 is accepted
//    once like any other. Reference peers never send counter 0, so nothing observable changes.
//
// Counters are JS numbers. A genuine peer cannot reach 2^53 frames, so counters that are not safe
// integers are rejected (TunnelSession rejects them before decryption).

export const REPLAY_WINDOW_SIZE = 256;

export class ReplayWindow {
  private maxC = 0;
  private empty = true;
  private readonly bits = new Uint32Array(REPLAY_WINDOW_SIZE / 32);

  /** Highest accepted counter (0 when nothing was accepted). */
  get max(): number {
    return this.maxC;
  }

  /** True when nothing was accepted yet. */
  get isEmpty(): boolean {
    return this.empty;
  }

  private bit(c: number): boolean {
    const i = c & 255; // exact for safe integers: 2^32 is a multiple of 256
    return (this.bits[i >>> 5] & (1 << (i & 31))) !== 0;
  }
  private setBit(c: number): void {
    const i = c & 255;
    this.bits[i >>> 5] |= 1 << (i & 31);
  }
  private clearBit(c: number): void {
    const i = c & 255;
    this.bits[i >>> 5] &= ~(1 << (i & 31));
  }

  /** Would counter `c` be accepted? No state change. */
  check(c: number): boolean {
    if (!Number.isSafeInteger(c) || c < 0) return false;
    if (this.empty || c > this.maxC) return true;
    if (this.maxC - c >= REPLAY_WINDOW_SIZE) return false; // too old
    return !this.bit(c); // replay if set
  }

  /**
   * Checks and records `c` (the reference's checkAndRecordNonce decision). Returns false (and changes
   * nothing) if `c` is a replay or too old. Call only for authenticated frames.
   */
  record(c: number): boolean {
    if (!this.check(c)) return false;
    if (this.empty) {
      this.empty = false;
      this.maxC = c;
    } else if (c > this.maxC) {
      const s = c - this.maxC;
      if (s >= REPLAY_WINDOW_SIZE) this.bits.fill(0);
      else for (let k = 0; k < s; k++) this.clearBit(c - k);
      this.maxC = c;
    }
    this.setBit(c);
    return true;
  }

  reset(): void {
    this.maxC = 0;
    this.empty = true;
    this.bits.fill(0);
  }
}
