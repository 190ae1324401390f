// Resumable file transfer over the data-exchange service (docs/file-transfer.md), sender module
// against the daemon's service over in-memory streams, plus a minimal reference-only receiver.
import { afterAll, describe, expect, test } from "bun:test";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type ByteDuplex, fileDigest, FileTransferError, sendFile, sendMessage } from "../src/client/file-transfer.ts";
import { MemNet } from "./helpers/memconn.ts";
import { startDataExchange } from "../src/daemon/services/dataexchange.ts";
import {
  decodeMessage, encodeFrame, encodeMessage, encodeText, formatAck, FrameReader, type Frame, TYPE_TEXT, TYPE_XFER_OFFER,
} from "../src/proto/dataexchange.ts";
import type { Addr } from "../src/proto/types.ts";
import type { StreamConn } from "../src/transport/api.ts";
import { FakeRegistry, makeNode, rmDir, tempDir, until } from "./helpers/services-ctx.ts";

const dirs: string[] = [];
afterAll(() => dirs.forEach(rmDir));
const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

/** ByteDuplex over a StreamConn (what the SDK's connection provides), with an optional cut-off. */
function duplex(c: StreamConn, opts: { abortAfterBytes?: number } = {}): ByteDuplex & { written: number } {
  const chunks: Uint8Array[] = [];
  let waiter: ((c: Uint8Array | null) => void) | null = null;
  let eof = false;
  const push = (x: Uint8Array | null) => {
    if (waiter) { const w = waiter; waiter = null; w(x); } else if (x) chunks.push(x); else eof = true;
  };
  c.onData = (d) => push(d.slice());
  c.onEnd = () => push(null);
  c.onClose = () => push(null);
  const d = {
    written: 0,
    async write(b: Uint8Array) {
      if (opts.abortAfterBytes !== undefined && d.written + b.length > opts.abortAfterBytes) {
        c.abort();
        throw new Error("connection reset (test cut-off)");
      }
      d.written += b.length;
      if (!c.write(b)) await new Promise<void>((r) => { c.onDrain = () => { c.onDrain = null; r(); }; });
    },
    read() {
      const x = chunks.shift();
      if (x) return Promise.resolve(x);
      if (eof) return Promise.resolve(null);
      return new Promise<Uint8Array | null>((r) => { waiter = r; });
    },
    close() { c.end(); },
  };
  return d;
}

function setup(node: number, files = {}) {
  const net = new MemNet();
  const srv = makeNode(net, new FakeRegistry(), node);
  dirs.push(srv.dir);
  const svc = startDataExchange(srv.ctx, { files });
  const from: Addr = { network: 0, node: node + 1 };
  return { net, srv, svc, dial: async (o?: { abortAfterBytes?: number }) => duplex(await net.dial(from, srv.addr, 1001), o) };
}

function fileOf(size: number, seed = 1): { path: string; data: Uint8Array } {
  const dir = tempDir("pilot-xfer-");
  dirs.push(dir);
  const data = new Uint8Array(size);
  let x = seed >>> 0;
  for (let i = 0; i < size; i += 4) { x = (x * 1664525 + 1013904223) >>> 0; data[i] = x >>> 24; data[i + 1] = x >>> 16; }
  const path = join(dir, "payload.bin");
  writeFileSync(path, data);
  return { path, data };
}

const received = (dir: string) => readdirSync(join(dir, "received"));
const partials = (dir: string) => (existsSync(join(dir, "partial")) ? readdirSync(join(dir, "partial")) : []);

describe("resumable file transfer between pilot-ts peers", () => {
  test("a 40 MiB file (above the 16 MiB frame limit) arrives intact; the ACK is the reference's FILE ACK", async () => {
    const s = setup(20);
    const f = fileOf(40 * 1024 * 1024 + 3);
    const c = await s.dial();
    const seen: string[] = [];
    const r = await sendFile(c, f.path, { name: "big.bin", onProgress: (p) => { if (!seen.includes(p.phase)) seen.push(p.phase); } });
    c.close();
    expect(r).toMatchObject({ ack: `ACK FILE ${f.data.length} bytes`, bytes: f.data.length, mode: "resumable", resumedFrom: 0, sentBytes: f.data.length, sha256: sha(f.data) });
    expect(seen).toEqual(["hashing", "sending", "finishing"]);
    const names = received(s.srv.dir);
    expect(names.length).toBe(1);
    expect(names[0]).toMatch(/^big-\d{8}-\d{6}\.\d{3}\.bin$/);
    const p = join(s.srv.dir, "received", names[0]!);
    expect(sha(readFileSync(p))).toBe(sha(f.data));
    expect(statSync(p).mode & 0o777).toBe(0o600);
    expect(partials(s.srv.dir)).toEqual([]);
    expect(s.srv.hooks.find((h) => h.event === "file.received")?.data).toMatchObject({ filename: "big.bin", size: f.data.length });
  });

  test("an empty file and a small file also go through the extension", async () => {
    const s = setup(22);
    const e = fileOf(0);
    const c = await s.dial();
    expect((await sendFile(c, e.path, { name: "empty.txt" })).ack).toBe("ACK FILE 0 bytes");
    const f = fileOf(1000);
    expect((await sendFile(c, f.path, { name: "small.txt" })).ack).toBe("ACK FILE 1000 bytes"); // same connection
    c.close();
    expect(received(s.srv.dir).length).toBe(2);
  });

  test("a broken connection leaves a partial file; the next send resumes from the receiver's offset", async () => {
    const s = setup(24);
    const size = 24 * 1024 * 1024;
    const f = fileOf(size, 7);
    const c1 = await s.dial({ abortAfterBytes: 10 * 1024 * 1024 });
    const err = await sendFile(c1, f.path, { name: "r.bin" }).catch((e) => e);
    expect(err).toBeInstanceOf(FileTransferError);
    expect(err.code).toBe("connection_failed");
    expect(err.message).toContain("may not have arrived");
    // The receiver keeps what arrived in order.
    let part = 0;
    await until(() => {
      const ps = partials(s.srv.dir);
      if (ps.length === 1) part = statSync(join(s.srv.dir, "partial", ps[0]!)).size;
      return part > 0;
    }, 2000, "the partial file");
    expect(part).toBeGreaterThan(0);
    expect(part).toBeLessThan(size);
    expect(existsSync(join(s.srv.dir, "received"))).toBe(false);

    const c2 = await s.dial();
    const r = await sendFile(c2, f.path, { name: "r.bin" });
    c2.close();
    expect(r.resumedFrom).toBeGreaterThan(0);
    expect(r.sentBytes).toBe(size - r.resumedFrom);
    expect(r.sentBytes).toBeLessThan(size);
    expect(c2.written).toBeLessThan(size);
    const names = received(s.srv.dir);
    expect(names.length).toBe(1);
    expect(sha(readFileSync(join(s.srv.dir, "received", names[0]!)))).toBe(sha(f.data));
    expect(partials(s.srv.dir)).toEqual([]);
  });

  test("a different sender, name or content never resumes someone else's partial file", async () => {
    const s = setup(26);
    const f = fileOf(4 * 1024 * 1024, 3);
    const c1 = await s.dial({ abortAfterBytes: 2 * 1024 * 1024 });
    await sendFile(c1, f.path, { name: "a.bin" }).catch(() => {});
    const c2 = await s.dial();
    const r = await sendFile(c2, f.path, { name: "b.bin" }); // other name → fresh
    expect(r.resumedFrom).toBe(0);
    const g = fileOf(4 * 1024 * 1024, 4); // same name, other content → fresh
    expect((await sendFile(c2, g.path, { name: "a.bin" })).resumedFrom).toBe(0);
    c2.close();
    expect(received(s.srv.dir).length).toBe(2);
  });

  test("receiver limits: too large is refused before any data; the number of partial files is bounded", async () => {
    const s = setup(28, { maxFileBytes: 1024 * 1024, maxPartials: 2 });
    const f = fileOf(1024 * 1024 + 1);
    const c = await s.dial();
    const err = await sendFile(c, f.path).catch((e) => e);
    expect(err).toMatchObject({ code: "refused", detail: "too_large" });
    expect(c.written).toBeLessThan(200); // the offer only
    c.close();
    for (let i = 0; i < 4; i++) {
      const before = new Set(partials(s.srv.dir));
      const g = fileOf(600 * 1024, 10 + i);
      const ci = await s.dial({ abortAfterBytes: 300 * 1024 });
      await sendFile(ci, g.path, { name: `p${i}.bin` }).catch(() => {});
      // this transfer's partial file exists (older idle ones were evicted to make room)
      await until(() => partials(s.srv.dir).some((n) => !before.has(n)), 5000, `partial file of p${i}.bin`);
      expect(partials(s.srv.dir).length).toBeLessThanOrEqual(2);
    }
  });
});

describe("hostile or broken senders get typed refusals", () => {
  async function raw(s: ReturnType<typeof setup>) {
    const c = await s.dial();
    const frames: Frame[] = [];
    const rd = new FrameReader((f) => frames.push(f));
    void (async () => { for (let x = await c.read(); x; x = await c.read()) rd.push(x); })();
    const next = async () => {
      await until(() => frames.length > 0, 2500, "a frame from the receiver");
      return decodeMessage(frames.shift()!);
    };
    return { c, next, frames };
  }

  test("data without an offer, wrong offsets, digest mismatch, malformed offer", async () => {
    const s = setup(30);
    const { c, next } = await raw(s);
    await c.write(encodeMessage({ kind: "data", offset: 0, data: new Uint8Array(10) }));
    expect(await next()).toMatchObject({ kind: "refuse", code: "no_transfer" });
    await c.write(encodeFrame(TYPE_XFER_OFFER, new TextEncoder().encode('{"name":"x","size":-1}')));
    expect(await next()).toMatchObject({ kind: "refuse", code: "bad_message" });
    const data = randomBytes(1000);
    await c.write(encodeMessage({ kind: "offer", name: "x.bin", size: 1000, sha256: "0".repeat(64), v: 1 }));
    expect(await next()).toMatchObject({ kind: "accept", offset: 0 });
    await c.write(encodeMessage({ kind: "data", offset: 5, data }));
    expect(await next()).toMatchObject({ kind: "refuse", code: "bad_offset" });
    await c.write(encodeMessage({ kind: "offer", name: "x.bin", size: 1000, sha256: "0".repeat(64), v: 1 }));
    expect(await next()).toMatchObject({ kind: "accept", offset: 0 });
    await c.write(encodeMessage({ kind: "data", offset: 0, data }));
    await c.write(encodeMessage({ kind: "end" }));
    expect(await next()).toMatchObject({ kind: "refuse", code: "digest_mismatch" });
    expect(partials(s.srv.dir)).toEqual([]); // a corrupt partial is not kept
    // reference frames still work on the same connection
    await c.write(encodeFrame(TYPE_TEXT, new TextEncoder().encode("hi")));
    expect(await next()).toMatchObject({ kind: "text" });
    c.close();
    expect(existsSync(join(s.srv.dir, "received"))).toBe(false);
  });
});

/**
 * A receiver that speaks only the reference protocol: every frame is acknowledged with a TEXT
 * `ACK <NAME> <n> bytes`, unknown types included; it records what it received.
 */
function referenceReceiver(net: MemNet, addr: Addr, port = 1001, opts: { silent?: boolean } = {}) {
  const got: { type: number; len: number }[] = [];
  net.listen(addr, port, (conn) => {
    const rd = new FrameReader((f) => {
      got.push({ type: f.type, len: f.payload.length });
      if (opts.silent) return;
      const n = f.type === 4 ? f.payload.length - 2 - ((f.payload[0]! << 8) | f.payload[1]!) : f.payload.length;
      conn.write(encodeText(formatAck(f.type, n)));
    });
    conn.onData = (d) => { try { rd.push(d); } catch { conn.abort(); } };
  });
  return got;
}

describe("toward a receiver without the extension", () => {
  const net = new MemNet();
  const ref: Addr = { network: 0, node: 40 };
  const got = referenceReceiver(net, ref);
  const silentAddr: Addr = { network: 0, node: 41 };
  const silent = referenceReceiver(net, silentAddr, 1001, { silent: true });
  const dial = async (a: Addr) => duplex(await net.dial({ network: 0, node: 42 }, a, 1001));

  test("a file above 16 MiB is refused before any byte of it is sent", async () => {
    got.length = 0;
    const f = fileOf(17 * 1024 * 1024);
    const c = await dial(ref);
    const err = await sendFile(c, f.path).catch((e) => e);
    c.close();
    expect(err).toBeInstanceOf(FileTransferError);
    expect(err.code).toBe("unsupported");
    expect(err.hint).toContain("16 MiB");
    expect(got.map((g) => g.type)).toEqual([TYPE_XFER_OFFER]);
    expect(c.written).toBeLessThan(200);
  });

  test("a file that fits one frame goes as one classic FILE frame, streamed", async () => {
    got.length = 0;
    const f = fileOf(5 * 1024 * 1024);
    const c = await dial(ref);
    const r = await sendFile(c, f.path, { name: "ok.bin" });
    c.close();
    expect(r).toMatchObject({ ack: `ACK FILE ${f.data.length} bytes`, mode: "single-frame" });
    expect(got).toEqual([{ type: TYPE_XFER_OFFER, len: got[0]!.len }, { type: 4, len: 2 + 6 + f.data.length }]);
  });

  test("no acknowledgement: messages and files fail with timeout, never succeed", async () => {
    const c = await dial(silentAddr);
    const e1 = await sendMessage(c, "text", new TextEncoder().encode("hello"), 200).catch((e) => e);
    expect(e1).toMatchObject({ code: "timeout" });
    expect(e1.message).toContain("may not have arrived");
    const f = fileOf(1000);
    const e2 = await sendFile(c, f.path, { replyTimeoutMs: 200 }).catch((e) => e);
    expect(e2).toMatchObject({ code: "timeout" });
    c.close();
    expect(silent.length).toBe(2);
  });

  test("a receiver that closes without an ACK: connection_failed", async () => {
    const n2 = new MemNet();
    const a: Addr = { network: 0, node: 50 };
    n2.listen(a, 1001, (conn) => { conn.onData = () => conn.end(); });
    const c = duplex(await n2.dial({ network: 0, node: 51 }, a, 1001));
    const e = await sendMessage(c, "json", new TextEncoder().encode("{}")).catch((x) => x);
    expect(e).toMatchObject({ code: "connection_failed" });
    expect(await sendMessage(c, "xml", new Uint8Array(1)).catch((x) => x.code)).toBe("invalid_argument");
  });
});

describe("sender details", () => {
  test("progress while the receiver re-reads a partial file; a digest computed beforehand is used as is", async () => {
    const net = new MemNet();
    const a: Addr = { network: 0, node: 60 };
    const f = fileOf(3000);
    const offers: any[] = [];
    net.listen(a, 1001, (conn) => {
      const rd = new FrameReader((fr) => {
        const m = decodeMessage(fr);
        if (m.kind === "offer") {
          offers.push(m);
          conn.write(encodeMessage({ kind: "progress", bytes: 1 }));
          conn.write(encodeMessage({ kind: "progress", bytes: 2 }));
          conn.write(encodeMessage({ kind: "accept", offset: 1000, chunk: 4096, v: 1 }));
        } else if (m.kind === "end") conn.write(encodeText(formatAck(4, 3000)));
      });
      conn.onData = (d) => rd.push(d);
    });
    const c = duplex(await net.dial({ network: 0, node: 61 }, a, 1001));
    const phases: string[] = [];
    const sum = await fileDigest(f.path);
    expect(sum).toBe(sha(f.data));
    const r = await sendFile(c, f.path, { sha256: sum, onProgress: (p) => phases.push(`${p.phase}:${p.done}`) });
    expect(r).toMatchObject({ resumedFrom: 1000, sentBytes: 2000, mode: "resumable" });
    expect(phases.slice(0, 3)).toEqual(["hashing:1", "hashing:2", "sending:3000"]);
    expect(offers[0].sha256).toBe(sum);
  });
});

describe("extension codec", () => {
  const hx = (b: Uint8Array) => Buffer.from(b).toString("hex");
  test("the example of docs/file-transfer.md, byte for byte", () => {
    const sum = sha(new TextEncoder().encode("hi"));
    const offer = encodeMessage({ kind: "offer", name: "a.txt", size: 2, sha256: sum, v: 1 });
    expect(hx(offer)).toBe("505400010000006b" + hx(new TextEncoder().encode(`{"name":"a.txt","sha256":"${sum}","size":2,"v":1}`)));
    expect(hx(encodeMessage({ kind: "accept", offset: 0, chunk: 1 << 20, v: 1 }))).toBe("5054000200000022" + hx(new TextEncoder().encode('{"chunk":1048576,"offset":0,"v":1}')));
    expect(hx(encodeMessage({ kind: "data", offset: 0, data: new TextEncoder().encode("hi") }))).toBe("505400030000000a00000000000000006869");
    expect(hx(encodeMessage({ kind: "end" }))).toBe("5054000500000000");
    expect(decodeMessage({ type: 0x50540003, payload: new Uint8Array([0, 0, 0, 1, 0, 0, 0, 2, 9]) })).toEqual({ kind: "data", offset: 2 ** 32 + 2, data: new Uint8Array([9]) });
    for (const m of [{ kind: "offer", name: "x", size: 5, sha256: sum, v: 1 }, { kind: "accept", offset: 7, chunk: 4096, v: 1 }, { kind: "progress", bytes: 2 ** 40 }, { kind: "refuse", code: "busy", error: "e" }] as const) {
      const b = encodeMessage(m);
      expect(decodeMessage({ type: new DataView(b.buffer).getUint32(0), payload: b.subarray(8) })).toEqual(m);
    }
  });
});
