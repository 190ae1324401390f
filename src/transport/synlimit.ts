// SYN admission: a global token bucket and one per source node (bounded table, idle buckets
// swept). Refill is continuous (the reference floors and may stall its timestamp; same average).
import type { Timed } from "./timers.ts";

const MAX_SYN_SOURCES = 4096;
const SYN_BUCKET_AGE = 10_000;
const SWEEP_MS = 15_000;

interface Bucket {
  tokens: number;
  last: number;
}

export const SYN_OK = 0;
/** The global bucket is empty (worth reporting: a SYN flood). */
export const SYN_GLOBAL_LIMIT = 1;
/** The source's bucket is empty, or too many sources are tracked. */
export const SYN_SOURCE_LIMIT = 2;

export class SynLimiter implements Timed {
  scheduled = Infinity;
  private readonly global: Bucket;
  private readonly sources = new Map<number, Bucket>();

  constructor(
    private readonly timers: { arm(obj: Timed, at: number): void },
    private readonly rate: number,
    private readonly srcRate: number,
    now: number,
  ) {
    this.global = { tokens: rate, last: now };
  }

  /** Admit one SYN from source node `node`: SYN_OK or the limit that refused it. */
  admit(node: number, now: number): number {
    if (!take(this.global, this.rate, now)) return SYN_GLOBAL_LIMIT;
    const b = this.sources.get(node);
    if (b === undefined) {
      if (this.sources.size >= MAX_SYN_SOURCES) return SYN_SOURCE_LIMIT;
      this.sources.set(node, { tokens: this.srcRate - 1, last: now });
      this.timers.arm(this, now + SWEEP_MS);
      return SYN_OK;
    }
    return take(b, this.srcRate, now) ? SYN_OK : SYN_SOURCE_LIMIT;
  }

  /** Sweep buckets idle for more than 10 s. */
  onTimer(now: number): void {
    for (const [k, b] of this.sources) if (now - b.last > SYN_BUCKET_AGE) this.sources.delete(k);
    if (this.sources.size > 0) this.timers.arm(this, now + SWEEP_MS);
  }
}

function take(b: Bucket, rate: number, now: number): boolean {
  b.tokens = Math.min(rate, b.tokens + ((now - b.last) * rate) / 1000);
  b.last = now;
  if (b.tokens < 1) return false;
  b.tokens -= 1;
  return true;
}
