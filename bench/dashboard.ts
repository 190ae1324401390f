// Rendezvous dashboard endpoints with 100,000 registered nodes (SQLite), requests/s over real
// HTTP from C concurrent fetch loops in the same process (client and server share the CPU, as
// they do for the raw limit below, so the ratio is fair).
//
//   raw limit "http": GET /healthz on the same Bun.serve (no work behind it);
//   snapshot rebuild: one walk of all nodes and trust pairs (what the reference did per request);
//   /api/stats?nodes=0 (the page's poll), /api/stats (reference keys, node list capped at 1000),
//   one dashboard page of nodes (/api/nodes?page=&per=50), a tag-filtered page, a badge;
//   for comparison, the reference-shaped /api/stats listing all 100k nodes (uncapped).
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DashboardData } from "../src/server/dashboard/data.ts";
import { startHttp } from "../src/server/http.ts";
import { startRendezvous } from "../src/server/main.ts";
import type { NodeRec } from "../src/server/store.ts";
import type { Reporter } from "./run.ts";

const N = 100_000;
const C = 16;
const SECONDS = 2;

async function rate(url: string, seconds = SECONDS): Promise<{ rps: number; bytes: number }> {
  let done = 0, bytes = 0;
  const t0 = performance.now();
  const end = t0 + seconds * 1000;
  await Promise.all(Array.from({ length: C }, async () => {
    while (performance.now() < end) {
      const r = await fetch(url);
      const b = await r.arrayBuffer();
      if (r.status !== 200) throw new Error(`${url}: HTTP ${r.status}`);
      bytes = b.byteLength;
      done++;
    }
  }));
  return { rps: (done * 1000) / (performance.now() - t0), bytes };
}

const kb = (n: number) => (n >= 1 << 20 ? `${(n / (1 << 20)).toFixed(1)} MiB` : `${(n / 1024).toFixed(1)} KiB`);

export default async function (r: Reporter): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "pilot-bench-dash-"));
  const rv = await startRendezvous({ "registry-addr": "127.0.0.1:0", "beacon-addr": "127.0.0.1:0", http: "127.0.0.1:0", store: join(dir, "reg.db"), quiet: true, noRateLimit: true });
  let full: { stop(): void } | null = null;
  try {
    const now = Date.now();
    const nodes: NodeRec[] = new Array(N);
    const TAGS = ["gpu", "storage", "llm", "vision", "edge", "relay", "crawler", "db"];
    for (let i = 0; i < N; i++) {
      nodes[i] = {
        id: i + 1, owner: "", publicKey: randomBytes(32).toString("base64"), realAddr: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}:4000`,
        networks: [0], public: true, lastSeen: i % 5 === 0 ? now - 3_600_000 : now, hostname: "",
        tags: i % 3 === 0 ? [TAGS[i % 8], TAGS[(i >> 3) % 8]] : [], polo: i % 1000, taskExec: i % 50 === 0, seq: i + 1, strict: false,
      };
    }
    await rv.registry.store.bulkLoadNodes(nodes);
    await rv.registry.store.tx(async (t) => {
      for (let i = 1; i <= 20_000; i++) { const a = i, b = ((i * 7919) % N) + 1; if (a !== b) { await t.grantAdd(a, b); await t.grantAdd(b, a); } }
    });
    const base = `http://127.0.0.1:${rv.httpPort}`;

    const lim = await rate(`${base}/healthz`);
    r.add("dashboard raw HTTP /healthz", lim.rps, "req/s", `Bun.serve, ${C} concurrent fetch loops in-process, ${SECONDS} s`, { limit: "http" });

    // snapshot rebuild: the full walk, median of 5 (ttl 0 forces a rebuild per call)
    const dd = new DashboardData(rv.registry, { ttlMs: 0 });
    const times: number[] = [];
    for (let i = 0; i < 5; i++) { const t0 = performance.now(); await dd.snapshot(); times.push(performance.now() - t0); }
    times.sort((a, b) => a - b);
    r.add("dashboard snapshot rebuild (100k nodes)", times[2], "ms", `all nodes + 20k trust pairs from SQLite, sorted by address; median of 5; so the shared snapshot lives ${(Math.min(30_000, Math.max(2000, 20 * times[2])) / 1000).toFixed(0)} s`);

    await fetch(`${base}/api/stats?nodes=0`); // warm the shared snapshot
    const lite = await rate(`${base}/api/stats?nodes=0`);
    r.add("dashboard /api/stats?nodes=0 (page poll)", lite.rps, "req/s", `${N} nodes, response ${kb(lite.bytes)}, snapshot reused (TTL = max(2 s, 20 × rebuild time), ≤ 30 s)`, { vs: ["http"] });
    const st = await rate(`${base}/api/stats`);
    r.add("dashboard /api/stats (1000-node cap)", st.rps, "req/s", `${N} nodes, response ${kb(st.bytes)} (reference keys; nodes_truncated)`, { vs: ["http"] });
    const pg = await rate(`${base}/api/nodes?page=1000&per=50`);
    r.add("dashboard one page of nodes", pg.rps, "req/s", `/api/nodes?page=1000&per=50 of ${N}, response ${kb(pg.bytes)}`, { vs: ["http"] });
    const tg = await rate(`${base}/api/nodes?tag=gpu&page=20&per=50`);
    r.add("dashboard tag-filtered page", tg.rps, "req/s", `/api/nodes?tag=gpu&page=20 (scan of ${N} nodes per request), response ${kb(tg.bytes)}`, { vs: ["http"] });
    const bd = await rate(`${base}/api/badge/nodes`);
    r.add("dashboard badge", bd.rps, "req/s", `/api/badge/nodes, ${kb(bd.bytes)} SVG`, { vs: ["http"] });

    // Reference shape for comparison: every node in /api/stats.
    const f = startHttp(rv.registry, rv.beacon, "127.0.0.1", 0, { dashboard: { statsNodeCap: Infinity, statsEdgeCap: Infinity } });
    full = f;
    await fetch(`http://127.0.0.1:${f.port}/api/stats`);
    const all = await rate(`http://127.0.0.1:${f.port}/api/stats`, 3);
    r.add("dashboard /api/stats uncapped (reference shape)", all.rps, "req/s", `all ${N} nodes in one response of ${kb(all.bytes)}; what each reference page load fetched`, { vs: ["http"] });
  } finally {
    full?.stop();
    await rv.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
