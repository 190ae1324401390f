// Round-trip time estimation and the retransmission timeout (RFC 6298 smoothing, Karn's rule
// applied by the caller: only never-retransmitted segments are sampled).

export const RTO_INITIAL = 1000;
export const RTO_MIN = 200;
export const RTO_MAX = 10_000;
/** Clock granularity term of the RTO (ms). */
const CLOCK_G = 10;

export class RttEstimator {
  /** Smoothed RTT (ms); 0 = no sample yet. */
  srtt = 0;
  rttvar = 0;
  /** Current retransmission timeout (ms), including any backoff. */
  rto = RTO_INITIAL;
  /** Lowest RTT sample of the connection (Infinity until one arrives). */
  minRtt = Infinity;

  sample(r: number): void {
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

  /** The un-backed-off timeout for the current estimate. */
  computeRto(): number {
    if (this.srtt === 0) return RTO_INITIAL;
    const r = this.srtt + Math.max(CLOCK_G, 4 * this.rttvar);
    return r < RTO_MIN ? RTO_MIN : r > RTO_MAX ? RTO_MAX : r;
  }

  /** Drop any backoff (a response proved the path alive, or a timeout was spurious). */
  resetBackoff(): void {
    this.rto = this.computeRto();
  }

  /** Exponential backoff after a timeout (capped). */
  backoff(): void {
    this.rto = Math.min(this.rto * 2, RTO_MAX);
  }
}
