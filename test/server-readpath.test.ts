// The optimistic read path of signed read-mostly requests (Registry.readOrWrite): resolve, punch,
// poll_handshakes and heartbeat run on Store.read and fall back to a locked Store.tx only when a write is
// needed (first timestamped signature → strict flag; an R2 pending endpoint; a non-empty inbox).
// Run on SQLite and on PostgreSQL, calling Registry.handle directly so connection contexts can
// carry any source IP (no network traffic; the IPs below are only strings).
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ed25519 } from "@noble/curves/ed25519.js";
import { getPg, releasePg } from "./helpers/pg.ts";
import { Registry, newCtx, type ConnCtx } from "../src/server/registry.ts";
import { SqliteStore, type Store } from "../src/server/store.ts";
import { PgStore } from "../src/server/store-pg.ts";

const b64 = (b: Uint8Array) => Buffer.from(b).toString("base64");
function identity() {
  const sk = ed25519.utils.randomSecretKey();
  return { pub: b64(ed25519.getPublicKey(sk)), sign: (c: string) => b64(ed25519.sign(new TextEncoder().encode(c), sk)) };
}

const pg = await getPg();
afterAll(releasePg);
const tmp = mkdtempSync(join(tmpdir(), "pilot-readpath-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true, maxRetries: 5 }));

for (const kind of ["sqlite", "postgres"] as const) {
  describe.skipIf(kind === "postgres" && typeof pg === "string")(`read path on ${kind}`, () => {
    let store: Store;
    let reg: Registry;
    let txCount = 0;
    const open = async () => {
      store = kind === "sqlite" ? new SqliteStore(join(tmp, `r-${Date.now()}-${Math.random()}.db`)) : await PgStore.open(await (pg as any).freshDb("pilot_rp"));
      const tx = store.tx.bind(store);
      store.tx = (fn) => { txCount++; return tx(fn); }; // count locked transactions
      reg = new Registry(store, { noRateLimit: true });
    };
    afterAll(async () => { await store?.close(); });

    async function node(ctx: ConnCtx, isPublic = true) {
      const id = identity();
      const r = await reg.handle({ type: "register", public_key: id.pub, listen_addr: "0.0.0.0:4000" }, ctx);
      expect(r.type).toBe("register_ok");
      const nid = r.node_id as number;
      if (isPublic) expect((await reg.handle({ type: "set_visibility", node_id: nid, public: true, signature: id.sign(`set_visibility:${nid}`) }, ctx)).type).toBe("set_visibility_ok");
      return { ...id, id: nid, ctx };
    }
    const counted = async (msg: Record<string, unknown>, ctx: ConnCtx) => {
      const before = txCount;
      const r = await reg.handle(msg, ctx);
      return { r, tx: txCount - before };
    };

    test("plain resolve / punch / empty poll take no locked transaction; errors unchanged", async () => {
      await open();
      const a = await node(newCtx("127.0.0.1", 50000));
      const b = await node(newCtx("127.0.0.1", 50001));
      let x = await counted({ type: "resolve", node_id: b.id, requester_id: a.id, signature: a.sign(`resolve:${a.id}:${b.id}`) }, a.ctx);
      expect(x.r).toEqual({ type: "resolve_ok", node_id: b.id, real_addr: "127.0.0.1:4000" });
      expect(x.tx).toBe(0);
      x = await counted({ type: "punch", requester_id: a.id, node_a: a.id, node_b: b.id, signature: a.sign(`punch:${a.id}:${b.id}`) }, a.ctx);
      expect(x.r.type).toBe("punch_ok");
      expect(x.tx).toBe(0);
      x = await counted({ type: "poll_handshakes", node_id: a.id, signature: a.sign(`poll_handshakes:${a.id}`) }, a.ctx);
      expect(x.r).toEqual({ type: "poll_handshakes_ok", requests: [], responses: [] });
      expect(x.tx).toBe(0);
      // errors on the read path are the serialised path's errors
      x = await counted({ type: "resolve", node_id: b.id, requester_id: a.id, signature: b.sign(`resolve:${a.id}:${b.id}`) }, a.ctx);
      expect(x.r.code).toBe("bad_signature");
      x = await counted({ type: "resolve", node_id: 999999, requester_id: a.id, signature: a.sign(`resolve:${a.id}:999999`) }, a.ctx);
      expect(x.r.code).toBe("not_found");
      expect(x.tx).toBe(0);
    });

    test("first timestamped signature falls back to the locked write (strict flag); later ones stay lock-free", async () => {
      const a = await node(newCtx("127.0.0.1", 50002));
      const b = await node(newCtx("127.0.0.1", 50003));
      const ts = Date.now();
      const first = { type: "resolve", node_id: b.id, requester_id: a.id, ts, signature: a.sign(`resolve:${a.id}:${b.id}:${ts}`) };
      let x = await counted(first, a.ctx);
      expect(x.r.type).toBe("resolve_ok");
      expect(x.tx).toBe(1); // strict flag written under the lock
      x = await counted(first, a.ctx); // the fallback consumed the signature exactly once
      expect(x.r.code).toBe("replayed_signature");
      x = await counted({ type: "resolve", node_id: b.id, requester_id: a.id, signature: a.sign(`resolve:${a.id}:${b.id}`) }, a.ctx);
      expect(x.r.code).toBe("fresh_signature_required");
      const ts2 = ts + 1;
      const second = { type: "resolve", node_id: b.id, requester_id: a.id, ts: ts2, signature: a.sign(`resolve:${a.id}:${b.id}:${ts2}`) };
      x = await counted(second, a.ctx);
      expect(x.r.type).toBe("resolve_ok");
      expect(x.tx).toBe(0);
      x = await counted(second, a.ctx);
      expect(x.r.code).toBe("replayed_signature");
      // a failing request on the fallback leaves the node non-strict (rolled back), as before
      const c = await node(newCtx("127.0.0.1", 50004));
      const ts3 = Date.now();
      x = await counted({ type: "resolve", node_id: 999999, requester_id: c.id, ts: ts3, signature: c.sign(`resolve:${c.id}:999999:${ts3}`) }, c.ctx);
      expect(x.r.code).toBe("not_found");
      expect(x.tx).toBe(1);
      expect((await store.read((t) => t.getNode(c.id)))!.strict).toBe(false);
    });

    test("R2 pending endpoint is applied by a signed resolve (fallback) on the same connection only", async () => {
      const home = newCtx("127.0.0.1", 50005);
      const a = await node(home);
      const b = await node(newCtx("127.0.0.1", 50006));
      // same key re-registers from another IP while live: endpoint kept, pending on that connection
      const moved = newCtx("192.0.2.7", 50007);
      expect((await reg.handle({ type: "register", public_key: a.pub, listen_addr: "0.0.0.0:4100" }, moved)).node_id).toBe(a.id);
      expect(moved.pendingAddr.get(a.id)).toBe("192.0.2.7:4100");
      const look = async () => (await reg.handle({ type: "resolve", node_id: a.id, requester_id: b.id, signature: b.sign(`resolve:${b.id}:${a.id}`) }, b.ctx)).real_addr;
      expect(await look()).toBe("127.0.0.1:4000");
      // a signed resolve by a on its home connection: no pending there → lock-free, nothing moves
      let x = await counted({ type: "resolve", node_id: b.id, requester_id: a.id, signature: a.sign(`resolve:${a.id}:${b.id}`) }, home);
      expect(x.tx).toBe(0);
      expect(await look()).toBe("127.0.0.1:4000");
      // the same on the new connection commits the move under the lock
      x = await counted({ type: "resolve", node_id: b.id, requester_id: a.id, signature: a.sign(`resolve:${a.id}:${b.id}`) }, moved);
      expect(x.r.type).toBe("resolve_ok");
      expect(x.tx).toBe(1);
      expect(moved.pendingAddr.size).toBe(0);
      expect(await look()).toBe("192.0.2.7:4100");
    });

    test("poll_handshakes with queued entries takes them under the lock, exactly once", async () => {
      const a = await node(newCtx("127.0.0.1", 50008));
      const b = await node(newCtx("127.0.0.1", 50009));
      expect((await reg.handle({ type: "request_handshake", from_node_id: a.id, to_node_id: b.id, justification: "hi", signature: a.sign(`handshake:${a.id}:${b.id}`) }, a.ctx)).type).toBe("request_handshake_ok");
      const poll = { type: "poll_handshakes", node_id: b.id, signature: b.sign(`poll_handshakes:${b.id}`) };
      let x = await counted(poll, b.ctx);
      expect(x.r.requests).toEqual([{ from_node_id: a.id, justification: "hi", timestamp: expect.any(Number) }]);
      expect(x.tx).toBe(1);
      x = await counted(poll, b.ctx);
      expect(x.r).toEqual({ type: "poll_handshakes_ok", requests: [], responses: [] });
      expect(x.tx).toBe(0);
      // a response waiting (request inbox empty) also goes through the locked take
      expect((await reg.handle({ type: "respond_handshake", node_id: b.id, peer_id: a.id, accept: true, signature: b.sign(`respond:${b.id}:${a.id}`) }, b.ctx)).type).toBe("respond_handshake_ok");
      x = await counted({ type: "poll_handshakes", node_id: a.id, signature: a.sign(`poll_handshakes:${a.id}`) }, a.ctx);
      expect(x.r.responses).toEqual([{ from_node_id: b.id, accept: true, timestamp: expect.any(Number) }]);
      expect(x.tx).toBe(1);
    });
    test("a STRICT node (timestamped signatures) polling a non-empty inbox gets its entries (no self-replay)", async () => {
      const a = await node(newCtx("127.0.0.1", 50010));
      const b = await node(newCtx("127.0.0.1", 50011));
      // b becomes strict with its first timestamped signature
      const t0 = Date.now();
      expect((await reg.handle({ type: "heartbeat", node_id: b.id, ts: t0, signature: b.sign(`heartbeat:${b.id}:${t0}`) }, b.ctx)).type).toBe("heartbeat_ok");
      expect((await reg.handle({ type: "request_handshake", from_node_id: a.id, to_node_id: b.id, justification: "strict", signature: a.sign(`handshake:${a.id}:${b.id}`) }, a.ctx)).type).toBe("request_handshake_ok");
      // the read path sees the queued entry and retries under the lock with the SAME request:
      // its signature must be consumed once, not refused as a replay of itself
      const t1 = t0 + 1;
      const poll = { type: "poll_handshakes", node_id: b.id, ts: t1, signature: b.sign(`poll_handshakes:${b.id}:${t1}`) };
      const x = await counted(poll, b.ctx);
      expect(x.r.type).toBe("poll_handshakes_ok");
      expect(x.r.requests).toEqual([{ from_node_id: a.id, justification: "strict", timestamp: expect.any(Number) }]);
      // a real replay of that request is still refused
      expect((await reg.handle({ ...poll }, b.ctx)).code).toBe("replayed_signature");
    });

    test("heartbeat: lock-free last_seen write; deleted node → not_found; strict/pending still go through the lock", async () => {
      const a = await node(newCtx("127.0.0.1", 50010));
      await store.tx(async (t) => { const n = (await t.getNode(a.id))!; n.lastSeen = Date.now() - 10 * 60_000; await t.putNode(n); });
      const t0 = Date.now();
      let x = await counted({ type: "heartbeat", node_id: a.id, signature: a.sign(`heartbeat:${a.id}`) }, a.ctx);
      expect(x.r.type).toBe("heartbeat_ok");
      expect(x.tx).toBe(0);
      expect((await store.read((t) => t.getNode(a.id)))!.lastSeen).toBeGreaterThanOrEqual(t0);
      const ts = Date.now();
      x = await counted({ type: "heartbeat", node_id: a.id, ts, signature: a.sign(`heartbeat:${a.id}:${ts}`) }, a.ctx);
      expect(x.r.type).toBe("heartbeat_ok");
      expect(x.tx).toBe(1); // first timestamped signature: strict flag
      expect((await store.read((t) => t.getNode(a.id)))!.strict).toBe(true);
      x = await counted({ type: "heartbeat", node_id: a.id, signature: a.sign(`heartbeat:${a.id}`) }, a.ctx);
      expect(x.r.code).toBe("fresh_signature_required");
      const b = await node(newCtx("127.0.0.1", 50011));
      await store.tx((t) => t.deleteNode(b.id));
      x = await counted({ type: "heartbeat", node_id: b.id, signature: b.sign(`heartbeat:${b.id}`) }, b.ctx);
      expect(x.r.code).toBe("not_found");
    });

    test("a heartbeat concurrent with a locked read-modify-write of the node is not lost", async () => {
      const a = await node(newCtx("127.0.0.1", 50012));
      const old = Date.now() - 10 * 60_000;
      const t0 = Date.now();
      let hb: Promise<Record<string, unknown>> | undefined;
      await store.tx(async (t) => {
        const n = (await t.getNode(a.id))!; // PostgreSQL: row lock; SQLite: the store mutex
        hb = reg.handle({ type: "heartbeat", node_id: a.id, signature: a.sign(`heartbeat:${a.id}`) }, a.ctx);
        await Bun.sleep(50); // let the heartbeat reach the store while this transaction is open
        n.lastSeen = old;
        n.tags = ["x"];
        await t.putNode(n);
      });
      expect((await hb!).type).toBe("heartbeat_ok");
      const n = (await store.read((t) => t.getNode(a.id)))!;
      expect(n.tags).toEqual(["x"]);
      expect(n.lastSeen).toBeGreaterThanOrEqual(t0); // the heartbeat landed after the locked write
    });

    test("reaper re-checks staleness in its DELETE", async () => {
      const a = await node(newCtx("127.0.0.1", 50013));
      const b = await node(newCtx("127.0.0.1", 50014));
      await store.tx(async (t) => {
        for (const id of [a.id, b.id]) { const n = (await t.getNode(id))!; n.lastSeen = Date.now() - 10 * 60_000; await t.putNode(n); }
      });
      const before = Date.now() - 3 * 60_000;
      expect((await reg.handle({ type: "heartbeat", node_id: b.id, signature: b.sign(`heartbeat:${b.id}`) }, b.ctx)).type).toBe("heartbeat_ok");
      expect(await store.tx((t) => t.deleteStaleNode(b.id, before))).toBe(false);
      expect(await store.tx((t) => t.deleteStaleNode(a.id, before))).toBe(true);
      const reaped = await reg.reap();
      expect(reaped).not.toContain(b.id);
      expect(await store.read((t) => t.getNode(b.id))).not.toBeNull();
    });
  });
}
