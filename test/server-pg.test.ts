// PostgreSQL store, multi-process: runs against PILOT_TEST_PG_URL, or a throwaway server started by
// test/helpers/pg.ts from /usr/lib/postgresql/*/bin. Skipped (with a message) otherwise. The
// single-process registry suite runs on PostgreSQL in server-registry.test.ts.
import { afterAll, describe, expect, test } from "bun:test";
import { ed25519 } from "@noble/curves/ed25519.js";
import { join } from "node:path";
import { RegistryClient } from "../src/daemon/registry-client.ts";
import { startRendezvous, type Rendezvous } from "../src/server/main.ts";
import { getPg, releasePg } from "./helpers/pg.ts";
import { until } from "./helpers/until.ts";

const b64 = (b: Uint8Array) => Buffer.from(b).toString("base64");
function identity() {
  const sk = ed25519.utils.randomSecretKey();
  return { pub: b64(ed25519.getPublicKey(sk)), sign: (c: string) => b64(ed25519.sign(new TextEncoder().encode(c), sk)) };
}

const pg = await getPg();
afterAll(releasePg);
if (typeof pg === "string") console.log(`PostgreSQL tests skipped: ${pg} (set PILOT_TEST_PG_URL to run them)`);

describe.skipIf(typeof pg === "string")("postgres store", () => {
  test("two rendezvous processes on one database: shared IDs, hostnames and pushed handshakes", async () => {
    const url = await (pg as Exclude<typeof pg, string>).freshDb("pilot_2proc"); // fresh database for this run
    let r1: Rendezvous | null = null;
    let proc: ReturnType<typeof Bun.spawn> | null = null;
    try {
      r1 = await startRendezvous({ "registry-addr": "127.0.0.1:0", "beacon-addr": "127.0.0.1:0", store: url, quiet: true, noRateLimit: true });
      // the second one is a real `rendezvous` process
      proc = Bun.spawn([join(import.meta.dir, "../node_modules/.bin/bun"), join(import.meta.dir, "../src/main.ts"), "rendezvous",
        "-registry-addr", "127.0.0.1:0", "-beacon-addr", "127.0.0.1:0", "-store", url], { stdout: "pipe", stderr: "pipe" });
      const rd = (proc.stdout as ReadableStream<Uint8Array>).getReader();
      let out = "";
      let port2 = 0;
      while (!port2) {
        const { value, done } = await rd.read();
        if (done) throw new Error("rendezvous exited: " + out);
        out += new TextDecoder().decode(value);
        const m = /registry listening on [^\n]*:(\d+)/.exec(out);
        if (m) port2 = Number(m[1]);
      }
      const A = identity(), B = identity();
      const ca = new RegistryClient(`127.0.0.1:${r1.registryPort}`, { sign: A.sign });
      const cb = new RegistryClient(`127.0.0.1:${port2}`, { sign: B.sign });
      // concurrent registrations through both processes get distinct IDs, each stored once
      // (the real process keeps its per-IP rate limit: 8 registrations there, 8 here). IDs come
      // from a sequence: a transaction rerun after a serialization failure skips a value, so
      // they are increasing but not necessarily contiguous.
      const many = await Promise.all(Array.from({ length: 16 }, (_, i) => (i % 2 ? ca : cb).register(identity().pub, "127.0.0.1:1")));
      const ids = many.map((r) => r.node_id as number).sort((x, y) => x - y);
      expect(new Set(ids).size).toBe(16);
      for (const id of ids) expect((await ca.lookup(id)).type).toBe("lookup_ok");
      const ida = (await ca.register(A.pub, "127.0.0.1:4000", "", "pg-alpha")).node_id as number;
      const idb = (await cb.register(B.pub, "127.0.0.1:4001")).node_id as number;
      expect((await cb.resolveHostname("pg-alpha")).node_id).toBe(ida);
      await expectErr(cb.setHostname(idb, "pg-alpha"));
      const pushes: any[] = [];
      cb.onPush((m) => pushes.push(m));
      await cb.subscribe(idb);
      await ca.requestHandshake(ida, idb, "hello via process 1");
      await until(async () => pushes.length > 0, "push through the other process", 5000, 10);
      expect(pushes[0]).toMatchObject({ type: "push", event: "handshake_request", node_id: idb, from_node_id: ida, justification: "hello via process 1" });
      const poll = await cb.pollHandshakes(idb);
      expect(poll.requests).toMatchObject([{ from_node_id: ida, justification: "hello via process 1" }]);
      await cb.respondHandshake(idb, ida, true);
      expect((await ca.resolve(idb, ida)).real_addr).toBe("127.0.0.1:4001");
      ca.close(); cb.close();
    } finally {
      await r1?.stop();
      if (proc) { proc.kill("SIGTERM"); await proc.exited; }
    }
  }, 60000);
});

describe.skipIf(typeof pg === "string")("postgres store: serializable transactions", () => {
  test("a transaction overtaken by a concurrent write of its node is rerun; its undo actions run first", async () => {
    const url = await (pg as Exclude<typeof pg, string>).freshDb("pilot_retry");
    const { PgStore } = await import("../src/server/store-pg.ts");
    const { freshNode } = await import("../src/server/core.ts");
    const s = await PgStore.open(url);
    // The concurrent writer is another store on the same database (as another process would be):
    // one store runs its transactions one group at a time, in call order.
    const s2 = await PgStore.open(url);
    try {
      await s.tx(async (t) => t.putNode(freshNode(1000, 1, identity().pub, "", "127.0.0.1:1", 1)));
      const pending = new Map<number, string>([[1, "original"]]); // stands for connection state
      let release!: () => void, snapped!: () => void;
      const gate = new Promise<void>((r) => (release = r));
      const snapshotTaken = new Promise<void>((r) => (snapped = r));
      let attempts = 0, undone = 0;
      const slow = s.tx(async (t) => {
        attempts++;
        await t.nodeCount(); // the transaction's snapshot is taken here
        pending.delete(1);
        t.undo(() => { undone++; pending.set(1, "original"); });
        if (attempts === 1) { snapped(); await gate; }
        const n = (await t.getNode(1))!; // FOR UPDATE of a row changed after the snapshot: 40001
        n.tags = ["slow"];
        await t.putNode(n);
        return attempts;
      });
      await snapshotTaken;
      await s2.tx(async (t) => { const n = (await t.getNode(1))!; n.hostname = "fast"; await t.putNode(n); });
      release();
      expect(await slow).toBe(2);
      expect(undone).toBe(1);
      expect(s.retries).toBeGreaterThanOrEqual(1);
      expect(pending.has(1)).toBe(false); // the successful attempt's effect stays
      expect(await s.view((t) => t.getNode(1))).toMatchObject({ hostname: "fast", tags: ["slow"] });
      // Counters are sequences: a rerun attempt's values are skipped, never reused.
      const ids = await Promise.all(Array.from({ length: 10 }, () => s.tx((t) => t.allocNodeId())));
      expect(new Set(ids).size).toBe(10);
      const c = await s.view((t) => t.counters());
      expect(c.nextNode).toBeGreaterThan(Math.max(...ids));
    } finally {
      await s.close();
      await s2.close();
    }
  }, 30000);
});

async function expectErr(p: Promise<unknown>) {
  let ok = false;
  try { await p; ok = true; } catch {}
  expect(ok).toBe(false);
}
