// The SDK from source against real daemons (createTestnet): typed calls, Web Streams, async
// iteration, AbortSignal, datagrams, and the two examples (they run here as users would run them).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect, createTestnet, PilotError, type Testnet } from "../src/index.ts";
import { ask, serveAnswers } from "../examples/agent-answer.ts";
import { pull, push } from "../examples/file-sync.ts";
import { until } from "./helpers/until.ts";

let net: Testnet;
const tmp = mkdtempSync(join(tmpdir(), "sdk-api-"));
beforeAll(async () => {
  net = await createTestnet({ nodes: 2 });
}, 60_000);
afterAll(async () => {
  await net?.close();
  rmSync(tmp, { recursive: true, force: true, maxRetries: 5 });
});

describe("sdk", () => {
  test("createTestnet: two nodes with mutual trust; typed info", async () => {
    const [a, b] = net.nodes;
    const i = await a.pilot.info();
    expect(i.nodeId).toBe(a.nodeId);
    expect(i.address).toBe(a.address);
    expect(i.hostname).toBe("node-1");
    expect(typeof i.uptimeSecs).toBe("number");
    const t = await b.pilot.trusted();
    expect(t.map((x) => x.nodeId)).toContain(a.nodeId);
    const f = await a.pilot.find("node-2");
    expect(f).toEqual({ hostname: "node-2", nodeId: b.nodeId, address: b.address, public: false });
  });

  test("not_running is a PilotError with a hint", async () => {
    const e = await connect({ socket: join(tmp, "none.sock") }).catch((x) => x);
    expect(e).toBeInstanceOf(PilotError);
    expect(e.code).toBe("not_running");
    expect(e.hint).toContain("daemon start");
  });

  test("connection: WritableStream in, ReadableStream out (echo port)", async () => {
    const [a, b] = net.nodes;
    const c = await a.pilot.dial(b.address, 7);
    const w = c.writable.getWriter();
    await w.write(new TextEncoder().encode("stream-1 "));
    await w.write(new TextEncoder().encode("stream-2"));
    w.releaseLock();
    let got = "";
    const r = c.readable.getReader();
    while (got.length < 17) {
      const { value, done } = await r.read();
      if (done) break;
      got += new TextDecoder().decode(value);
    }
    expect(got).toBe("stream-1 stream-2");
    await r.cancel(); // closes the connection
    expect(c.ended).toBe(true);
  });

  test("abort: a pending accept rejects with code aborted; an aborted listen ends its iteration", async () => {
    const [a] = net.nodes;
    const ac = new AbortController();
    const l = await a.pilot.listen(4100, { signal: ac.signal });
    const p = l.accept({ signal: ac.signal });
    ac.abort();
    const e = await p.catch((x) => x);
    expect(e).toBeInstanceOf(PilotError);
    expect(e.code).toBe("aborted");
    const seen: unknown[] = [];
    for await (const c of l) seen.push(c);
    expect(seen).toEqual([]);
    const pre = AbortSignal.abort();
    const e2 = await a.pilot.info({ signal: pre }).catch((x) => x);
    expect([e2.code, e2 instanceof PilotError]).toEqual(["aborted", true]);
    expect((await a.pilot.info()).nodeId).toBe(a.nodeId); // the IPC connection is still in order
  });

  test("datagrams: sendDatagram arrives on the peer's datagrams() iterator", async () => {
    const [a, b] = net.nodes;
    const ac = new AbortController();
    const got = (async () => {
      for await (const d of b.pilot.datagrams({ port: 4200, signal: ac.signal })) return d;
      return null;
    })();
    let first: Awaited<typeof got> = null;
    void got.then((x) => (first = x));
    // datagrams are unreliable and the first one also opens the tunnel: send until one arrives
    const d = await until(async () => {
      if (!first) await a.pilot.sendDatagram(b.nodeId, 4200, "dgram-hello");
      return first;
    }, "datagram delivered", 15_000);
    ac.abort();
    expect(d!.src).toBe(a.address);
    expect(new TextDecoder().decode(d!.data)).toBe("dgram-hello");
  });

  test("publish/subscribe: for await over a subscription", async () => {
    const [a, b] = net.nodes;
    const sub = await a.pilot.subscribe(b.address, "news");
    const events: string[] = [];
    const reading = (async () => {
      for await (const ev of sub) {
        events.push(`${ev.topic}:${ev.text}`);
        if (events.length === 2) break;
      }
    })();
    // the broker at b has a's subscription (its first event) before b publishes
    await until(async () => (await b.pilot.info()).connList.some((c) => c.localPort === 1002 && c.remoteAddr === a.address && c.state === "ESTABLISHED" && c.bytesRecv > 0), "subscription at b", 15_000);
    await b.pilot.publish(b.address, "news", "first");
    await b.pilot.publish(b.address, "news", "second");
    await reading;
    expect(events[0]).toBe("news:first");
    expect(events.at(-1)).toBe("news:second");
  });

  test("example agent-answer: serve questions, ask by hostname", async () => {
    const [a, b] = net.nodes;
    const ac = new AbortController();
    const serving = serveAnswers(b.pilot, 1000, (q, from) => `${from} asked: ${q.toUpperCase()}`, ac.signal);
    const answer = await until(() => ask(a.pilot, "node-2", 1000, "ping?").catch(() => null), "answer", 15_000);
    expect(answer).toBe(`${a.address} asked: PING?`);
    expect(await ask(a.pilot, b.nodeId, 1000, "again")).toBe(`${a.address} asked: AGAIN`);
    ac.abort();
    expect(await serving).toBeGreaterThanOrEqual(1);
  });

  test("example file-sync: push a directory, pull it on the other agent, hashes match", async () => {
    const [a, b] = net.nodes;
    const src = join(tmp, "src"), dst = join(tmp, "dst");
    mkdirSync(src);
    const size = 2_500_000; // more than two 1 MiB data frames: several sending steps
    const big = new Uint8Array(size).map((_, i) => (i * 31) & 255);
    writeFileSync(join(src, "notes.txt"), "hello file sync\n");
    writeFileSync(join(src, "blob.bin"), big);
    const progress: number[] = [];
    const pulling = pull(b.pilot, dst, 30_000);
    const sent = await push(a.pilot, b.address, src, (name, s) => name === "blob.bin" && progress.push(s));
    const synced = await pulling;
    expect(synced.map((f) => f.name).sort()).toEqual(["blob.bin", "notes.txt"]);
    const h = (p: string) => createHash("sha256").update(readFileSync(p)).digest("hex");
    for (const f of sent) expect(h(join(dst, f.name))).toBe(h(join(src, f.name)));
    // sending progress only (no hashing events with 0 bytes), rising to the file's size
    expect(progress.length).toBeGreaterThan(1);
    expect(progress[0]).toBeGreaterThan(0);
    for (let i = 1; i < progress.length; i++) expect(progress[i]).toBeGreaterThan(progress[i - 1]);
    expect(progress.at(-1)).toBe(size);
  });
});
