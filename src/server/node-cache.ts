// Write-through cache of node records for the SQLite store, which is the only writer of its
// file: a lookup or resolve of a cached node costs a Map read instead of a SQLite row decode
// (two JSON.parse calls per row).
//
// Consistency with group commit (group-commit.ts): every write made inside a group updates the
// cache and marks the node dirty; if a savepoint or the whole transaction is rolled back, every
// node dirtied in the group is dropped from the cache (a superset of what was undone: a miss is
// always safe), and the dirty set is forgotten when the group ends. Rows read from the database
// are cached only if no write of the current group touched them, so the cache never holds a
// state that was not, or will not be, committed. Callers get copies: handlers mutate the record
// they read before writing it back.
import type { GroupHooks } from "./group-commit.ts";

/** The fields of a node record the cache handles itself (the store's NodeRec). */
export interface CachedNode {
  id: number;
  lastSeen: number;
  networks: number[];
  tags: string[];
}

/** Cached records at most (a few hundred bytes each); the oldest eighth is dropped when full. */
export const NODE_CACHE_MAX = 131_072;

const copy = <N extends CachedNode>(n: N): N => ({ ...n, networks: n.networks.slice(), tags: n.tags.slice() });

export class NodeCache<NodeRec extends CachedNode> implements GroupHooks {
  private m = new Map<number, NodeRec>();
  private dirty = new Set<number>();
  hits = 0;
  misses = 0;

  constructor(private max = NODE_CACHE_MAX) {}

  get size(): number {
    return this.m.size;
  }

  /** A copy of the cached record, or null on a miss. */
  get(id: number): NodeRec | null {
    const n = this.m.get(id);
    if (!n) { this.misses++; return null; }
    this.hits++;
    return copy(n);
  }

  /** A record just read from the database (cached unless written in the current group). */
  fill(n: NodeRec): void {
    if (!this.dirty.has(n.id)) this.set(copy(n));
  }

  /** putNode: the record as written. */
  wrote(n: NodeRec): void {
    this.dirty.add(n.id);
    this.set(copy(n));
  }

  /** touchNode: only last_seen changed. */
  touched(id: number, lastSeen: number): void {
    this.dirty.add(id);
    const n = this.m.get(id);
    if (n) n.lastSeen = lastSeen;
  }

  /** deleteNode / deleteStaleNode (whether or not the row existed). */
  gone(id: number): void {
    this.dirty.add(id);
    this.m.delete(id);
  }

  clear(): void {
    this.m.clear();
  }

  rolledBack(): void {
    for (const id of this.dirty) this.m.delete(id);
  }

  ended(): void {
    this.dirty.clear();
  }

  private set(n: NodeRec): void {
    if (this.m.size >= this.max && !this.m.has(n.id)) {
      let drop = this.max >> 3;
      for (const k of this.m.keys()) { this.m.delete(k); if (--drop <= 0) break; }
    }
    this.m.set(n.id, n);
  }
}
