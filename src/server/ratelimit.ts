// Register rate limit: a token bucket per client address (10 registrations per minute by
// default). IPv6 clients are keyed by their /64, since one host usually owns a whole /64.

export class RateLimiter {
  private b = new Map<string, { tokens: number; last: number }>();
  constructor(private rate = 10, private windowMs = 60_000) {}
  static key(ip: string): string {
    if (!ip.includes(":")) return ip;
    const full = ip.split("::");
    const head = full[0] ? full[0].split(":") : [];
    const tail = full.length > 1 && full[1] ? full[1].split(":") : [];
    const groups = [...head, ...new Array(Math.max(0, 8 - head.length - tail.length)).fill("0"), ...tail];
    return groups.slice(0, 4).join(":") + "::/64";
  }
  allow(ip: string, now = Date.now()): boolean {
    const k = RateLimiter.key(ip);
    const e = this.b.get(k);
    if (!e) {
      this.b.set(k, { tokens: this.rate - 1, last: now });
      return true;
    }
    e.tokens = Math.min(this.rate, e.tokens + (this.rate * (now - e.last)) / this.windowMs);
    e.last = now;
    if (e.tokens < 1) return false;
    e.tokens -= 1;
    return true;
  }
  /** Forget buckets idle for two windows (they are full again anyway). */
  cleanup(now = Date.now()): void {
    for (const [k, e] of this.b) if (now - e.last > 2 * this.windowMs) this.b.delete(k);
  }
}
