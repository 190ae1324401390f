// Registry storage behind one small interface (docs/protocol.md §8, §8.5).
//
// Every registry request runs inside Store.tx(): the whole handler is one database transaction,
// committed before the response is written, so anything acknowledged survives a SIGKILL (fixes
// R17: the reference saved at most once per second and never saved heartbeats/inboxes).
// Records are stored per row (fixes R13: no full-state rewrite per save).
//
// Implementations: SqliteStore (bun:sqlite, default) here, PgStore (Bun.sql) in store-pg.ts.
import { AsyncLocalStorage } from "node:async_hooks";
import { Database } from "bun:sqlite";
import { GroupCommit } from "./group-commit.ts";
import { NodeCache } from "./node-cache.ts";
import { WalCheckpointer } from "./wal-checkpointer.ts";

/** Transactions after which a file store starts its background checkpointer (short-lived stores never do). */
export const CHECKPOINTER_AFTER_TX = 512;

export interface NodeRec {
  id: number;
  owner: string;
  publicKey: string; // canonical standard base64 of the 32-byte key
  realAddr: string;
  networks: number[];
  public: boolean;
  lastSeen: number; // ms since epoch
  hostname: string; // "" = none
  tags: string[];
  polo: number;
  taskExec: boolean;
  /** Backbone membership order (registration order, docs/protocol.md §8). */
  seq: number;
  /** Node has proven it can sign fresh (timestamped) challenges; plain replays are refused. */
  strict: boolean;
}

export interface NetworkRec {
  id: number;
  name: string;
  joinRule: string;
  token: string;
  members: number[];
  created: number; // ms
}

export interface InboxReq { from: number; justification: string; ts: number /* ms */ }
export interface InboxResp { from: number; accept: boolean; ts: number /* ms */ }

/** Push event published after commit (handshake relay push extension, see registry.ts). */
export type { PushEvent } from "../proto/registry.ts";
import type { PushEvent } from "../proto/registry.ts";

/** Operations available inside one transaction. All are async so SQLite and PG share handlers. */
export interface Tx {
  /**
   * Revert an in-memory side effect (connection state) if this transaction attempt is rolled
   * back and rerun (PostgreSQL reruns transactions after serialization failures; SQLite never
   * reruns, its transactions are serialised; there the undo runs when the request's savepoint or
   * its commit group's transaction is rolled back).
   */
  undo(fn: () => void): void;
  getNode(id: number): Promise<NodeRec | null>;
  putNode(n: NodeRec): Promise<void>;
  deleteNode(id: number): Promise<void>;
  /** Delete node `id` only if it was last seen before `before` (reaper); true if deleted. */
  deleteStaleNode(id: number, before: number): Promise<boolean>;
  /**
   * Set last_seen; true if the node exists. One single-row statement, so it is also allowed in
   * Store.read (lock-free heartbeats, registry.ts); PgStore keeps last_seen monotonic there.
   */
  touchNode(id: number, lastSeen: number): Promise<boolean>;
  nodeByHostname(h: string): Promise<number | null>;
  allocNodeId(): Promise<number>;
  /** Raise the next-node counter to at least v (snapshot import). */
  bumpNextNode(v: number): Promise<void>;
  nextSeq(): Promise<number>;
  keyGet(key: string): Promise<number | null>;
  keySet(key: string, id: number): Promise<void>;
  keyDelete(key: string): Promise<void>;
  ownerGet(owner: string): Promise<number | null>;
  ownerSet(owner: string, id: number): Promise<void>;
  /** Directional trust grant: `grantee` may resolve `grantor` (registry.ts explains R1). */
  grantHas(grantor: number, grantee: number): Promise<boolean>;
  grantAdd(grantor: number, grantee: number): Promise<void>;
  /** Remove both directions; returns whether anything existed. */
  pairRemove(a: number, b: number): Promise<boolean>;
  inboxCount(target: number): Promise<number>;
  inboxHasFrom(target: number, from: number): Promise<boolean>;
  inboxAdd(target: number, r: InboxReq): Promise<void>;
  respCount(requester: number): Promise<number>;
  respAdd(requester: number, r: InboxResp): Promise<void>;
  inboxTake(node: number): Promise<{ requests: InboxReq[]; responses: InboxResp[] }>;
  networks(): Promise<NetworkRec[]>;
  network(id: number): Promise<NetworkRec | null>;
  putNetwork(n: NetworkRec): Promise<void>;
  nodeCount(): Promise<number>;
  /** All live nodes in backbone order (dashboard, list_nodes, snapshots). */
  allNodes(): Promise<NodeRec[]>;
  staleNodes(before: number): Promise<number[]>;
  pairCount(): Promise<number>;
  pairs(): Promise<[number, number][]>;
  // ---- replication (docs/protocol.md §8): full-state export and replace.
  /** Every key-index entry (canonical b64 key → node ID), including keys of non-live nodes. */
  keyAll(): Promise<[string, number][]>;
  /** Every owner-index entry (also for non-live nodes; the reference never persisted those, R17). */
  ownerAll(): Promise<[string, number][]>;
  /** Every directional grant [grantor, grantee]. */
  grantsAll(): Promise<[number, number][]>;
  /** All queued handshake requests / responses in arrival order (non-destructive). */
  inboxAll(): Promise<{ target: number; r: InboxReq }[]>;
  respAll(): Promise<{ requester: number; r: InboxResp }[]>;
  counters(): Promise<{ nextNode: number; nextNet: number; seq: number }>;
  setCounters(c: { nextNode: number; nextNet: number; seq: number }): Promise<void>;
  /** Delete all state (nodes, indexes, grants, inboxes, non-backbone networks); counters reset to 1. */
  wipe(): Promise<void>;
}

/**
 * The connection a request came from, while its handler runs (Registry.handle sets it). A store
 * may run the transactions of different connections concurrently; those of one connection it
 * keeps in call order (Store.ordered).
 */
export const txOrigin = new AsyncLocalStorage<object>();

export interface Store {
  readonly kind: "sqlite" | "postgres";
  readonly description: string;
  /**
   * Transactions of one connection (txOrigin) execute in the order of their tx() calls, each
   * seeing the effects of the ones called before it (even before those commit), so one
   * connection's requests may be started before the earlier ones have answered (server.ts
   * pipelining). Absent = no such guarantee.
   */
  readonly ordered?: boolean;
  /** The store reads txOrigin in tx() (otherwise Registry.handle does not set it). */
  readonly byOrigin?: boolean;
  /**
   * Run fn atomically, with the outcome of some serial order of all transactions (across
   * processes for PG, where fn may be rerun from scratch after a serialization failure: its
   * in-memory side effects must be registered with Tx.undo). Commits before resolving.
   */
  tx<T>(fn: (t: Tx) => Promise<T>): Promise<T>;
  /**
   * Run fn without the write lock: reads of committed state, plus at most single-row
   * self-contained writes (touchNode) that need no serialisation against other requests.
   */
  read<T>(fn: (t: Tx) => Promise<T>): Promise<T>;
  /**
   * Run fn as a pure read of committed state (no writes at all, not even touchNode): lookups,
   * resolves. May run at once, outside any transaction or commit group.
   */
  view<T>(fn: (t: Tx) => Promise<T>): Promise<T>;
  /** Deliver a push event to every process (local emit for SQLite, NOTIFY for PG). */
  publish(ev: PushEvent): Promise<void>;
  onPush(cb: (ev: PushEvent) => void): void;
  /** True if the store holds no state yet (first start: import a snapshot). */
  isEmpty(): Promise<boolean>;
  /**
   * Fast path for bulk loading (benchmarks, large imports): insert brand-new nodes and their
   * key-index entries in one serialised transaction, with multi-row statements, then raise the
   * node and sequence counters past the largest id / seq loaded. IDs and keys must not exist yet
   * (a collision aborts the whole load). Equivalent to putNode + keySet per node.
   */
  bulkLoadNodes(nodes: NodeRec[]): Promise<void>;
  close(): Promise<void>;
}

/** Simple async mutex (FIFO). */
export class Mutex {
  private tail: Promise<void> = Promise.resolve();
  async lock(): Promise<() => void> {
    let release!: () => void;
    const next = new Promise<void>((r) => (release = r));
    const prev = this.tail;
    this.tail = prev.then(() => next);
    await prev;
    return release;
  }
}

export const SCHEMA = [
  `CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v BIGINT NOT NULL)`,
  `CREATE TABLE IF NOT EXISTS nodes (id BIGINT PRIMARY KEY, owner TEXT NOT NULL, public_key TEXT NOT NULL,
     real_addr TEXT NOT NULL, networks TEXT NOT NULL, public INTEGER NOT NULL, last_seen BIGINT NOT NULL,
     hostname TEXT, tags TEXT NOT NULL, polo BIGINT NOT NULL, task_exec INTEGER NOT NULL, seq BIGINT NOT NULL,
     strict INTEGER NOT NULL DEFAULT 0)`,
  `CREATE UNIQUE INDEX IF NOT EXISTS nodes_hostname ON nodes(hostname)`,
  `CREATE INDEX IF NOT EXISTS nodes_seen ON nodes(last_seen)`,
  `CREATE TABLE IF NOT EXISTS keyidx (k TEXT PRIMARY KEY, node_id BIGINT NOT NULL)`,
  `CREATE TABLE IF NOT EXISTS owneridx (owner TEXT PRIMARY KEY, node_id BIGINT NOT NULL)`,
  `CREATE TABLE IF NOT EXISTS grants (grantor BIGINT NOT NULL, grantee BIGINT NOT NULL, PRIMARY KEY (grantor, grantee))`,
  `CREATE TABLE IF NOT EXISTS inbox (target BIGINT NOT NULL, from_id BIGINT NOT NULL, justification TEXT NOT NULL, ts BIGINT NOT NULL, n BIGINT NOT NULL)`,
  `CREATE INDEX IF NOT EXISTS inbox_t ON inbox(target, n)`,
  `CREATE TABLE IF NOT EXISTS responses (requester BIGINT NOT NULL, from_id BIGINT NOT NULL, accept INTEGER NOT NULL, ts BIGINT NOT NULL, n BIGINT NOT NULL)`,
  `CREATE INDEX IF NOT EXISTS responses_t ON responses(requester, n)`,
  `CREATE TABLE IF NOT EXISTS networks (id BIGINT PRIMARY KEY, name TEXT NOT NULL, join_rule TEXT NOT NULL, token TEXT NOT NULL, members TEXT NOT NULL, created BIGINT NOT NULL)`,
];

/**
 * The SQLite form of SCHEMA for newly created files: node IDs as the rowid (INTEGER PRIMARY KEY:
 * one B-tree instead of a table plus a primary-key index) and the string-keyed indexes as
 * WITHOUT ROWID tables (one B-tree each). Column names and types are unchanged, so files created
 * with the older form keep working with the same statements.
 */
export const SQLITE_SCHEMA = SCHEMA.map((s) =>
  s.replace("nodes (id BIGINT PRIMARY KEY", "nodes (id INTEGER PRIMARY KEY")
    .replace(/^(CREATE TABLE IF NOT EXISTS (?:keyidx|owneridx|grants|meta) .*\))$/s, "$1 WITHOUT ROWID"));

export function rowToNode(r: any): NodeRec {
  return {
    id: Number(r.id),
    owner: r.owner,
    publicKey: r.public_key,
    realAddr: r.real_addr,
    networks: JSON.parse(r.networks),
    public: !!Number(r.public),
    lastSeen: Number(r.last_seen),
    hostname: r.hostname ?? "",
    tags: JSON.parse(r.tags),
    polo: Number(r.polo),
    taskExec: !!Number(r.task_exec),
    seq: Number(r.seq),
    strict: !!Number(r.strict),
  };
}

export function rowToNet(r: any): NetworkRec {
  return { id: Number(r.id), name: r.name, joinRule: r.join_rule, token: r.token, members: JSON.parse(r.members), created: Number(r.created) };
}

/**
 * SQLite store. Durability choice: WAL with synchronous=NORMAL by default. In WAL mode a commit
 * is a write() of the WAL frames into the OS page cache before COMMIT returns, so a process
 * crash (SIGKILL) cannot lose an acknowledged transaction; only an OS crash / power loss can
 * lose the last few commits. `sync: "full"` fsyncs the WAL on every commit for power-loss safety
 * at a large throughput cost.
 */
export class SqliteStore implements Store {
  readonly kind = "sqlite" as const;
  readonly description: string;
  /** tx() calls join the group-commit queue in call order and run one after the other. */
  readonly ordered = true;
  private db: Database;
  private group: GroupCommit;
  private pushCbs: ((ev: PushEvent) => void)[] = [];
  private q: Record<string, any> = {};
  private t: Tx;
  /** Write-through cache of node rows (this process is the file's only writer). */
  readonly cache = new NodeCache<NodeRec>();
  /** Background WAL checkpoints (file stores; started after CHECKPOINTER_AFTER_TX transactions). */
  readonly checkpointer: WalCheckpointer | null;
  private txSeen = 0;

  /**
   * `checkpoint`: "background" (default for files) moves WAL checkpoints to a worker thread;
   * "inline" leaves them to SQLite's autocheckpoint inside commits.
   */
  constructor(path: string, opts: { sync?: "normal" | "full"; checkpoint?: "background" | "inline" } = {}) {
    this.description = `sqlite:${path}`;
    this.db = new Database(path, { create: true, strict: true });
    if (path !== ":memory:") {
      try { require("node:fs").chmodSync(path, 0o600); } catch {} // R8: store is secret-bearing
    }
    this.db.exec("PRAGMA journal_mode=WAL");
    this.db.exec(`PRAGMA synchronous=${opts.sync === "full" ? "FULL" : "NORMAL"}`);
    this.db.exec("PRAGMA busy_timeout=5000");
    // Page cache of up to 64 MiB (default 2 MiB): at 100k+ nodes random-key index inserts and
    // random lookups otherwise miss the cache on most requests.
    this.db.exec("PRAGMA cache_size=-65536");
    // Checkpoint the WAL every ~40 MiB instead of every ~4 MiB: each checkpoint copies pages
    // into the database file and syncs it on the request path; at 100k+ nodes nearly every
    // registration dirties its own index pages, and the default made checkpoints a third of
    // the registration cost. The WAL file is truncated back to 64 MiB at most afterwards.
    // With the background checkpointer this stays as the safety net should the worker fall behind.
    this.db.exec("PRAGMA wal_autocheckpoint=10000");
    this.db.exec("PRAGMA journal_size_limit=67108864");
    for (const s of SQLITE_SCHEMA) this.db.exec(s);
    this.db.exec(`INSERT OR IGNORE INTO meta(k,v) VALUES ('next_node',1),('next_net',1),('seq',1),('inbox_n',1)`);
    const now = Date.now();
    this.db.run(`INSERT OR IGNORE INTO networks(id,name,join_rule,token,members,created) VALUES (0,'backbone','open','','[]',?)`, [now]);
    const p = (sql: string) => this.db.prepare(sql);
    this.q = {
      getNode: p(`SELECT * FROM nodes WHERE id=?`),
      putNode: p(`INSERT OR REPLACE INTO nodes(id,owner,public_key,real_addr,networks,public,last_seen,hostname,tags,polo,task_exec,seq,strict)
                  VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)`),
      delNode: p(`DELETE FROM nodes WHERE id=?`),
      touch: p(`UPDATE nodes SET last_seen=? WHERE id=?`),
      delStale: p(`DELETE FROM nodes WHERE id=? AND last_seen < ?`),
      byHost: p(`SELECT id FROM nodes WHERE hostname=?`),
      metaGet: p(`SELECT v FROM meta WHERE k=?`),
      metaSet: p(`UPDATE meta SET v=? WHERE k=?`),
      keyGet: p(`SELECT node_id FROM keyidx WHERE k=?`),
      keySet: p(`INSERT OR REPLACE INTO keyidx(k,node_id) VALUES (?,?)`),
      keyDel: p(`DELETE FROM keyidx WHERE k=?`),
      ownerGet: p(`SELECT node_id FROM owneridx WHERE owner=?`),
      ownerSet: p(`INSERT OR REPLACE INTO owneridx(owner,node_id) VALUES (?,?)`),
      grantHas: p(`SELECT 1 AS x FROM grants WHERE grantor=? AND grantee=?`),
      grantAdd: p(`INSERT OR IGNORE INTO grants(grantor,grantee) VALUES (?,?)`),
      pairDel: p(`DELETE FROM grants WHERE (grantor=? AND grantee=?) OR (grantor=? AND grantee=?)`),
      inboxCount: p(`SELECT COUNT(*) AS c FROM inbox WHERE target=?`),
      inboxHas: p(`SELECT 1 AS x FROM inbox WHERE target=? AND from_id=?`),
      inboxAdd: p(`INSERT INTO inbox(target,from_id,justification,ts,n) VALUES (?,?,?,?,?)`),
      respCount: p(`SELECT COUNT(*) AS c FROM responses WHERE requester=?`),
      respAdd: p(`INSERT INTO responses(requester,from_id,accept,ts,n) VALUES (?,?,?,?,?)`),
      inboxList: p(`SELECT from_id,justification,ts FROM inbox WHERE target=? ORDER BY n`),
      respList: p(`SELECT from_id,accept,ts FROM responses WHERE requester=? ORDER BY n`),
      inboxClear: p(`DELETE FROM inbox WHERE target=?`),
      respClear: p(`DELETE FROM responses WHERE requester=?`),
      nets: p(`SELECT * FROM networks ORDER BY id`),
      net: p(`SELECT * FROM networks WHERE id=?`),
      putNet: p(`INSERT OR REPLACE INTO networks(id,name,join_rule,token,members,created) VALUES (?,?,?,?,?,?)`),
      nodeCount: p(`SELECT COUNT(*) AS c FROM nodes`),
      allNodes: p(`SELECT * FROM nodes ORDER BY seq`),
      stale: p(`SELECT id FROM nodes WHERE last_seen < ?`),
      pairs: p(`SELECT DISTINCT MIN(grantor,grantee) AS a, MAX(grantor,grantee) AS b FROM grants ORDER BY a, b`),
      keyAll: p(`SELECT k, node_id FROM keyidx ORDER BY k`),
      ownerAll: p(`SELECT owner, node_id FROM owneridx ORDER BY owner`),
      grantsAll: p(`SELECT grantor, grantee FROM grants ORDER BY grantor, grantee`),
      inboxAll: p(`SELECT target, from_id, justification, ts FROM inbox ORDER BY n`),
      respAll: p(`SELECT requester, from_id, accept, ts FROM responses ORDER BY n`),
    };
    this.t = this.makeTx();
    this.group = new GroupCommit(this.db, this.cache);
    this.checkpointer = path !== ":memory:" && opts.checkpoint !== "inline" ? new WalCheckpointer(path) : null;
  }

  private meta(k: string): number {
    return Number((this.q.metaGet.get(k) as any).v);
  }

  private makeTx(): Tx {
    const q = this.q;
    const self = this;
    return {
      undo(fn) { self.group.undo(fn); },
      async getNode(id) {
        const c = self.cache.get(id);
        if (c) return c;
        const r = q.getNode.get(id);
        if (!r) return null;
        const n = rowToNode(r);
        self.cache.fill(n);
        return n;
      },
      async putNode(n) {
        self.cache.wrote(n);
        q.putNode.run(n.id, n.owner, n.publicKey, n.realAddr, JSON.stringify(n.networks), n.public ? 1 : 0, n.lastSeen,
          n.hostname === "" ? null : n.hostname, JSON.stringify(n.tags), n.polo, n.taskExec ? 1 : 0, n.seq, n.strict ? 1 : 0);
      },
      async deleteNode(id) { self.cache.gone(id); q.delNode.run(id); },
      async deleteStaleNode(id, before) { self.cache.gone(id); return q.delStale.run(id, before).changes > 0; },
      async touchNode(id, ls) { self.cache.touched(id, ls); return q.touch.run(ls, id).changes > 0; },
      async nodeByHostname(h) { const r = q.byHost.get(h) as any; return r ? Number(r.id) : null; },
      async allocNodeId() { const v = self.meta("next_node"); q.metaSet.run(v + 1, "next_node"); return v; },
      async bumpNextNode(v) { if (self.meta("next_node") < v) q.metaSet.run(v, "next_node"); },
      async nextSeq() { const v = self.meta("seq"); q.metaSet.run(v + 1, "seq"); return v; },
      async keyGet(k) { const r = q.keyGet.get(k) as any; return r ? Number(r.node_id) : null; },
      async keySet(k, id) { q.keySet.run(k, id); },
      async keyDelete(k) { q.keyDel.run(k); },
      async ownerGet(o) { const r = q.ownerGet.get(o) as any; return r ? Number(r.node_id) : null; },
      async ownerSet(o, id) { q.ownerSet.run(o, id); },
      async grantHas(a, b) { return !!q.grantHas.get(a, b); },
      async grantAdd(a, b) { q.grantAdd.run(a, b); },
      async pairRemove(a, b) { return q.pairDel.run(a, b, b, a).changes > 0; },
      async inboxCount(t) { return Number((q.inboxCount.get(t) as any).c); },
      async inboxHasFrom(t, f) { return !!q.inboxHas.get(t, f); },
      async inboxAdd(t, r) { const n = self.meta("inbox_n"); q.metaSet.run(n + 1, "inbox_n"); q.inboxAdd.run(t, r.from, r.justification, r.ts, n); },
      async respCount(t) { return Number((q.respCount.get(t) as any).c); },
      async respAdd(t, r) { const n = self.meta("inbox_n"); q.metaSet.run(n + 1, "inbox_n"); q.respAdd.run(t, r.from, r.accept ? 1 : 0, r.ts, n); },
      async inboxTake(node) {
        const requests = (q.inboxList.all(node) as any[]).map((r) => ({ from: Number(r.from_id), justification: r.justification, ts: Number(r.ts) }));
        const responses = (q.respList.all(node) as any[]).map((r) => ({ from: Number(r.from_id), accept: !!Number(r.accept), ts: Number(r.ts) }));
        if (requests.length) q.inboxClear.run(node);
        if (responses.length) q.respClear.run(node);
        return { requests, responses };
      },
      async networks() { return (q.nets.all() as any[]).map(rowToNet); },
      async network(id) { const r = q.net.get(id); return r ? rowToNet(r) : null; },
      async putNetwork(n) { q.putNet.run(n.id, n.name, n.joinRule, n.token, JSON.stringify(n.members), n.created); },
      async nodeCount() { return Number((q.nodeCount.get() as any).c); },
      async allNodes() { return (q.allNodes.all() as any[]).map(rowToNode); },
      async staleNodes(before) { return (q.stale.all(before) as any[]).map((r) => Number(r.id)); },
      async pairCount() { return (q.pairs.all() as any[]).length; },
      async pairs() { return (q.pairs.all() as any[]).map((r) => [Number(r.a), Number(r.b)] as [number, number]); },
      async keyAll() { return (q.keyAll.all() as any[]).map((r) => [r.k, Number(r.node_id)] as [string, number]); },
      async ownerAll() { return (q.ownerAll.all() as any[]).map((r) => [r.owner, Number(r.node_id)] as [string, number]); },
      async grantsAll() { return (q.grantsAll.all() as any[]).map((r) => [Number(r.grantor), Number(r.grantee)] as [number, number]); },
      async inboxAll() {
        return (q.inboxAll.all() as any[]).map((r) => ({ target: Number(r.target), r: { from: Number(r.from_id), justification: r.justification, ts: Number(r.ts) } }));
      },
      async respAll() {
        return (q.respAll.all() as any[]).map((r) => ({ requester: Number(r.requester), r: { from: Number(r.from_id), accept: !!Number(r.accept), ts: Number(r.ts) } }));
      },
      async counters() { return { nextNode: self.meta("next_node"), nextNet: self.meta("next_net"), seq: self.meta("seq") }; },
      async setCounters(c) { q.metaSet.run(c.nextNode, "next_node"); q.metaSet.run(c.nextNet, "next_net"); q.metaSet.run(c.seq, "seq"); },
      async wipe() {
        self.cache.clear();
        for (const tb of ["nodes", "keyidx", "owneridx", "grants", "inbox", "responses"]) self.db.exec(`DELETE FROM ${tb}`);
        self.db.exec(`DELETE FROM networks WHERE id<>0`);
        self.db.exec(`UPDATE meta SET v=1 WHERE k IN ('next_node','next_net','seq')`);
      },
    };
  }

  /**
   * Group commit: transactions and reads that arrive while a group runs are executed together in
   * one SQLite transaction (each in its own savepoint) and all settle after its COMMIT.
   */
  tx<T>(fn: (t: Tx) => Promise<T>): Promise<T> {
    if (this.checkpointer && ++this.txSeen === CHECKPOINTER_AFTER_TX) this.checkpointer.start();
    return this.group.run(() => fn(this.t), true);
  }

  /** Reads share the group: they see committed-or-grouped state and answer after the COMMIT. */
  read<T>(fn: (t: Tx) => Promise<T>): Promise<T> {
    return this.group.run(() => fn(this.t), false);
  }

  /**
   * Pure reads run at once when no group is executing: every earlier group has committed, so
   * they see committed state only, without waiting for the next group's COMMIT. (SQLite calls are
   * synchronous, so fn completes before any other request's I/O callback runs.)
   */
  view<T>(fn: (t: Tx) => Promise<T>): Promise<T> {
    return this.group.idle ? fn(this.t) : this.read(fn);
  }

  async publish(ev: PushEvent): Promise<void> {
    for (const cb of this.pushCbs) cb(ev);
  }
  onPush(cb: (ev: PushEvent) => void): void {
    this.pushCbs.push(cb);
  }
  async bulkLoadNodes(nodes: NodeRec[]): Promise<void> {
    const ins = this.db.prepare(`INSERT INTO nodes(id,owner,public_key,real_addr,networks,public,last_seen,hostname,tags,polo,task_exec,seq,strict)
      VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)`);
    const key = this.db.prepare(`INSERT INTO keyidx(k,node_id) VALUES (?,?)`);
    await this.tx(async () => {
      let maxId = 0, maxSeq = 0;
      for (const n of nodes) {
        ins.run(n.id, n.owner, n.publicKey, n.realAddr, JSON.stringify(n.networks), n.public ? 1 : 0, n.lastSeen,
          n.hostname === "" ? null : n.hostname, JSON.stringify(n.tags), n.polo, n.taskExec ? 1 : 0, n.seq, n.strict ? 1 : 0);
        key.run(n.publicKey, n.id);
        if (n.id > maxId) maxId = n.id;
        if (n.seq > maxSeq) maxSeq = n.seq;
      }
      if (this.meta("next_node") <= maxId) this.q.metaSet.run(maxId + 1, "next_node");
      if (this.meta("seq") <= maxSeq) this.q.metaSet.run(maxSeq + 1, "seq");
    });
  }
  async isEmpty(): Promise<boolean> {
    return this.meta("next_node") === 1 && Number((this.q.nodeCount.get() as any).c) === 0;
  }
  async close(): Promise<void> {
    await this.checkpointer?.stop();
    try { this.db.close(); } catch {}
  }
}
