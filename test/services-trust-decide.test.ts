// The trust handshake's pure decisions, table by table, and the registry follow-up of a peer's
// revocation (retried while the registry is unreachable, then reported).
import { afterAll, describe, expect, test } from "bun:test";
import { MemNet } from "./helpers/memconn.ts";
import { startTrust } from "../src/daemon/services/trust.ts";
import {
  acceptAction, keyMatches, precheck, relayedRequestAction, relayedResponseAction, requestAction, sharedNetwork, strictBase64, type Verdict,
} from "../src/daemon/services/trust-decide.ts";
import type { HandshakeMsg } from "../src/proto/handshake.ts";
import { FakeRegistry, Keypair, makeNode, rmDir, until } from "./helpers/services-ctx.ts";

const KEY = new Keypair().publicKey;
const SIG = Buffer.alloc(64, 7).toString("base64");
const NOW = 1_736_944_496;

function m(over: Partial<HandshakeMsg>): HandshakeMsg {
  return { type: "handshake_request", node_id: 5, public_key: KEY, justification: "", signature: SIG, reason: "", timestamp: NOW, ...over };
}

describe("precheck: refusals that need neither registry nor state", () => {
  const rows: [string, Partial<HandshakeMsg>, number | null, Verdict | null][] = [
    ["fresh, from the stream's node", {}, 5, null],
    ["sender unknown (relayed)", {}, null, null],
    ["exactly 300 s old", { timestamp: NOW - 300 }, 5, null],
    ["301 s old", { timestamp: NOW - 301 }, 5, "stale"],
    ["30 s ahead", { timestamp: NOW + 30 }, 5, null],
    ["31 s ahead", { timestamp: NOW + 31 }, 5, "future"],
    ["claims another node than the stream's", { node_id: 6 }, 5, "node_mismatch"],
    ["key of 31 bytes", { public_key: Buffer.alloc(31).toString("base64") }, 5, "bad_key"],
    ["key not strict base64 (no padding)", { public_key: KEY.replace(/=$/, "") }, 5, "bad_key"],
    ["key with junk", { public_key: KEY + "AAAA" }, 5, "bad_key"],
    ["signature of 63 bytes", { signature: Buffer.alloc(63).toString("base64") }, 5, "bad_signature"],
    ["signature not base64", { signature: "!!" }, 5, "bad_signature"],
    ["no key and no signature (keyless node)", { public_key: "", signature: "" }, 5, null],
  ];
  test.each(rows)("%s", (_name, over, remote, want) => {
    expect(precheck(m(over), NOW, remote)).toBe(want);
  });
});

describe("key and network rules", () => {
  test.each([
    [KEY, KEY, true],
    [KEY, new Keypair().publicKey, false],
    ["", "", true],
    ["", KEY, false],
    [KEY, "", false],
    ["bad", "bad2", false],
  ])("keyMatches(%p, %p) = %p", (a, b, want) => {
    expect(keyMatches(a, b)).toBe(want);
  });
  test.each([
    [[0, 3, 4], [4, 3], 3],
    [[0], [0], undefined],
    [[1], [2], undefined],
    [null, [1], undefined],
    [[7], null, undefined],
  ] as [number[] | null, number[] | null, number | undefined][])("sharedNetwork(%p, %p) = %p", (a, b, want) => {
    expect(sharedNetwork(a, b)).toBe(want);
  });
  test("strictBase64 round trip and refusals", () => {
    expect(strictBase64(KEY)?.length).toBe(32);
    expect(strictBase64("AAA")).toBeNull();
    expect(strictBase64("")?.length).toBe(0);
  });
});

describe("what each message does", () => {
  const facts = [
    { trusted: false, asked: false },
    { trusted: false, asked: true },
    { trusted: true, asked: false },
    { trusted: true, asked: true },
  ];
  test.each([
    ["untrusted, not asked", facts[0], "check_network", "unsolicited", "pending", "none", "none"],
    ["untrusted, asked", facts[1], "mutual", "trust", "mutual", "trust", "forget_request"],
    ["trusted, not asked", facts[2], "accept_again", "ignore", "respond", "none", "none"],
    ["trusted, asked", facts[3], "accept_again", "trust", "respond", "none", "forget_request"],
  ] as const)("%s → request %s, accept %s, relayed request %s, relayed accept %s, relayed reject %s", (_n, f, req, acc, rreq, racc, rrej) => {
    expect(requestAction(f)).toBe(req);
    expect(acceptAction(f)).toBe(acc);
    expect(relayedRequestAction(f)).toBe(rreq);
    expect(relayedResponseAction(true, f)).toBe(racc);
    expect(relayedResponseAction(false, f)).toBe(rrej);
  });
});

describe("a peer's revocation reaches the registry", () => {
  const dirs: string[] = [];
  afterAll(() => dirs.forEach(rmDir));

  async function trustedPair(retry: number[]) {
    const net = new MemNet();
    const reg = new FakeRegistry();
    const a = makeNode(net, reg, 5);
    const b = makeNode(net, reg, 7);
    dirs.push(a.dir, b.dir);
    const warns: string[] = [];
    b.ctx = { ...b.ctx, log: { debug() {}, info() {}, warn: (msg: string) => void warns.push(msg) } };
    const ta = startTrust(a.ctx);
    const tb = startTrust(b.ctx, { revokeRetryMs: retry });
    await ta.sendRequest(7, "hi");
    await until(() => tb.pendingRequest(5) !== undefined);
    await tb.approve(5);
    await until(() => ta.isTrusted(7) && reg.pairs.has("5:7"));
    return { reg, a, b, ta, tb, warns };
  }

  test("registry down when the peer revokes: retried until it is back, the pair is removed", async () => {
    const { reg, ta, tb, warns } = await trustedPair([50, 50, 50, 50, 50, 50, 50, 50]);
    // The revoker's own revoke_trust would remove the pair; keep it from reaching the registry.
    reg.down = true;
    await ta.revoke(7);
    await until(() => !tb.isTrusted(5), 5000, "peer applies the revocation");
    const failedBefore = reg.calls.filter((c) => c.startsWith("revoke_trust")).length;
    expect(failedBefore).toBe(0);
    reg.down = false;
    await until(() => reg.calls.includes("revoke_trust 7->5"), 5000, "the peer's retry removes the pair");
    expect(reg.pairs.has("5:7")).toBe(false);
    expect(warns.filter((w) => w.includes("revoke_trust failed"))).toEqual([]);
    ta.stop();
    tb.stop();
  });

  test("registry down for good: the failure is logged, not swallowed", async () => {
    const { reg, ta, tb, warns } = await trustedPair([20, 20]);
    reg.down = true;
    await ta.revoke(7);
    await until(() => warns.some((w) => w.includes("revoke_trust failed")), 5000, "warning logged");
    expect(reg.pairs.has("5:7")).toBe(true);
    ta.stop();
    tb.stop();
  });
});

describe("bounded trust caches", () => {
  test("replay cache: refuses a repeat, forgets after the keep time, never holds more than 65536 hashes", async () => {
    const { ReplayCache } = await import("../src/daemon/services/trust-caches.ts");
    const c = new ReplayCache();
    expect(c.add("a", 0)).toBe(true);
    expect(c.add("a", 1)).toBe(false);
    c.reap(10 * 60_000 + 1);
    expect(c.add("a", 10 * 60_000 + 2)).toBe(true); // forgotten, so accepted again (it is stale by then anyway)
    for (let i = 0; i < 70_000; i++) c.add(`h${i}`, 10 * 60_000 + 3);
    expect(c.size).toBe(65_536);
    expect(c.add("h69999", 10 * 60_000 + 4)).toBe(false); // the newest are kept
  });

  test("lookup cache: one registry call for concurrent lookups, failures not kept", async () => {
    const { LookupCache } = await import("../src/daemon/services/trust-caches.ts");
    let calls = 0;
    let fail = true;
    const c = new LookupCache(async (id) => {
      calls++;
      if (fail) throw new Error("down");
      return { node_id: id, public_key: "", networks: [] };
    });
    await Promise.allSettled([c.get(1, 0), c.get(1, 0)]);
    expect(calls).toBe(1);
    fail = false;
    await Bun.sleep(0); // one turn: the failed lookup leaves the cache in its rejection handler
    expect((await c.get(1, 1)).node_id).toBe(1);
    expect(calls).toBe(2);
    await c.get(1, 2);
    expect(calls).toBe(2);
  });
});
