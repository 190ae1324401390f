// Pipelined requests on one registry connection (SQLite): single-transaction requests of a
// connection are started without waiting for the earlier ones to commit, so they share a commit
// group, while every later request still sees the earlier ones' effects and replies leave in
// request order. Registry-level tests call Registry.handle back to back the way the server
// starts pipelined requests (connection contexts may then carry any source IP: no traffic, the
// IPs are strings); the TCP tests send many frames in one write to a real rendezvous on loopback.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ed25519 } from "@noble/curves/ed25519.js";
import { Registry, newCtx, type WireReply } from "../src/server/registry.ts";
import { SqliteStore } from "../src/server/store.ts";
import { startRendezvous, type Rendezvous } from "../src/server/main.ts";
import { encodeFrame } from "../src/proto/framing.ts";
import { RegistryFrameDecoder } from "../src/proto/registry-frames.ts";
import { MAX_QUEUED_FRAMES } from "../src/server/server.ts";
import { until } from "./helpers/until.ts";

const b64 = (b: Uint8Array) => Buffer.from(b).toString("base64");
function identity() {
  const sk = ed25519.utils.randomSecretKey();
  return { pub: b64(ed25519.getPublicKey(sk)), sign: (c: string) => b64(ed25519.sign(new TextEncoder().encode(c), sk)) };
}
const groupsOf = (s: SqliteStore) => (s as unknown as { group: { groups: number } }).group.groups;

const tmp = mkdtempSync(join(tmpdir(), "pilot-pipe-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true, maxRetries: 5 }));
let nFiles = 0;

describe("registry level", () => {
  test("pipelined writes share one commit group; a later request sees an earlier one's effect; a rolled-back request gives the pending endpoint back", async () => {
    const store = new SqliteStore(join(tmp, `p-${++nFiles}.db`));
    const reg = new Registry(store, { noRateLimit: true });
    try {
      const a = identity(), b = identity();
      const home = newCtx("127.0.0.1", 40000);
      const moved = newCtx("127.0.0.3", 40001); // the same node reconnecting from another IP
      const msgs: [Record<string, unknown>, ReturnType<typeof newCtx>][] = [
        [{ type: "register", public_key: a.pub, listen_addr: ":4000", hostname: "alpha" }, home], // node 1
        [{ type: "register", public_key: b.pub, listen_addr: ":4000" }, home], // node 2
        [{ type: "set_hostname", node_id: 2, hostname: "beta", signature: b.sign("set_hostname:2") }, home],
        // Live node, other IP: the endpoint waits for a signed request on this connection.
        [{ type: "register", public_key: a.pub, listen_addr: ":7000" }, moved],
        // Signed (takes the pending endpoint) but fails: its savepoint is undone, endpoint kept pending.
        [{ type: "set_hostname", node_id: 1, hostname: "beta", signature: a.sign("set_hostname:1") }, moved],
        // Signed and succeeds: the pending endpoint is applied with it.
        [{ type: "set_visibility", node_id: 1, public: true, signature: a.sign("set_visibility:1") }, moved],
      ];
      for (const [m] of msgs) expect(reg.pipelinable(m)).toBe(true);
      const g0 = groupsOf(store);
      // Started back to back, as the server starts a connection's pipelined requests.
      const replies = await Promise.all(msgs.map(([m, ctx]) => reg.handle(m, ctx)));
      expect(groupsOf(store) - g0).toBe(1);
      expect(replies.map((r) => r.type)).toEqual(["register_ok", "register_ok", "set_hostname_ok", "register_ok", "error", "set_visibility_ok"]);
      expect(replies.map((r) => r.node_id)).toEqual([1, 2, 2, 1, undefined, 1]);
      expect(replies[4].code).toBe("hostname_taken");
      expect(moved.pendingAddr.size).toBe(0);
      const l1 = await reg.handle({ type: "lookup", node_id: 1 }, home);
      expect([l1.hostname, l1.public, l1.real_addr]).toEqual(["alpha", true, "127.0.0.3:7000"]);
      expect((await reg.handle({ type: "lookup", node_id: 2 }, home)).hostname).toBe("beta");
      // Reads and requests that may need a later transaction are never pipelined.
      for (const type of ["lookup", "resolve", "heartbeat", "poll_handshakes", "subscribe", "request_handshake", "subscribe_replication"]) {
        expect(reg.pipelinable({ type })).toBe(false);
      }
    } finally {
      await store.close();
    }
  });

  test("the register rate limit applies to pipelined registrations exactly as to sequential ones", async () => {
    const store = new SqliteStore(join(tmp, `p-${++nFiles}.db`));
    const reg = new Registry(store, { now: () => 1_000_000 }); // rate limit on, clock frozen
    try {
      const ctx = newCtx("127.0.0.1", 40000);
      const ids = Array.from({ length: 12 }, () => identity());
      const msgs = [...ids, ids[0]].map((x) => ({ type: "register", public_key: x.pub, listen_addr: ":4000" }));
      const g0 = groupsOf(store);
      const r = await Promise.all(msgs.map((m) => reg.handle(m, ctx)));
      expect(groupsOf(store) - g0).toBe(1);
      // 10 per window; the 13th re-registers a key registered earlier in the same group: allowed.
      expect(r.map((x) => x.code ?? x.type)).toEqual([...Array(10).fill("register_ok"), "rate_limited", "rate_limited", "register_ok"]);
      expect(r[12].node_id).toBe(r[0].node_id);
    } finally {
      await store.close();
    }
  });

  test("a commit group that fails to commit undoes the connection state of all its requests", async () => {
    const store = new SqliteStore(join(tmp, `p-${++nFiles}.db`));
    const reg = new Registry(store, { noRateLimit: true });
    try {
      const a = identity();
      const home = newCtx("127.0.0.1", 40000);
      const moved = newCtx("127.0.0.3", 40001);
      expect((await reg.handle({ type: "register", public_key: a.pub, listen_addr: ":4000" }, home)).node_id).toBe(1);
      // Make the next COMMIT fail: a deferred foreign-key violation is only checked at COMMIT.
      const db = (store as unknown as { db: import("bun:sqlite").Database }).db;
      db.exec("PRAGMA foreign_keys=ON");
      db.exec("CREATE TABLE fk_parent (id INTEGER PRIMARY KEY)");
      db.exec("CREATE TABLE fk_child (p INTEGER REFERENCES fk_parent(id) DEFERRABLE INITIALLY DEFERRED)");
      db.exec("CREATE TRIGGER fk_poison AFTER UPDATE ON nodes BEGIN INSERT INTO fk_child VALUES (42); END");
      db.exec("CREATE TRIGGER fk_poison2 AFTER INSERT ON nodes BEGIN INSERT INTO fk_child VALUES (42); END");
      const r = await reg.handle({ type: "register", public_key: a.pub, listen_addr: ":7000" }, moved);
      expect(r.type).toBe("error");
      // The register that set the pending endpoint was rolled back: no pending endpoint remains.
      expect(moved.pendingAddr.size).toBe(0);
    } finally {
      await store.close();
    }
  });
});

/** A raw registry connection: write many frames at once, read replies in order. */
async function rawConn(port: number) {
  const replies: WireReply[] = [];
  const dec = new RegistryFrameDecoder();
  let closed = false;
  const sock = await Bun.connect({
    hostname: "127.0.0.1", port,
    socket: {
      data(_s, chunk) { for (const f of dec.push(chunk)) replies.push(JSON.parse(new TextDecoder().decode(f))); },
      close() { closed = true; },
      error() { closed = true; },
    },
  });
  return {
    replies,
    get closed() { return closed; },
    send(parts: (Record<string, unknown> | string)[]) {
      const frames = parts.map((p) => encodeFrame(new TextEncoder().encode(typeof p === "string" ? p : JSON.stringify(p))));
      sock.write(Buffer.concat(frames));
    },
    end() { sock.end(); },
  };
}

describe("over TCP", () => {
  let rv: Rendezvous;
  let store: SqliteStore;
  beforeAll(async () => {
    store = new SqliteStore(join(tmp, `p-${++nFiles}.db`));
    rv = await startRendezvous({ "registry-addr": "127.0.0.1:0", "beacon-addr": "127.0.0.1:0", store: "", store_: store, quiet: true, noRateLimit: true });
  });
  afterAll(async () => { await rv.stop(); });

  test("replies come in request order; reads between pipelined writes see them", async () => {
    const c = await rawConn(rv.registryPort);
    const a = identity(), b = identity();
    c.send([
      { type: "register", public_key: a.pub, listen_addr: ":4000" }, // node 1
      { type: "lookup", node_id: 1 }, // waits for the register to answer
      { type: "set_tags", node_id: 1, tags: ["x"], signature: a.sign("set_tags:1") },
      { type: "set_hostname", node_id: 1, hostname: "one", signature: a.sign("set_hostname:1") },
      { type: "register", public_key: b.pub, listen_addr: ":4001", hostname: "one" }, // node 2, hostname taken
      { type: "set_visibility", node_id: 2, public: true, signature: b.sign("set_visibility:2") },
      { type: "lookup", node_id: 1 },
      { type: "lookup", node_id: 2 },
    ]);
    await until(async () => c.replies.length === 8, "8 replies");
    const r = c.replies;
    expect(r.map((x) => x.type)).toEqual(["register_ok", "lookup_ok", "set_tags_ok", "set_hostname_ok", "register_ok", "set_visibility_ok", "lookup_ok", "lookup_ok"]);
    expect(r[1].node_id).toBe(1);
    expect(r[4].node_id).toBe(2);
    expect(r[4].hostname_error).toContain("already taken");
    expect([r[6].hostname, r[6].tags]).toEqual(["one", ["x"]]);
    expect([r[7].public, r[7].real_addr]).toEqual([true, "127.0.0.1:4001"]);
    c.end();
  });

  test("many pipelined registers: in-order replies, few commit groups", async () => {
    const c = await rawConn(rv.registryPort);
    const n = 300;
    const ids = Array.from({ length: n }, () => identity());
    const g0 = groupsOf(store);
    c.send(ids.map((x) => ({ type: "register", public_key: x.pub, listen_addr: ":4000" })));
    await until(async () => c.replies.length === n, "all replies");
    expect(c.replies.every((x, i) => x.type === "register_ok" && x.public_key === ids[i].pub)).toBe(true);
    const nodeIds = c.replies.map((x) => x.node_id as number);
    expect(nodeIds.every((v, i) => i === 0 || v === nodeIds[i - 1] + 1)).toBe(true);
    // One request per commit group would take n groups.
    expect(groupsOf(store) - g0).toBeLessThan(n / 4);
    c.end();
  });

  test("more queued frames than the connection buffers: reading pauses and resumes, every reply arrives in order", async () => {
    const c = await rawConn(rv.registryPort);
    const n = MAX_QUEUED_FRAMES * 8; // lookups start one at a time, so most of them queue
    c.send(Array.from({ length: n }, (_, i) => ({ type: "lookup", node_id: 1_000_000 + i })));
    await until(async () => c.replies.length === n, "all replies", 30_000, 20);
    expect(c.replies.every((x, i) => x.type === "error" && x.error === `node ${1_000_000 + i} not found`)).toBe(true);
    c.end();
  });

  test("a malformed frame after pipelined requests: their replies are written, then the connection closes", async () => {
    const c = await rawConn(rv.registryPort);
    const ids = [identity(), identity()];
    c.send([
      { type: "register", public_key: ids[0].pub, listen_addr: ":4000" },
      { type: "register", public_key: ids[1].pub, listen_addr: ":4000" },
      "{not json",
      { type: "register", public_key: identity().pub, listen_addr: ":4000" },
    ]);
    await until(async () => c.closed, "connection closed");
    expect(c.replies.map((x) => x.public_key)).toEqual(ids.map((x) => x.pub));
    const keys = await store.view(async (t) => [await t.keyGet(ids[0].pub), await t.keyGet(ids[1].pub)]);
    expect(keys.every((k) => typeof k === "number")).toBe(true);
  });
});
