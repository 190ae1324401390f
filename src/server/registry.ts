// Registry request dispatch, independent of sockets and storage engine: decode the request with
// the protocol schema, apply the standby gate, run the handler, count it, and tell replication
// what changed. Handlers live in handlers-*.ts, authentication in auth.ts, value rules in
// validate.ts, the snapshot document in snapshot.ts.
//
// Errors carry a specific text plus an extension field `code` (reference clients only look at the
// string `error`); `opaqueErrors: true` restores the reference's exact `request failed` body.
// Every mutation (also heartbeat and inbox changes) is committed before the reply is sent.
import { OPAQUE_ERROR, REPLICATION_SNAPSHOT, REPL_BAD_TOKEN, REPL_NOT_CONFIGURED, REPL_SNAPSHOT_FAILED, decodeRequest, type ErrorReply, type RegistryReply, type RequestOf, type RequestType } from "../proto/registry.ts";
import { Auth, type ConnCtx } from "./auth.ts";
import type { Core, Handler, HandlerTable, RegistryOptions } from "./core.ts";
import { canResolve } from "./core.ts";
import { directoryHandlers } from "./handlers-directory.ts";
import { nodeHandlers } from "./handlers-nodes.ts";
import { trustHandlers } from "./handlers-trust.ts";
import { Metrics } from "./metrics.ts";
import { RateLimiter } from "./ratelimit.ts";
import { ReplicationHub, SNAPSHOT_MAX_NODES, SNAPSHOT_TOO_LARGE_HINT, TokenChecker } from "./replication.ts";
import { exportSnapshot } from "./snapshot.ts";
import { txOrigin, type Store } from "./store.ts";
import { BEACON_TTL_MS, RegError, STALE_MS, fail, normIp } from "./validate.ts";

export type { ConnCtx } from "./auth.ts";
export type { RegistryOptions } from "./core.ts";
export { importSnapshot, importSnapshotTx } from "./snapshot.ts";
export { RegError, normIp, STALE_MS } from "./validate.ts";

/** Request types a standby serves (reads, plus heartbeats and polls so daemons stay quiet). */
export const STANDBY_ALLOWED: ReadonlySet<string> = new Set(["lookup", "resolve", "list_networks", "list_nodes", "heartbeat", "poll_handshakes", "resolve_hostname", "beacon_list"]);
/**
 * Successful requests of these types trigger a replication push. Also `request_handshake`,
 * `poll_handshakes` and rejecting `respond_handshake`, which the reference did not save: here
 * they change trust grants / inbox contents that a promoted standby should have.
 */
const SAVING: ReadonlySet<string> = new Set([
  "register", "rotate_key", "deregister", "set_visibility", "set_hostname", "report_trust", "revoke_trust",
  "respond_handshake", "request_handshake", "poll_handshakes", "set_tags", "set_task_exec", "update_polo_score", "set_polo_score",
]);

/**
 * Request types whose handler does all its store work in ONE Store.tx call made synchronously
 * when handle() is called (before handle() first yields), and after that commit only builds its
 * reply and counts metrics: nothing a later request could observe. On an ordered store the
 * server may start the next request of the same connection before such a request has answered:
 * its transaction is queued behind this one and sees its effects, the replies still leave in
 * request order, each after its own commit.
 */
const PIPELINED: ReadonlySet<string> = new Set([
  "register", "rotate_key", "deregister", "set_visibility", "set_hostname", "set_tags", "set_task_exec",
  "update_polo_score", "set_polo_score", "report_trust", "revoke_trust",
]);

const HANDLERS: HandlerTable = { ...nodeHandlers, ...directoryHandlers, ...trustHandlers };

/** What handle() returns: a reply body (typed by the schema), readable as a plain object too. */
export type WireReply = (RegistryReply | { type: typeof REPLICATION_SNAPSHOT; snapshot: Record<string, unknown> }) & Record<string, any>;

export function newCtx(ip: string, port: number): ConnCtx {
  return { ip: normIp(ip), port, pendingAddr: new Map(), subscribed: new Set() };
}

export class Registry implements Core {
  readonly metrics = new Metrics();
  readonly limiter = new RateLimiter();
  readonly beacons = new Map<number, { addr: string; seen: number }>();
  readonly auth: Auth;
  readonly now: () => number;
  /** Replication push hub (primary side); always present, idle without subscribers. */
  readonly replication: ReplicationHub;
  private replToken: TokenChecker;
  /** Standby mode. Mutable so an operator tool could promote in-process. */
  standby: boolean;
  /** Set by startRendezvous in standby mode: follower state for /metrics. */
  standbyInfo?: () => { connected: boolean; snapshots: number };

  constructor(readonly store: Store, readonly opts: RegistryOptions = {}) {
    this.now = opts.now ?? Date.now;
    this.auth = new Auth(this.now, opts.adminToken ?? "");
    this.replication = new ReplicationHub(store, opts.log);
    this.replToken = new TokenChecker(opts.replicationToken ?? "");
    this.standby = !!opts.standby;
  }

  /**
   * May the request `body` be started while earlier requests of its connection (all pipelinable
   * themselves) are still executing or waiting for their commit? Only on an ordered store, never
   * on a standby, and only for the types listed in PIPELINED.
   */
  pipelinable(body: unknown): boolean {
    if (!this.store.ordered || this.standby || body === null || typeof body !== "object") return false;
    const type = (body as { type?: unknown }).type;
    return typeof type === "string" && PIPELINED.has(type);
  }

  /** Process one decoded request body (parsed JSON); always returns a reply body. */
  async handle(body: unknown, ctx: ConnCtx): Promise<WireReply> {
    const { type, req } = decodeRequest(body);
    if (req?.type === "subscribe_replication") return this.subscribeReplication(req, ctx);
    const t0 = performance.now();
    let res: WireReply;
    let ok = true;
    try {
      if (!req) fail("unknown_type", `unknown message type ${JSON.stringify(type)}`);
      // Count, then the standby gate, then dispatch. The reference's wire form of the refusal is
      // the generic error (opaqueErrors: "request failed").
      if (this.standby && !STANDBY_ALLOWED.has(type)) fail("standby", `this registry is a read-only hot standby; send ${type} to the primary`);
      const h = HANDLERS[req!.type] as Handler<RequestType> | undefined;
      if (!h) fail("unknown_type", `unknown message type ${JSON.stringify(type)}`);
      const run = () => h!(this, req as RequestOf<RequestType>, ctx);
      res = (await (this.store.byOrigin ? txOrigin.run(ctx, run) : run())) as WireReply;
    } catch (e) {
      ok = false;
      res = this.errorResponse(e) as WireReply;
    }
    this.metrics.observe(type, (performance.now() - t0) / 1000, ok);
    if (ok) {
      if (SAVING.has(type)) this.replication.markDirty();
      else if (type === "heartbeat") this.replication.markTouched();
    }
    return res;
  }

  /**
   * Replication subscription handshake (checked before normal dispatch, not counted in metrics,
   * allowed on standbys so they can be chained). The two refusal texts are the only error texts
   * reference standbys match verbatim; the connection is closed after them. On success the reply
   * IS the initial replication_snapshot and the server turns the connection into a push stream
   * (ctx.replGen set; server.ts attaches it to the hub).
   */
  private async subscribeReplication(m: RequestOf<"subscribe_replication">, ctx: ConnCtx): Promise<WireReply> {
    if (!this.replToken.configured) {
      ctx.closeAfter = true;
      return { type: "error", error: REPL_NOT_CONFIGURED };
    }
    if (!this.replToken.check(m.token, ctx.ip)) {
      ctx.closeAfter = true;
      this.opts.log?.("warn", "replication subscription refused: invalid token", { ip: ctx.ip }); // token itself never logged
      return { type: "error", error: REPL_BAD_TOKEN };
    }
    const gen = this.replication.gen;
    let snapshot: Record<string, unknown>;
    try {
      // Far above the frame limit: refuse before exporting (reference standbys retry every 3 s;
      // exporting a large registry each time would cost seconds of CPU for nothing).
      if ((await this.store.view((t) => t.nodeCount())) > SNAPSHOT_MAX_NODES) throw new RegError("snapshot_too_large", SNAPSHOT_TOO_LARGE_HINT);
      snapshot = await exportSnapshot(this.store);
    } catch (e) {
      ctx.closeAfter = true;
      this.opts.log?.("error", "replication subscription refused: snapshot cannot be sent", { err: String((e as Error)?.message ?? e), hint: SNAPSHOT_TOO_LARGE_HINT });
      return { type: "error", error: REPL_SNAPSHOT_FAILED };
    }
    ctx.replGen = gen;
    return { type: REPLICATION_SNAPSHOT, snapshot };
  }

  errorResponse(e: unknown): ErrorReply {
    if (this.opts.opaqueErrors) return { type: "error", error: OPAQUE_ERROR };
    if (e instanceof RegError) return { type: "error", error: e.message, code: e.code };
    return { type: "error", error: "internal error", code: "internal" };
  }

  /** Beacon authorization hook: may `requester` learn `target`'s endpoint? */
  async mayResolve(requester: number, target: number): Promise<boolean> {
    if (requester === 0 || target === 0) return false;
    return this.store.view(async (t) => {
      const r = await t.getNode(requester);
      const tn = await t.getNode(target);
      return !!r && !!tn && (await canResolve(t, r, tn));
    });
  }

  // ---------------------------------------------------------------- housekeeping

  /** Reap nodes silent for more than 3 minutes. Returns the reaped IDs. */
  async reap(): Promise<number[]> {
    const before = this.now() - STALE_MS;
    const ids = await this.store.tx(async (t) => {
      const stale = await t.staleNodes(before);
      const reaped: number[] = [];
      for (const id of stale) {
        const n = await t.getNode(id);
        // Re-checked by the DELETE itself: a lock-free heartbeat (PostgreSQL) may have landed
        // since staleNodes() read the list; such a node is live and stays.
        if (!(await t.deleteStaleNode(id, before))) continue;
        if (n) for (const nid of n.networks) {
          if (nid === 0) continue;
          const net = await t.network(nid);
          if (net) { net.members = net.members.filter((x) => x !== id); await t.putNetwork(net); }
        }
        reaped.push(id);
      }
      return reaped;
    });
    if (ids.length) this.replication.markDirty();
    const now = this.now();
    for (const [id, b] of this.beacons) if (now - b.seen > BEACON_TTL_MS) this.beacons.delete(id);
    this.limiter.cleanup(now);
    return ids;
  }

  async gauges() {
    return this.store.read(async (t) => {
      const nodes = await t.allNodes();
      const cut = this.now() - STALE_MS;
      return {
        online: nodes.filter((n) => n.lastSeen >= cut).length,
        total: nodes.length,
        trust: await t.pairCount(),
        taskExec: nodes.filter((n) => n.taskExec).length,
      };
    });
  }
}
