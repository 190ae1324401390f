// PostgreSQL store: runs against PILOT_TEST_PG_URL, or a throwaway server started here from
// /usr/lib/postgresql/*/bin (as the `postgres` user when running as root). Skipped otherwise.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { ed25519 } from "@noble/curves/ed25519.js";
import { chmodSync, chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { RegistryClient } from "../src/daemon/registry-client.ts";
import { startRendezvous, type Rendezvous } from "../src/server/main.ts";

const b64 = (b: Uint8Array) => Buffer.from(b).toString("base64");
function identity() {
  const sk = ed25519.utils.randomSecretKey();
  return { pub: b64(ed25519.getPublicKey(sk)), sign: (c: string) => b64(ed25519.sign(new TextEncoder().encode(c), sk)) };
}

let url = process.env.PILOT_TEST_PG_URL ?? "";
let pgProc: ReturnType<typeof Bun.spawn> | null = null;
let dir = "";
let skipReason = "";

async function startLocalPg(): Promise<string> {
  const base = "/usr/lib/postgresql";
  if (!existsSync(base)) throw new Error("no PostgreSQL installation under /usr/lib/postgresql");
  const ver = readdirSync(base).sort().pop()!;
  const bin = join(base, ver, "bin");
  dir = mkdtempSync(join(tmpdir(), "pilot-pg-"));
  chmodSync(dir, 0o755);
  const data = join(dir, "data");
  const asRoot = process.getuid?.() === 0;
  const wrap = (cmd: string[]) => (asRoot ? ["runuser", "-u", "postgres", "--", ...cmd] : cmd);
  if (asRoot) chownSync(dir, 101, 104);
  const init = Bun.spawnSync(wrap([join(bin, "initdb"), "-D", data, "-A", "trust", "-U", "pilot", "--no-sync"]), { stdout: "pipe", stderr: "pipe" });
  if (init.exitCode !== 0) throw new Error("initdb failed: " + init.stderr.toString());
  const port = 20000 + Math.floor(Math.random() * 20000);
  pgProc = Bun.spawn(wrap([join(bin, "postgres"), "-D", data, "-p", String(port), "-k", dir, "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"]), { stdout: "ignore", stderr: "pipe" });
  const u = `postgres://pilot@127.0.0.1:${port}/postgres`;
  for (let i = 0; i < 100; i++) {
    await Bun.sleep(100);
    try {
      const { SQL } = await import("bun");
      const s = new SQL(u);
      await s`SELECT 1`;
      await s.close();
      return u;
    } catch {}
  }
  throw new Error("postgres did not come up");
}

beforeAll(async () => {
  if (!url) {
    try { url = await startLocalPg(); } catch (e) { skipReason = (e as Error).message; }
  }
  if (!url) console.log(`PostgreSQL tests skipped: ${skipReason} (set PILOT_TEST_PG_URL to run them)`);
}, 30000);

afterAll(async () => {
  if (pgProc) { pgProc.kill("SIGTERM"); await pgProc.exited; }
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("postgres store", () => {
  test("two rendezvous processes on one database: shared IDs, hostnames and pushed handshakes", async () => {
    if (!url) return;
    // fresh schema for this run
    const { SQL } = await import("bun");
    const admin = new SQL(url);
    await admin.unsafe("DROP TABLE IF EXISTS meta, nodes, keyidx, owneridx, grants, inbox, responses, networks");
    await admin.close();
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
      // concurrent registrations through both processes get distinct sequential IDs
      // (the real process keeps its per-IP rate limit: 8 registrations there, 8 here)
      const many = await Promise.all(Array.from({ length: 16 }, (_, i) => (i % 2 ? ca : cb).register(identity().pub, "127.0.0.1:1")));
      const ids = many.map((r) => r.node_id as number).sort((x, y) => x - y);
      expect(new Set(ids).size).toBe(16);
      expect(ids[15] - ids[0]).toBe(15);
      const ida = (await ca.register(A.pub, "127.0.0.1:4000", "", "pg-alpha")).node_id as number;
      const idb = (await cb.register(B.pub, "127.0.0.1:4001")).node_id as number;
      expect((await cb.resolveHostname("pg-alpha")).node_id).toBe(ida);
      await expectErr(cb.setHostname(idb, "pg-alpha"));
      const pushes: any[] = [];
      cb.onPush((m) => pushes.push(m));
      await cb.subscribe(idb);
      await ca.requestHandshake(ida, idb, "hello via process 1");
      for (let i = 0; i < 200 && !pushes.length; i++) await Bun.sleep(10);
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

async function expectErr(p: Promise<unknown>) {
  let ok = false;
  try { await p; ok = true; } catch {}
  expect(ok).toBe(false);
}
