// Bounded memory of the trust service: message hashes seen recently (replay refusal) and cached
// registry lookups (key check, network rule).
import type { RegistryLookup } from "./context.ts";

/** How long a message hash is remembered (longer than a message stays fresh). */
const REPLAY_KEEP_MS = 10 * 60_000;
/** At most this many hashes are remembered; the oldest go first. */
const REPLAY_MAX = 65_536;
const LOOKUP_TTL_MS = 5 * 60_000;
const LOOKUP_MAX = 4096;

export class ReplayCache {
  private seen = new Map<string, number>();

  /** Remember `hash` at `now`; false when it was already seen (a replay). */
  add(hash: string, now: number): boolean {
    if (this.seen.has(hash)) return false;
    if (this.seen.size >= REPLAY_MAX) this.reap(now);
    if (this.seen.size >= REPLAY_MAX) {
      const oldest = this.seen.keys().next().value;
      if (oldest !== undefined) this.seen.delete(oldest);
    }
    this.seen.set(hash, now);
    return true;
  }

  /** Forget hashes older than the keep time. */
  reap(now: number): void {
    const cutoff = now - REPLAY_KEEP_MS;
    for (const [h, t] of this.seen) {
      if (t >= cutoff) break; // insertion order = time order
      this.seen.delete(h);
    }
  }

  get size(): number {
    return this.seen.size;
  }
}

/** Registry lookups shared by concurrent callers and kept for a while; failures are not kept. */
export class LookupCache {
  private entries = new Map<number, { at: number; rec: Promise<RegistryLookup> }>();

  constructor(private readonly fetch: (nodeId: number) => Promise<RegistryLookup>) {}

  get(nodeId: number, now: number): Promise<RegistryLookup> {
    const c = this.entries.get(nodeId);
    if (c && now - c.at < LOOKUP_TTL_MS) return c.rec;
    if (c) this.entries.delete(nodeId);
    if (this.entries.size >= LOOKUP_MAX) {
      const oldest = this.entries.keys().next().value;
      if (oldest !== undefined) this.entries.delete(oldest);
    }
    const rec = this.fetch(nodeId);
    this.entries.set(nodeId, { at: now, rec });
    rec.catch(() => {
      if (this.entries.get(nodeId)?.rec === rec) this.entries.delete(nodeId);
    });
    return rec;
  }
}
