// Real `rendezvous` processes: startup line parsing, SIGTERM, SIGKILL crash durability, beacon UDP.
import { describe, expect, test } from "bun:test";
import { ed25519 } from "@noble/curves/ed25519.js";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { RegistryClient } from "../src/daemon/registry-client.ts";
import { until } from "./helpers/until.ts";
import { decodeBeacon, encodeDiscover, encodePunchRequest, encodeRelay } from "../src/proto/beacon.ts";

const BUN = join(import.meta.dir, "../node_modules/.bin/bun");
const MAIN = join(import.meta.dir, "../src/main.ts");
const b64 = (b: Uint8Array) => Buffer.from(b).toString("base64");
function identity() {
  const sk = ed25519.utils.randomSecretKey();
  return { pub: b64(ed25519.getPublicKey(sk)), sign: (c: string) => b64(ed25519.sign(new TextEncoder().encode(c), sk)) };
}

async function spawnRv(args: string[]) {
  const p = Bun.spawn([BUN, MAIN, "rendezvous", "-registry-addr", "127.0.0.1:0", "-beacon-addr", "127.0.0.1:0", ...args], { stdout: "pipe", stderr: "pipe" });
  const reader = p.stdout.getReader();
  let text = "";
  const ports: Record<string, number> = {};
  const t0 = Date.now();
  while (!(ports.registry && ports.beacon) && Date.now() - t0 < 20000) {
    const { value, done } = await reader.read();
    if (done) break;
    text += new TextDecoder().decode(value);
    for (const m of text.matchAll(/^(registry|beacon|http) listening on (?:\[[^\]]*\]|[^:\s]*):(\d+)$/gm)) ports[m[1]] = Number(m[2]);
  }
  if (!ports.registry) throw new Error("rendezvous did not start: " + text + (await new Response(p.stderr).text()));
  return { p, ports, text };
}

describe("rendezvous process", () => {
  test("prints ports, serves, exits 0 on SIGTERM", async () => {
    const { p, ports } = await spawnRv(["-http", "127.0.0.1:0"]);
    const c = new RegistryClient(`127.0.0.1:${ports.registry}`);
    expect((await c.listNetworks()).type).toBe("list_networks_ok");
    c.close();
    p.kill("SIGTERM");
    expect(await p.exited).toBe(0);
  });

  test("bad flag → usage, exit 2", async () => {
    const p = Bun.spawn([BUN, MAIN, "rendezvous", "-nope"], { stdout: "pipe", stderr: "pipe" });
    expect(await p.exited).toBe(2);
    expect(await new Response(p.stderr).text()).toContain("flag provided but not defined: -nope");
  });

  test("SIGKILL during a registration burst loses nothing acknowledged", async () => {
    const dir = mkdtempSync(join(tmpdir(), "pilot-crash-"));
    const store = join(dir, "reg.db");
    try {
      const { p, ports } = await spawnRv(["-store", store]);
      // 8 registrations (the per-IP burst allows 10), each with an atomic hostname claim; then a
      // burst of signed mutations (set_hostname, report_trust) on all of them until SIGKILL.
      type Rec = { id: number; pub: string; host: string; inflight: string; peers: number[]; c: RegistryClient };
      const recs: Rec[] = [];
      for (let i = 0; i < 8; i++) {
        const id = identity();
        const c = new RegistryClient(`127.0.0.1:${ports.registry}`, { sign: id.sign, reconnectAttempts: 1, backoffMs: 10, requestTimeoutMs: 3000 });
        const r = await c.register(id.pub, "127.0.0.1:4000", "", `n${i}-v0`);
        recs.push({ id: r.node_id as number, pub: id.pub, host: `n${i}-v0`, inflight: "", peers: [], c });
      }
      let ops = 0;
      const workers = recs.map(async (rec, i) => {
        try {
          for (let v = 1; ; v++) {
            rec.inflight = `n${i}-v${v}`;
            await rec.c.setHostname(rec.id, rec.inflight);
            rec.host = rec.inflight;
            const peer = recs[(i + v) % recs.length].id;
            if (peer !== rec.id) { await rec.c.reportTrust(rec.id, peer); rec.peers.push(peer); }
            ops++;
          }
        } catch { /* killed */ } finally { rec.c.close(); }
      });
      await until(async () => ops >= 200, "200 acknowledged writes before the kill", 60_000, 2);
      p.kill("SIGKILL");
      await p.exited;
      await Promise.all(workers);
      const again = await spawnRv(["-store", store]);
      const c = new RegistryClient(`127.0.0.1:${again.ports.registry}`);
      for (const a of recs) {
        const l = await c.lookup(a.id);
        expect(l.public_key).toBe(a.pub);
        // the acknowledged hostname, or the one in flight at the kill (committed, not yet acked)
        expect([a.host, a.inflight]).toContain(l.hostname as string);
        expect((await c.resolveHostname(l.hostname as string)).node_id).toBe(a.id);
      }
      // trust pairs: count via the dashboard stats equivalent (list pairs through a 2nd store open)
      c.close();
      again.p.kill("SIGTERM");
      await again.p.exited;
      const { SqliteStore } = await import("../src/server/store.ts");
      const st = new SqliteStore(store);
      const pairs = await st.read((t) => t.pairs());
      const want = recs.flatMap((a) => a.peers.map((q) => [Math.min(a.id, q), Math.max(a.id, q)].join(":")));
      expect(want.length).toBeGreaterThan(50);
      const have = new Set(pairs.map(([x, y]) => `${x}:${y}`));
      for (const w of want) expect(have.has(w)).toBe(true);
      await st.close();
    } finally {
      rmSync(dir, { recursive: true, force: true, maxRetries: 5 });
    }
  }, 60000);

  test("reference JSON snapshot is imported on first start", async () => {
    const dir = mkdtempSync(join(tmpdir(), "pilot-snap-"));
    try {
      const snap = join(dir, "registry.json");
      writeFileSync(snap, JSON.stringify({
        next_node: 3, next_net: 1,
        nodes: {
          "1": { id: 1, owner: "alice@example.com", public_key: "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=", real_addr: "203.0.113.7:4000", networks: [0], public: true, last_seen: new Date().toISOString().replace(/\.\d+/, ""), hostname: "alice", polo_score: 2 },
          "2": { id: 2, public_key: b64(new Uint8Array(32).fill(7)), real_addr: "198.51.100.9:4000", networks: [0], last_seen: new Date().toISOString() },
        },
        networks: { "0": { id: 0, name: "backbone", join_rule: "open", members: [1, 2], created: "2025-03-01T09:00:00Z" } },
        trust_pairs: ["1:2"],
        pub_key_idx: { "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=": 1 },
        handshake_inbox: { "2": [{ from_node_id: 1, justification: "hi", timestamp: "2025-03-01T10:15:31.5Z" }] },
      }));
      const { p, ports } = await spawnRv(["-store", snap]);
      const c = new RegistryClient(`127.0.0.1:${ports.registry}`);
      const l = await c.lookup(1);
      expect(l).toMatchObject({ public_key: "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=", hostname: "alice", polo_score: 2, public: true, real_addr: "203.0.113.7:4000" });
      const n = identity();
      expect((await c.register(n.pub, "127.0.0.1:1")).node_id).toBe(3);
      c.close();
      p.kill("SIGTERM");
      await p.exited;
    } finally {
      rmSync(dir, { recursive: true, force: true, maxRetries: 5 });
    }
  }, 30000);
});

describe("beacon over UDP (in-process)", () => {
  test("discover reply, punch gated by registry trust, relay with sender check", async () => {
    const { startRendezvous } = await import("../src/server/main.ts");
    const rv = await startRendezvous({ "registry-addr": "127.0.0.1:0", "beacon-addr": "127.0.0.1:0", quiet: true, noRateLimit: true });
    try {
      const got: Record<string, Uint8Array[]> = { a: [], b: [], x: [] };
      const mk = (k: string) => Bun.udpSocket({ hostname: "127.0.0.1", socket: { data(_s, buf) { got[k].push(new Uint8Array(buf)); } } });
      const [ua, ub, ux] = await Promise.all([mk("a"), mk("b"), mk("x")]);
      const bp = rv.beaconPort;
      const wait = (k: string, n: number) => until(async () => got[k].length >= n, `${n} datagram(s) at ${k}`, 5000, 5);
      // registry nodes
      const A = identity(), B = identity();
      const ca = new RegistryClient(`127.0.0.1:${rv.registryPort}`, { sign: A.sign });
      const cb = new RegistryClient(`127.0.0.1:${rv.registryPort}`, { sign: B.sign });
      const ida = (await ca.register(A.pub, `127.0.0.1:${ua.port}`)).node_id as number;
      const idb = (await cb.register(B.pub, `127.0.0.1:${ub.port}`)).node_id as number;
      ua.send(encodeDiscover(ida), bp, "127.0.0.1");
      ub.send(encodeDiscover(idb), bp, "127.0.0.1");
      await wait("a", 1); await wait("b", 1);
      expect(decodeBeacon(got.a[0])).toEqual({ type: 2, ep: { ip: "127.0.0.1", port: ua.port } });
      expect(decodeBeacon(got.b[0])).toEqual({ type: 2, ep: { ip: "127.0.0.1", port: ub.port } });
      // STUN probe id 0: answered
      ux.send(encodeDiscover(0), bp, "127.0.0.1");
      await wait("x", 1);
      expect(decodeBeacon(got.x[0]).type).toBe(2);
      // punch from a stranger socket naming A: ignored (B1)
      ux.send(encodePunchRequest(ida, idb), bp, "127.0.0.1");
      // punch from A without trust (B private): denied by the registry authorizer
      ua.send(encodePunchRequest(ida, idb), bp, "127.0.0.1");
      await Bun.sleep(100); // a window in which no PunchCommand may arrive (the refusal has no answer to wait for)
      expect(got.a.length).toBe(1);
      expect(got.b.length).toBe(1);
      await cb.reportTrust(idb, ida); // B lets A resolve it
      ua.send(encodePunchRequest(ida, idb), bp, "127.0.0.1");
      await wait("a", 2); await wait("b", 2);
      expect(decodeBeacon(got.a[1])).toEqual({ type: 4, ep: { ip: "127.0.0.1", port: ub.port } });
      expect(decodeBeacon(got.b[1])).toEqual({ type: 4, ep: { ip: "127.0.0.1", port: ua.port } });
      // relay from A to B delivered; spoofed relay claiming A from x dropped (B3)
      ux.send(encodeRelay(ida, idb, new TextEncoder().encode("spoof")), bp, "127.0.0.1");
      ua.send(encodeRelay(ida, idb, new TextEncoder().encode("PILThello")), bp, "127.0.0.1");
      await wait("b", 3);
      await Bun.sleep(50); // a window in which the spoofed relay must not arrive as a 4th datagram
      expect(got.b.length).toBe(3);
      const d = decodeBeacon(got.b[2]);
      expect(d.type).toBe(6);
      if (d.type === 6) { expect(d.sender).toBe(ida); expect(new TextDecoder().decode(d.payload)).toBe("PILThello"); }
      // garbage never kills the beacon
      for (let i = 0; i < 200; i++) ux.send(new Uint8Array(Array.from({ length: i % 30 }, (_, j) => (i * 31 + j * 7) & 0xff)), bp, "127.0.0.1");
      ux.send(encodeDiscover(0), bp, "127.0.0.1");
      const before = got.x.length;
      await wait("x", before + 1);
      expect(got.x.length).toBeGreaterThan(1);
      ca.close(); cb.close(); ua.close(); ub.close(); ux.close();
    } finally { await rv.stop(); }
  });

  test("IPv6 discover reply on ::1", async () => {
    const { BeaconServer } = await import("../src/server/beacon.ts");
    const b = new BeaconServer();
    let bound;
    try { bound = await b.listen("[::1]:0"); } catch { console.log("IPv6 loopback unavailable; skipping"); return; }
    const got: Uint8Array[] = [];
    const u = await Bun.udpSocket({ hostname: "::1", socket: { data(_s, buf) { got.push(new Uint8Array(buf)); } } });
    u.send(encodeDiscover(9), bound.port, "::1");
    await until(async () => got.length > 0, "DiscoverReply over IPv6", 5000, 5);
    expect(Buffer.from(got[0]).toString("hex")).toBe("0210" + "00000000000000000000000000000001" + u.port.toString(16).padStart(4, "0"));
    u.close(); b.stop();
  });
});
