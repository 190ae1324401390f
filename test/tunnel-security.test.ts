// Hostile peers against the tunnel, on the in-memory network (test/sim): nothing leaves the
// process, and every address named inside a forged frame is a loopback address.
import { describe, expect, test } from "bun:test";
import { World, BEACON_EP, SimNode, quiet } from "./sim/world.ts";
import { TunnelSession, buildAuthKeyExchange, parseAuthKeyExchange, buildKeyExchange, generateX25519 } from "../src/crypto/tunnel.ts";
import { encodePacket, makePacket } from "../src/proto/packet.ts";
import { encodePunchCommand } from "../src/proto/beacon.ts";
import { PROTO_DATAGRAM } from "../src/proto/types.ts";
import { MAX_UNVERIFIED_PEERS, UNVERIFIED_IDLE_MS, type Endpoint } from "../src/daemon/tunnel.ts";

const magic = (b: Uint8Array) => String.fromCharCode(b[0], b[1], b[2], b[3]);

async function world() {
  return new World({ seed: 7, latencyMs: 10, jitterMs: 2 }).start();
}

/** An attacker host with a socket that records what it receives. */
async function attacker(w: World, ip = "203.0.113.66") {
  const got: { data: Uint8Array; from: Endpoint }[] = [];
  const conn = await w.net.publicHost(ip).packetNet.listen("", 4444, (data, from) => got.push({ data: data.slice(), from }), quiet);
  return { ep: conn.local, conn, got };
}

describe("key exchange from unregistered node IDs", () => {
  test("a session keyed by an unregistered PILK cannot deliver packets claiming another source node", async () => {
    const w = await world();
    const A = await w.node(1, "public");
    const B = await w.node(2, "public");
    await w.deliver(B, A, "genuine");
    const X = await attacker(w);
    const kp = generateX25519();
    X.conn.send(buildKeyExchange(99, kp.pub), A.endpoint!); // node 99 is not registered
    await w.clock.until(() => X.got.some((g) => magic(g.data) === "PILA"), "A answers the PILK once");
    const answer = X.got.find((g) => magic(g.data) === "PILA")!.data;
    const aX = parseAuthKeyExchange(answer).x25519Pub;
    const sess = TunnelSession.fromKeyExchange(kp.priv, aX);
    const forged = encodePacket(makePacket({ protocol: PROTO_DATAGRAM, src: { network: 0, node: 2 }, dst: { network: 0, node: 1 }, srcPort: 1000, dstPort: 1001, payload: new TextEncoder().encode("forged") }));
    X.conn.send(sess.seal(forged, 99), A.endpoint!);
    const own = encodePacket(makePacket({ protocol: PROTO_DATAGRAM, src: { network: 0, node: 99 }, dst: { network: 0, node: 1 }, srcPort: 1000, dstPort: 1001, payload: new TextEncoder().encode("own") }));
    X.conn.send(sess.seal(own, 99), A.endpoint!);
    await w.clock.until(() => A.texts(99).includes("own"), "the attacker's own packet (its real node ID) arrives");
    await w.clock.advance(100); // the forged frame was sent first, but jitter may reorder
    expect(A.texts(2)).toEqual(["genuine"]);
    expect(w.clock.errors).toEqual([]);
  });

  test("unverified peers are capped and expire when idle; verified peers stay", async () => {
    const w = await world();
    const A = await w.node(1, "public");
    const B = await w.node(2, "public");
    await w.deliver(B, A, "genuine");
    const X = await attacker(w);
    for (let i = 0; i < MAX_UNVERIFIED_PEERS * 3; i++) X.conn.send(buildKeyExchange(1000 + i, generateX25519().pub), A.endpoint!);
    await w.clock.advance(100);
    expect(A.tunnel.unverifiedCount).toBe(MAX_UNVERIFIED_PEERS);
    expect(A.tunnel.peers.size).toBe(MAX_UNVERIFIED_PEERS + 1);
    await w.clock.advance(UNVERIFIED_IDLE_MS + 20_000);
    expect(A.tunnel.unverifiedCount).toBe(0);
    expect(A.tunnel.hasPeer(2)).toBe(true);
    await w.deliver(B, A, "still here");
  });

  test("PILKs from one (spoofable) source are answered at most once per interval", async () => {
    const w = await world();
    const A = await w.node(1, "public");
    const X = await attacker(w);
    for (let i = 0; i < 20; i++) X.conn.send(buildKeyExchange(2000 + i, generateX25519().pub), A.endpoint!);
    await w.clock.advance(1000);
    const answers = X.got.filter((g) => magic(g.data) === "PILA" || magic(g.data) === "PILK");
    expect(answers.length).toBe(1);
  });
});

describe("replayed PILA", () => {
  test("a captured PILA replayed from another address does not move the peer's endpoint", async () => {
    const w = await world();
    const A = await w.node(1, "public");
    const B = await w.node(2, "full-cone");
    await w.deliver(B, A, "hi");
    const captured = w.net.trace.find((t) => magic(t.data) === "PILA" && t.to.ip === A.endpoint!.ip)!.data;
    const before = { ...A.tunnel.getPeer(2)!.endpoint! };
    const X = await attacker(w);
    X.conn.send(captured, A.endpoint!);
    await w.clock.advance(500);
    expect(A.tunnel.getPeer(2)!.endpoint).toEqual(before);
    A.send(2, "to the real B");
    await w.clock.until(() => B.texts(1).includes("to the real B"), "A still reaches B");
    expect(X.got.filter((g) => magic(g.data) === "PILS")).toEqual([]);
  });

  test("a PILA from the peer's previous process (old key, valid signature) does not replace a live session", async () => {
    const w = await world();
    const A = await w.node(1, "public");
    const B = await w.node(2, "public");
    await w.deliver(B, A, "live");
    await w.deliver(A, B, "live back");
    const stale = buildAuthKeyExchange(B.identity, 2, generateX25519().pub); // a key B no longer has
    w.net.inject(B.endpoint!, A.endpoint!, stale);
    await w.clock.advance(200);
    A.send(2, "after the replay");
    await w.clock.until(() => B.texts(1).includes("after the replay"), "A keeps its working session with B", 2000);
    B.send(1, "B still talks");
    await w.clock.until(() => A.texts(2).includes("B still talks"), "B reaches A");
  });

  test("a genuine restart still re-keys: the new key is proven by the first frame under it", async () => {
    const w = await world();
    const A = await w.node(1, "public");
    const B = await w.node(2, "public");
    await w.deliver(A, B, "live");
    await w.deliver(B, A, "live back");
    await B.restart();
    await w.deliver(B, A, "after restart");
    await w.deliver(A, B, "answer");
    expect(A.events.filter(([e, d]) => e === "tunnel.established" && d.rekeyed).length).toBeGreaterThan(0);
  });
});

describe("beacon control messages", () => {
  test("a PunchCommand from anyone but the configured beacon is ignored; from the beacon it is obeyed", async () => {
    const w = await world();
    const A = await w.node(1, "public");
    const X = await attacker(w);
    const target: Endpoint = { ip: "127.0.0.1", port: 9 };
    const sent = () => w.net.trace.filter((t) => t.to.ip === "127.0.0.1" && magic(t.data) === "PILP").length;
    X.conn.send(encodePunchCommand(target), A.endpoint!);
    await w.clock.advance(200);
    expect(sent()).toBe(0);
    w.beacon.conn.send(encodePunchCommand(target), A.endpoint!);
    await w.clock.advance(200);
    expect(sent()).toBe(3);
    expect(BEACON_EP.ip).not.toBe(X.ep.ip);
  });
});

describe("registry decides before re-keying", () => {
  test("a silent peer that the registry no longer resolves for us is blocked, not re-keyed", async () => {
    const w = await world();
    const A = await w.node(1, "public");
    const B = await w.node(2, "public");
    await w.deliver(A, B, "trusted");
    let denied = false;
    (A.tunnel as unknown as { opts: { confirmPeer: (id: number) => Promise<string> } }).opts.confirmPeer = async () => (denied ? "denied" : "ok");
    expect(await A.tunnel.refresh(2)).toBe("rekeyed");
    denied = true;
    const kxBefore = w.net.trace.filter((t) => magic(t.data) === "PILA").length;
    expect(await A.tunnel.refresh(2)).toBe("revoked");
    await w.clock.advance(100);
    expect(w.net.trace.filter((t) => magic(t.data) === "PILA").length).toBe(kxBefore);
    expect(A.tunnel.isBlocked(2)).toBe(true);
    expect(A.events.some(([e]) => e === "tunnel.trust_revoked")).toBe(true);
  });
});

describe("peers without encryption", () => {
  const isPilt = (d: Uint8Array) => magic(d) === "PILT";

  test("a non-encrypting peer answers our key exchange with the plaintext notice: the first packet leaves before the fallback wait ends", async () => {
    const w = await world();
    const A = await w.node(1, "public");
    const B = await w.node(2, "public", false);
    A.dial(2);
    A.send(2, "first");
    await w.clock.until(() => B.texts(1).includes("first"), "the first packet reaches B", 5000);
    expect(A.events.filter(([e]) => e === "tunnel.plaintext")).toEqual([["tunnel.plaintext", { cause: "peer_plaintext", peer_node_id: 2 }]]);
    await w.clock.advance(3000); // past the fallback wait: it was cancelled, nothing is sent twice
    expect(A.events.some(([e, d]) => e === "tunnel.plaintext" && d.cause === "no_answer")).toBe(false);
    expect(B.texts(1)).toEqual(["first"]);
    // the notice is consumed by A's tunnel, never handed up as a packet
    expect(A.got).toEqual([]);
    expect(w.clock.errors).toEqual([]);
  });

  test("a peer that ignores key exchanges silently (the reference) gets the first packet when the fallback wait ends", async () => {
    const w = await world();
    const A = await w.node(1, "public");
    const B = await w.node(2, "public", false);
    w.net.dropIf = (d, from) => isPilt(d) && from.port === B.endpoint!.port && from.ip === B.endpoint!.ip; // B sends no notice
    A.dial(2);
    A.send(2, "first");
    await w.clock.until(() => B.texts(1).includes("first"), "plaintext fallback", 5000);
    expect(A.events.filter(([e]) => e === "tunnel.plaintext")).toEqual([["tunnel.plaintext", { cause: "no_answer", peer_node_id: 2 }]]);
    expect(B.texts(1)).toEqual(["first"]);
  });

  test("through the beacon relay the notice goes back through the relay", async () => {
    const w = await world();
    const A = await w.node(1, "symmetric");
    const B = await w.node(2, "symmetric", false);
    await w.deliver(A, B, "relayed");
    expect(A.tunnel.pathOf(2)).toBe("relayed");
    await w.clock.until(() => A.events.some(([e, d]) => e === "tunnel.plaintext" && d.cause === "peer_plaintext"), "the relayed notice reaches A", 5000);
    expect(A.got).toEqual([]);
  });

  test("the notice is sent at most once per source per second and is smaller than the key exchange it answers", async () => {
    const w = await world();
    const B = await w.node(2, "public", false);
    const X = await attacker(w);
    const pilk = buildKeyExchange(7, generateX25519().pub);
    for (let i = 0; i < 5; i++) X.conn.send(pilk, B.endpoint!);
    await w.clock.advance(100);
    const notices = X.got.filter((g) => isPilt(g.data));
    expect(notices).toHaveLength(1);
    expect(notices[0].data.length).toBeLessThan(pilk.length); // no amplification
    await w.clock.advance(1000);
    X.conn.send(pilk, B.endpoint!);
    await w.clock.advance(100);
    expect(X.got.filter((g) => isPilt(g.data))).toHaveLength(2);
    expect(B.got).toEqual([]);
  });

  test("a peer that already spoke plaintext to us gets our packets at once", async () => {
    const w = await world();
    const A = await w.node(1, "public");
    const B = await w.node(2, "public", false);
    B.dial(1);
    B.send(1, "plain hello");
    await w.clock.until(() => A.texts(2).includes("plain hello"), "B's PILT reaches A");
    A.dial(2);
    A.send(2, "quick");
    await w.clock.until(() => B.texts(1).includes("quick"), "A answers in plaintext", 5000);
    expect(A.events.some(([e, d]) => e === "tunnel.plaintext" && d.cause === "no_answer")).toBe(false);
  });
});
