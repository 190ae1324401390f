// SQLite group commit: concurrent transactions share one COMMIT; a failing one is undone alone.
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SqliteStore, type NodeRec } from "../src/server/store.ts";

const dir = mkdtempSync(join(tmpdir(), "pilot-gc-"));
afterAll(() => rmSync(dir, { recursive: true, force: true, maxRetries: 5 }));

const node = (id: number): NodeRec => ({
  id, owner: "", publicKey: Buffer.alloc(32, id).toString("base64"), realAddr: "127.0.0.1:1", networks: [0], public: false,
  lastSeen: 1, hostname: "", tags: [], polo: 0, taskExec: false, seq: id, strict: false,
});

test("a failing transaction in a group is rolled back alone; the others are durable", async () => {
  const path = join(dir, "a.db");
  const s = new SqliteStore(path);
  const results = await Promise.allSettled([
    s.tx(async (t) => { await t.putNode(node(1)); return 1; }),
    s.tx(async (t) => { await t.putNode(node(2)); throw new Error("boom"); }),
    s.read(async (t) => (await t.getNode(1))?.id ?? 0), // runs after tx 1 in the same group
    s.tx(async (t) => { await t.putNode(node(3)); return 3; }),
  ]);
  expect(results.map((r) => r.status)).toEqual(["fulfilled", "rejected", "fulfilled", "fulfilled"]);
  expect((results[2] as PromiseFulfilledResult<number>).value).toBe(1);
  await s.close();
  // Reopen: what was acknowledged is on disk, the failed write is not.
  const r = new SqliteStore(path);
  expect(await r.read(async (t) => [(await t.getNode(1))?.id, (await t.getNode(2))?.id, (await t.getNode(3))?.id])).toEqual([1, undefined, 3]);
  await r.close();
});

test("a lone failing transaction rolls back everything it wrote", async () => {
  const s = new SqliteStore(join(dir, "b.db"));
  await expect(s.tx(async (t) => { await t.putNode(node(7)); throw new Error("no"); })).rejects.toThrow("no");
  expect(await s.read(async (t) => t.getNode(7))).toBeNull();
  await s.close();
});
