import { afterAll, describe, expect, test } from "bun:test";
import { readFileSync, statSync, writeFileSync, existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { MemNet } from "./helpers/memconn.ts";
import {
  TrustService, decodeHandshakeMsg, decodeTrustFile, encodeHandshakeMsg, encodeTrustFile, startTrust,
  type HandshakeMsg, type Verdict,
} from "../src/daemon/services/trust.ts";
import { ProtoError } from "../src/proto/types.ts";
import { FakeRegistry, Keypair, makeNode, rmDir, until, type TestNode } from "./helpers/services-ctx.ts";

const dirs: string[] = [];
afterAll(() => dirs.forEach(rmDir));

function world() {
  const net = new MemNet();
  const reg = new FakeRegistry();
  const a = makeNode(net, reg, 5);
  const b = makeNode(net, reg, 7);
  dirs.push(a.dir, b.dir);
  const ta = startTrust(a.ctx);
  const tb = startTrust(b.ctx);
  return { net, reg, a, b, ta, tb };
}

/** Collect verdicts of one service. */
function verdicts(t: TrustService): Verdict[] {
  const v: Verdict[] = [];
  t.onProcessed = (x) => v.push(x);
  return v;
}

/** Send a raw handshake message from `from` (its stream's remote node) to `to`'s port 444. */
async function sendRaw(from: TestNode, toNode: number, m: HandshakeMsg | string) {
  const c = await from.ctx.dial({ network: 0, node: toNode }, 444);
  c.write(new TextEncoder().encode(typeof m === "string" ? m : encodeHandshakeMsg(m)));
  c.end(); // delivers the queued bytes first
}

function msg(from: TestNode, to: number, type: string, over: Partial<HandshakeMsg> = {}): HandshakeMsg {
  return {
    type, node_id: from.ctx.nodeId(), public_key: from.kp.publicKey, justification: "", reason: "",
    signature: from.kp.sign(`handshake:${from.ctx.nodeId()}:${to}`), timestamp: Math.floor(Date.now() / 1000), ...over,
  };
}

describe("handshake message codec (docs/protocol.md §10.2)", () => {
  test("struct-order JSON, Go escaping, lenient decode", () => {
    const m: HandshakeMsg = { type: "handshake_request", node_id: 5, public_key: "k", justification: "a<b", signature: "s", reason: "", timestamp: 1736944496 };
    expect(encodeHandshakeMsg(m)).toBe('{"type":"handshake_request","node_id":5,"public_key":"k","justification":"a\\u003cb","signature":"s","reason":"","timestamp":1736944496}');
    expect(decodeHandshakeMsg(encodeHandshakeMsg(m))).toEqual(m);
    expect(decodeHandshakeMsg('{"TYPE":"x","Node_ID":3,"extra":[1]}')).toMatchObject({ type: "x", node_id: 3, timestamp: 0, public_key: "" });
    for (const bad of ['{"node_id":-1}', '{"node_id":4294967296}', '{"timestamp":1.5}', '{"type":5}', "[1]", "nope", '{"node_id":"5"}']) {
      expect(() => decodeHandshakeMsg(bad)).toThrow(ProtoError);
    }
  });
});

describe("trust handshake between two in-memory nodes", () => {
  test("request → pending → approve → both trusted, registry pair, webhooks", async () => {
    const { reg, a, b, ta, tb } = world();
    const vb = verdicts(tb);
    const va = verdicts(ta);
    expect(await ta.sendRequest(7, "want to collaborate")).toEqual({ node_id: 7, status: "sent" });
    expect(ta.hasOutgoing(7)).toBe(true);
    await until(() => vb.length === 1);
    expect(vb).toEqual(["ok"]);
    const pend = tb.listPending().pending;
    expect(pend.length).toBe(1);
    expect(pend[0]).toMatchObject({ node_id: 5, justification: "want to collaborate", public_key: a.kp.publicKey });
    expect(b.hooks.map((h) => h.event)).toEqual(["handshake.received", "handshake.pending"]);
    expect(await tb.approve(5)).toEqual({ node_id: 5, status: "approved" });
    expect(tb.isTrusted(5)).toBe(true);
    expect(tb.trustedPeer(5)!.mutual).toBe(false);
    await until(() => va.length === 1);
    expect(va).toEqual(["ok"]);
    expect(ta.isTrusted(7)).toBe(true);
    expect(ta.trustedPeer(7)).toMatchObject({ mutual: true, publicKey: b.kp.publicKey, network: 0 });
    expect(ta.hasOutgoing(7)).toBe(false);
    await until(() => reg.pairs.has("5:7"));
    const t = tb.listTrusted().trusted[0]!;
    expect(t).toMatchObject({ node_id: 5, mutual: false, network: 0, public_key: a.kp.publicKey });
    expect(Number.isInteger(t.approved_at)).toBe(true);
    // IPC envelope
    expect(await ta.ipc({ sub: "pending" })).toEqual({ pending: [] });
    // request to an already trusted node does nothing
    expect(await ta.sendRequest(7, "again")).toEqual({ node_id: 7, status: "sent" });
    expect(ta.hasOutgoing(7)).toBe(false);
    ta.stop(); tb.stop();
  });

  test("mutual requests auto-approve on both sides", async () => {
    const { a, b, ta, tb } = world();
    // make the direct paths fail first so both requests are outstanding before either arrives
    a.unreachable.add(7); b.unreachable.add(5);
    await ta.sendRequest(7, "x").catch(() => {});
    await tb.sendRequest(5, "y").catch(() => {});
    a.unreachable.clear(); b.unreachable.clear();
    const va = verdicts(ta), vb = verdicts(tb);
    await ta.sendMessage(7, msg(a, 7, "handshake_request", { justification: "x" }));
    await until(() => vb.length >= 1);
    expect(tb.isTrusted(5)).toBe(true);
    expect(tb.trustedPeer(5)!.mutual).toBe(true);
    expect(b.hooks.some((h) => h.event === "handshake.auto_approved" && h.data?.reason === "mutual")).toBe(true);
    // b's background accept reaches a, which had 7 outgoing
    await until(() => ta.isTrusted(7));
    expect(va).toContain("ok");
    expect(tb.listPending().pending).toEqual([]);
    ta.stop(); tb.stop();
  });

  test("reject removes pending and tells the requester; untrust works and notifies", async () => {
    const { reg, a, b, ta, tb } = world();
    const va = verdicts(ta), vb = verdicts(tb);
    await ta.sendRequest(7, "please");
    await until(() => vb.length === 1);
    expect(await tb.ipc({ sub: "reject", nodeId: 5, reason: "no thanks" })).toEqual({ node_id: 5, status: "rejected" });
    expect(tb.listPending().pending).toEqual([]);
    await until(() => va.length === 1);
    expect(ta.hasOutgoing(7)).toBe(false);
    expect(ta.isTrusted(7)).toBe(false);
    await until(() => reg.calls.includes("respond_handshake 7->5 false"));
    expect(b.hooks.some((h) => h.event === "handshake.rejected" && h.data?.reason === "no thanks")).toBe(true);

    // now establish trust and revoke it
    await ta.sendRequest(7, "second try");
    await until(() => vb.length === 2);
    await tb.approve(5);
    await until(() => ta.isTrusted(7) && reg.pairs.has("5:7"));
    await expect(ta.ipc({ sub: "revoke", nodeId: 99 })).rejects.toThrow("handshake revoke: node 99 was not trusted");
    expect(await ta.ipc({ sub: "revoke", nodeId: 7 })).toEqual({ node_id: 7, status: "revoked" });
    expect(ta.isTrusted(7)).toBe(false);
    await until(() => !tb.isTrusted(5), 5000, "peer learns of revocation");
    expect(b.hooks.some((h) => h.event === "trust.revoked_by_peer")).toBe(true);
    await until(() => !reg.pairs.has("5:7"), 5000, "registry pair revoked");
    expect(a.hooks.some((h) => h.event === "trust.revoked")).toBe(true);
    ta.stop(); tb.stop();
  });

  test("forged, unsolicited, malformed, stale and replayed messages are dropped", async () => {
    const { net, reg, a, b, ta, tb } = world();
    const evil = makeNode(net, reg, 66);
    dirs.push(evil.dir);
    const vb = verdicts(tb);
    const now = Math.floor(Date.now() / 1000);
    let n = 0;
    const expectVerdict = async (v: Verdict) => { n++; await until(() => vb.length === n); expect(vb[n - 1]).toBe(v); };

    // forged signature (right key, signature by someone else)
    await sendRaw(a, 7, msg(a, 7, "handshake_request", { signature: new Keypair().sign("handshake:5:7") }));
    await expectVerdict("bad_signature");
    // node 66 claims to be node 5 (stream comes from 66)
    await sendRaw(evil, 7, msg(a, 7, "handshake_accept"));
    await expectVerdict("node_mismatch");
    // node 66 with a self-made key that is not its registry key
    const other = new Keypair();
    await sendRaw(evil, 7, msg(evil, 7, "handshake_request", { public_key: other.publicKey, signature: other.sign("handshake:66:7") }));
    await expectVerdict("key_mismatch");
    // empty key from a node that has a registered key
    await sendRaw(evil, 7, msg(evil, 7, "handshake_request", { public_key: "", signature: "" }));
    await expectVerdict("key_mismatch");
    // malformed keys (would crash the reference)
    await sendRaw(evil, 7, msg(evil, 7, "handshake_request", { public_key: "AAAA" }));
    await expectVerdict("bad_key");
    await sendRaw(evil, 7, msg(evil, 7, "handshake_request", { public_key: "not base64!!" }));
    await expectVerdict("bad_key");
    // unsolicited accept with a perfectly valid signature
    await sendRaw(evil, 7, msg(evil, 7, "handshake_accept"));
    await expectVerdict("unsolicited");
    expect(tb.isTrusted(66)).toBe(false);
    expect(reg.pairs.has("7:66")).toBe(false);
    // stale and future timestamps
    await sendRaw(evil, 7, msg(evil, 7, "handshake_request", { timestamp: now - 301 }));
    await expectVerdict("stale");
    await sendRaw(evil, 7, msg(evil, 7, "handshake_request", { timestamp: now + 60 }));
    await expectVerdict("future");
    // garbage
    await sendRaw(evil, 7, "{not json");
    await expectVerdict("decode");
    // forged revoke for a trusted pair is ignored
    tb.listPending(); // no-op read
    // a valid request, then the identical bytes again: processed once
    const good = msg(evil, 7, "handshake_request", { justification: "hi" });
    await sendRaw(evil, 7, good);
    await expectVerdict("ok");
    await sendRaw(evil, 7, good);
    await expectVerdict("replay");
    expect(tb.listPending().pending.map((p) => p.node_id)).toEqual([66]);
    expect(tb.stats.dropped.replay).toBe(1);
    void b;
    ta.stop(); tb.stop();
  });

  test("a message split across several segments is still accepted", async () => {
    const { net, reg, tb } = world();
    net.opts = { randomSplitSeed: 5, mss: 64 };
    const c = makeNode(net, reg, 21);
    dirs.push(c.dir);
    const vb = verdicts(tb);
    await sendRaw(c, 7, msg(c, 7, "handshake_request", { justification: "long ".repeat(200) }));
    await until(() => vb.length === 1);
    expect(vb[0]).toBe("ok");
    tb.stop();
  });

  test("relay through the registry for an unreachable (private) peer", async () => {
    const { reg, a, b, ta, tb } = world();
    a.unreachable.add(7);
    b.unreachable.add(5);
    expect(await ta.sendRequest(7, "via relay")).toEqual({ node_id: 7, status: "sent" });
    expect(reg.calls).toContain("request_handshake 5->7");
    // second request while one is queued: registry refuses → IPC error text
    await expect(ta.ipc({ sub: "request", nodeId: 7, justification: "again" })).rejects.toThrow(/^handshake request: handshake relay: /);
    await tb.poll();
    expect(tb.listPending().pending).toMatchObject([{ node_id: 5, justification: "via relay", public_key: "" }]);
    await tb.approve(5);
    await until(() => reg.calls.includes("respond_handshake 7->5 true"));
    await ta.poll();
    expect(ta.isTrusted(7)).toBe(true);
    await until(() => ta.trustedPeer(7)!.publicKey === b.kp.publicKey, 5000, "key backfill");
    await until(() => tb.trustedPeer(5)!.publicKey === a.kp.publicKey, 5000, "key backfill b");
    // unsolicited relayed accept is ignored
    reg.inbox.set(5, { requests: [], responses: [{ from_node_id: 99, accept: true, timestamp: 0 }] });
    await ta.poll();
    expect(ta.isTrusted(99)).toBe(false);
    ta.stop(); tb.stop();
  });
});

describe("trust.json persistence (docs/protocol.md §10.2)", () => {
  test("reference format round trip", () => {
    const s = encodeTrustFile([{ nodeId: 7, publicKey: "k", approvedAt: 1736947812000, mutual: true, network: 3 }], [{ nodeId: 9, publicKey: "", justification: "j", receivedAt: null }]);
    expect(s).toMatch(/^\{\n  "trusted": \[\n    \{\n      "node_id": 7,\n      "public_key": "k",\n      "approved_at": "2025-01-15T\d\d:\d\d:12(Z|[+-]\d\d:\d\d)",\n      "mutual": true,\n      "network": 3\n    \}\n  \],\n  "pending": \[\n    \{\n      "node_id": 9,\n      "justification": "j",\n      "received_at": "0001-01-01T00:00:00Z"\n    \}\n  \]\n\}$/);
    expect(encodeTrustFile([], [])).toBe('{\n  "trusted": null\n}');
    const d = decodeTrustFile(s);
    expect(d.trusted[0]).toEqual({ nodeId: 7, publicKey: "k", approvedAt: 1736947812000, mutual: true, network: 3 });
    expect(d.pending[0]).toEqual({ nodeId: 9, publicKey: "", justification: "j", receivedAt: null });
  });

  test("state survives a restart; file is 0600; outgoing persisted so a late accept counts", async () => {
    const { net, reg, a, b, ta, tb } = world();
    const vb = verdicts(tb);
    await ta.sendRequest(7, "persist me");
    await until(() => vb.length === 1);
    ta.stop();
    tb.stop();
    const pb = join(b.dir, "trust.json");
    expect(statSync(pb).mode & 0o777).toBe(0o600);
    expect(JSON.parse(readFileSync(pb, "utf8")).pending[0]).toMatchObject({ node_id: 5, justification: "persist me" });
    // restart both with the same files
    const ta2 = startTrust(a.ctx);
    const tb2 = startTrust(b.ctx);
    expect(ta2.hasOutgoing(7)).toBe(true);
    expect(tb2.listPending().pending[0]).toMatchObject({ node_id: 5 });
    const va = verdicts(ta2);
    await tb2.approve(5);
    await until(() => va.length === 1);
    expect(va[0]).toBe("ok");
    expect(ta2.isTrusted(7)).toBe(true);
    ta2.stop(); tb2.stop();
    const tb3 = new TrustService(b.ctx);
    expect(tb3.isTrusted(5)).toBe(true);
    expect(tb3.listPending().pending).toEqual([]);
    const t = JSON.parse(readFileSync(pb, "utf8"));
    expect(t.trusted[0]).toMatchObject({ node_id: 5, public_key: a.kp.publicKey, mutual: false });
    expect("network" in t.trusted[0]).toBe(false);
    void net; void reg;
  });

  test("a corrupt trust.json is moved aside, not silently overwritten", () => {
    const net = new MemNet();
    const n = makeNode(net, new FakeRegistry(), 3);
    dirs.push(n.dir);
    writeFileSync(join(n.dir, "trust.json"), "{broken");
    const t = new TrustService(n.ctx);
    expect(t.listTrusted().trusted).toEqual([]);
    expect(existsSync(join(n.dir, "trust.json"))).toBe(false);
    expect(readdirSync(n.dir).some((f) => f.startsWith("trust.json.corrupt-"))).toBe(true);
  });
});
