// The main registry suite (every message type, happy and error paths), run twice with identical
// assertions: on a fresh SQLite file and on a fresh PostgreSQL database (test/helpers/pg.ts starts
// a throwaway server, or uses PILOT_TEST_PG_URL; the PostgreSQL half is skipped with a message
// only when no server can be had). Every rendezvous a test starts gets its own fresh store.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { getPg, releasePg } from "./helpers/pg.ts";
import { ed25519 } from "@noble/curves/ed25519.js";
import { RegistryClient, RegistryError } from "../src/daemon/registry-client.ts";
import { startRendezvous, type Rendezvous } from "../src/server/main.ts";
import { encodeFrame } from "../src/proto/framing.ts";
import { until } from "./helpers/until.ts";

const RFC_SK = Buffer.from("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60", "hex");
const b64 = (b: Uint8Array) => Buffer.from(b).toString("base64");

function identity(sk = ed25519.utils.randomSecretKey()) {
  const pk = ed25519.getPublicKey(sk);
  return { sk, pub: b64(pk), sign: (c: string) => b64(ed25519.sign(new TextEncoder().encode(c), sk)) };
}


const ADMIN = "operator-secret";
const pg = await getPg();
afterAll(releasePg);
if (typeof pg === "string") console.log(`registry suite on PostgreSQL skipped: ${pg} (set PILOT_TEST_PG_URL to run it)`);
const tmp = mkdtempSync(join(tmpdir(), "pilot-reg-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true, maxRetries: 5 }));
let nFiles = 0;

for (const kind of ["sqlite", "postgres"] as const) {
  const skip = kind === "postgres" && typeof pg === "string";
  /** A store spec no other rendezvous has used: a new SQLite file, or a new PostgreSQL database. */
  const freshStore = async () => (kind === "sqlite" ? join(tmp, `reg-${++nFiles}.db`) : (pg as Exclude<typeof pg, string>).freshDb("pilot_reg"));
  describe.skipIf(skip)(`registry on ${kind}`, () => {
  let rv: Rendezvous;
  let addr: string;
  beforeAll(async () => {
    rv = await startRendezvous({ "registry-addr": "127.0.0.1:0", "beacon-addr": "127.0.0.1:0", store: await freshStore(), quiet: true, noRateLimit: true, "admin-token": ADMIN });
    addr = `127.0.0.1:${rv.registryPort}`;
  });
  afterAll(async () => { await rv.stop(); });

  async function node(opts: { owner?: string; port?: number; hostname?: string } = {}) {
    const id = identity();
    const c = new RegistryClient(addr, { sign: id.sign, freshSignatures: false });
    await c.connect();
    const r = await c.register(id.pub, `127.0.0.1:${opts.port ?? 4000}`, opts.owner ?? "", opts.hostname ?? "");
    return { ...id, c, id: r.node_id as number, reg: r };
  }

  async function expectErr(p: Promise<unknown>, code?: string) {
    try { await p; } catch (e) {
      expect(e).toBeInstanceOf(RegistryError);
      if (code) expect((e as RegistryError).code).toBe(code);
      return e as RegistryError;
    }
    throw new Error("expected an error");
  }

  /**
   * Raw socket helper: send raw bytes, collect response frames until the server closes the
   * connection ("closed") or `want` frames arrived; with 0, hang up at once.
   */
  async function raw(bytes: Uint8Array, want: number | "closed"): Promise<{ frames: any[]; closed: boolean }> {
    const frames: any[] = [];
    let closed = false;
    let buf = Buffer.alloc(0);
    const s = await Bun.connect({ hostname: "127.0.0.1", port: rv.registryPort, socket: {
      data(_s, d) {
        buf = Buffer.concat([buf, d]);
        while (buf.length >= 4 && buf.length >= 4 + buf.readUInt32BE(0)) {
          const n = buf.readUInt32BE(0); frames.push(JSON.parse(buf.subarray(4, 4 + n).toString())); buf = buf.subarray(4 + n);
        }
      },
      close() { closed = true; },
    } });
    s.write(bytes);
    if (want !== 0) await until(async () => closed || (want !== "closed" && frames.length >= want), `registry answer (${want})`, 10_000, 10);
    s.end();
    return { frames, closed };
  }
  const frame = (o: unknown) => encodeFrame(new TextEncoder().encode(JSON.stringify(o)));

  describe("reference registry vectors", () => {
    test("signatures of the RFC 8032 key", () => {
      const id = identity(new Uint8Array(RFC_SK));
      expect(id.pub).toBe("11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=");
      const v: Record<string, string> = {
        "heartbeat:1": "VnlNDnMgPNrEstsrIUUV4v6d2E7QkVIddCAIpv1x28UtcY15dnl85d0ldVgesmCWwT8vPsUTgZrs82oJtGTtAQ==",
        "deregister:1": "Cv3ye2Y0G91zxsEQYlimQpK2nWdQyc0nyfJNsVsH+9iw17cANMvgPra2O5ZygO35zLJcHGeEjmLb0T5iAyTvDg==",
        "resolve:1:2": "a782c6+50CLxw5CdBgYqTOdXCgBvP0bH1Pc1vA1BZE/zb4XhaloIU6GMcNtJVitQIMY57SgoK21CUKmjSAItAw==",
        "rotate:1": "StuIfMuiH9S/IuHI3+SOZ8DeJo2Z/knpHJFSu/ni3SuhlSGIAd8+Da6g0tzmsntNa37OZwqvlhrZ2VSyBEkfAQ==",
        "poll_handshakes:1": "pBvJlFsJ43hdwXeQ3gFua5dkLDgh3xeoBwh/iZsNBiO9IXmdrQZLp9tWZO3aTJwJMPxWS53uEcl/Z7CMz7B9Dw==",
        "handshake:1:2": "9S+I5TI03acn8tKkIroprBmv6NzljsX4+ZcP04hlEtUrmPJEww0O11uGhVSGh4Xs/so1V4HlVcLx5g/kulFZCw==",
        "respond:2:1": "Mti4n9prc3wG6s7MWkqkryYHRRjiU0kEzIbDDL1yI1ypFOA9iSTGCR5IYCgxuJ1ULXfmRVTY2n/smpl2RtmVAw==",
        "report_trust:1:2": "suyxylsOLhA8QtW5asqmG+Xl+IbllzPaK2XqCMA7Zu2mt+ZdBePC1ABHLQvy1m4LwIHG20TnShT8xainjSdjCw==",
        "set_hostname:1": "da3tGwCz0tpv92em9XToGwi562aKfnjApZevUfCUZx9jC5zgBNhqwk4M1on1Mh86H++6by8hVKyJVmykkXE5CQ==",
      };
      for (const [c, s] of Object.entries(v)) expect(id.sign(c)).toBe(s);
    });

    test("fresh registry: register/heartbeat/error frames byte for byte", async () => {
      const r2 = await startRendezvous({ "registry-addr": "127.0.0.1:0", "beacon-addr": "127.0.0.1:0", store: await freshStore(), quiet: true, opaqueErrors: true });
      try {
        const got: Buffer[] = [];
        const s = await Bun.connect({ hostname: "127.0.0.1", port: r2.registryPort, socket: { data(_s, d) { got.push(Buffer.from(d)); } } });
        const send = async (body: string, n: number) => {
          const before = Buffer.concat(got).length;
          s.write(encodeFrame(new TextEncoder().encode(body)));
          await until(async () => Buffer.concat(got).length >= before + n, `${n} bytes of answer`, 5000, 5);
          return Buffer.concat(got).subarray(before);
        };
        const reg = await send(`{"type":"register","listen_addr":"203.0.113.7:4000","public_key":"11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=","owner":"alice@example.com"}`, 4 + 131);
        expect(reg.subarray(4).toString()).toBe(`{"address":"0:0000.0000.0001","network_id":0,"node_id":1,"public_key":"11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=","type":"register_ok"}`);
        expect(reg.readUInt32BE(0)).toBe(reg.length - 4);
        const hb = `{"node_id":1,"signature":"VnlNDnMgPNrEstsrIUUV4v6d2E7QkVIddCAIpv1x28UtcY15dnl85d0ldVgesmCWwT8vPsUTgZrs82oJtGTtAQ==","type":"heartbeat"}`;
        expect(hb.length).toBe(0x87);
        const hbr = await send(hb, 45);
        expect(hbr.readUInt32BE(0)).toBe(hbr.length - 4);
        expect(hbr.subarray(4).toString()).toMatch(/^\{"time":\d{10},"type":"heartbeat_ok"\}$/);
        expect(hbr.subarray(4).length).toBe(41);
        const err = await send(`{"type":"heartbeat","node_id":2}`, 45);
        expect(err.toString("hex").slice(0, 8)).toBe("00000029");
        expect(err.subarray(4).toString()).toBe(`{"error":"request failed","type":"error"}`);
        const node = await r2.registry.store.read((t) => t.getNode(1));
        expect(node!.realAddr).toBe("127.0.0.1:4000"); // TCP source IP + listen port (docs/protocol.md §8.3)
        s.end();
      } finally { await r2.stop(); }
    });
  });

  describe("registration", () => {
    test("same key keeps ID; new key gets next ID; bad keys refused", async () => {
      const a = await node();
      const again = await a.c.register(a.pub, "127.0.0.1:4001");
      expect(again.node_id).toBe(a.id);
      expect(again.address).toBe(`0:0000.${(a.id >>> 16).toString(16).toUpperCase().padStart(4, "0")}.${(a.id & 0xffff).toString(16).toUpperCase().padStart(4, "0")}`);
      const b = await node();
      expect(b.id).toBe(a.id + 1);
      await expectErr(a.c.register("", "x:1"), "public_key_required");
      await expectErr(a.c.register("AAAA", "x:1"), "bad_public_key");
      await expectErr(a.c.register("not base64!!", "x:1"), "bad_public_key");
      // deregister then re-register reclaims the ID, attributes reset
      await a.c.setVisibility(a.id, true);
      await a.c.deregister(a.id);
      await expectErr(a.c.heartbeat(a.id), "not_found");
      const back = await a.c.register(a.pub, "127.0.0.1:4000");
      expect(back.node_id).toBe(a.id);
      expect((await a.c.lookup(a.id)).public).toBe(false);
      a.c.close(); b.c.close();
    });

    test("hostname at registration: invalid → hostname_error, taken → not claimed", async () => {
      const a = await node({ hostname: "Bad_Name" });
      expect(a.reg.hostname).toBeUndefined();
      expect(typeof a.reg.hostname_error).toBe("string");
      const h = "host-" + a.id;
      const b = await node({ hostname: h });
      expect(b.reg.hostname).toBe(h);
      const c = await node({ hostname: h });
      expect(c.reg.hostname).toBeUndefined();
      expect((await a.c.resolveHostname(h)).node_id).toBe(b.id);
      for (const x of [a, b, c]) x.c.close();
    });

    test("owner recovery of a dead node; live node's key is never replaced (R2)", async () => {
      const owner = `o${Date.now()}@example.com`;
      const a = await node({ owner });
      const thief = identity();
      const r = await a.c.register(thief.pub, "127.0.0.1:5000", owner);
      expect(r.node_id).not.toBe(a.id); // B1 refused: fresh ID
      expect((await a.c.lookup(a.id)).public_key).toBe(a.pub);
      await a.c.deregister(a.id);
      const fresh = identity();
      const rec = await a.c.register(fresh.pub, "127.0.0.1:5000", owner);
      expect(rec.node_id).toBe(a.id); // B2
      expect((await a.c.lookup(a.id)).public_key).toBe(fresh.pub);
      a.c.close();
    });
  });

  describe("signed operations", () => {
    test("bad / missing signature, unknown node", async () => {
      const a = await node();
      const b = await node();
      await expectErr(a.c.request({ type: "heartbeat", node_id: a.id }), "signature_required");
      await expectErr(a.c.request({ type: "heartbeat", node_id: a.id, signature: b.sign(`heartbeat:${a.id}`) }), "bad_signature");
      await expectErr(a.c.request({ type: "heartbeat", node_id: a.id, signature: "%%%" }), "bad_signature");
      await expectErr(a.c.heartbeat(999999), "not_found");
      const hb = await a.c.heartbeat(a.id);
      expect(hb.type).toBe("heartbeat_ok");
      expect(Math.abs((hb.time as number) - Date.now() / 1000)).toBeLessThan(5);
      a.c.close(); b.c.close();
    });

    test("lookup / visibility / resolve privacy", async () => {
      const a = await node({ port: 4100 });
      const b = await node({ port: 4200 });
      const la = await b.c.lookup(a.id);
      expect(la).toMatchObject({ type: "lookup_ok", node_id: a.id, networks: [0], public_key: a.pub, public: false, polo_score: 0 });
      expect(la.real_addr).toBeUndefined();
      const e = await expectErr(b.c.resolve(a.id, b.id), "private");
      expect(e.response!.type).toBe("error");
      expect(await a.c.setVisibility(a.id, true)).toEqual({ type: "set_visibility_ok", node_id: a.id, visibility: "public", });
      expect((await b.c.resolve(a.id, b.id)).real_addr).toBe("127.0.0.1:4100");
      expect((await b.c.lookup(a.id)).real_addr).toBe("127.0.0.1:4100");
      await a.c.setVisibility(a.id, false);
      // one-sided trust: b reporting trust for a does NOT let b resolve a (R1) ...
      await b.c.reportTrust(b.id, a.id);
      await expectErr(b.c.resolve(a.id, b.id), "private");
      // ... but lets a resolve b
      expect((await a.c.resolve(b.id, a.id)).real_addr).toBe("127.0.0.1:4200");
      await a.c.reportTrust(a.id, b.id);
      expect((await b.c.resolve(a.id, b.id)).real_addr).toBe("127.0.0.1:4100");
      // punch is gated like resolve
      const p = await a.c.punch(a.id, a.id, b.id);
      expect(p).toMatchObject({ type: "punch_ok", node_a: a.id, node_a_addr: "127.0.0.1:4100", node_b: b.id, node_b_addr: "127.0.0.1:4200" });
      await expectErr(a.c.punch(a.id, b.id + 1000, b.id), "not_participant");
      // revoke removes both directions; second revoke fails
      expect((await b.c.revokeTrust(b.id, a.id)).type).toBe("revoke_trust_ok");
      await expectErr(b.c.resolve(a.id, b.id), "private");
      await expectErr(a.c.resolve(b.id, a.id), "private");
      await expectErr(a.c.punch(a.id, a.id, b.id), "private");
      await expectErr(a.c.revokeTrust(a.id, b.id), "no_trust_pair");
      a.c.close(); b.c.close();
    });

    test("hostnames: set, duplicate, invalid, reserved, clear, resolve", async () => {
      const a = await node();
      const b = await node();
      const h = `alpha-${a.id}`;
      expect(await a.c.setHostname(a.id, h)).toEqual({ type: "set_hostname_ok", node_id: a.id, hostname: h });
      await expectErr(b.c.setHostname(b.id, h), "hostname_taken");
      await expectErr(b.c.setHostname(b.id, "UPPER"), "invalid_hostname");
      await expectErr(b.c.setHostname(b.id, "-x"), "invalid_hostname");
      await expectErr(b.c.setHostname(b.id, "a".repeat(64)), "invalid_hostname");
      await expectErr(b.c.setHostname(b.id, "localhost"), "invalid_hostname");
      expect(await b.c.resolveHostname(h)).toEqual({ type: "resolve_hostname_ok", node_id: a.id, address: expect.any(String), public: false, hostname: h });
      await expectErr(b.c.resolveHostname("nobody-here"), "not_found");
      await expectErr(b.c.resolveHostname(""), "hostname_required");
      await a.c.setHostname(a.id, "");
      await expectErr(b.c.resolveHostname(h), "not_found");
      expect((await b.c.setHostname(b.id, h)).hostname).toBe(h);
      a.c.close(); b.c.close();
    });

    test("handshake relay inbox with push delivery", async () => {
      const a = await node();
      const b = await node();
      const pushes: any[] = [];
      b.c.onPush((m) => pushes.push(m));
      const sub = await b.c.subscribe(b.id);
      expect(sub.type).toBe("subscribe_ok");
      expect(await a.c.requestHandshake(a.id, b.id, "please")).toEqual({ type: "request_handshake_ok", status: "delivered" });
      await expectErr(a.c.requestHandshake(a.id, b.id, "again"), "already_pending");
      await until(async () => pushes.length > 0, "handshake push", 5000, 10);
      expect(pushes[0]).toMatchObject({ type: "push", event: "handshake_request", node_id: b.id, from_node_id: a.id, justification: "please" });
      // the requester consented: b may now resolve a
      expect((await b.c.resolve(a.id, b.id)).type).toBe("resolve_ok");
      const poll = await b.c.pollHandshakes(b.id);
      expect(poll.requests).toEqual([{ from_node_id: a.id, justification: "please", timestamp: expect.any(Number) }]);
      expect(poll.responses).toEqual([]);
      expect((await b.c.pollHandshakes(b.id)).requests).toEqual([]);
      expect(await b.c.respondHandshake(b.id, a.id, true)).toEqual({ type: "respond_handshake_ok", accept: true, peer_id: a.id });
      expect((await a.c.resolve(b.id, a.id)).type).toBe("resolve_ok");
      const pa = await a.c.pollHandshakes(a.id);
      expect(pa.responses).toEqual([{ from_node_id: b.id, accept: true, timestamp: expect.any(Number) }]);
      // opting in to timestamped signatures makes plain (replayable) ones refused for b
      b.c.freshSignatures = true;
      expect((await b.c.heartbeat(b.id)).type).toBe("heartbeat_ok");
      await expectErr(a.c.request({ type: "heartbeat", node_id: b.id, signature: b.sign(`heartbeat:${b.id}`) }), "fresh_signature_required");
      const ts = Date.now() + 5000;
      const fresh = { type: "heartbeat", node_id: b.id, ts, signature: b.sign(`heartbeat:${b.id}:${ts}`) };
      expect((await a.c.request(fresh)).type).toBe("heartbeat_ok");
      await expectErr(a.c.request(fresh), "replayed_signature");
      a.c.close(); b.c.close();
    });

    test("tags, task exec, polo score, rotate key", async () => {
      const a = await node();
      expect(await a.c.setTags(a.id, ["#web", "gpu-1"])).toEqual({ type: "set_tags_ok", node_id: a.id, tags: ["web", "gpu-1"] });
      await expectErr(a.c.setTags(a.id, ["Bad"]), "invalid_tag");
      await expectErr(a.c.setTags(a.id, new Array(11).fill("x")), "too_many_tags");
      expect((await a.c.lookup(a.id)).tags).toEqual(["web", "gpu-1"]);
      expect((await a.c.setTags(a.id, [])).tags).toBeNull();
      expect(await a.c.setTaskExec(a.id, true)).toEqual({ type: "set_task_exec_ok", node_id: a.id, task_exec: true });
      expect((await a.c.lookup(a.id)).task_exec).toBe(true);
      expect((await a.c.updatePoloScore(a.id, 2.9, { adminToken: ADMIN })).polo_score).toBe(2);
      expect((await a.c.updatePoloScore(a.id, -5)).polo_score).toBe(-3); // signed by the node itself
      expect((await a.c.setPoloScore(a.id, 10, ADMIN)).polo_score).toBe(10);
      expect(await a.c.getPoloScore(a.id)).toMatchObject({ type: "get_polo_score_ok", node_id: a.id, polo_score: 10 });
      await expectErr(a.c.request({ type: "update_polo_score", node_id: a.id, admin_token: ADMIN }), "bad_value");
      const b = await node();
      await expectErr(a.c.rotateKey(a.id, b.pub), "key_in_use"); // R6
      const nk = identity();
      const r = await a.c.rotateKey(a.id, nk.pub);
      expect(r).toEqual({ type: "rotate_key_ok", node_id: a.id, address: expect.any(String), public_key: nk.pub });
      await expectErr(a.c.heartbeat(a.id), "bad_signature"); // old key no longer valid
      const c2 = new RegistryClient(addr, { sign: nk.sign });
      expect((await c2.heartbeat(a.id)).type).toBe("heartbeat_ok");
      c2.close(); a.c.close(); b.c.close();
    });

    test("networks, beacons, disabled ops", async () => {
      const a = await node();
      const ln = await a.c.listNetworks();
      expect(ln.networks).toEqual([{ id: 0, name: "backbone", members: expect.any(Number), join_rule: "open" }]);
      await expectErr(a.c.listNodes(0), "forbidden");
      await expectErr(a.c.listNodes(7), "not_found");
      await expectErr(a.c.request({ type: "create_network", name: "x" }), "disabled");
      expect(await a.c.beaconRegister(5, "127.0.0.1:9001")).toEqual({ type: "beacon_register_ok", beacon_id: 5 });
      await expectErr(a.c.beaconRegister(0, "x"), "bad_beacon_id");
      expect((await a.c.beaconList()).beacons).toEqual([{ id: 5, addr: "127.0.0.1:9001" }]);
      await expectErr(a.c.request({ type: "no_such_thing" }), "unknown_type");
      await expectErr(a.c.request({ type: 7 }), "unknown_type");
      a.c.close();
    });
  });

  describe("values and paths where stores could differ", () => {
    test("U+0000 refused with typed errors (PostgreSQL text cannot hold it); lookups by it miss", async () => {
      const a = await node();
      const b = await node();
      await expectErr(a.c.register(identity().pub, "127.0.0.1:1", "o\u0000x@example.com"), "invalid_owner");
      await expectErr(a.c.requestHandshake(a.id, b.id, "a\u0000b"), "invalid_justification");
      await expectErr(a.c.resolveHostname("a\u0000b"), "not_found");
      expect((await b.c.pollHandshakes(b.id)).requests).toEqual([]);
      a.c.close(); b.c.close();
    });

    test("unicode justification round trip; lone surrogate becomes U+FFFD", async () => {
      const a = await node();
      const b = await node();
      await a.c.requestHandshake(a.id, b.id, "héllo 😀 \ud800 end");
      const p: any = await b.c.pollHandshakes(b.id);
      expect(p.requests.map((r: any) => r.justification)).toEqual(["héllo 😀 \ufffd end"]);
      a.c.close(); b.c.close();
    });

    test("polo score clamped to ±(2^53−1) on set and update", async () => {
      const a = await node();
      const admin = { adminToken: ADMIN };
      expect((await a.c.setPoloScore(a.id, 1e308, ADMIN)).polo_score).toBe(Number.MAX_SAFE_INTEGER);
      expect((await a.c.updatePoloScore(a.id, 1e308, admin)).polo_score).toBe(Number.MAX_SAFE_INTEGER);
      expect((await a.c.getPoloScore(a.id)).polo_score).toBe(Number.MAX_SAFE_INTEGER);
      expect((await a.c.setPoloScore(a.id, -1e308, ADMIN)).polo_score).toBe(-Number.MAX_SAFE_INTEGER);
      expect((await a.c.updatePoloScore(a.id, 2 ** 52, admin)).polo_score).toBe(-Number.MAX_SAFE_INTEGER + 2 ** 52);
      a.c.close();
    });

    test("polo-score writes need the admin token or a signature of the requesting node", async () => {
      const a = await node();
      const b = await node();
      // Unauthenticated writes, as the reference accepted them, are refused and change nothing.
      await expectErr(a.c.request({ type: "set_polo_score", node_id: a.id, polo_score: 99 }), "forbidden");
      await expectErr(a.c.request({ type: "update_polo_score", node_id: a.id, delta: -1 }), "signature_required");
      await expectErr(a.c.request({ type: "update_polo_score", node_id: b.id, delta: 5, requester_id: a.id }), "signature_required");
      await expectErr(a.c.setPoloScore(a.id, 99, "wrong-token"), "forbidden");
      await expectErr(a.c.updatePoloScore(a.id, 99, { adminToken: "wrong-token" }), "forbidden");
      expect((await a.c.getPoloScore(a.id)).polo_score).toBe(0);
      // A node may reward another node and lower its own score, but not raise its own.
      expect((await a.c.updatePoloScore(b.id, 3)).polo_score).toBe(3);
      expect((await a.c.updatePoloScore(a.id, -1)).polo_score).toBe(-1);
      await expectErr(a.c.updatePoloScore(a.id, 1), "forbidden");
      // The signature covers requester, target and delta: another delta does not verify.
      const sig = a.sign(`update_polo_score:${a.id}:${b.id}:1`);
      await expectErr(a.c.request({ type: "update_polo_score", node_id: b.id, delta: 50, requester_id: a.id, signature: sig }), "bad_signature");
      // Signed by someone else's key.
      await expectErr(b.c.request({ type: "update_polo_score", node_id: b.id, delta: 5, requester_id: a.id, signature: b.sign(`update_polo_score:${a.id}:${b.id}:5`) }), "bad_signature");
      expect((await a.c.getPoloScore(b.id)).polo_score).toBe(3);
      expect((await a.c.setPoloScore(b.id, 7, ADMIN)).polo_score).toBe(7);
      a.c.close(); b.c.close();
    });

    test("rejected handshake: no trust granted; inbox limit; join/leave disabled", async () => {
      const a = await node();
      const b = await node();
      await a.c.requestHandshake(a.id, b.id, "x");
      expect(await b.c.respondHandshake(b.id, a.id, false)).toEqual({ type: "respond_handshake_ok", accept: false, peer_id: a.id });
      expect((await a.c.pollHandshakes(a.id)).responses).toEqual([{ from_node_id: b.id, accept: false, timestamp: expect.any(Number) }]);
      await expectErr(a.c.resolve(b.id, a.id), "private");
      expect(((await b.c.pollHandshakes(b.id)) as any).requests.length).toBe(1);
      // fill b's inbox to the limit through the store, then one more request over the wire
      const c = await node();
      await rv.registry.store.tx(async (t) => {
        for (let i = 0; i < 100; i++) await t.inboxAdd(b.id, { from: 1_000_000 + i, justification: "", ts: Date.now() });
      });
      await expectErr(c.c.requestHandshake(c.id, b.id, "late"), "inbox_full");
      const drained: any = await b.c.pollHandshakes(b.id);
      expect(drained.requests.length).toBe(100);
      expect(drained.requests[0].from_node_id).toBe(1_000_000); // arrival order kept
      expect(drained.requests[99].from_node_id).toBe(1_000_099);
      await expectErr(a.c.request({ type: "join_network", network_id: 1, node_id: a.id }), "disabled");
      await expectErr(a.c.request({ type: "leave_network", network_id: 1, node_id: a.id }), "disabled");
      for (const x of [a, b, c]) x.c.close();
    });

    test("bulkLoadNodes fast path: loaded nodes are served; counters move past them", async () => {
      const st = rv.registry.store;
      const { nextNode, seq } = await st.read((t) => t.counters());
      const ids = [nextNode + 5, nextNode + 6, nextNode + 7];
      const keys = ids.map(() => identity().pub);
      await st.bulkLoadNodes(ids.map((id, i) => ({
        id, owner: "", publicKey: keys[i], realAddr: `127.0.0.1:${7000 + i}`, networks: [0], public: i === 0, lastSeen: Date.now(),
        hostname: i === 1 ? `bulk-${id}` : "", tags: i === 2 ? ["bulk"] : [], polo: i, taskExec: false, seq: seq + 10 + i, strict: false,
      })));
      const a = await node();
      expect(a.id).toBe(nextNode + 8);
      expect(await a.c.lookup(ids[2])).toMatchObject({ node_id: ids[2], public_key: keys[2], tags: ["bulk"], polo_score: 2 });
      expect((await a.c.resolve(ids[0], a.id)).real_addr).toBe("127.0.0.1:7000");
      expect((await a.c.resolveHostname(`bulk-${ids[1]}`)).node_id).toBe(ids[1]);
      expect((await a.c.register(keys[1], "127.0.0.1:7001")).node_id).toBe(ids[1]); // key index loaded too
      const all = await st.read((t) => t.allNodes());
      expect(all[all.length - 1].id).toBe(a.id); // a's seq follows the loaded ones
      a.c.close();
    });

    test("reap removes nodes silent for more than 3 minutes, keeps the rest", async () => {
      const a = await node();
      const b = await node();
      await rv.registry.store.tx(async (t) => {
        const n = (await t.getNode(a.id))!;
        n.lastSeen = Date.now() - 4 * 60_000;
        await t.putNode(n);
      });
      const reaped = await rv.registry.reap();
      expect(reaped).toContain(a.id);
      expect(reaped).not.toContain(b.id);
      await expectErr(b.c.lookup(a.id), "not_found");
      expect((await a.c.lookup(b.id)).node_id).toBe(b.id);
      // the key keeps its ID after reaping
      expect((await a.c.register(a.pub, "127.0.0.1:4000")).node_id).toBe(a.id);
      a.c.close(); b.c.close();
    });
  });

  describe("rate limit", () => {
    test("10 new keys per IP then refused; known keys still allowed", async () => {
      const r2 = await startRendezvous({ "registry-addr": "127.0.0.1:0", "beacon-addr": "127.0.0.1:0", store: await freshStore(), quiet: true });
      try {
        const c = new RegistryClient(`127.0.0.1:${r2.registryPort}`);
        const ids = Array.from({ length: 11 }, () => identity());
        for (let i = 0; i < 10; i++) expect((await c.register(ids[i].pub, "127.0.0.1:1")).type).toBe("register_ok");
        await expectErr(c.register(ids[10].pub, "127.0.0.1:1"), "rate_limited");
        expect((await c.register(ids[0].pub, "127.0.0.1:1")).node_id).toBe(1);
        c.close();
      } finally { await r2.stop(); }
    });
  });

  describe("framing errors", () => {
    test("malformed JSON closes without reply", async () => {
      const r = await raw(encodeFrame(new TextEncoder().encode("{not json")), "closed");
      expect(r.frames).toEqual([]);
      expect(r.closed).toBe(true);
    });
    test("non-object JSON closes without reply", async () => {
      const r = await raw(encodeFrame(new TextEncoder().encode("[1,2]")), "closed");
      expect(r.frames).toEqual([]);
      expect(r.closed).toBe(true);
    });
    test("zero-length frame closes without reply", async () => {
      const r = await raw(new Uint8Array([0, 0, 0, 0, ...frame({ type: "beacon_list" })]), "closed");
      expect(r.frames).toEqual([]);
      expect(r.closed).toBe(true);
    });
    test("null is an unknown-type error", async () => {
      const r = await raw(encodeFrame(new TextEncoder().encode("null")), 1);
      expect(r.frames[0].type).toBe("error");
    });
    test("oversized frame closes without reply; exactly 1 MiB accepted", async () => {
      const big = new Uint8Array(4); new DataView(big.buffer).setUint32(0, (1 << 20) + 1);
      const r = await raw(big, "closed");
      expect(r.frames).toEqual([]);
      expect(r.closed).toBe(true);
      const body = `{"type":"lookup","pad":"${"x".repeat((1 << 20) - 26)}"}`;
      expect(body.length).toBe(1 << 20);
      const ok = await raw(frame(JSON.parse(body)), 1);
      expect(ok.frames[0]?.type).toBe("error");
    });
    test("pipelined requests answered in order", async () => {
      const reqs = new Uint8Array([...frame({ type: "beacon_list" }), ...frame({ type: "x" }), ...frame({ type: "list_networks" })]);
      const r = await raw(reqs, 3);
      expect(r.frames.map((f) => f.type)).toEqual(["beacon_list_ok", "error", "list_networks_ok"]);
    });
    test("fuzz: random bytes and random JSON objects never crash the server", async () => {
      let seed = 99;
      const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 8) & 0xffffff;
      const types = ["register", "heartbeat", "lookup", "resolve", "punch", "set_tags", "request_handshake", "respond_handshake", "rotate_key", "set_polo_score", "list_nodes", "subscribe"];
      const vals = [null, true, false, 0, -1, 1.5, 4294967296, "", "x", "AAAA", [], ["#a", 3], {}, 1e308];
      const fields = ["node_id", "public_key", "signature", "tags", "hostname", "peer_id", "requester_id", "node_a", "node_b", "delta", "polo_score", "listen_addr", "timestamp", "ts", "network_id", "new_public_key"];
      const c = new RegistryClient(addr, {});
      for (let i = 0; i < 300; i++) {
        const m: Record<string, unknown> = { type: types[rnd() % types.length] };
        for (let j = rnd() % 6; j > 0; j--) m[fields[rnd() % fields.length]] = vals[rnd() % vals.length];
        try { await c.request(m); } catch (e) { expect(e).toBeInstanceOf(RegistryError); }
      }
      for (let i = 0; i < 30; i++) {
        const len = rnd() % 64;
        const b = new Uint8Array(len); for (let j = 0; j < len; j++) b[j] = rnd() & 0xff;
        await raw(b, 0);
      }
      expect((await c.listNetworks()).type).toBe("list_networks_ok"); // still alive
      c.close();
    });
  });
  });
}
