// The SDK's data exchange against real daemons (createTestnet): files above the 16 MiB frame limit,
// in-memory files, abort and resume, ACK-only success, and typed argument errors.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createTestnet, PilotError, type SendFileProgress, type Testnet } from "../src/index.ts";
import { bytesSource, type ByteDuplex, sendFile, sendMessage } from "../src/client/file-transfer.ts";
import { until } from "./helpers/until.ts";

let net: Testnet;
const tmp = mkdtempSync(join(tmpdir(), "sdk-files-"));
beforeAll(async () => {
  net = await createTestnet({ nodes: 2 });
}, 60_000);
afterAll(async () => {
  await net?.close();
  rmSync(tmp, { recursive: true, force: true, maxRetries: 5 });
});

const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

/** A file of pseudo-random bytes (random blocks repeated, so that writing it stays cheap). */
function makeFile(name: string, size: number): { path: string; sha256: string } {
  const block = randomBytes(1 << 20);
  const out = new Uint8Array(size);
  for (let off = 0, i = 0; off < size; off += block.length, i++) {
    block[0] = i & 255; // no two MiB alike
    out.set(block.subarray(0, Math.min(block.length, size - off)), off);
  }
  const path = join(tmp, name);
  writeFileSync(path, out);
  return { path, sha256: sha(out) };
}

/** SHA-256 of the receiver's stored copies of `name` (stored as `<stem>-<time stamp><ext>`). */
async function receivedHashes(name: string): Promise<string[]> {
  const dot = name.lastIndexOf(".");
  const [stem, ext] = dot > 0 ? [name.slice(0, dot), name.slice(dot)] : [name, ""];
  const files = (await net.nodes[1].pilot.received()).filter((x) => x.name.startsWith(`${stem}-`) && x.name.endsWith(ext));
  return files.map((x) => sha(readFileSync(x.path)));
}

const errOf = (p: Promise<unknown>) => p.then(() => null, (e) => e);

describe("sdk data exchange", () => {
  test("a 40 MiB file goes through (above the 16 MiB single-frame limit): ACK, SHA-256 equal in received/, progress phases", async () => {
    const [a, b] = net.nodes;
    const size = 40 * 1024 * 1024;
    const f = makeFile("big40.bin", size);
    const events: SendFileProgress[] = [];
    const r = await a.pilot.sendFile(b.address, f.path, { onProgress: (p) => events.push(p) });
    expect(r).toEqual({ filename: "big40.bin", bytes: size, destination: b.address, sha256: f.sha256, ack: `ACK FILE ${size} bytes`, mode: "resumable", resumedFrom: 0 });
    expect(await receivedHashes("big40.bin")).toEqual([f.sha256]);
    const phases = [...new Set(events.map((e) => e.phase))];
    expect(phases).toEqual(["hashing", "sending", "finishing"]);
    expect(events[0]).toMatchObject({ phase: "hashing", sentBytes: 0, totalBytes: size });
    expect(events.filter((e) => e.phase === "hashing").at(-1)!.hashedBytes).toBe(size);
    const sent = events.filter((e) => e.phase === "sending").map((e) => e.sentBytes);
    expect(sent.length).toBeGreaterThan(1);
    expect(sent.every((v, i) => i === 0 || v > sent[i - 1]!)).toBe(true);
    expect(events.at(-1)).toMatchObject({ phase: "finishing", sentBytes: size, totalBytes: size });
  }, 120_000);

  test("an aborted send fails with code aborted; the next send resumes from the receiver's partial file", async () => {
    const [a, b] = net.nodes;
    const size = 24 * 1024 * 1024;
    const f = makeFile("resume24.bin", size);
    const ac = new AbortController();
    const e = await errOf(a.pilot.sendFile(b.address, f.path, {
      signal: ac.signal,
      onProgress: (p) => { if (p.phase === "sending" && p.sentBytes >= 8 * 1024 * 1024) ac.abort(); },
    }));
    expect(e).toBeInstanceOf(PilotError);
    expect(e.code).toBe("aborted");
    expect(await receivedHashes("resume24.bin")).toEqual([]);
    const partDir = join(b.dataDir, "partial");
    await until(async () => {
      try {
        return readdirSync(partDir).some((n) => statSync(join(partDir, n)).size > 0);
      } catch {
        return false;
      }
    }, "partial file on the receiver", 15_000);
    const r = await a.pilot.sendFile(b.address, f.path);
    expect(r.mode).toBe("resumable");
    expect(r.resumedFrom).toBeGreaterThan(0);
    expect(r.resumedFrom).toBeLessThan(size);
    expect(r.ack).toBe(`ACK FILE ${size} bytes`);
    expect(await receivedHashes("resume24.bin")).toEqual([f.sha256]);
  }, 120_000);

  test("in-memory {name, data}: stored under that name with the same bytes; an empty file too", async () => {
    const [a, b] = net.nodes;
    const data = new Uint8Array(300_000).map((_, i) => (i * 7 + 3) & 255);
    const r = await a.pilot.sendFile(b.nodeId, { name: "mem.bin", data });
    expect(r).toEqual({ filename: "mem.bin", bytes: data.length, destination: b.address, sha256: sha(data), ack: `ACK FILE ${data.length} bytes`, mode: "resumable", resumedFrom: 0 });
    expect(await receivedHashes("mem.bin")).toEqual([sha(data)]);
    const empty = await a.pilot.sendFile(b.hostname, { name: "empty.txt", data: new Uint8Array(0) });
    expect(empty.ack).toBe("ACK FILE 0 bytes");
    expect(await receivedHashes("empty.txt")).toEqual([sha(new Uint8Array(0))]);
  }, 60_000);

  test("sendMessage resolves with the receiver's ACK; the message is in its inbox", async () => {
    const [a, b] = net.nodes;
    const seen = new Set((await b.pilot.inbox()).map((m) => m.id));
    const r = await a.pilot.sendMessage(b.address, { hello: "sdk" });
    expect(r).toEqual({ target: b.address, type: "json", bytes: 15, ack: "ACK JSON 15 bytes" });
    const m = await b.pilot.waitForMessage({ seen, timeoutMs: 10_000 });
    expect([m?.type, m?.data, m?.from]).toEqual(["json", '{"hello":"sdk"}', a.address]);
  }, 30_000);

  test("typed errors before anything is sent: bad type, oversized message, long topic or name, missing file, pre-aborted", async () => {
    const [a, b] = net.nodes;
    const code = async (p: Promise<unknown>) => {
      const e = await errOf(p);
      expect(e).toBeInstanceOf(PilotError);
      return e.code as string;
    };
    expect(await code(a.pilot.sendMessage(b.address, "x", { type: "xml" as "text" }))).toBe("invalid_argument");
    expect(await code(a.pilot.sendMessage(b.address, new Uint8Array((1 << 24) + 1)))).toBe("invalid_argument");
    expect(await code(a.pilot.publish(b.address, "t".repeat(1025), "x"))).toBe("invalid_argument");
    expect(await code(a.pilot.subscribe(b.address, "t".repeat(1025)))).toBe("invalid_argument");
    expect(await code(a.pilot.sendFile(b.address, { name: "n".repeat(70_000), data: new Uint8Array(1) }))).toBe("invalid_argument");
    expect(await code(a.pilot.sendFile(b.address, join(tmp, "missing.bin")))).toBe("not_found");
    expect(await code(a.pilot.sendFile(b.address, { name: "x", data: new Uint8Array(1) }, { signal: AbortSignal.abort() }))).toBe("aborted");
    expect(await code(a.pilot.sendMessage(b.address, "x", { signal: AbortSignal.abort() }))).toBe("aborted");
    expect((await a.pilot.info()).nodeId).toBe(a.nodeId); // the IPC connection is still in order
  }, 30_000);
});

/** A receiver that takes everything and never answers; `wrote` resolves at the first write. */
function silentPeer(): ByteDuplex & { wrote: Promise<void>; closed: boolean } {
  let first = () => {};
  let eof = (_: null) => {};
  const peer = {
    wrote: new Promise<void>((r) => (first = r)),
    closed: false,
    write: async () => first(),
    read: () => new Promise<Uint8Array | null>((r) => (eof = r)),
    close: () => {
      peer.closed = true;
      eof(null);
    },
  };
  return peer;
}

describe("abort while waiting for the receiver", () => {
  test("a message and a file offer to a silent receiver end with code aborted, not after the reply timeout", async () => {
    const m = silentPeer();
    const ac = new AbortController();
    const pm = errOf(sendMessage(m, "text", new TextEncoder().encode("hi"), 600_000, ac.signal));
    await m.wrote;
    ac.abort();
    const em = await pm;
    expect([em instanceof PilotError, em.code]).toEqual([true, "aborted"]);

    const f = silentPeer();
    const ac2 = new AbortController();
    const pf = errOf(sendFile(f, bytesSource("x.bin", new Uint8Array(10)), { replyTimeoutMs: 600_000, signal: ac2.signal }));
    await f.wrote;
    ac2.abort(new PilotError("timeout", "caller deadline"));
    const ef = await pf;
    expect([ef.code, ef.message]).toEqual(["timeout", "caller deadline"]); // the signal's PilotError reason is passed on
    expect(f.closed).toBe(false); // the caller owns the connection
  });
});
