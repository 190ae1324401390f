// "At most once per key per interval", with a bounded number of remembered keys: the tunnel uses it
// to cap answers to unverifiable key exchanges (per source address) and beacon-ordered punches.
export class RateGate {
  private last = new Map<string, number>();

  constructor(
    private readonly intervalMs: number,
    private readonly maxKeys = 1024,
  ) {}

  /** True (and the key is charged) when `key` was not allowed within the last interval. */
  allow(key: string, now: number): boolean {
    const t = this.last.get(key);
    if (t !== undefined && now - t < this.intervalMs) return false;
    this.last.delete(key);
    if (this.last.size >= this.maxKeys) {
      // Forget expired keys; if every key is still fresh, refuse (the table is full of recent
      // sources, so one more answer would exceed the budget anyway).
      for (const [k, v] of this.last) if (now - v >= this.intervalMs) this.last.delete(k);
      if (this.last.size >= this.maxKeys) return false;
    }
    this.last.set(key, now);
    return true;
  }
}
