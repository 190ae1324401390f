// Registry throughput with 100,000 registered nodes (PILOT_BENCH_NODES to change), on SQLite and
// on PostgreSQL, over real TCP. The rendezvous runs in this process; the load comes from a child
// process (bench/lib/registry-load.ts, which documents the phases), so this process's CPU time
// during a phase is the server's alone. r.add(...) is provided by bench/run.ts.
//
// Per store:
//   1. fresh store (SQLite: temp file, WAL, synchronous=NORMAL; PostgreSQL: a fresh database on
//      the throwaway server of test/helpers/pg.ts, or PILOT_TEST_PG_URL; skipped with a note when
//      neither is available);
//   2. pre-population fast path: Store.bulkLoadNodes() inserts the nodes (public, random 32-byte
//      keys: registration stores keys without verifying them, and resolving a target never uses
//      the target's key) in one transaction with multi-row statements;
//   3. phases register, resolve (signed, repeated signatures), resolve-cold (signed, every
//      signature new), lookup, heartbeat (signed, last_seen committed before the reply); each
//      ROUNDS × SECONDS, 8 connections × 16 requests in flight. Every write is committed before
//      its reply (group commit). Reported: the median round's ops/s (wall clock), and the median
//      of ops per server CPU-second (this process's user+system time): on a shared 2-core
//      machine the wall figure swings with other load, the CPU cost per operation much less.
//   With PostgreSQL, a second run puts two rendezvous (this process and a child process) on the
//   same database, one load generator each, and reports the combined register rate.
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { startRendezvous, type Rendezvous } from "../src/server/main.ts";
import type { NodeRec } from "../src/server/store.ts";
import { getPg, releasePg } from "../test/helpers/pg.ts";
import { LineProc } from "./lib/proc.ts";

type R = { add(name: string, value: number, unit: string, note?: string): void };

const N = Number(process.env.PILOT_BENCH_NODES ?? 100_000);
const SECONDS = Number(process.env.PILOT_BENCH_SECONDS ?? 2);
const ROUNDS = Number(process.env.PILOT_BENCH_ROUNDS ?? 3);
/** PILOT_BENCH_PHASES=register,heartbeat runs a subset (profiling). */
const PHASES = (process.env.PILOT_BENCH_PHASES ?? "register,resolve,resolve-cold,lookup,heartbeat").split(",");
const LOAD = resolve(import.meta.dir, "lib/registry-load.ts");

const median = (xs: number[]) => { const s = [...xs].sort((a, b) => a - b); return s.length ? s[(s.length - 1) >> 1] : NaN; };
const cpuS = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1e6; };

interface PhaseResult { rates: number[]; cpuRates: number[] }

/** Run one load child against `port`; collect per-phase wall rates and server ops/CPU-second. */
async function runLoad(port: number, phases: string[], conns = 8, inflight = 16): Promise<Map<string, PhaseResult>> {
  const child = new LineProc([process.execPath, LOAD, String(port), String(N), String(SECONDS), String(ROUNDS), phases.join(","), String(conns), String(inflight)]);
  const res = new Map<string, PhaseResult>();
  let cpu0 = 0;
  try {
    for (;;) {
      const ev = JSON.parse(await child.line(300_000));
      if (ev.ev === "done") break;
      if (ev.ev === "start") { cpu0 = cpuS(); continue; }
      const cpu = cpuS() - cpu0;
      if (ev.failures) throw new Error(`${ev.failures} ${ev.phase} requests failed`);
      if (ev.ops === 0) continue; // pre-generated requests ran out before this round
      const pr = res.get(ev.phase) ?? { rates: [], cpuRates: [] };
      pr.rates.push((ev.ops * 1000) / ev.ms);
      pr.cpuRates.push(ev.ops / cpu);
      res.set(ev.phase, pr);
    }
  } finally {
    child.kill();
  }
  return res;
}

function makeNodes(n: number): NodeRec[] {
  const now = Date.now();
  const nodes: NodeRec[] = new Array(n);
  for (let i = 0; i < n; i++) {
    nodes[i] = {
      id: i + 1, owner: "", publicKey: randomBytes(32).toString("base64"), realAddr: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}:4000`,
      networks: [0], public: true, lastSeen: now, hostname: "", tags: [], polo: 0, taskExec: false, seq: i + 1, strict: false,
    };
  }
  return nodes;
}

const NOTES: Record<string, string> = {
  register: "new keys",
  resolve: "signed, random public targets, each requester reusing 512 signed requests (plain signatures repeat, as reference daemons send them)",
  "resolve-cold": "signed, every signature new to the server: a full Ed25519 verification per request",
  lookup: "unauthenticated, random targets",
  heartbeat: "signed (plain), 512 distinct nodes, last_seen committed before the reply",
};

async function benchStore(r: R, kind: "SQLite" | "PostgreSQL", store: string): Promise<void> {
  const rv: Rendezvous = await startRendezvous({ "registry-addr": "127.0.0.1:0", "beacon-addr": "127.0.0.1:0", store, quiet: true, noRateLimit: true });
  try {
    const t0 = performance.now();
    await rv.registry.store.bulkLoadNodes(makeNodes(N));
    const loadS = (performance.now() - t0) / 1000;
    r.add(`registry ${kind} bulk load`, N / loadS, "nodes/s", `${N} nodes via Store.bulkLoadNodes in ${loadS.toFixed(1)} s (pre-population fast path)`);
    const g = (rv.registry.store as any).group as { groups: number; entries: number } | undefined;
    const g0 = { groups: g?.groups ?? 0, entries: g?.entries ?? 0 };
    const res = await runLoad(rv.registryPort, PHASES);
    if (g) console.log(`registry ${kind}: ${((g.entries - g0.entries) / Math.max(1, g.groups - g0.groups)).toFixed(1)} requests per commit group`);
    const ck = (rv.registry.store as any).checkpointer as { frames: number } | null | undefined;
    if (ck) console.log(`registry ${kind}: ${ck.frames} WAL frames checkpointed in the background`);
    const retries = (rv.registry.store as any).retries;
    if (retries !== undefined) console.log(`registry ${kind}: ${retries} transactions rerun after serialization failures`);
    const splits = (g as { splits?: number } | undefined)?.splits;
    if (splits !== undefined) console.log(`registry ${kind}: ${splits} commit groups rolled back and rerun smaller`);
    for (const [phase, pr] of res) {
      r.add(`registry ${kind} ${phase}`, median(pr.rates), "ops/s",
        `${NOTES[phase]}; ${N} nodes; 8 conns × 16 in flight; median of ${pr.rates.length} × ${SECONDS} s (${pr.rates.map((x) => x.toFixed(0)).join(", ")}); ${median(pr.cpuRates).toFixed(0)} ops per server CPU-second`);
    }
    // Many daemons, each with few requests outstanding (a commit group holds at most the two
    // outstanding requests of each connection).
    if (PHASES.includes("register")) {
      const g1 = { groups: g?.groups ?? 0, entries: g?.entries ?? 0 };
      const many = (await runLoad(rv.registryPort, ["register"], 64, 2)).get("register");
      const per = g ? ` (${((g.entries - g1.entries) / Math.max(1, g.groups - g1.groups)).toFixed(1)} requests per commit group)` : "";
      if (many) r.add(`registry ${kind} register, 64 connections`, median(many.rates), "ops/s",
        `${NOTES.register}; ${N} nodes; 64 conns × 2 in flight${per}; median of ${many.rates.length} × ${SECONDS} s (${many.rates.map((x) => x.toFixed(0)).join(", ")}); ${median(many.cpuRates).toFixed(0)} ops per server CPU-second`);
    }
  } finally {
    await rv.stop();
  }
}

/**
 * Two rendezvous processes on one PostgreSQL database (this one and bench/lib/registry-server.ts),
 * one load generator each, running the same phases at the same time: combined ops/s per round
 * (sum of both), median over the rounds.
 */
async function benchTwo(r: R, url: string): Promise<void> {
  const rv = await startRendezvous({ "registry-addr": "127.0.0.1:0", "beacon-addr": "127.0.0.1:0", store: url, quiet: true, noRateLimit: true });
  const other = new LineProc([process.execPath, resolve(import.meta.dir, "lib/registry-server.ts"), url]);
  try {
    await rv.registry.store.bulkLoadNodes(makeNodes(N));
    const port2 = JSON.parse(await other.line(60_000)).port as number;
    const phases = ["register", "resolve", "heartbeat"].filter((p) => PHASES.includes(p));
    const g = (rv.registry.store as any).group as { groups: number; entries: number; splits: number };
    const g0 = { ...g };
    const [a, b] = await Promise.all([runLoad(rv.registryPort, phases), runLoad(port2, phases)]);
    console.log(`registry PostgreSQL 2 processes (this one): ${((g.entries - g0.entries) / Math.max(1, g.groups - g0.groups)).toFixed(1)} requests per commit group, ${g.splits - g0.splits} groups rolled back and rerun smaller, ${(rv.registry.store as any).retries} transactions rerun`);
    for (const phase of phases) {
      const ra = a.get(phase)!.rates, rb = b.get(phase)!.rates;
      const sums = ra.map((x, i) => x + (rb[i] ?? 0));
      r.add(`registry PostgreSQL 2 processes ${phase}`, median(sums), "ops/s",
        `two rendezvous processes on one database, one load generator each; ${N} nodes; combined, median of ${sums.length} × ${SECONDS} s (${sums.map((x) => x.toFixed(0)).join(", ")})`);
    }
  } finally {
    other.proc.kill("SIGTERM");
    await other.proc.exited;
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
    if (!process.env.PILOT_BENCH_NO_IMPORT) await benchImport(r, dir);
    if (!process.env.PILOT_BENCH_NO_SQLITE) await benchStore(r, "SQLite", join(dir, "reg.db"));
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
    if (!process.env.PILOT_BENCH_NO_PG2) await benchTwo(r, await pg.freshDb("pilot_bench2"));
  } finally {
    await releasePg();
  }
}

if (import.meta.main) {
  await registryBench({ add: (n, v, u, note) => console.log(`${n}: ${v.toFixed(0)} ${u}${note ? "  (" + note + ")" : ""}`) });
}
