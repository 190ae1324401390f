// Group commit of the PostgreSQL store (src/server/pg-group.ts): the batching logic against an
// in-memory fake database (all-or-nothing transactions), then the real store on a throwaway
// PostgreSQL: a group with a failing request, and registrations through two processes.
import { afterAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { EntryFailed, PG_MAX_GROUP, PgGroupCommit, type GroupEntry, type GroupRunner } from "../src/server/pg-group.ts";
import { PG_LANES, PgStore } from "../src/server/store-pg.ts";
import { txOrigin } from "../src/server/store.ts";
import { RegistryClient } from "../src/daemon/registry-client.ts";
import { startRendezvous, type Rendezvous } from "../src/server/main.ts";
import { getPg, releasePg } from "./helpers/pg.ts";

/** A request against the fake database: reads/changes `db`, may register undos. */
type Fn = (db: Map<string, number>, undo: (f: () => void) => void) => unknown;

class Conflict extends Error {
  readonly errno = "40001";
}

/** All-or-nothing transactions over a Map; `conflictAbove`: groups larger than this fail at COMMIT. */
function fakeDb(conflictAbove = Infinity) {
  const db = new Map<string, number>();
  const log: string[] = [];
  const runner: GroupRunner<Fn> = {
    async together(entries: GroupEntry<Fn>[]) {
      await Bun.sleep(0);
      const copy = new Map(db);
      const out: unknown[] = [];
      for (let i = 0; i < entries.length; i++) {
        try {
          out.push(entries[i].fn(copy, (f) => entries[i].undos.push(f)));
        } catch (e) {
          throw new EntryFailed(i, e);
        }
      }
      if (entries.length > conflictAbove) throw new Conflict("could not serialize access");
      for (const [k, v] of copy) db.set(k, v);
      log.push(`group ${entries.length}`);
      return out;
    },
    async alone(entry: GroupEntry<Fn>) {
      await Bun.sleep(0);
      const copy = new Map(db);
      let r: unknown;
      try {
        r = entry.fn(copy, (f) => entry.undos.push(f));
      } catch (e) {
        for (const f of entry.undos.splice(0).reverse()) f();
        throw e;
      }
      for (const [k, v] of copy) db.set(k, v);
      log.push("alone");
      return r;
    },
    retryable: (e) => e instanceof Conflict,
  };
  return { db, log, runner };
}

/** Increment counter `k` and return the new value; fails with `bad` when asked to. */
const incr = (k: string, bad = false): Fn => (db, undo) => {
  const v = (db.get(k) ?? 0) + 1;
  db.set(k, v);
  if (bad) throw new Error("refused");
  return v;
};

describe("PgGroupCommit (fake database)", () => {
  test("requests queued together share one transaction and see each other's effects in order", async () => {
    const { db, log, runner } = fakeDb();
    const g = new PgGroupCommit(runner);
    const rs = await Promise.all(Array.from({ length: 10 }, () => g.run<number>(incr("a"))));
    expect(rs).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    expect(db.get("a")).toBe(10);
    expect(log).toEqual(["group 10"]);
    expect(g.groups).toBe(1);
  });

  test("a request that fails fails alone: the others commit, each answered once, its undos run", async () => {
    const { db, runner } = fakeDb();
    const g = new PgGroupCommit(runner);
    const undone: number[] = [];
    let calls = 0;
    const bad: Fn = (d, undo) => {
      calls++;
      undo(() => undone.push(calls));
      return incr("a", true)(d, undo);
    };
    const ps = [g.run<number>(incr("a")), g.run<number>(incr("a")), g.run<number>(bad), g.run<number>(incr("a")), g.run<number>(incr("a"))];
    const settled = await Promise.allSettled(ps);
    expect(settled.map((s) => s.status)).toEqual(["fulfilled", "fulfilled", "rejected", "fulfilled", "fulfilled"]);
    expect(settled.filter((s) => s.status === "fulfilled").map((s) => (s as PromiseFulfilledResult<number>).value)).toEqual([1, 2, 3, 4]);
    expect(((settled[2] as PromiseRejectedResult).reason as Error).message).toBe("refused");
    expect(db.get("a")).toBe(4); // the failed increment left nothing behind
    expect(undone.length).toBe(calls); // every rolled-back attempt's side effect was reverted
    expect(g.splits).toBe(1);
  });

  test("a conflicting group is rerun in halves until it commits; nothing lost or doubled", async () => {
    const { db, log, runner } = fakeDb(3);
    const g = new PgGroupCommit(runner);
    const n = 13;
    const rs = await Promise.all(Array.from({ length: n }, () => g.run<number>(incr("a"))));
    expect(rs).toEqual(Array.from({ length: n }, (_, i) => i + 1));
    expect(db.get("a")).toBe(n);
    expect(log.every((l) => l === "alone" || Number(l.split(" ")[1]) <= 3)).toBe(true);
    expect(g.splits).toBeGreaterThan(0);
  });

  test("a group holds at most PG_MAX_GROUP requests; the rest run in the next group", async () => {
    const { log, runner } = fakeDb();
    const g = new PgGroupCommit(runner);
    await Promise.all(Array.from({ length: PG_MAX_GROUP + 5 }, () => g.run(incr("a"))));
    expect(log).toEqual([`group ${PG_MAX_GROUP}`, "group 5"]);
  });
});

const pg = await getPg();
afterAll(releasePg);

describe.skipIf(typeof pg === "string")("PgStore group commit (PostgreSQL)", () => {
  test("one failing transaction in a group does not fail the others, and its writes are rolled back", async () => {
    const url = await (pg as Exclude<typeof pg, string>).freshDb("pilot_grp");
    const st = await PgStore.open(url);
    try {
      const keys = Array.from({ length: 20 }, () => randomBytes(32).toString("base64"));
      const ps = keys.map((k, i) => st.tx(async (t) => {
        const id = await t.allocNodeId();
        await t.keySet(k, id);
        if (i === 7) throw new Error("refused");
        return id;
      }));
      const settled = await Promise.allSettled(ps);
      expect(settled.filter((s) => s.status === "rejected").length).toBe(1);
      expect((settled[7] as PromiseRejectedResult).reason.message).toBe("refused");
      for (let i = 0; i < keys.length; i++) {
        const got = await st.read((t) => t.keyGet(keys[i]));
        if (i === 7) expect(got).toBeNull();
        else expect(got).toBe((settled[i] as PromiseFulfilledResult<number>).value);
      }
      expect(st.group.groups).toBeGreaterThan(0);
      expect(st.group.splits).toBeGreaterThan(0);
    } finally {
      await st.close();
    }
  });

  test("transactions of one origin (connection) run in call order on their lane; origins spread over the lanes", async () => {
    const url = await (pg as Exclude<typeof pg, string>).freshDb("pilot_grp_lanes");
    const st = await PgStore.open(url);
    try {
      const origins = Array.from({ length: PG_LANES * 2 }, () => ({}));
      // Each origin issues 30 read-increment-write transactions on its own counter without
      // waiting: each must see the one before it.
      const runs = origins.map((o, i) => txOrigin.run(o, () => Promise.all(Array.from({ length: 30 }, () => st.tx(async (t) => {
        const v = (await t.keyGet(`counter-${i}`)) ?? 0;
        await t.keySet(`counter-${i}`, v + 1);
        return v + 1;
      })))));
      const res = await Promise.all(runs);
      for (const r of res) expect(r).toEqual(Array.from({ length: 30 }, (_, j) => j + 1));
      expect(st.lanes.filter((l) => l.entries > 0).length).toBe(PG_LANES);
    } finally {
      await st.close();
    }
  });

  test("over the wire: a badly signed request among pipelined registrations fails alone", async () => {
    const url = await (pg as Exclude<typeof pg, string>).freshDb("pilot_grp_wire");
    const rv = await startRendezvous({ "registry-addr": "127.0.0.1:0", "beacon-addr": "127.0.0.1:0", store: url, quiet: true, noRateLimit: true });
    const c = new RegistryClient(`127.0.0.1:${rv.registryPort}`, { sign: () => "" });
    try {
      const first = await c.register(randomBytes(32).toString("base64"), "127.0.0.1:1");
      const keys = Array.from({ length: 40 }, () => randomBytes(32).toString("base64"));
      const bad = { type: "set_hostname", node_id: first.node_id, hostname: "stolen", signature: Buffer.alloc(64, 7).toString("base64") };
      const ps: Promise<unknown>[] = keys.map((k) => c.register(k, "127.0.0.1:1"));
      ps.splice(20, 0, c.request(bad));
      const settled = await Promise.allSettled(ps);
      expect(settled[20].status).toBe("rejected");
      const ok = settled.filter((x, i) => i !== 20 && x.status === "fulfilled").map((x) => (x as PromiseFulfilledResult<any>).value.node_id as number);
      expect(new Set(ok).size).toBe(keys.length);
      for (const k of keys) expect(await rv.registry.store.read((t) => t.keyGet(k))).not.toBeNull();
      expect((await rv.registry.store.read((t) => t.getNode(first.node_id as number)))!.hostname).toBe("");
    } finally {
      c.close();
      await rv.stop();
    }
  });

  test("pipelined registrations through two processes on one database all land, distinct IDs", async () => {
    const url = await (pg as Exclude<typeof pg, string>).freshDb("pilot_grp2");
    let r1: Rendezvous | null = null;
    const other = Bun.spawn([process.execPath, join(import.meta.dir, "../bench/lib/registry-server.ts"), url], { stdout: "pipe", stderr: "inherit" });
    try {
      r1 = await startRendezvous({ "registry-addr": "127.0.0.1:0", "beacon-addr": "127.0.0.1:0", store: url, quiet: true, noRateLimit: true });
      const rd = (other.stdout as ReadableStream<Uint8Array>).getReader();
      let line = "";
      while (!line.includes("\n")) {
        const { value, done } = await rd.read();
        if (done) throw new Error("registry-server exited: " + line);
        line += new TextDecoder().decode(value);
      }
      const port2 = JSON.parse(line.split("\n")[0]).port as number;
      const clients = [r1.registryPort, port2, r1.registryPort, port2].map((p) => new RegistryClient(`127.0.0.1:${p}`, { sign: () => "" }));
      const keys = Array.from({ length: 400 }, () => randomBytes(32).toString("base64"));
      const res = await Promise.all(keys.map((k, i) => clients[i % clients.length].register(k, "127.0.0.1:1")));
      const ids = res.map((r) => r.node_id as number);
      expect(new Set(ids).size).toBe(keys.length);
      // each process sees every registration, and each key maps to the ID it was given
      const st = r1.registry.store;
      for (let i = 0; i < keys.length; i++) expect(await st.read((t) => t.keyGet(keys[i]))).toBe(ids[i]);
      expect(await st.read((t) => t.nodeCount())).toBe(keys.length);
      const again = await clients[1].register(keys[0], "127.0.0.1:1"); // known key, via the other process
      expect(again.node_id).toBe(ids[0]);
      for (const c of clients) c.close();
    } finally {
      other.kill("SIGTERM");
      await other.exited;
      await r1?.stop();
    }
  }, 60_000);
});
