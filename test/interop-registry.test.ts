// Interop audit, registry (docs/protocol.md §8): (A) our real rendezvous against a raw-JSON
// client acting as a reference client/daemon; (B) our real daemon against a FAKE registry written
// here, asserting every message it sends (fields, types, exact signature challenges).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { mkdirSync } from "node:fs";
import { Cluster, spawnTool, type Proc } from "./helpers/cluster.ts";
import { FakeRegistry, RawReg, b64, frame, registerNode, signB64, verifySig, type Node } from "./interop-helpers.ts";
import { generateIdentity, sign } from "../src/crypto/identity.ts";
import { Driver } from "../src/client/driver.ts";
import { parseAddr } from "../src/proto/addr.ts";

const ADDR_RE = /^0:0000\.[0-9A-F]{4}\.[0-9A-F]{4}$/;

describe("docs/protocol.md §8: our registry against a raw-JSON reference client", () => {
  const cl = new Cluster("pilot-interop-reg-");
  let r: RawReg;
  // The registry rate-limits registrations to 10 per minute per IP (docs/protocol.md §8), so the
  // tests share a small pool of nodes; ports in listen_addr are what the tests check.
  const pool: Node[] = [];
  const P = (i: number) => pool[i];
  beforeAll(async () => {
    await cl.startRendezvous();
    r = await RawReg.open(cl.registry);
    for (let i = 0; i < 6; i++) pool.push(await registerNode(r, `127.0.0.1:${10 + i}`));
  }, 30000);
  afterAll(async () => {
    r?.close();
    await cl.stop();
  });

  test("docs/protocol.md §8/§13.3 register_ok envelope: exact fields and types; endpoint = TCP source IP + listen port", async () => {
    const id = generateIdentity();
    const pub = b64(id.publicKey);
    const resp = await r.req({ type: "register", public_key: pub, listen_addr: "203.0.113.9:4242" });
    expect(resp.type).toBe("register_ok");
    expect(Number.isInteger(resp.node_id) && resp.node_id > 0).toBe(true);
    expect(resp.network_id).toBe(0);
    expect(resp.address).toMatch(ADDR_RE);
    expect(parseAddr(resp.address).node).toBe(resp.node_id);
    expect(resp.public_key).toBe(pub);
    expect("error" in resp).toBe(false);
    expect("hostname" in resp).toBe(false);
    // docs/protocol.md §8.3: host part of listen_addr ignored, TCP source IP used.
    await r.req({ type: "set_visibility", node_id: resp.node_id, public: true, signature: signB64(id, `set_visibility:${resp.node_id}`) });
    const lk = await r.req({ type: "lookup", node_id: resp.node_id });
    expect(lk.real_addr).toBe("127.0.0.1:4242");
  });

  test("docs/protocol.md §8 several pipelined requests on one connection are answered in order", async () => {
    const c = await RawReg.open(cl.registry);
    const n = P(5);
    const batch = Buffer.concat([
      frame({ type: "lookup", node_id: n.nodeId }),
      frame({ type: "no_such_type" }),
      frame({ type: "heartbeat", node_id: n.nodeId, signature: signB64(n.id, `heartbeat:${n.nodeId}`) }),
    ]);
    c.write(batch);
    expect((await c.next())!.type).toBe("lookup_ok");
    expect(await c.next()).toMatchObject({ type: "error", error: expect.any(String) });
    expect((await c.next())!.type).toBe("heartbeat_ok");
    c.close();
  });

  test("docs/protocol.md §8 error envelope is exactly {type:error,error:string}; success never carries error", async () => {
    const e = await r.req({ type: "definitely_unknown" });
    // Deviation (allowed by docs/protocol.md §8.1 / R30): our server adds a machine-readable `code` next to
    // `error`; reference clients only look at `type`/`error`.
    expect(Object.keys(e).filter((k) => k !== "code").sort()).toEqual(["error", "type"]);
    expect(e.type).toBe("error");
    expect(typeof e.error).toBe("string");
    const e2 = await r.req({ type: "lookup", node_id: 999999 });
    expect(e2.type).toBe("error");
    expect(typeof e2.error).toBe("string");
  });

  test("docs/protocol.md §8.1 framing: a length > 1 MiB or a non-object body closes the connection without a reply", async () => {
    const c = await RawReg.open(cl.registry);
    const big = Buffer.alloc(4);
    big.writeUInt32BE((1 << 20) + 1, 0);
    c.write(big);
    expect(await c.next()).toBeNull();
    const c2 = await RawReg.open(cl.registry);
    const body = Buffer.from("[1,2]");
    const f = Buffer.alloc(4 + body.length);
    f.writeUInt32BE(body.length, 0);
    body.copy(f, 4);
    c2.write(f);
    expect(await c2.next()).toBeNull();
  });

  test("docs/protocol.md §8 exact challenge strings are accepted, near-misses rejected (heartbeat, resolve, poll, set_hostname, report_trust)", async () => {
    const a = P(0);
    const bb = P(1);
    const ok = async (m: Record<string, unknown>, t: string) => expect((await r.req(m)).type).toBe(t);
    const bad = async (m: Record<string, unknown>) => expect((await r.req(m)).type).toBe("error");
    await bad({ type: "heartbeat", node_id: a.nodeId });
    await bad({ type: "heartbeat", node_id: a.nodeId, signature: signB64(a.id, `heartbeat: ${a.nodeId}`) });
    await bad({ type: "heartbeat", node_id: a.nodeId, signature: signB64(bb.id, `heartbeat:${a.nodeId}`) });
    await ok({ type: "heartbeat", node_id: a.nodeId, signature: signB64(a.id, `heartbeat:${a.nodeId}`) }, "heartbeat_ok");
    await ok({ type: "poll_handshakes", node_id: a.nodeId, signature: signB64(a.id, `poll_handshakes:${a.nodeId}`) }, "poll_handshakes_ok");
    await ok({ type: "set_hostname", node_id: a.nodeId, hostname: `ia${a.nodeId}`, signature: signB64(a.id, `set_hostname:${a.nodeId}`) }, "set_hostname_ok");
    // resolve of a private node without trust fails even with a good signature …
    await bad({ type: "resolve", node_id: bb.nodeId, requester_id: a.nodeId, signature: signB64(a.id, `resolve:${a.nodeId}:${bb.nodeId}`) });
    // … report_trust (challenge report_trust:<node>:<peer>) by the TARGET creates the grant, then
    // resolve works. (Our registry stores directional grants — the R1 tightening: report_trust by
    // X lets the peer resolve X; all reference flows keep working.)
    await bad({ type: "report_trust", node_id: bb.nodeId, peer_id: a.nodeId, signature: signB64(bb.id, `report_trust:${a.nodeId}:${bb.nodeId}`) });
    await ok({ type: "report_trust", node_id: bb.nodeId, peer_id: a.nodeId, signature: signB64(bb.id, `report_trust:${bb.nodeId}:${a.nodeId}`) }, "report_trust_ok");
    await bad({ type: "resolve", node_id: bb.nodeId, requester_id: a.nodeId, signature: signB64(a.id, `resolve:${bb.nodeId}:${a.nodeId}`) });
    const res = await r.req({ type: "resolve", node_id: bb.nodeId, requester_id: a.nodeId, signature: signB64(a.id, `resolve:${a.nodeId}:${bb.nodeId}`) });
    expect(res).toMatchObject({ type: "resolve_ok", node_id: bb.nodeId, real_addr: "127.0.0.1:11" });
  });

  test("docs/protocol.md §8 register ID stability: same key → same ID (also after deregister); new key → new ID", async () => {
    const n = P(4);
    const pub = b64(n.id.publicKey);
    const again = await r.req({ type: "register", public_key: pub, listen_addr: "127.0.0.1:14" });
    expect(again.node_id).toBe(n.nodeId);
    expect((await r.req({ type: "deregister", node_id: n.nodeId, signature: signB64(n.id, `deregister:${n.nodeId}`) })).type).toBe("deregister_ok");
    const back = await r.req({ type: "register", public_key: pub, listen_addr: "127.0.0.1:14" });
    expect(back.node_id).toBe(n.nodeId);
    const other = await registerNode(r, "127.0.0.1:23");
    expect(other.nodeId).toBeGreaterThan(n.nodeId);
  });

  test("docs/protocol.md §8 heartbeat of an unknown node fails", async () => {
    const id = generateIdentity();
    expect((await r.req({ type: "heartbeat", node_id: 987654, signature: signB64(id, "heartbeat:987654") })).type).toBe("error");
  });

  test("docs/protocol.md §8 lookup returns public_key (padded std base64) and the documented fields; resolve of a public target", async () => {
    const n = P(2);
    const lk = await r.req({ type: "lookup", node_id: n.nodeId });
    expect(lk.type).toBe("lookup_ok");
    expect(lk.public_key).toBe(n.pub);
    expect(lk.public_key).toHaveLength(44);
    expect(lk.node_id).toBe(n.nodeId);
    expect(lk.address).toBe(n.address);
    expect(lk.networks).toEqual([0]);
    expect(lk.public).toBe(false);
    expect(typeof lk.polo_score).toBe("number");
    expect("real_addr" in lk).toBe(false); // private
    const req = P(3);
    await r.req({ type: "set_visibility", node_id: n.nodeId, public: true, signature: signB64(n.id, `set_visibility:${n.nodeId}`) });
    const res = await r.req({ type: "resolve", node_id: n.nodeId, requester_id: req.nodeId, signature: signB64(req.id, `resolve:${req.nodeId}:${n.nodeId}`) });
    expect(res).toEqual({ type: "resolve_ok", node_id: n.nodeId, real_addr: "127.0.0.1:12" });
  });

  test("docs/protocol.md §8 handshake relay: request (handshake:<from>:<to>), poll returns+clears, respond (respond:<node>:<peer>) creates trust", async () => {
    const a = P(3);
    const bb = P(4);
    const rq = await r.req({ type: "request_handshake", from_node_id: a.nodeId, to_node_id: bb.nodeId, justification: "hi", signature: signB64(a.id, `handshake:${a.nodeId}:${bb.nodeId}`) });
    expect(rq).toMatchObject({ type: "request_handshake_ok", status: "delivered" });
    const poll = () => r.req({ type: "poll_handshakes", node_id: bb.nodeId, signature: signB64(bb.id, `poll_handshakes:${bb.nodeId}`) });
    const p1 = await poll();
    expect(p1.requests).toHaveLength(1);
    expect(p1.requests[0]).toMatchObject({ from_node_id: a.nodeId, justification: "hi" });
    expect(Number.isInteger(p1.requests[0].timestamp)).toBe(true);
    expect(Math.abs(p1.requests[0].timestamp - Date.now() / 1000)).toBeLessThan(120); // Unix seconds
    expect(p1.responses).toEqual([]);
    const p2 = await poll();
    expect(p2.requests).toEqual([]);
    const resp = await r.req({ type: "respond_handshake", node_id: bb.nodeId, peer_id: a.nodeId, accept: true, signature: signB64(bb.id, `respond:${bb.nodeId}:${a.nodeId}`) });
    expect(resp.type).toBe("respond_handshake_ok");
    const res = await r.req({ type: "resolve", node_id: bb.nodeId, requester_id: a.nodeId, signature: signB64(a.id, `resolve:${a.nodeId}:${bb.nodeId}`) });
    expect(res.real_addr).toBe("127.0.0.1:14");
    const pa = await r.req({ type: "poll_handshakes", node_id: a.nodeId, signature: signB64(a.id, `poll_handshakes:${a.nodeId}`) });
    expect(pa.responses).toHaveLength(1);
    expect(pa.responses[0]).toMatchObject({ from_node_id: bb.nodeId, accept: true });
  });

  test("docs/protocol.md §8.1 value conversion: numeric strings / negatives as node IDs count as 0 → error, not a crash", async () => {
    expect((await r.req({ type: "lookup", node_id: "1" })).type).toBe("error");
    expect((await r.req({ type: "lookup", node_id: -5 })).type).toBe("error");
    expect((await r.req({ type: "lookup" })).type).toBe("error");
    // the connection is still usable
    expect((await r.req({ type: "x" })).type).toBe("error");
  });
});

describe("docs/protocol.md §8: our daemon's registry traffic, captured by a fake registry", () => {
  let fake: FakeRegistry;
  let daemon: Proc;
  let daemonPub = "";
  const NODE = 4242;
  const PEER = 4343;
  const peerId = generateIdentity();
  let socket = "";
  let tmp: Cluster;

  beforeAll(async () => {
    tmp = new Cluster("pilot-interop-fakereg-");
    fake = new FakeRegistry((m) => {
      switch (m.type) {
        case "register":
          daemonPub = m.public_key;
          return { type: "register_ok", node_id: NODE, network_id: 0, address: "0:0000.0000.1092", public_key: m.public_key };
        case "heartbeat":
          return { type: "heartbeat_ok", time: Math.floor(Date.now() / 1000) };
        case "poll_handshakes":
          return { type: "poll_handshakes_ok", requests: [], responses: [] };
        case "resolve":
          // a reachable-looking but silent endpoint (discard UDP port on loopback)
          return { type: "resolve_ok", node_id: m.node_id, real_addr: "127.0.0.1:9" };
        case "lookup":
          return { type: "lookup_ok", node_id: m.node_id, address: "0:0000.0000.10F7", networks: [0], public_key: b64(peerId.publicKey), public: false, polo_score: 0 };
        case "set_hostname":
          return { type: "set_hostname_ok", node_id: m.node_id, hostname: m.hostname };
        case "set_visibility":
          return { type: "set_visibility_ok", node_id: m.node_id, visibility: m.public ? "public" : "private" };
        case "deregister":
          return { type: "deregister_ok" };
        default:
          // what a reference registry answers to anything it does not know (e.g. `subscribe`)
          return { type: "error", error: "request failed" };
      }
    });
    const addr = await fake.listen();
    const home = join(tmp.dir, "d");
    mkdirSync(home, { recursive: true });
    socket = join(home, "pilot.sock");
    daemon = spawnTool("pilot-daemon", [
      "-registry", addr, "-beacon", "", "-listen", "127.0.0.1:0", "-socket", socket,
      "-identity", join(home, "identity.json"), "-data-dir", home, "-keepalive", "1s",
      "-hostname", "interop-host", "-public", "-owner", "ops@example.com",
    ], { HOME: home }, "fakereg-daemon");
    await daemon.waitFor(/daemon running"? node_id=(\d+)/);
  }, 30000);
  afterAll(async () => {
    await daemon?.kill("SIGTERM");
    fake?.close();
    await tmp.stop();
  });

  test("docs/protocol.md §8 register: public_key (padded b64 of 32 bytes), listen_addr = local tunnel endpoint, owner, no hostname", async () => {
    const m = await fake.waitFor((x) => x.type === "register");
    expect(Buffer.from(m.public_key, "base64")).toHaveLength(32);
    expect(m.public_key).toHaveLength(44);
    expect(m.listen_addr).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(m.owner).toBe("ops@example.com");
    expect("hostname" in m).toBe(false);
    expect("signature" in m).toBe(false);
  });

  test("docs/protocol.md §8 step 7: set_visibility true and set_hostname, signed with the exact challenges", async () => {
    const v = await fake.waitFor((x) => x.type === "set_visibility");
    expect(v.node_id).toBe(NODE);
    expect(v.public).toBe(true);
    expect(verifySig(daemonPub, `set_visibility:${NODE}`, v.signature)).toBe(true);
    const h = await fake.waitFor((x) => x.type === "set_hostname");
    expect(h).toMatchObject({ node_id: NODE, hostname: "interop-host" });
    expect(verifySig(daemonPub, `set_hostname:${NODE}`, h.signature)).toBe(true);
  });

  test("docs/protocol.md §8 heartbeat loop: heartbeat (heartbeat:<id>) then poll_handshakes (poll_handshakes:<id>), signatures exact, no extra fields", async () => {
    const hb = await fake.waitFor((x) => x.type === "heartbeat");
    expect(hb.node_id).toBe(NODE);
    expect(verifySig(daemonPub, `heartbeat:${NODE}`, hb.signature)).toBe(true);
    // a reference registry refused `subscribe`, so no timestamped-signature extension may be used
    expect("ts" in hb).toBe(false);
    const i = fake.msgs.indexOf(hb);
    const poll = await fake.waitFor((x) => x.type === "poll_handshakes" && fake.msgs.indexOf(x) > i);
    expect(poll.node_id).toBe(NODE);
    expect(verifySig(daemonPub, `poll_handshakes:${NODE}`, poll.signature)).toBe(true);
    expect(Object.keys(poll).sort()).toEqual(["node_id", "signature", "type"]);
    expect(Object.keys(hb).sort()).toEqual(["node_id", "signature", "type"]);
  });

  test("docs/protocol.md §8 first packet to an unknown node → resolve(target, self) signed resolve:<self>:<target>", async () => {
    const d = await Driver.connect(socket, { timeoutMs: 5000 });
    // the dial cannot complete (endpoint is silent); we only need the registry traffic
    void d.dial(parseAddr(`0:0000.0000.${PEER.toString(16).toUpperCase().padStart(4, "0")}`), 7).catch(() => null);
    const m = await fake.waitFor((x) => x.type === "resolve");
    expect(m.node_id).toBe(PEER);
    expect(m.requester_id).toBe(NODE);
    expect(verifySig(daemonPub, `resolve:${NODE}:${PEER}`, m.signature)).toBe(true);
    d.close(); // the pending dial fails with the connection; nothing else depends on it
  }, 20000);

  test("docs/protocol.md §8: heartbeat failures ×3 → re-register with the local tunnel endpoint, then set_visibility + set_hostname again", async () => {
    const before = fake.msgs.filter((x) => x.type === "register").length;
    const orig = fake.handle;
    fake.handle = (m) => (m.type === "heartbeat" ? { type: "error", error: "request failed" } : orig(m));
    try {
      const reg = await fake.waitFor((x) => x.type === "register" && fake.msgs.filter((y) => y.type === "register").indexOf(x) >= before, 15000);
      const first = fake.msgs.find((x) => x.type === "register")!;
      expect(reg.public_key).toBe(first.public_key);
      expect(reg.listen_addr).toBe(first.listen_addr);
      const idx = fake.msgs.indexOf(reg);
      await fake.waitFor((x) => x.type === "set_visibility" && fake.msgs.indexOf(x) > idx);
      await fake.waitFor((x) => x.type === "set_hostname" && fake.msgs.indexOf(x) > idx);
      // three failed heartbeats precede it
      const hbs = fake.msgs.slice(0, idx).filter((x) => x.type === "heartbeat");
      expect(hbs.length).toBeGreaterThanOrEqual(3);
    } finally {
      fake.handle = orig;
    }
  }, 20000);

  test("docs/protocol.md §8 shutdown → deregister signed deregister:<id>", async () => {
    await daemon.kill("SIGTERM");
    const m = await fake.waitFor((x) => x.type === "deregister", 5000);
    expect(m.node_id).toBe(NODE);
    expect(verifySig(daemonPub, `deregister:${NODE}`, m.signature)).toBe(true);
  });
});

void sign;
