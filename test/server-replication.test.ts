// Hot-standby replication (docs/protocol.md §8): real TCP on 127.0.0.1, in-process primaries/standbys
// plus one real `rendezvous -standby` process.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { ed25519 } from "@noble/curves/ed25519.js";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { RegistryClient, RegistryError } from "../src/daemon/registry-client.ts";
import { startRendezvous, type Rendezvous } from "../src/server/main.ts";
import { FrameDecoder, encodeFrame } from "../src/proto/framing.ts";
import { Registry, newCtx } from "../src/server/registry.ts";
import { SqliteStore } from "../src/server/store.ts";
import { SNAPSHOT_MAX_NODES, TokenChecker, applySnapshot, exportSnapshot } from "../src/server/replication.ts";

const TOKEN = "s3cret-replication-token";
const BUN = join(import.meta.dir, "../node_modules/.bin/bun");
const MAIN = join(import.meta.dir, "../src/main.ts");
const b64 = (b: Uint8Array) => Buffer.from(b).toString("base64");

function identity() {
  const sk = ed25519.utils.randomSecretKey();
  return { pub: b64(ed25519.getPublicKey(sk)), sign: (c: string) => b64(ed25519.sign(new TextEncoder().encode(c), sk)) };
}

async function waitFor<T>(what: string, fn: () => Promise<T | undefined | false>, ms = 10_000): Promise<T> {
  const t0 = Date.now();
  let last: unknown;
  while (Date.now() - t0 < ms) {
    try {
      const v = await fn();
      if (v !== undefined && v !== false) return v as T;
    } catch (e) {
      last = e;
    }
    await Bun.sleep(50);
  }
  throw new Error(`timed out waiting for ${what}: ${String(last)}`);
}

/** Raw framed connection: collects frames (parsed) and notices closure. */
async function raw(port: number) {
  const frames: any[] = [];
  const bodies: string[] = [];
  let closed = false;
  const dec = new FrameDecoder();
  const s = await Bun.connect({
    hostname: "127.0.0.1", port,
    socket: {
      data(_s, chunk) { for (const f of dec.push(chunk)) { const t = new TextDecoder().decode(f); bodies.push(t); frames.push(JSON.parse(t)); } },
      close() { closed = true; },
      error() { closed = true; },
    },
  });
  return {
    frames, bodies,
    get closed() { return closed; },
    send(o: unknown) { s.write(encodeFrame(new TextEncoder().encode(JSON.stringify(o)))); },
    write(b: string) { s.write(b); },
    close() { s.end(); },
  };
}

async function nodeOn(addr: string) {
  const id = identity();
  const c = new RegistryClient(addr, { sign: id.sign, freshSignatures: false });
  await c.connect();
  return { ...id, c };
}

const base = { "registry-addr": "127.0.0.1:0", "beacon-addr": "127.0.0.1:0", quiet: true, noRateLimit: true, noEnvToken: true } as const;

describe("replication: primary → standby", () => {
  let primary: Rendezvous;
  let standby: Rendezvous;
  let pAddr: string, sAddr: string;
  let A: Awaited<ReturnType<typeof nodeOn>> & { id: number };
  let B: Awaited<ReturnType<typeof nodeOn>> & { id: number };

  beforeAll(async () => {
    primary = await startRendezvous({ ...base, "replication-token": TOKEN, "admin-token": "adm" });
    pAddr = `127.0.0.1:${primary.registryPort}`;
    // State that exists before the standby subscribes (initial snapshot), including the fields the
    // reference's initial snapshot dropped (tags, polo score, task exec).
    const a = await nodeOn(pAddr);
    const r = await a.c.register(a.pub, "127.0.0.1:4100", "alice@example.com", "alice");
    A = { ...a, id: r.node_id as number };
    await A.c.setVisibility(A.id, true);
    await A.c.setTags(A.id, ["gpu", "#eu"]);
    await A.c.setTaskExec(A.id, true);
    await A.c.setPoloScore(A.id, 7, "adm");
    standby = await startRendezvous({ ...base, "replication-token": TOKEN, standby: pAddr, standbyBackoff: [100, 500], http: "127.0.0.1:0" });
    sAddr = `127.0.0.1:${standby.registryPort}`;
  });
  afterAll(async () => {
    A?.c.close();
    B?.c.close();
    await standby?.stop();
    await primary?.stop();
  });

  test("standby receives the initial snapshot (full node record)", async () => {
    const sc = new RegistryClient(sAddr);
    const lk = await waitFor("A on standby", () => sc.lookup(A.id));
    expect(lk).toMatchObject({
      type: "lookup_ok", node_id: A.id, public_key: A.pub, public: true, hostname: "alice", real_addr: "127.0.0.1:4100",
      tags: ["gpu", "eu"], task_exec: true, polo_score: 7,
    });
    expect(await sc.resolveHostname("alice")).toMatchObject({ type: "resolve_hostname_ok", node_id: A.id, public: true });
    expect(standby.standby!.snapshots).toBeGreaterThanOrEqual(1);
    expect(primary.registry.replication.subscriberCount).toBe(1);
    const metrics = await (await fetch(`http://127.0.0.1:${standby.httpPort}/metrics`)).text();
    expect(metrics).toContain("pilot_standby_connected 1\n");
    expect(metrics).toMatch(/pilot_standby_snapshots_total [1-9]/);
    sc.close();
  });

  test("later mutations (register, set_hostname, report_trust) reach the standby", async () => {
    const b = await nodeOn(pAddr);
    const r = await b.c.register(b.pub, "127.0.0.1:4200");
    B = { ...b, id: r.node_id as number };
    await B.c.setHostname(B.id, "bob");
    // A private again, then A grants B (report_trust by A lets B resolve A, R1 directional).
    await A.c.setVisibility(A.id, false);
    await A.c.reportTrust(A.id, B.id);

    const sc = new RegistryClient(sAddr);
    const hb = await waitFor("bob on standby", () => sc.resolveHostname("bob"));
    expect(hb).toMatchObject({ node_id: B.id, hostname: "bob", public: false });
    await waitFor("A private on standby", async () => (await sc.lookup(A.id)).public === false);
    expect((await sc.lookup(A.id)).real_addr).toBeUndefined();

    // Signed reads against the standby with the replicated keys and grants.
    const bs = new RegistryClient(sAddr, { sign: B.sign, freshSignatures: false });
    const rs = await waitFor("resolve via replicated grant", () => bs.resolve(A.id, B.id));
    expect(rs).toMatchObject({ type: "resolve_ok", node_id: A.id, real_addr: "127.0.0.1:4100" });
    expect((await bs.heartbeat(B.id)).type).toBe("heartbeat_ok");
    expect((await bs.pollHandshakes(B.id)).type).toBe("poll_handshakes_ok");
    // The grant is directional on the standby too: A cannot resolve the private B.
    const as = new RegistryClient(sAddr, { sign: A.sign, freshSignatures: false });
    await expect(as.resolve(B.id, A.id)).rejects.toBeInstanceOf(RegistryError);
    bs.close(); as.close(); sc.close();
  });

  test("standby refuses writes with the standby error and stays unchanged", async () => {
    const bs = new RegistryClient(sAddr, { sign: B.sign, freshSignatures: false });
    const e1 = await bs.setHostname(B.id, "mallory").then(() => null, (e) => e);
    expect(e1).toBeInstanceOf(RegistryError);
    expect((e1 as RegistryError).code).toBe("standby");
    const x = identity();
    const e2 = await bs.register(x.pub, "127.0.0.1:1").then(() => null, (e) => e);
    expect((e2 as RegistryError).code).toBe("standby");
    for (const m of [{ type: "report_trust", node_id: B.id, peer_id: A.id }, { type: "get_polo_score", node_id: A.id }, { type: "subscribe", node_id: B.id }]) {
      const r = await bs.request(m).then(() => null, (e) => e);
      expect((r as RegistryError).code).toBe("standby");
    }
    expect((await bs.lookup(B.id)).hostname).toBe("bob");
    // list_networks and beacon_list are allowed on a standby.
    expect((await bs.listNetworks()).type).toBe("list_networks_ok");
    expect((await bs.beaconList()).type).toBe("beacon_list_ok");
    bs.close();
  });

  test("chained standby (standby of the standby) follows too (docs/protocol.md §8)", async () => {
    const s2 = await startRendezvous({ ...base, "replication-token": TOKEN, standby: sAddr, standbyBackoff: [50, 200] });
    try {
      const sc = new RegistryClient(`127.0.0.1:${s2.registryPort}`);
      expect((await waitFor("bob on chained standby", () => sc.resolveHostname("bob"))).node_id).toBe(B.id);
      await A.c.setHostname(A.id, "alice2");
      expect((await waitFor("alice2 on chained standby", () => sc.resolveHostname("alice2"))).node_id).toBe(A.id);
      sc.close();
    } finally {
      await s2.stop();
    }
  });

  test("raw subscriber: docs/protocol.md §8.5 document embedded as an object, pushes after each mutation", async () => {
    const r = await raw(primary.registryPort);
    r.send({ type: "subscribe_replication", token: TOKEN });
    await waitFor("initial snapshot", async () => r.frames.length >= 1);
    const f0 = r.frames[0];
    expect(f0.type).toBe("replication_snapshot");
    const doc = f0.snapshot;
    expect(typeof doc).toBe("object");
    expect(doc.next_node).toBe(B.id + 1);
    expect(doc.networks["0"]).toMatchObject({ id: 0, name: "backbone", join_rule: "open", members: [A.id, B.id] });
    expect(doc.networks["0"].created).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    expect(doc.nodes[String(A.id)]).toMatchObject({ id: A.id, owner: "alice@example.com", public_key: A.pub, networks: [0], hostname: "alice2", polo_score: 7, tags: ["gpu", "eu"], task_exec: true });
    expect(doc.nodes[String(A.id)].public).toBeUndefined(); // omitted when false
    expect(doc.nodes[String(A.id)].last_seen).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    expect(doc.trust_pairs).toEqual([`${Math.min(A.id, B.id)}:${Math.max(A.id, B.id)}`]);
    expect(doc.pub_key_idx[A.pub]).toBe(A.id);
    // Keys sorted (goJson), no "error" field on a snapshot frame.
    expect(r.bodies[0].startsWith('{"snapshot":{"networks":{"0":{"created":')).toBe(true);
    expect(r.bodies[0].endsWith('},"type":"replication_snapshot"}')).toBe(true);
    r.write("\n\n"); // filler bytes are ignored by the primary
    await A.c.updatePoloScore(A.id, 1, { adminToken: "adm" });
    await waitFor("pushed snapshot", async () => r.frames.length >= 2);
    const last = r.frames[r.frames.length - 1];
    expect(last.type).toBe("replication_snapshot");
    expect(last.snapshot.nodes[String(A.id)].polo_score).toBe(8);
    expect(r.closed).toBe(false);
    r.close();
  });
});

describe("replication: refusals", () => {
  test("wrong token → exact MUST-match error, connection closed; no token configured → 'replication not configured'", async () => {
    const p = await startRendezvous({ ...base, "replication-token": TOKEN });
    const q = await startRendezvous({ ...base });
    try {
      const r = await raw(p.registryPort);
      r.send({ type: "lookup", node_id: 1 }); // subscribing may follow other requests
      r.send({ type: "subscribe_replication", token: TOKEN + "x" });
      await waitFor("closed", async () => r.closed);
      expect(r.bodies[1]).toBe('{"error":"invalid replication token","type":"error"}');
      const r2 = await raw(p.registryPort);
      r2.send({ type: "subscribe_replication" }); // token omitted
      await waitFor("closed", async () => r2.closed);
      expect(r2.bodies).toEqual(['{"error":"invalid replication token","type":"error"}']);
      const r3 = await raw(q.registryPort);
      r3.send({ type: "subscribe_replication", token: TOKEN });
      await waitFor("closed", async () => r3.closed);
      expect(r3.bodies).toEqual(['{"error":"replication not configured","type":"error"}']);
      // A standby presenting a wrong token never applies anything and keeps retrying.
      const s = await startRendezvous({ ...base, "replication-token": "wrong", standby: `127.0.0.1:${p.registryPort}`, standbyBackoff: [50, 100] });
      try {
        await waitFor("standby retried", async () => s.standby!.connects >= 2);
        expect(s.standby!.snapshots).toBe(0);
        expect(s.standby!.lastError).toContain("invalid replication token");
        expect(p.registry.replication.subscriberCount).toBe(0);
      } finally {
        await s.stop();
      }
    } finally {
      await p.stop();
      await q.stop();
    }
  });

  test("token check is throttled per IP after repeated failures", () => {
    const t = new TokenChecker("tok", 3, 60_000);
    expect(t.check("tok", "10.0.0.1", 0)).toBe(true);
    for (let i = 0; i < 3; i++) expect(t.check("bad", "10.0.0.1", 1)).toBe(false);
    expect(t.check("tok", "10.0.0.1", 2)).toBe(false); // throttled
    expect(t.check("tok", "10.0.0.2", 2)).toBe(true); // other IPs unaffected
    expect(t.check("tok", "10.0.0.1", 70_000)).toBe(true); // window expired
    expect(new TokenChecker("").check("", "1.1.1.1")).toBe(false);
  });

  test("reference wire form of the standby refusal: request failed", async () => {
    const reg = new Registry(new SqliteStore(":memory:"), { standby: true, opaqueErrors: true });
    const ctx = newCtx("127.0.0.1", 1);
    expect(await reg.handle({ type: "register", public_key: identity().pub }, ctx)).toEqual({ type: "error", error: "request failed" });
    expect(await reg.handle({ type: "set_hostname", node_id: 1, hostname: "x" }, ctx)).toEqual({ type: "error", error: "request failed" });
    expect((await reg.handle({ type: "list_networks" }, ctx)).type).toBe("list_networks_ok");
    await reg.store.close();
  });

  test("export → apply round trip preserves grants, key index of non-live nodes, owners", async () => {
    const src = new Registry(new SqliteStore(":memory:"), { noRateLimit: true });
    const ctx = newCtx("127.0.0.1", 1);
    const a = identity(), b = identity();
    const ra = await src.handle({ type: "register", public_key: a.pub, listen_addr: ":1", owner: "o@x" }, ctx);
    const rb = await src.handle({ type: "register", public_key: b.pub, listen_addr: ":2" }, ctx);
    const ia = ra.node_id as number, ib = rb.node_id as number;
    await src.handle({ type: "report_trust", node_id: ia, peer_id: ib, signature: a.sign(`report_trust:${ia}:${ib}`) }, ctx);
    await src.handle({ type: "deregister", node_id: ia, signature: a.sign(`deregister:${ia}`) }, ctx);
    const doc = await exportSnapshot(src.store);
    const dst = new Registry(new SqliteStore(":memory:"), { noRateLimit: true });
    await applySnapshot(dst.store, doc);
    expect(await exportSnapshot(dst.store)).toEqual(doc);
    // Returning key of the deregistered node gets its old ID back on the (promoted) copy.
    expect((await dst.handle({ type: "register", public_key: a.pub, listen_addr: ":1" }, ctx)).node_id).toBe(ia);
    // A reference-style document (symmetric pairs, no extensions) is accepted too.
    const refDoc = { next_node: 3, next_net: 1, nodes: { "1": { id: 1, public_key: a.pub, networks: [0], last_seen: "2025-03-01T10:15:30Z" } }, networks: { "0": { id: 0, name: "backbone", join_rule: "open", members: [1], created: "2025-03-01T09:00:00Z" } }, trust_pairs: ["1:2"] };
    const r = await applySnapshot(dst.store, refDoc);
    expect(r).toEqual({ nodes: 1, pairs: 1 });
    // The backbone's creation time travels with the document (a copy exports what its source did).
    expect(((await exportSnapshot(dst.store)).networks as any)["0"].created).toBe("2025-03-01T09:00:00Z");
    expect((await dst.handle({ type: "lookup", node_id: ib }, ctx)).type).toBe("error"); // replaced, not merged
    await expect(applySnapshot(dst.store, { next_node: 1 })).rejects.toThrow(); // R21: not a snapshot
    expect((await dst.handle({ type: "lookup", node_id: 1 }, ctx)).type).toBe("lookup_ok"); // untouched by the refused one
    await src.store.close();
    await dst.store.close();
  });
});

describe("replication over TLS (R9)", () => {
  test("standby pins the primary's certificate; wrong pin never subscribes", async () => {
    const p = await startRendezvous({ ...base, tls: true, "replication-token": TOKEN });
    const pAddr = `127.0.0.1:${p.registryPort}`;
    const good = await startRendezvous({ ...base, "replication-token": TOKEN, standby: pAddr, "standby-fingerprint": p.fingerprint, standbyBackoff: [50, 200] });
    const bad = await startRendezvous({ ...base, "replication-token": TOKEN, standby: pAddr, "standby-fingerprint": "0".repeat(64), standbyBackoff: [50, 200] });
    try {
      const n = identity();
      const c = new RegistryClient(pAddr, { sign: n.sign, freshSignatures: false, tls: { fingerprint: p.fingerprint } });
      await c.connect();
      const id = (await c.register(n.pub, "127.0.0.1:4500", "", "tlsnode")).node_id as number;
      c.close();
      const sc = new RegistryClient(`127.0.0.1:${good.registryPort}`);
      expect((await waitFor("tls replication", () => sc.resolveHostname("tlsnode"))).node_id).toBe(id);
      sc.close();
      await waitFor("bad pin retried", async () => bad.standby!.lastError.includes("does not match"));
      expect(bad.standby!.snapshots).toBe(0);
      expect(p.registry.replication.subscriberCount).toBe(1);
    } finally {
      await good.stop();
      await bad.stop();
      await p.stop();
    }
  });
});

describe("replication: primary restart", () => {
  test("standby reconnects and catches up; standby process from the CLI follows too", async () => {
    const dir = mkdtempSync(join(tmpdir(), "pilot-repl-"));
    const db = join(dir, "primary.db");
    let p = await startRendezvous({ ...base, store: db, "replication-token": TOKEN });
    const port = p.registryPort;
    const pAddr = `127.0.0.1:${port}`;
    const s = await startRendezvous({ ...base, "replication-token": TOKEN, standby: pAddr, standbyBackoff: [100, 400] });
    const proc = Bun.spawn([BUN, MAIN, "rendezvous", "-registry-addr", "127.0.0.1:0", "-beacon-addr", "127.0.0.1:0", "-standby", pAddr], {
      stdout: "pipe", stderr: "pipe", env: { ...process.env, PILOT_REPLICATION_TOKEN: TOKEN },
    });
    try {
      const n1 = await nodeOn(pAddr);
      const id1 = (await n1.c.register(n1.pub, "127.0.0.1:4300", "", "first")).node_id as number;
      n1.c.close();
      const sc = new RegistryClient(`127.0.0.1:${s.registryPort}`);
      await waitFor("first on standby", () => sc.resolveHostname("first"));
      const connects = s.standby!.connects;

      await p.stop();
      await waitFor("standby noticed", async () => !s.standby!.connected);
      // Still serving reads from the replicated copy while the primary is down.
      expect((await sc.lookup(id1)).hostname).toBe("first");

      p = await startRendezvous({ ...base, "registry-addr": pAddr, store: db, "replication-token": TOKEN });
      const n2 = await nodeOn(pAddr);
      const id2 = (await n2.c.register(n2.pub, "127.0.0.1:4400", "", "second")).node_id as number;
      expect(id2).toBe(id1 + 1); // the primary kept its state across the restart
      n2.c.close();
      const r2 = await waitFor("second on standby", () => sc.resolveHostname("second"));
      expect(r2.node_id).toBe(id2);
      expect(s.standby!.connects).toBeGreaterThan(connects);
      expect((await sc.lookup(id1)).hostname).toBe("first");
      sc.close();

      // The CLI standby (token from PILOT_REPLICATION_TOKEN) prints its port and has the state.
      const reader = proc.stdout.getReader();
      let out = "";
      let sport = 0;
      while (!sport) {
        const { value, done } = await reader.read();
        if (done) break;
        out += new TextDecoder().decode(value);
        const m = /^registry listening on [^\n]*:(\d+)$/m.exec(out);
        if (m) sport = Number(m[1]);
      }
      expect(sport).toBeGreaterThan(0);
      const pc = new RegistryClient(`127.0.0.1:${sport}`);
      const r3 = await waitFor("second on CLI standby", () => pc.resolveHostname("second"));
      expect(r3.node_id).toBe(id2);
      const e = await pc.register(identity().pub, "127.0.0.1:1").then(() => null, (x) => x);
      expect((e as RegistryError).code).toBe("standby");
      pc.close();
    } finally {
      proc.kill("SIGTERM");
      const code = await proc.exited;
      await s.stop();
      await p.stop();
      rmSync(dir, { recursive: true, force: true, maxRetries: 5 });
      expect(code).toBe(0);
    }
  });
});

describe("replication: registries beyond the 1 MiB snapshot frame", () => {
  const bigNodes = (n: number, from: number) => Array.from({ length: n }, (_, i) => ({
    id: from + i, owner: "", publicKey: Buffer.from(Buffer.alloc(32, 7).map((x, j) => (j < 4 ? ((from + i) >>> (8 * j)) & 255 : x))).toString("base64"),
    realAddr: "127.0.0.1:4000", networks: [0], public: false, lastSeen: Date.now(), hostname: "", tags: [], polo: 0, taskExec: false, seq: from + i, strict: false,
  }));

  test("subscription refused with the reference error text, without exporting; live streams end when the state outgrows the frame", async () => {
    const p = await startRendezvous({ ...base, "replication-token": TOKEN });
    try {
      // A subscriber attached while the registry is small...
      const r = await raw(p.registryPort);
      r.send({ type: "subscribe_replication", token: TOKEN });
      await waitFor("initial snapshot", async () => r.frames.length >= 1);
      expect(r.frames[0].type).toBe("replication_snapshot");
      // ...is disconnected once the state no longer fits (instead of silently going stale).
      await p.registry.store.bulkLoadNodes(bigNodes(SNAPSHOT_MAX_NODES + 1, 1));
      p.registry.replication.markDirty();
      await waitFor("stream ended", async () => r.closed, 15_000);
      expect(r.frames.every((f) => f.type !== "replication_snapshot" || f === r.frames[0])).toBe(true);
      // A new subscription is refused with the text reference standbys know.
      const r2 = await raw(p.registryPort);
      r2.send({ type: "subscribe_replication", token: TOKEN });
      await waitFor("refused", async () => r2.closed);
      expect(r2.bodies).toEqual(['{"error":"failed to generate snapshot","type":"error"}']);
      expect(p.registry.replication.subscriberCount).toBe(0);
    } finally {
      await p.stop();
    }
  });
});
