// The tunnel's peer table: entries by node ID, with the bounds a stranger cannot push past.
// Unverified entries (nobody vouched for them: a PILK from an unregistered node, a relay sender, a
// plaintext sender) are capped and expire when idle; verified ones (our own dials, PILAs checked
// against the registry key) are never evicted by strangers. Also the revoked (blocked) node IDs and
// the node IDs known to speak plaintext only.
import type { Clock } from "./net/packet-conn.ts";
import type { Peer } from "./tunnel-types.ts";

/** Unverified entries at most. */
export const MAX_UNVERIFIED_PEERS = 128;
/** An unverified entry silent this long (nothing received or sent) is forgotten. */
export const UNVERIFIED_IDLE_MS = 60_000;
/** Node IDs remembered as plaintext speakers. */
const MAX_PLAIN_NODES = 1024;

export class PeerTable {
  readonly map = new Map<number, Peer>();
  private readonly unverified = new Set<number>();
  private readonly blocked = new Set<number>();
  private readonly plain = new Set<number>();

  constructor(
    private readonly clock: Clock,
    /** called for every entry removed (timers, counters of the owner) */
    private readonly onRemove: (p: Peer) => void,
  ) {}

  get(id: number): Peer | undefined {
    return this.map.get(id);
  }

  add(p: Peer): void {
    this.map.set(p.nodeId, p);
    if (p.verified) this.unverified.delete(p.nodeId);
    else this.unverified.add(p.nodeId);
  }

  remove(id: number): void {
    const p = this.map.get(id);
    if (!p) return;
    this.map.delete(id);
    this.unverified.delete(id);
    this.onRemove(p);
  }

  markVerified(p: Peer): void {
    p.verified = true;
    this.unverified.delete(p.nodeId);
  }

  get unverifiedCount(): number {
    return this.unverified.size;
  }

  /** Room for one more unverified entry? Forgets idle ones first. */
  admitUnverified(): boolean {
    if (this.unverified.size < MAX_UNVERIFIED_PEERS) return true;
    this.sweep();
    return this.unverified.size < MAX_UNVERIFIED_PEERS;
  }

  /** Forget unverified entries silent for UNVERIFIED_IDLE_MS. */
  sweep(): void {
    const now = this.clock.now();
    for (const id of [...this.unverified]) {
      const p = this.map.get(id);
      if (!p || now - Math.max(p.lastRecvAt, p.lastSendAt, p.createdAt) >= UNVERIFIED_IDLE_MS) this.remove(id);
    }
  }

  block(id: number): void {
    this.blocked.add(id);
    this.remove(id);
  }
  unblock(id: number): void {
    this.blocked.delete(id);
  }
  isBlocked(id: number): boolean {
    return this.blocked.has(id);
  }
  blockedIds(): number[] {
    return [...this.blocked];
  }

  rememberPlain(id: number): void {
    this.plain.delete(id);
    if (this.plain.size >= MAX_PLAIN_NODES) this.plain.delete(this.plain.values().next().value as number);
    this.plain.add(id);
  }
  forgetPlain(id: number): void {
    this.plain.delete(id);
  }
  isPlain(id: number): boolean {
    return this.plain.has(id);
  }
}
