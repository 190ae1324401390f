// PostgreSQL store (Bun.sql). Several rendezvous processes may share one database:
// * mutating requests run in SERIALIZABLE transactions with group commit (pg-group.ts): the
//   requests that arrive while one group executes run back to back in the next group's single
//   transaction, in arrival order, and are answered after its COMMIT. A request that must run
//   alone is retried from scratch (a few times, with a short random backoff) when PostgreSQL
//   reports a serialization failure, deadlock or unique-key race; PostgreSQL then guarantees the
//   outcome of some serial order, so node-ID allocation, key/owner/hostname uniqueness and inbox
//   limits hold across processes without a global lock. Counters (node IDs,
//   backbone order, inbox order) are PostgreSQL sequences: never a point of conflict, values of
//   rolled-back attempts are skipped (gaps are harmless, nothing reuses an ID);
// * read-mostly requests (resolve, punch, empty polls) and plain heartbeats run on Store.read
//   outside any transaction (registry.ts readOrWrite; heartbeat's last_seen write is made safe
//   by row locks, see touchNode);
// * push events are published with NOTIFY on channel `pilot_push` and every process LISTENs, so a
//   handshake relayed through one process reaches a subscribed node connected to another.
// All processes on one database must run this version: older ones counted in the `meta` table
// under an advisory lock.
import { SQL } from "bun";
import { EntryFailed, PgGroupCommit, type GroupEntry } from "./pg-group.ts";
import { SCHEMA, rowToNet, rowToNode, txOrigin, type NodeRec, type PushEvent, type Store, type Tx } from "./store.ts";

const LOCK_KEY = 7300114; // schema creation / migration only (two processes starting together)
const CHANNEL = "pilot_push";
/**
 * Group-commit lanes per process (see PgStore.lanes). One lane runs one transaction at a time,
 * its statements one after another on one server backend: bound by round trips and that
 * backend's speed. Several let groups run in parallel (measured: 2 to 4 lanes ~1.5× one).
 */
export const PG_LANES = 4;
/** Attempts of one transaction before its serialization failure is returned as an error. */
export const PG_TX_ATTEMPTS = 8;
/** SQLSTATEs after which the whole transaction is rerun: serialization failure, deadlock, unique-key race. */
const RETRYABLE = new Set(["40001", "40P01", "23505"]);
/** meta key → sequence holding that counter (the `meta` rows keep only next_net). */
const SEQS = { next_node: "pilot_next_node", seq: "pilot_seq", inbox_n: "pilot_inbox_n" } as const;

type TxFn = (t: Tx) => Promise<unknown>;

/**
 * A write sent ahead (not awaited) that failed makes every later statement fail with "transaction
 * is aborted": the write's own error (e.g. a serialization failure, rerun) is the one to report.
 */
async function firstWriteError(behind: Promise<unknown>[], e: unknown): Promise<unknown> {
  const first = (await Promise.allSettled(behind)).find((x) => x.status === "rejected");
  return first ? (first as PromiseRejectedResult).reason : e;
}

/** An in-memory side effect of a transaction attempt, reverted if the attempt is rolled back and rerun. */
type Undo = () => void;

/**
 * Node IDs with their backbone positions, drawn from the sequences ahead of use in batches: a new
 * node then costs no round trip of its own for them. Sequence values are never handed out twice
 * (also when the drawing transaction rolls back), so the batch stays valid across transactions;
 * values left unused when the process exits are gaps, harmless like those of rolled-back
 * attempts. Any change of the counters in this process (snapshot import, replication replace,
 * wipe) empties it, and a batch drawn before such a change is not kept.
 */
class IdBatch {
  private ids: number[] = [];
  private seqs: number[] = [];
  private pos = 0;
  /** Bumped by clear(). */
  gen = 0;
  take(): [number, number] | null {
    if (this.pos >= this.ids.length) return null;
    const i = this.pos++;
    return [this.ids[i], this.seqs[i]];
  }
  fill(rows: { id: unknown; seq: unknown }[]): void {
    this.ids = rows.map((r) => Number(r.id));
    this.seqs = rows.map((r) => Number(r.seq));
    this.pos = 0;
  }
  clear(): void {
    this.gen++;
    this.ids = [];
    this.seqs = [];
    this.pos = 0;
  }
}
/** IDs drawn per round trip when a process's batch runs out. */
const ID_BATCH = 64;

/**
 * `locked`: inside Store.tx: node reads take the row lock (touchNode). `behind`: inside Store.tx,
 * statements whose result the handler does not use (row writes) are sent without waiting for
 * their answer (the connection keeps them in order, later reads see them); Store.tx awaits them
 * all before COMMIT, so an error in any of them still fails the transaction.
 */
function makeTx(q: any, locked: boolean, undos?: Undo[], behind?: Promise<unknown>[], batch?: IdBatch): Tx {
  const later = (p: Promise<unknown>): Promise<void> | void => {
    if (!behind) return p.then(() => {});
    p.catch(() => {}); // reported when Store.tx awaits `behind`
    behind.push(p);
  };
  const meta = async (k: string) => Number((await q`SELECT v FROM meta WHERE k=${k}`)[0].v);
  const bumpMeta = async (k: keyof typeof SEQS) => Number((await q`SELECT nextval(${SEQS[k]}) AS v`)[0].v);
  /** The value nextval() will return next. */
  const peekSeq = async (k: keyof typeof SEQS) => Number((await q.unsafe(`SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END AS v FROM ${SEQS[k]}`))[0].v);
  const setSeq = async (k: keyof typeof SEQS, v: number) => { await q`SELECT setval(${SEQS[k]}, ${v}, false)`; };
  let spareSeq: number | null = null; // drawn with the last allocNodeId, for the next nextSeq
  return {
    undo(fn) { undos?.push(fn); },
    async getNode(id) {
      const r = locked ? await q`SELECT * FROM nodes WHERE id=${id} FOR UPDATE` : await q`SELECT * FROM nodes WHERE id=${id}`;
      return r.length ? rowToNode(r[0]) : null;
    },
    async putNode(n: NodeRec) {
      const host = n.hostname === "" ? null : n.hostname;
      return later(q`INSERT INTO nodes(id,owner,public_key,real_addr,networks,public,last_seen,hostname,tags,polo,task_exec,seq,strict)
        VALUES (${n.id},${n.owner},${n.publicKey},${n.realAddr},${JSON.stringify(n.networks)},${n.public ? 1 : 0},${n.lastSeen},${host},${JSON.stringify(n.tags)},${n.polo},${n.taskExec ? 1 : 0},${n.seq},${n.strict ? 1 : 0})
        ON CONFLICT (id) DO UPDATE SET owner=EXCLUDED.owner, public_key=EXCLUDED.public_key, real_addr=EXCLUDED.real_addr,
          networks=EXCLUDED.networks, public=EXCLUDED.public, last_seen=EXCLUDED.last_seen, hostname=EXCLUDED.hostname,
          tags=EXCLUDED.tags, polo=EXCLUDED.polo, task_exec=EXCLUDED.task_exec, seq=EXCLUDED.seq, strict=EXCLUDED.strict`);
    },
    async deleteNode(id) { await q`DELETE FROM nodes WHERE id=${id}`; },
    // Heartbeats run touchNode WITHOUT the advisory lock (registry.ts heartbeat). Row locks make
    // that safe: inside locked transactions getNode is SELECT ... FOR UPDATE, so a locked
    // read-modify-write of a node (getNode → putNode) and a concurrent heartbeat are ordered by
    // the row lock and neither undoes the other; the reaper deletes with a re-checked
    // `last_seen < before`; a touch that finds the row deleted reports it (→ not_found).
    async touchNode(id, ls) { return (await q`UPDATE nodes SET last_seen=${ls} WHERE id=${id} RETURNING 1`).length > 0; },
    async deleteStaleNode(id, before) { return (await q`DELETE FROM nodes WHERE id=${id} AND last_seen < ${before} RETURNING 1`).length > 0; },
    // Lookups by a client-supplied string: PostgreSQL refuses U+0000 in text parameters, and no
    // stored value can contain it, so such a lookup is a plain miss (as on SQLite).
    async nodeByHostname(h) { if (h.includes("\u0000")) return null; const r = await q`SELECT id FROM nodes WHERE hostname=${h}`; return r.length ? Number(r[0].id) : null; },
    // A new node needs an ID and then a backbone position: both are drawn in one round trip.
    async allocNodeId() {
      if (batch) {
        let v = batch.take();
        if (!v) {
          const gen = batch.gen;
          const rows = [...(await q`SELECT nextval(${SEQS.next_node}) AS id, nextval(${SEQS.seq}) AS seq FROM generate_series(1, ${ID_BATCH})`)];
          if (batch.gen === gen) batch.fill(rows.slice(1));
          v = [Number(rows[0].id), Number(rows[0].seq)];
        }
        if (locked) spareSeq = v[1];
        return v[0];
      }
      const r = (await q`SELECT nextval(${SEQS.next_node}) AS id, nextval(${SEQS.seq}) AS seq`)[0];
      if (locked) spareSeq = Number(r.seq); // the shared read-path Tx keeps no state
      return Number(r.id);
    },
    async bumpNextNode(v) { batch?.clear(); if ((await peekSeq("next_node")) < v) await setSeq("next_node", v); },
    nextSeq() {
      if (spareSeq === null) return bumpMeta("seq");
      const v = spareSeq;
      spareSeq = null;
      return Promise.resolve(v);
    },
    async keyGet(k) { if (k.includes("\u0000")) return null; const r = await q`SELECT node_id FROM keyidx WHERE k=${k}`; return r.length ? Number(r[0].node_id) : null; },
    async keySet(k, id) { return later(q`INSERT INTO keyidx(k,node_id) VALUES (${k},${id}) ON CONFLICT (k) DO UPDATE SET node_id=EXCLUDED.node_id`); },
    async keyDelete(k) { await q`DELETE FROM keyidx WHERE k=${k}`; },
    async ownerGet(o) { if (o.includes("\u0000")) return null; const r = await q`SELECT node_id FROM owneridx WHERE owner=${o}`; return r.length ? Number(r[0].node_id) : null; },
    async ownerSet(o, id) { return later(q`INSERT INTO owneridx(owner,node_id) VALUES (${o},${id}) ON CONFLICT (owner) DO UPDATE SET node_id=EXCLUDED.node_id`); },
    async grantHas(a, b) { return (await q`SELECT 1 FROM grants WHERE grantor=${a} AND grantee=${b}`).length > 0; },
    async grantAdd(a, b) { await q`INSERT INTO grants(grantor,grantee) VALUES (${a},${b}) ON CONFLICT DO NOTHING`; },
    async pairRemove(a, b) {
      const r = await q`DELETE FROM grants WHERE (grantor=${a} AND grantee=${b}) OR (grantor=${b} AND grantee=${a}) RETURNING 1`;
      return r.length > 0;
    },
    async inboxCount(t) { return Number((await q`SELECT COUNT(*) AS c FROM inbox WHERE target=${t}`)[0].c); },
    async inboxHasFrom(t, f) { return (await q`SELECT 1 FROM inbox WHERE target=${t} AND from_id=${f}`).length > 0; },
    async inboxAdd(t, r) { const n = await bumpMeta("inbox_n"); await q`INSERT INTO inbox(target,from_id,justification,ts,n) VALUES (${t},${r.from},${r.justification},${r.ts},${n})`; },
    async respCount(t) { return Number((await q`SELECT COUNT(*) AS c FROM responses WHERE requester=${t}`)[0].c); },
    async respAdd(t, r) { const n = await bumpMeta("inbox_n"); await q`INSERT INTO responses(requester,from_id,accept,ts,n) VALUES (${t},${r.from},${r.accept ? 1 : 0},${r.ts},${n})`; },
    async inboxTake(node) {
      const rq = await q`DELETE FROM inbox WHERE target=${node} RETURNING from_id, justification, ts, n`;
      const rs = await q`DELETE FROM responses WHERE requester=${node} RETURNING from_id, accept, ts, n`;
      const byN = (a: any, b: any) => Number(a.n) - Number(b.n);
      return {
        requests: [...rq].sort(byN).map((r: any) => ({ from: Number(r.from_id), justification: r.justification, ts: Number(r.ts) })),
        responses: [...rs].sort(byN).map((r: any) => ({ from: Number(r.from_id), accept: !!Number(r.accept), ts: Number(r.ts) })),
      };
    },
    async networks() { return [...(await q`SELECT * FROM networks ORDER BY id`)].map(rowToNet); },
    async network(id) { const r = await q`SELECT * FROM networks WHERE id=${id}`; return r.length ? rowToNet(r[0]) : null; },
    async putNetwork(n) {
      await q`INSERT INTO networks(id,name,join_rule,token,members,created) VALUES (${n.id},${n.name},${n.joinRule},${n.token},${JSON.stringify(n.members)},${n.created})
        ON CONFLICT (id) DO UPDATE SET name=EXCLUDED.name, join_rule=EXCLUDED.join_rule, token=EXCLUDED.token, members=EXCLUDED.members, created=EXCLUDED.created`;
    },
    async nodeCount() { return Number((await q`SELECT COUNT(*) AS c FROM nodes`)[0].c); },
    async allNodes() { return [...(await q`SELECT * FROM nodes ORDER BY seq`)].map(rowToNode); },
    async staleNodes(before) { return [...(await q`SELECT id FROM nodes WHERE last_seen < ${before}`)].map((r: any) => Number(r.id)); },
    async pairCount() { return Number((await q`SELECT COUNT(*) AS c FROM (SELECT DISTINCT LEAST(grantor,grantee), GREATEST(grantor,grantee) FROM grants) x`)[0].c); },
    async pairs() {
      return [...(await q`SELECT DISTINCT LEAST(grantor,grantee) AS a, GREATEST(grantor,grantee) AS b FROM grants ORDER BY a, b`)].map((r: any) => [Number(r.a), Number(r.b)] as [number, number]);
    },
    async keyAll() { return [...(await q`SELECT k, node_id FROM keyidx ORDER BY k`)].map((r: any) => [r.k, Number(r.node_id)] as [string, number]); },
    async ownerAll() { return [...(await q`SELECT owner, node_id FROM owneridx ORDER BY owner`)].map((r: any) => [r.owner, Number(r.node_id)] as [string, number]); },
    async grantsAll() { return [...(await q`SELECT grantor, grantee FROM grants ORDER BY grantor, grantee`)].map((r: any) => [Number(r.grantor), Number(r.grantee)] as [number, number]); },
    async inboxAll() {
      return [...(await q`SELECT target, from_id, justification, ts FROM inbox ORDER BY n`)].map((r: any) => ({ target: Number(r.target), r: { from: Number(r.from_id), justification: r.justification, ts: Number(r.ts) } }));
    },
    async respAll() {
      return [...(await q`SELECT requester, from_id, accept, ts FROM responses ORDER BY n`)].map((r: any) => ({ requester: Number(r.requester), r: { from: Number(r.from_id), accept: !!Number(r.accept), ts: Number(r.ts) } }));
    },
    async counters() { return { nextNode: await peekSeq("next_node"), nextNet: await meta("next_net"), seq: await peekSeq("seq") }; },
    async setCounters(c) {
      batch?.clear();
      await setSeq("next_node", c.nextNode);
      await q`UPDATE meta SET v=${c.nextNet} WHERE k='next_net'`;
      await setSeq("seq", c.seq);
    },
    async wipe() {
      batch?.clear();
      await q`DELETE FROM nodes`; await q`DELETE FROM keyidx`; await q`DELETE FROM owneridx`; await q`DELETE FROM grants`;
      await q`DELETE FROM inbox`; await q`DELETE FROM responses`; await q`DELETE FROM networks WHERE id<>0`;
      await q`UPDATE meta SET v=1 WHERE k='next_net'`;
      await setSeq("next_node", 1);
      await setSeq("seq", 1);
    },
  };
}

export class PgStore implements Store {
  readonly kind = "postgres" as const;
  readonly description: string;
  private cbs: ((ev: PushEvent) => void)[] = [];
  private sub: { unlisten(): Promise<void> } | null = null;
  private t: Tx;
  private ids = new IdBatch();

  private constructor(private sql: SQL, url: string) {
    this.description = "postgres:" + url.replace(/\/\/[^@]*@/, "//***@");
    this.t = makeTx(sql, false);
  }

  static async open(url: string): Promise<PgStore> {
    const sql = new SQL(url, { max: 8 } as any);
    // Schema creation is itself serialised by the advisory lock (two processes starting together).
    await sql.begin(async (tx: any) => {
      await tx`SELECT pg_advisory_xact_lock(${LOCK_KEY})`;
      for (const s of SCHEMA) await tx.unsafe(s);
      await tx`INSERT INTO meta(k,v) VALUES ('next_node',1),('next_net',1),('seq',1),('inbox_n',1) ON CONFLICT DO NOTHING`;
      await tx`INSERT INTO networks(id,name,join_rule,token,members,created) VALUES (0,'backbone','open','','[]',${Date.now()}) ON CONFLICT DO NOTHING`;
      // Counters move from `meta` rows (updated under the old global lock) to sequences; a
      // database created by an older version starts its sequences at its meta values.
      for (const [k, seq] of Object.entries(SEQS)) {
        if ((await tx`SELECT to_regclass(${seq}) AS r`)[0].r !== null) continue;
        await tx.unsafe(`CREATE SEQUENCE ${seq} MINVALUE 1`);
        const v = Number((await tx`SELECT v FROM meta WHERE k=${k}`)[0].v);
        await tx`SELECT setval(${seq}, ${v}, false)`;
      }
    });
    const st = new PgStore(sql, url);
    st.sub = await (sql as any).listen(CHANNEL, (payload: string) => {
      let ev: PushEvent;
      try { ev = JSON.parse(payload); } catch { return; }
      for (const cb of st.cbs) cb(ev);
    });
    return st;
  }

  /** Transactions rerun after a serialization failure (for tests and benchmarks). */
  retries = 0;
  /**
   * Group commit: tx() calls queue on a lane and run there in arrival order (see pg-group.ts).
   * The lanes run concurrently on their own connections; every transaction of one client
   * connection (txOrigin) goes to the same lane, the others (reaper, imports) to lane 0.
   */
  readonly lanes: PgGroupCommit<TxFn>[] = Array.from({ length: PG_LANES }, () => new PgGroupCommit<TxFn>({
    together: (entries) => this.together(entries),
    alone: (entry) => this.alone(entry),
    retryable: (e) => RETRYABLE.has(String((e as any)?.errno ?? "")),
  }));
  private laneOf = new WeakMap<object, PgGroupCommit<TxFn>>();
  private nextLane = 0;
  /** Totals over the lanes, live (tests, benchmarks). */
  readonly group = ((lanes: PgGroupCommit<TxFn>[]) => {
    const sum = (k: "groups" | "entries" | "splits") => lanes.reduce((a, l) => a + l[k], 0);
    return { get groups() { return sum("groups"); }, get entries() { return sum("entries"); }, get splits() { return sum("splits"); } };
  })(this.lanes);
  /** One connection's transactions run in call order, each seeing the earlier ones' effects. */
  readonly ordered = true;
  readonly byOrigin = true;

  tx<T>(fn: (t: Tx) => Promise<T>): Promise<T> {
    const origin = txOrigin.getStore();
    let lane = this.lanes[0];
    if (origin) {
      lane = this.laneOf.get(origin) ?? this.lanes[this.nextLane++ % this.lanes.length];
      this.laneOf.set(origin, lane);
    }
    return lane.run<T>(fn as TxFn);
  }

  /** Run a group's transactions back to back in one SERIALIZABLE transaction, one COMMIT. */
  private together(entries: GroupEntry<TxFn>[]): Promise<unknown[]> {
    return this.sql.begin("isolation level serializable", async (tx: any) => {
      const behind: Promise<unknown>[] = [];
      const out: unknown[] = [];
      for (let i = 0; i < entries.length; i++) {
        try {
          out.push(await entries[i].fn(makeTx(tx, true, entries[i].undos, behind, this.ids)));
        } catch (e) {
          throw new EntryFailed(i, await firstWriteError(behind, e));
        }
      }
      await Promise.all(behind);
      return out;
    }) as Promise<unknown[]>;
  }

  /** One transaction alone, rerun from scratch (a few times) after a serialization failure. */
  private async alone(entry: GroupEntry<TxFn>): Promise<unknown> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.sql.begin("isolation level serializable", async (tx: any) => {
          const behind: Promise<unknown>[] = [];
          let r: unknown;
          try {
            r = await entry.fn(makeTx(tx, true, entry.undos, behind, this.ids));
          } catch (e) {
            throw await firstWriteError(behind, e);
          }
          await Promise.all(behind);
          return r;
        });
      } catch (e) {
        // Rolled back: its in-memory side effects are reverted, whether it is rerun or fails.
        const u = entry.undos;
        entry.undos = [];
        for (let i = u.length - 1; i >= 0; i--) u[i]();
        if (!RETRYABLE.has(String((e as any)?.errno ?? "")) || attempt >= PG_TX_ATTEMPTS) throw e;
        this.retries++;
        await Bun.sleep(Math.random() * 2 * attempt); // spread the rerun of colliding transactions
      }
    }
  }

  read<T>(fn: (t: Tx) => Promise<T>): Promise<T> {
    return fn(this.t);
  }

  view<T>(fn: (t: Tx) => Promise<T>): Promise<T> {
    return fn(this.t);
  }

  async publish(ev: PushEvent): Promise<void> {
    const payload = JSON.stringify(ev);
    if (payload.length > 7900) return; // NOTIFY payload limit (8000 bytes); justification is capped far below
    await this.sql`SELECT pg_notify(${CHANNEL}, ${payload})`;
  }
  onPush(cb: (ev: PushEvent) => void): void {
    this.cbs.push(cb);
  }
  async bulkLoadNodes(nodes: NodeRec[]): Promise<void> {
    // Multi-row INSERTs of 4000 rows (13 parameters each stays under PostgreSQL's 65535 limit).
    await this.sql.begin(async (tx: any) => {
      let maxId = 0, maxSeq = 0;
      for (let i = 0; i < nodes.length; i += 4000) {
        const chunk = nodes.slice(i, i + 4000);
        const rows = chunk.map((n) => {
          if (n.id > maxId) maxId = n.id;
          if (n.seq > maxSeq) maxSeq = n.seq;
          return {
            id: n.id, owner: n.owner, public_key: n.publicKey, real_addr: n.realAddr, networks: JSON.stringify(n.networks),
            public: n.public ? 1 : 0, last_seen: n.lastSeen, hostname: n.hostname === "" ? null : n.hostname,
            tags: JSON.stringify(n.tags), polo: n.polo, task_exec: n.taskExec ? 1 : 0, seq: n.seq, strict: n.strict ? 1 : 0,
          };
        });
        await tx`INSERT INTO nodes ${tx(rows)}`;
        await tx`INSERT INTO keyidx ${tx(chunk.map((n) => ({ k: n.publicKey, node_id: n.id })))}`;
      }
      const t = makeTx(tx, true, undefined, undefined, this.ids);
      await t.bumpNextNode(maxId + 1);
      if ((await t.counters()).seq <= maxSeq) await tx`SELECT setval(${SEQS.seq}, ${maxSeq + 1}, false)`;
    });
  }
  async isEmpty(): Promise<boolean> {
    const n = await makeTx(this.sql, false).counters();
    const c = await this.sql`SELECT COUNT(*) AS c FROM nodes`;
    return n.nextNode === 1 && Number(c[0].c) === 0;
  }
  async close(): Promise<void> {
    try { await this.sub?.unlisten(); } catch {}
    try { await this.sql.close(); } catch {}
  }
}
