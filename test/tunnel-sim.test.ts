// The tunnel on the in-memory network (test/sim): key exchange, hole punching through each NAT
// kind, relay fallback, re-key after a peer restart and endpoint change. Virtual time: every path
// runs in milliseconds of wall-clock time and without root; the netns lab (test/lab) is the
// real-world counterpart.
import { describe, expect, test } from "bun:test";
import { World } from "./sim/world.ts";

async function pair(a: "public" | "full-cone" | "port-restricted" | "symmetric", b: typeof a, seed = 1) {
  const w = await new World({ seed, latencyMs: 10, jitterMs: 5 }).start();
  const A = await w.node(1, a);
  const B = await w.node(2, b);
  return { w, A, B };
}

function checkClean(w: World): void {
  expect(w.clock.errors).toEqual([]);
}

describe("paths through NATs", () => {
  test("public <-> public: direct, encrypted both ways, authenticated session", async () => {
    const { w, A, B } = await pair("public", "public");
    await w.deliver(A, B, "hello");
    await w.deliver(B, A, "back");
    expect(A.tunnel.pathOf(2)).toBe("direct");
    expect(B.tunnel.getPeer(1)?.crypto.authenticated).toBe(true);
    expect(w.net.counts.filtered).toBe(0);
    checkClean(w);
  });

  test("public -> full-cone: direct; full-cone -> public: direct", async () => {
    const { w, A, B } = await pair("public", "full-cone");
    await w.deliver(A, B, "to cone");
    await w.deliver(B, A, "from cone");
    expect(A.tunnel.pathOf(2)).not.toBe("relayed");
    expect(B.tunnel.pathOf(1)).not.toBe("relayed");
    checkClean(w);
  });

  test("public -> port-restricted: the callee's punch opens its NAT", async () => {
    const { w, A, B } = await pair("public", "port-restricted");
    await w.deliver(A, B, "through the punch");
    expect(A.tunnel.pathOf(2)).not.toBe("relayed");
    checkClean(w);
  });

  test("port-restricted <-> port-restricted: hole punched, no relay", async () => {
    const { w, A, B } = await pair("port-restricted", "port-restricted");
    // virtual time: the peer's punch triggers a repeat of the key exchange its NAT dropped, so no
    // retransmission (1 s) is needed
    expect(await w.deliver(A, B, "punched")).toBeLessThan(1000);
    await w.deliver(B, A, "punched back");
    expect(A.tunnel.pathOf(2)).toBe("punched");
    expect(B.tunnel.pathOf(1)).not.toBe("relayed");
    expect(w.net.counts.filtered).toBeGreaterThan(0); // the first frames hit a closed NAT
    checkClean(w);
  });

  test("symmetric -> full-cone: direct (the cone learns the symmetric mapping)", async () => {
    const { w, A, B } = await pair("symmetric", "full-cone");
    await w.deliver(A, B, "sym to cone");
    await w.deliver(B, A, "cone to sym");
    expect(A.tunnel.pathOf(2)).not.toBe("relayed");
    checkClean(w);
  });

  test("symmetric <-> symmetric: falls back to the beacon relay, both directions", async () => {
    const { w, A, B } = await pair("symmetric", "symmetric");
    await w.deliver(A, B, "relayed");
    await w.deliver(B, A, "relayed back");
    expect(A.tunnel.pathOf(2)).toBe("relayed");
    expect(B.tunnel.pathOf(1)).toBe("relayed");
    expect(A.events.some(([e]) => e === "tunnel.relay_activated")).toBe(true);
    checkClean(w);
  });
});

describe("session changes", () => {
  test("re-key after a peer restart: new X25519 key, traffic resumes both ways", async () => {
    const { w, A, B } = await pair("public", "full-cone");
    await w.deliver(A, B, "before");
    const oldKey = A.tunnel.getPeer(2)!.crypto.session!.peerX25519;
    await B.restart();
    B.got.length = 0;
    await w.deliver(B, A, "after restart");
    await w.deliver(A, B, "answer after restart");
    const newKey = A.tunnel.getPeer(2)!.crypto.session!.peerX25519;
    expect(Buffer.from(newKey!).equals(Buffer.from(oldKey!))).toBe(false);
    checkClean(w);
  });

  test("endpoint change (the peer's NAT forgets its mapping): learned from the next authenticated frame", async () => {
    const { w, A, B } = await pair("public", "full-cone");
    await w.deliver(B, A, "one");
    const before = A.tunnel.getPeer(2)!.endpoint!;
    B.host.nat!.reset();
    await w.deliver(B, A, "two");
    const after = A.tunnel.getPeer(2)!.endpoint!;
    expect(after.port).not.toBe(before.port);
    await w.deliver(A, B, "reply to the new mapping");
    checkClean(w);
  });
});

describe("restart of a passive peer", () => {
  test("the active side re-keys after silence and recovers (peer restarted on the same port)", async () => {
    const { w, A, B } = await pair("public", "public");
    await w.deliver(A, B, "one");
    await w.deliver(B, A, "one back");
    const port = B.endpoint!.port;
    await B.restart(port);
    B.got.length = 0;
    const ms = await w.deliver(A, B, "after B restarted");
    expect(ms).toBeLessThan(5000); // one silent retry, then the re-key answer is installed
    await w.deliver(B, A, "B answers");
    expect(w.clock.errors).toEqual([]);
  });
});
