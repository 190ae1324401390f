// What the registry's request handlers share: the store, the clock, authentication, metrics and
// options, plus the node lookups and the read-then-write pattern every handler group uses.
import type { OkType, ReplyFields, RequestOf, RequestType } from "../proto/registry.ts";
import type { Auth, ConnCtx } from "./auth.ts";
import type { Metrics } from "./metrics.ts";
import type { RateLimiter } from "./ratelimit.ts";
import type { NodeRec, Store, Tx } from "./store.ts";
import { fail } from "./validate.ts";
import type { LogFn } from "../sys/log.ts";

export interface RegistryOptions {
  /** Reference-identical bodies: `{"type":"error","error":"request failed"}`, no extension fields. */
  opaqueErrors?: boolean;
  /** Clock (ms) for tests. */
  now?: () => number;
  /** Disable the register rate limit (benchmarks). */
  noRateLimit?: boolean;
  /** Replication token; empty = replication disabled ("replication not configured"). */
  replicationToken?: string;
  /**
   * Operator token (`-admin-token`): authorizes polo-score writes (set_polo_score needs it;
   * update_polo_score takes it or a node signature). Empty = no operator access.
   */
  adminToken?: string;
  /** Standby mode: only read request types are served. */
  standby?: boolean;
  /** Logger for replication events. */
  log?: LogFn;
}

export interface Core {
  readonly store: Store;
  readonly opts: RegistryOptions;
  readonly auth: Auth;
  readonly metrics: Metrics;
  readonly limiter: RateLimiter;
  /** Beacons announced with beacon_register (in memory, expire after BEACON_TTL_MS). */
  readonly beacons: Map<number, { addr: string; seen: number }>;
  now(): number;
}

/** A success reply body as a handler builds it (`type` included). */
export type Reply<T extends RequestType> = { type: OkType<T> } & ReplyFields[T];
export type Handler<T extends RequestType> = (core: Core, m: RequestOf<T>, ctx: ConnCtx) => Promise<Reply<T>>;
export type HandlerTable = { [T in RequestType]?: Handler<T> };

/** The node `id`, or a not_found error naming it as `what`. */
export async function live(t: Tx, id: number, what = "node"): Promise<NodeRec> {
  const n = id === 0 ? null : await t.getNode(id);
  if (!n) fail("not_found", `${what} ${id} not found`);
  return n!;
}

/**
 * May `requester` learn `target`'s endpoint? Public nodes: anyone. Private nodes: only nodes the
 * target granted trust to (report_trust, accepted handshake, or its own handshake request to
 * them), or members of a shared non-backbone network.
 */
export async function canResolve(t: Tx, requester: NodeRec, target: NodeRec): Promise<boolean> {
  if (target.public) return true;
  if (await t.grantHas(target.id, requester.id)) return true;
  for (const n of target.networks) if (n !== 0 && requester.networks.includes(n)) return true;
  return false;
}

/** Sentinel of readOrWrite: the optimistic read found that a write is needed. */
export const NEED_WRITE: unique symbol = Symbol("need_write");

/**
 * Read-mostly requests (resolve, punch, poll_handshakes with an empty inbox, heartbeat whose
 * only write is last_seen): run `fast` as a plain read (Store.read: no write lock — on PostgreSQL
 * no advisory lock and no transaction, so these requests do not serialise against every writer of
 * every process). `fast` returns NEED_WRITE when the request turns out to need a write; the
 * request is then redone from scratch by `slow` inside Store.tx, which re-reads everything under
 * the lock (no decision made on the unlocked read survives into the write). A read-path answer is
 * one the serialised version could have given at some instant during the request: committed
 * state only. `pure`: `fast` makes no write at all (not even touchNode), so it may run as
 * Store.view.
 */
export async function readOrWrite<T>(store: Store, fast: (t: Tx) => Promise<T | typeof NEED_WRITE>, slow: (t: Tx) => Promise<T>, pure = false): Promise<T> {
  const r = await (pure ? store.view(fast) : store.read(fast));
  return r === NEED_WRITE ? store.tx(slow) : (r as T);
}

export function freshNode(now: number, id: number, key: string, owner: string, addr: string, seq: number): NodeRec {
  return {
    id, owner, publicKey: key, realAddr: addr, networks: [0], public: false, lastSeen: now, hostname: "",
    tags: [], polo: 0, taskExec: false, seq, strict: false,
  };
}
