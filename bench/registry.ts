// Registry throughput against an in-process rendezvous on SQLite (temp file, WAL, synchronous=NORMAL).
// r.add(name, value, unit, note?) is provided by bench/run.ts.
import { ed25519 } from "@noble/curves/ed25519.js";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { RegistryClient } from "../src/daemon/registry-client.ts";
import { startRendezvous } from "../src/server/main.ts";

type R = { add(name: string, value: number, unit: string, note?: string): void };
const b64 = (b: Uint8Array) => Buffer.from(b).toString("base64");

export default async function registryBench(r: R): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "pilot-bench-"));
  const rv = await startRendezvous({ "registry-addr": "127.0.0.1:0", "beacon-addr": "127.0.0.1:0", store: join(dir, "reg.db"), quiet: true, noRateLimit: true });
  try {
    const N = 2000;
    const keys = Array.from({ length: N }, () => b64(ed25519.getPublicKey(ed25519.utils.randomSecretKey())));
    const conc = 8;
    const clients = Array.from({ length: conc }, () => new RegistryClient(`127.0.0.1:${rv.registryPort}`));
    await Promise.all(clients.map((c) => c.connect()));
    let t0 = performance.now();
    await Promise.all(clients.map(async (c, w) => { for (let i = w; i < N; i += conc) await c.register(keys[i], "127.0.0.1:4000"); }));
    let dt = (performance.now() - t0) / 1000;
    r.add("registry register", N / dt, "ops/s", `${N} new keys, ${conc} connections, SQLite WAL`);

    const M = 20000;
    t0 = performance.now();
    await Promise.all(clients.map(async (c, w) => { for (let i = w; i < M; i += conc) await c.lookup(1 + (i % N)); }));
    dt = (performance.now() - t0) / 1000;
    r.add("registry lookup", M / dt, "ops/s", `${conc} connections, one request in flight each`);

    // pipelined lookups on one connection (server answers in order)
    t0 = performance.now();
    const ps: Promise<unknown>[] = [];
    for (let i = 0; i < M; i++) ps.push(clients[0].lookup(1 + (i % N)));
    await Promise.all(ps);
    dt = (performance.now() - t0) / 1000;
    r.add("registry lookup pipelined", M / dt, "ops/s", "1 connection, all requests pipelined");

    // signed resolve (Ed25519 verify per request) of a public node
    const sk = ed25519.utils.randomSecretKey();
    const pub = b64(ed25519.getPublicKey(sk));
    const sign = (c: string) => b64(ed25519.sign(new TextEncoder().encode(c), sk));
    const me = new RegistryClient(`127.0.0.1:${rv.registryPort}`, { sign, freshSignatures: false });
    const my = (await me.register(pub, "127.0.0.1:4000")).node_id as number;
    const tgtSk = ed25519.utils.randomSecretKey();
    const tgt = new RegistryClient(`127.0.0.1:${rv.registryPort}`, { sign: (c) => b64(ed25519.sign(new TextEncoder().encode(c), tgtSk)), freshSignatures: false });
    const tid = (await tgt.register(b64(ed25519.getPublicKey(tgtSk)), "127.0.0.1:4001")).node_id as number;
    await tgt.setVisibility(tid, true);
    const sig = sign(`resolve:${my}:${tid}`);
    const R = 3000;
    t0 = performance.now();
    const rs: Promise<unknown>[] = [];
    for (let i = 0; i < R; i++) rs.push(me.request({ type: "resolve", node_id: tid, requester_id: my, signature: sig }));
    await Promise.all(rs);
    dt = (performance.now() - t0) / 1000;
    r.add("registry resolve (signed)", R / dt, "ops/s", "1 connection pipelined; includes Ed25519 verify (node:crypto, cached KeyObject)");
    for (const c of [...clients, me, tgt]) c.close();
  } finally {
    await rv.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.main) {
  await registryBench({ add: (n, v, u, note) => console.log(`${n}: ${v.toFixed(0)} ${u}${note ? "  (" + note + ")" : ""}`) });
}
