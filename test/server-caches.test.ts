// Registry hot-path caches: the verified plain-signature cache (auth.ts) and the SQLite node
// cache (node-cache.ts) with group-commit rollbacks, plus Store.view ordering.
import { describe, expect, test } from "bun:test";
import { ed25519 } from "@noble/curves/ed25519.js";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Auth, VerifiedSigs } from "../src/server/auth.ts";
import { freshNode } from "../src/server/core.ts";
import { SqliteStore, type NodeRec } from "../src/server/store.ts";
import { RegError } from "../src/server/validate.ts";

const b64 = (b: Uint8Array) => Buffer.from(b).toString("base64");
function identity() {
  const sk = ed25519.utils.randomSecretKey();
  return { pub: b64(ed25519.getPublicKey(sk)), sign: (c: string) => b64(ed25519.sign(new TextEncoder().encode(c), sk)) };
}
const code = (f: () => unknown) => {
  try { f(); return "ok"; } catch (e) { return e instanceof RegError ? e.code : String(e); }
};

describe("verified-signature cache", () => {
  test("a cached plain signature still obeys strict mode, key and byte equality", () => {
    const auth = new Auth(Date.now);
    const a = identity(), b = identity();
    const node: NodeRec = freshNode(Date.now(), 7, a.pub, "", "1.2.3.4:5", 1);
    const sig = a.sign("heartbeat:7");
    expect(code(() => auth.checkSig(node, "heartbeat:7", { signature: sig }))).toBe("ok");
    expect(auth.verified.size).toBe(1);
    expect(code(() => auth.checkSig(node, "heartbeat:7", { signature: sig }))).toBe("ok"); // hit
    expect(auth.verified.size).toBe(1);
    // Same bytes for another text, or under another key (rotated), are verified afresh and fail.
    expect(code(() => auth.checkSig(node, "heartbeat:8", { signature: sig }))).toBe("bad_signature");
    expect(code(() => auth.checkSig({ ...node, publicKey: b.pub }, "heartbeat:7", { signature: sig }))).toBe("bad_signature");
    // A forged signature differing in one character is not a hit.
    const forged = (sig[0] === "A" ? "B" : "A") + sig.slice(1);
    expect(code(() => auth.checkSig(node, "heartbeat:7", { signature: forged }))).toBe("bad_signature");
    // Strict nodes refuse plain signatures even when cached.
    expect(code(() => auth.checkSig({ ...node, strict: true }, "heartbeat:7", { signature: sig }))).toBe("fresh_signature_required");
    // Timestamped signatures are never cached.
    const ts = Date.now();
    expect(code(() => auth.checkSig(node, "heartbeat:7", { signature: a.sign(`heartbeat:7:${ts}`), ts }))).toBe("ok");
    expect(auth.verified.size).toBe(1);
  });

  test("bounded: the oldest entries are dropped", () => {
    const v = new VerifiedSigs(16);
    for (let i = 0; i < 100; i++) v.add(`sig${i}`, "k", "m");
    expect(v.size).toBeLessThanOrEqual(16);
    expect(v.has("sig99", "k", "m")).toBe(true);
    expect(v.has("sig0", "k", "m")).toBe(false);
  });
});

describe("SQLite node cache and group commit", () => {
  const withStore = async (fn: (s: SqliteStore) => Promise<void>) => {
    const dir = mkdtempSync(join(tmpdir(), "pilot-cache-"));
    const s = new SqliteStore(join(dir, "r.db"));
    try { await fn(s); } finally { await s.close(); rmSync(dir, { recursive: true, force: true, maxRetries: 5 }); }
  };
  const seed = async (s: SqliteStore) => {
    await s.tx(async (t) => t.putNode(freshNode(1000, 1, identity().pub, "", "1.2.3.4:5", 1)));
  };
  /** The row as stored, bypassing the cache. */
  const stored = async (s: SqliteStore, id: number) => { s.cache.clear(); return s.view((t) => t.getNode(id)); };

  test("a write undone by its savepoint leaves neither the row nor the cache changed", async () => {
    await withStore(async (s) => {
      await seed(s);
      // Both transactions are queued before the group runs: one group, one savepoint each.
      const ok = s.tx(async (t) => { const n = (await t.getNode(1))!; n.hostname = "alpha"; await t.putNode(n); });
      const bad = s.tx(async (t) => {
        const n = (await t.getNode(1))!;
        n.hostname = "beta";
        n.tags = ["x"];
        await t.putNode(n);
        await t.touchNode(1, 5000);
        throw new RegError("boom", "rolled back");
      });
      await ok;
      await expect(bad).rejects.toThrow("rolled back");
      const cached = await s.view((t) => t.getNode(1));
      expect(cached).toMatchObject({ hostname: "alpha", tags: [], lastSeen: 1000 });
      expect(await stored(s, 1)).toEqual(cached);
    });
  });

  test("a lone failing write (whole transaction rolled back) leaves the cache as committed", async () => {
    await withStore(async (s) => {
      await seed(s);
      expect((await s.view((t) => t.getNode(1)))!.hostname).toBe(""); // cached now
      await expect(s.tx(async (t) => { await t.deleteNode(1); throw new RegError("boom", "no"); })).rejects.toThrow("no");
      expect(await s.view((t) => t.getNode(1))).not.toBeNull();
      expect(await stored(s, 1)).not.toBeNull();
    });
  });

  test("callers get copies: mutating a returned record changes nothing", async () => {
    await withStore(async (s) => {
      await seed(s);
      const a = (await s.view((t) => t.getNode(1)))!;
      a.tags.push("mutated");
      a.hostname = "mutated";
      expect(await s.view((t) => t.getNode(1))).toMatchObject({ hostname: "", tags: [] });
    });
  });

  test("view sees committed state only: a queued write is not visible before its group ran", async () => {
    await withStore(async (s) => {
      await seed(s);
      const w = s.tx(async (t) => { const n = (await t.getNode(1))!; n.hostname = "later"; await t.putNode(n); });
      expect((await s.view((t) => t.getNode(1)))!.hostname).toBe("");
      await w;
      expect((await s.view((t) => t.getNode(1)))!.hostname).toBe("later");
      expect((await stored(s, 1))!.hostname).toBe("later");
    });
  });

  test("heartbeat touch through the registry path keeps cache and row equal", async () => {
    await withStore(async (s) => {
      await seed(s);
      await s.view((t) => t.getNode(1));
      await s.read(async (t) => t.touchNode(1, 4242));
      expect((await s.view((t) => t.getNode(1)))!.lastSeen).toBe(4242);
      expect((await stored(s, 1))!.lastSeen).toBe(4242);
    });
  });
});
