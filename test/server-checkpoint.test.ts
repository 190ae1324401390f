// Background WAL checkpoints of the SQLite store (a worker thread with its own connection): they
// run while the store keeps committing, and a SIGKILL at any moment loses nothing acknowledged.
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { CHECKPOINTER_AFTER_TX, SqliteStore, type NodeRec } from "../src/server/store.ts";
import { until } from "./helpers/until.ts";

const dir = mkdtempSync(join(tmpdir(), "pilot-ckpt-"));
afterAll(() => rmSync(dir, { recursive: true, force: true, maxRetries: 5 }));

const node = (id: number): NodeRec => ({
  id, owner: "", publicKey: Buffer.alloc(32, id & 255).toString("base64"), realAddr: "127.0.0.1:1", networks: [0], public: false,
  lastSeen: 1, hostname: `h${id}`, tags: [], polo: 0, taskExec: false, seq: id, strict: false,
});

test("checkpoints run in the background after enough transactions; stopping it on close", async () => {
  const s = new SqliteStore(join(dir, "a.db"));
  expect(s.checkpointer?.running).toBe(false);
  for (let i = 1; i <= CHECKPOINTER_AFTER_TX + 200; i++) await s.tx(async (t) => t.putNode(node(i)));
  expect(s.checkpointer?.running).toBe(true);
  await until(async () => (s.checkpointer!.frames > 0 ? true : null), "a background checkpoint", 15_000, 20);
  await s.close();
  expect(s.checkpointer?.running).toBe(false);
  const r = new SqliteStore(join(dir, "a.db"));
  expect(await r.view((t) => t.nodeCount())).toBe(CHECKPOINTER_AFTER_TX + 200);
  await r.close();
  // In memory and "inline": no worker at all.
  expect(new SqliteStore(":memory:").checkpointer).toBeNull();
  const inl = new SqliteStore(join(dir, "b.db"), { checkpoint: "inline" });
  expect(inl.checkpointer).toBeNull();
  await inl.close();
});

test("SIGKILL while background checkpoints run loses no acknowledged transaction", async () => {
  const db = join(dir, "k.db");
  const script = join(dir, "writer.ts");
  const storeTs = resolve(import.meta.dir, "../src/server/store.ts");
  writeFileSync(script, `
    import { SqliteStore } from ${JSON.stringify(storeTs)};
    const s = new SqliteStore(${JSON.stringify(db)});
    const node = (id) => ({ id, owner: "", publicKey: Buffer.alloc(32, id & 255).toString("base64"), realAddr: "127.0.0.1:1", networks: [0], public: false,
      lastSeen: 1, hostname: "h" + id, tags: [], polo: 0, taskExec: false, seq: id, strict: false });
    for (let i = 1; ; i += 16) {
      // 16 concurrent transactions share a commit group; report the highest acknowledged id.
      await Promise.all(Array.from({ length: 16 }, (_, k) => s.tx(async (t) => t.putNode(node(i + k)))));
      console.log(JSON.stringify({ acked: i + 15, frames: s.checkpointer.frames }));
    }
  `);
  const p = Bun.spawn([process.execPath, script], { stdout: "pipe", stderr: "inherit" });
  let acked = 0, frames = 0;
  const reader = (async () => {
    let buf = "";
    for await (const chunk of p.stdout as ReadableStream<Uint8Array>) {
      buf += new TextDecoder().decode(chunk);
      let i;
      while ((i = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        try { const m = JSON.parse(line); acked = m.acked; frames = m.frames; } catch {}
      }
    }
  })();
  try {
    await until(async () => (frames > 0 && acked > frames ? true : null), "acknowledged writes after a background checkpoint", 30_000, 5);
  } finally {
    p.kill("SIGKILL");
    await p.exited;
    await reader;
  }
  const s = new SqliteStore(db);
  const n = await s.view((t) => t.nodeCount());
  expect(n).toBeGreaterThanOrEqual(acked);
  const ids = await s.view(async (t) => [await t.getNode(1), await t.getNode(acked)]);
  expect(ids.map((x) => x?.hostname)).toEqual(["h1", `h${acked}`]);
  await s.close();
}, 60_000);
