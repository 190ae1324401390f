// Registry throughput with 100,000 registered nodes, on SQLite and on PostgreSQL, over real TCP
// clients against an in-process rendezvous. r.add(...) is provided by bench/run.ts.
//
// Per store:
//   1. fresh store (SQLite: temp file, WAL, synchronous=NORMAL; PostgreSQL: a fresh database on
//      the throwaway server of test/helpers/pg.ts, or PILOT_TEST_PG_URL; skipped with a note when
//      neither is available);
//   2. pre-population fast path: Store.bulkLoadNodes() inserts 100,000 public nodes (random 32-byte
//      keys: registration stores keys without verifying them, and resolving a target never uses
//      the target's key) in one transaction with multi-row statements — the wire path would
//      take minutes on this 2-core machine and measure nothing more;
//   3. register: brand-new keys on top of the 100k, C connections × W requests in flight, for a
//      fixed time; every request is a full registry transaction committed before the reply;
//   4. resolve (signed, plain `resolve:<requester>:<target>` signatures pre-computed with
//      node:crypto so client signing does not compete with the server for CPU): C registered
//      requesters resolve random targets among the 100k (all public, so every resolve succeeds);
//      the server verifies every signature (Ed25519, cached KeyObject) and reads the target;
//   5. heartbeat (signed, pre-computed): C×64 distinct nodes with real keys heartbeat in turn;
//      each request verifies a signature and commits a last_seen write before the reply.
import { generateKeyPairSync, randomBytes, sign as edSign, type KeyObject } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { RegistryClient } from "../src/daemon/registry-client.ts";
import { startRendezvous, type Rendezvous } from "../src/server/main.ts";
import type { NodeRec } from "../src/server/store.ts";
import { getPg, releasePg } from "../test/helpers/pg.ts";

type R = { add(name: string, value: number, unit: string, note?: string): void };

const N = 100_000;
const C = 8; // connections
const W = 16; // requests in flight per connection
const SECONDS = 3; // per measurement

function edKey(): { pub: string; priv: KeyObject } {
  const { publicKey, privateKey } = generateKeyPairSync("ed25519");
  const x = publicKey.export({ format: "jwk" }).x!;
  return { pub: Buffer.from(x, "base64url").toString("base64"), priv: privateKey };
}

/**
 * Ops per CPU-second of this process (server and clients together) during the last timed() run:
 * on a machine shared with other work, wall-clock rates swing with the load, CPU cost per
 * operation much less.
 */
let lastCpuRate = 0;
const cpuNote = () => `; ${lastCpuRate.toFixed(0)} ops per CPU-second (client + server in this process)`;

/** Run `op` from C×W concurrent loops for SECONDS; returns completed ops per second. */
async function timed(clients: RegistryClient[], op: (c: number, i: number) => Promise<unknown>): Promise<number> {
  let done = 0;
  let seq = 0;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const end = t0 + SECONDS * 1000;
  await Promise.all(clients.flatMap((_, c) => Array.from({ length: W }, async () => {
    while (performance.now() < end) { await op(c, seq++); done++; }
  })));
  const cpu = process.cpuUsage(cpu0);
  lastCpuRate = done / ((cpu.user + cpu.system) / 1e6);
  return (done * 1000) / (performance.now() - t0);
}

async function benchStore(r: R, kind: "SQLite" | "PostgreSQL", store: string): Promise<void> {
  const rv: Rendezvous = await startRendezvous({ "registry-addr": "127.0.0.1:0", "beacon-addr": "127.0.0.1:0", store, quiet: true, noRateLimit: true });
  const clients: RegistryClient[] = [];
  try {
    const now = Date.now();
    const nodes: NodeRec[] = new Array(N);
    for (let i = 0; i < N; i++) {
      nodes[i] = {
        id: i + 1, owner: "", publicKey: randomBytes(32).toString("base64"), realAddr: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}:4000`,
        networks: [0], public: true, lastSeen: now, hostname: "", tags: [], polo: 0, taskExec: false, seq: i + 1, strict: false,
      };
    }
    let t0 = performance.now();
    await rv.registry.store.bulkLoadNodes(nodes);
    const loadS = (performance.now() - t0) / 1000;
    r.add(`registry ${kind} bulk load`, N / loadS, "nodes/s", `${N} nodes via Store.bulkLoadNodes in ${loadS.toFixed(1)} s (pre-population fast path)`);

    const port = rv.registryPort;
    // requesters: real keys, registered over the wire, one per connection
    const reqs = Array.from({ length: C }, () => edKey());
    for (let c = 0; c < C; c++) {
      const k = reqs[c];
      const cl = new RegistryClient(`127.0.0.1:${port}`, { sign: (m) => edSign(null, Buffer.from(m), k.priv).toString("base64"), freshSignatures: false });
      await cl.connect();
      clients.push(cl);
    }
    const rid: number[] = [];
    for (let c = 0; c < C; c++) rid.push((await clients[c].register(reqs[c].pub, "127.0.0.1:4000")).node_id as number);

    const newKeys = Array.from({ length: 60_000 }, () => randomBytes(32).toString("base64"));
    let k = 0;
    const regRate = await timed(clients, (c) => {
      if (k >= newKeys.length) throw new Error("bench ran out of pre-generated keys");
      return clients[c].register(newKeys[k++], "127.0.0.1:4000");
    });
    const total = N + C + k;
    r.add(`registry ${kind} register`, regRate, "ops/s", `new keys on top of ${N} nodes (${total} at end), ${C} conns × ${W} in flight, ${SECONDS} s${cpuNote()}`);

    // pre-signed resolves of random targets among the 100k
    const P = 512; // per requester
    const pool: Record<string, unknown>[][] = reqs.map((k, c) => Array.from({ length: P }, () => {
      const tgt = 1 + Math.floor(Math.random() * N);
      return { type: "resolve", node_id: tgt, requester_id: rid[c], signature: edSign(null, Buffer.from(`resolve:${rid[c]}:${tgt}`), k.priv).toString("base64") };
    }));
    const probe = await clients[0].request(pool[0][0]); // sanity: resolves succeed
    if (probe.type !== "resolve_ok" || typeof probe.real_addr !== "string") throw new Error(`resolve failed: ${JSON.stringify(probe)}`);
    let failures = 0;
    const resRate = await timed(clients, async (c, i) => {
      const m = await clients[c].request(pool[c][i % P]);
      if (m.type !== "resolve_ok") failures++;
    });
    if (failures) throw new Error(`${failures} resolves failed`);
    r.add(`registry ${kind} resolve (signed)`, resRate, "ops/s", `random targets among ${N} public nodes, Ed25519 verify per request, ${C} conns × ${W} in flight, ${SECONDS} s${cpuNote()}`);

    // unauthenticated lookups of random nodes among the 100k
    const lkRate = await timed(clients, async (c) => {
      const m = await clients[c].lookup(1 + Math.floor(Math.random() * N));
      if (m.type !== "lookup_ok") failures++;
    });
    if (failures) throw new Error(`${failures} lookups failed`);
    r.add(`registry ${kind} lookup`, lkRate, "ops/s", `random nodes among ${N}, ${C} conns × ${W} in flight, ${SECONDS} s${cpuNote()}`);

    // heartbeats (signed) of H distinct registered nodes per connection (real keys, registered
    // over the wire), pre-signed: every heartbeat verifies a signature and writes last_seen
    const H = 64;
    const hb: Record<string, unknown>[][] = [];
    for (let c = 0; c < C; c++) {
      const row: Record<string, unknown>[] = [];
      for (let j = 0; j < H; j++) {
        const key = edKey();
        const id = (await clients[c].register(key.pub, "127.0.0.1:4000")).node_id as number;
        row.push({ type: "heartbeat", node_id: id, signature: edSign(null, Buffer.from(`heartbeat:${id}`), key.priv).toString("base64") });
      }
      hb.push(row);
    }
    const hbRate = await timed(clients, async (c, i) => {
      const m = await clients[c].request(hb[c][i % H]);
      if (m.type !== "heartbeat_ok") failures++;
    });
    if (failures) throw new Error(`${failures} heartbeats failed`);
    r.add(`registry ${kind} heartbeat (signed)`, hbRate, "ops/s", `${C * H} distinct nodes among ${N}+, Ed25519 verify + last_seen write per request, ${C} conns × ${W} in flight, ${SECONDS} s${cpuNote()}`);
  } finally {
    for (const c of clients) c.close();
    await rv.stop();
  }
}

/**
 * Import of a 100k-node snapshot in the reference's JSON format (what a first start with
 * `-store <file>.json` reads) into an empty SQLite store, timed from the parsed document to the
 * committed transaction.
 */
async function benchImport(r: R, dir: string): Promise<void> {
  const nodes: Record<string, unknown> = {};
  const members: number[] = [];
  const last = new Date().toISOString().replace(/\.\d+Z$/, "Z");
  for (let i = 1; i <= N; i++) {
    nodes[String(i)] = { id: i, owner: `o${i}@example.com`, public_key: randomBytes(32).toString("base64"), real_addr: `10.0.${(i >> 8) & 255}.${i & 255}:4000`, networks: [0], public: i % 2 === 0, last_seen: last, hostname: i % 10 === 0 ? `host-${i}` : undefined };
    members.push(i);
  }
  const pairs = Array.from({ length: 10_000 }, (_, i) => `${i + 1}:${i + 2}`);
  const doc = { next_node: N + 1, next_net: 1, nodes, networks: { "0": { id: 0, name: "backbone", join_rule: "open", members, created: last } }, trust_pairs: pairs };
  const { SqliteStore } = await import("../src/server/store.ts");
  const { importSnapshot } = await import("../src/server/registry.ts");
  const store = new SqliteStore(join(dir, "import.db"));
  try {
    const t0 = performance.now();
    const res = await importSnapshot(store, JSON.parse(JSON.stringify(doc)));
    const ms = performance.now() - t0;
    if (res.nodes !== N) throw new Error(`imported ${res.nodes} of ${N} nodes`);
    r.add("registry SQLite snapshot import", ms, "ms", `${N} nodes + ${pairs.length} trust pairs, reference JSON format, one transaction`);
  } finally {
    await store.close();
  }
}

export default async function registryBench(r: R): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "pilot-bench-"));
  try {
    await benchImport(r, dir);
    await benchStore(r, "SQLite", join(dir, "reg.db"));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  if (process.env.PILOT_BENCH_NO_PG) return;
  const pg = await getPg();
  try {
    if (typeof pg === "string") {
      console.log(`registry bench on PostgreSQL skipped: ${pg} (set PILOT_TEST_PG_URL to run it)`);
      return;
    }
    await benchStore(r, "PostgreSQL", await pg.freshDb("pilot_bench"));
  } finally {
    await releasePg();
  }
}

if (import.meta.main) {
  await registryBench({ add: (n, v, u, note) => console.log(`${n}: ${v.toFixed(0)} ${u}${note ? "  (" + note + ")" : ""}`) });
}
