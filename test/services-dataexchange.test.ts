import { afterAll, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { readdirSync, readFileSync, statSync, writeFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { ProtoError } from "../src/proto/types.ts";
import { MemNet } from "./helpers/memconn.ts";
import { startEcho } from "../src/daemon/services/echo.ts";
import {
  DataExchangeClient, FrameReader, MAX_FRAME_PAYLOAD, TYPE_BINARY, TYPE_FILE, TYPE_JSON, TYPE_TEXT,
  decodeFilePayload, decodeFrame, encodeFilePayload, encodeFrame, parseAck, splitReceivedName, startDataExchange, typeName,
} from "../src/daemon/services/dataexchange.ts";
import { FakeRegistry, makeNode, rmDir, until } from "./helpers/services-ctx.ts";

const dirs: string[] = [];
afterAll(() => dirs.forEach(rmDir));
const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

describe("data-exchange codec (docs/protocol.md §10.3)", () => {
  test("spec examples", () => {
    expect(hex(encodeFrame(TYPE_TEXT, new TextEncoder().encode("hello")))).toBe("0000000100000005" + "68656c6c6f");
    expect(hex(encodeFrame(TYPE_FILE, encodeFilePayload("a.txt", new TextEncoder().encode("hi"))))).toBe("00000004000000090005612e7478746869");
    expect(hex(encodeFrame(TYPE_TEXT, new TextEncoder().encode("ACK TEXT 5 bytes")))).toBe("00000001" + "00000010" + hex(new TextEncoder().encode("ACK TEXT 5 bytes")));
    expect(typeName(9)).toBe("UNKNOWN(9)");
    expect(typeName(2)).toBe("BINARY");
  });
  test("FILE payload decoding edge cases", () => {
    expect(decodeFilePayload(new Uint8Array([7]))).toEqual({ name: "", data: new Uint8Array([7]) });
    const p = new Uint8Array([0, 9, 65]); // name_len beyond payload → all data, no name
    expect(decodeFilePayload(p).name).toBe("");
    expect(decodeFilePayload(p).data.length).toBe(3);
    expect(() => encodeFilePayload("x".repeat(65536), new Uint8Array())).toThrow(ProtoError);
  });
  test("length limit: 2^24 allowed, 2^24+1 rejected with a typed error", () => {
    const hdr = new Uint8Array([0, 0, 0, 1, 1, 0, 0, 1]);
    const r = new FrameReader(() => {});
    try { r.push(hdr); throw new Error("no error"); } catch (e) {
      expect(e).toBeInstanceOf(ProtoError);
      expect((e as ProtoError).code).toBe("frame_too_large");
    }
    let got = 0;
    const r2 = new FrameReader(() => got++);
    r2.push(new Uint8Array([0, 0, 0, 1, 1, 0, 0, 0]));
    expect(got).toBe(0);
    expect(MAX_FRAME_PAYLOAD).toBe(1 << 24);
  });
  test("incremental decoder copes with every split point", () => {
    const frames = [encodeFrame(1, new TextEncoder().encode("hello")), encodeFrame(4, encodeFilePayload("a", new Uint8Array([1, 2, 3]))), encodeFrame(2, new Uint8Array())];
    const all = Buffer.concat(frames);
    for (let cut = 0; cut <= all.length; cut++) {
      for (let cut2 = cut; cut2 <= all.length; cut2 += 3) {
        const out: number[] = [];
        const r = new FrameReader((f) => out.push(f.type, f.payload.length));
        r.push(all.subarray(0, cut)); r.push(all.subarray(cut, cut2)); r.push(all.subarray(cut2));
        expect(out).toEqual([1, 5, 4, 6, 2, 0]);
      }
    }
  });
  test("fuzz: random bytes only ever produce ProtoError", () => {
    let seed = 12345;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
    let frames = 0;
    for (let i = 0; i < 3000; i++) {
      const len = Math.floor(rnd() * 64);
      const b = new Uint8Array(len);
      for (let j = 0; j < len; j++) b[j] = rnd() < 0.6 ? 0 : Math.floor(rnd() * 256);
      try { decodeFrame(b); frames++; } catch (e) { expect(e).toBeInstanceOf(ProtoError); }
      const r = new FrameReader((f) => { decodeFilePayload(f.payload); frames++; });
      try {
        for (let o = 0; o < len; o += 1 + Math.floor(rnd() * 8)) r.push(b.subarray(o, o + 1 + Math.floor(rnd() * 8)));
      } catch (e) { expect(e).toBeInstanceOf(ProtoError); }
      try { decodeFilePayload(b); } catch { throw new Error("decodeFilePayload threw"); }
    }
    expect(frames).toBeGreaterThan(0);
  });
  test("received-name sanitising keeps <stem>-<stamp><ext>", () => {
    expect(splitReceivedName("report.pdf")).toMatchObject({ stem: "report", ext: ".pdf" });
    expect(splitReceivedName("archive.tar.gz")).toMatchObject({ stem: "archive.tar", ext: ".gz" });
    expect(splitReceivedName("README")).toMatchObject({ stem: "README", ext: "" });
    expect(splitReceivedName("../../etc/passwd")).toMatchObject({ base: "passwd", stem: "passwd", ext: "" });
    expect(splitReceivedName("..\\..\\win.ini")).toMatchObject({ stem: "win", ext: ".ini" });
    expect(splitReceivedName(".env")).toMatchObject({ stem: "file", ext: ".env" });
    expect(splitReceivedName("..")).toMatchObject({ stem: "file", ext: "" });
    expect(splitReceivedName("///")).toMatchObject({ stem: "file" });
    expect(splitReceivedName("a\u0000b\nc.txt")).toMatchObject({ stem: "abc", ext: ".txt" });
    expect(Buffer.byteLength(splitReceivedName("é".repeat(5000) + ".txt").stem)).toBeLessThanOrEqual(120);
  });
});

describe("echo + data-exchange servers over in-memory streams", () => {
  const net = new MemNet();
  const reg = new FakeRegistry();
  const server = makeNode(net, reg, 7);
  const client = makeNode(net, reg, 4);
  dirs.push(server.dir, client.dir);
  startEcho(server.ctx);
  startDataExchange(server.ctx);

  test("echo returns every byte in order (1 MiB, pattern writes of 4096)", async () => {
    const c = await client.ctx.dial(server.addr, 7);
    const total = 1 << 20;
    const got = new Uint8Array(total);
    let n = 0;
    let segs = 0;
    c.onData = (ch) => { expect(ch.length).toBeLessThanOrEqual(4096); got.set(ch, n); n += ch.length; segs++; };
    const w = new Uint8Array(4096);
    for (let i = 0; i < 4096; i++) w[i] = i % 256;
    for (let off = 0; off < total; off += 4096) {
      if (!c.write(w)) await new Promise<void>((r) => (c.onDrain = () => r()));
    }
    await until(() => n === total, 20000, "echo");
    for (let i = 0; i < total; i += 4099) expect(got[i]).toBe(i % 4096 % 256);
    expect(segs).toBeGreaterThanOrEqual(256);
    c.end();
  });

  test("text, JSON and binary messages land in inbox/ in the reference format", async () => {
    const dx = new DataExchangeClient(await client.ctx.dial(server.addr, 1001));
    expect(await dx.sendMessage("hello <&>")).toBe("ACK TEXT 9 bytes");
    expect(await dx.sendJSON({ b: 1, a: [2] })).toBe("ACK JSON 15 bytes");
    expect(await dx.sendBinary(new Uint8Array([0xff, 0x41]))).toBe("ACK BINARY 2 bytes");
    expect(await dx.request(9, new Uint8Array(3))).toBe("ACK UNKNOWN(9) 3 bytes");
    dx.close();
    const files = readdirSync(join(server.dir, "inbox")).sort();
    expect(files.length).toBe(3);
    const byType: Record<string, any> = {};
    for (const f of files) {
      expect(f).toMatch(/^(TEXT|JSON|BINARY)-\d{8}-\d{6}\.\d{3}(-\d+)?\.json$/);
      const p = join(server.dir, "inbox", f);
      expect(statSync(p).mode & 0o777).toBe(0o600);
      const text = readFileSync(p, "utf8");
      const o = JSON.parse(text);
      byType[o.type] = { o, text };
    }
    expect(byType.TEXT.text).toMatch(/^\{"bytes":9,"data":"hello \\u003c\\u0026\\u003e","from":"0:0000\.0000\.0004","received_at":"[^"]+","type":"TEXT"\}$/);
    expect(byType.JSON.o.data).toBe('{"b":1,"a":[2]}');
    expect(byType.BINARY.o.data).toBe("\ufffdA");
    expect(statSync(join(server.dir, "inbox")).mode & 0o777).toBe(0o700);
    expect(server.hooks.filter((h) => h.event === "message.received").length).toBe(3);
  });

  test("10 MiB file arrives intact (SHA-256), hostile names are contained and never overwrite", async () => {
    const big = new Uint8Array(10 * 1024 * 1024);
    for (let i = 0; i < big.length; i += 4) big[i] = (i * 2654435761) >>> 24;
    const sha = createHash("sha256").update(big).digest("hex");
    const dx = new DataExchangeClient(await client.ctx.dial(server.addr, 1001));
    expect(await dx.sendFile("big.bin", big)).toBe(`ACK FILE ${big.length} bytes`);
    // a pre-existing file with the name the next save would pick must survive
    mkdirSync(join(server.dir, "received"), { recursive: true });
    for (let i = 0; i < 3; i++) expect(await dx.sendFile("../../etc/passwd", new TextEncoder().encode("pw" + i))).toBe("ACK FILE 3 bytes");
    expect(await dx.sendFile(".bashrc", new Uint8Array([1]))).toBe("ACK FILE 1 bytes");
    expect(await dx.request(TYPE_FILE, new Uint8Array([0, 0, 9]))).toBe("ACK FILE 1 bytes"); // empty name: not saved
    dx.close();
    const dir = join(server.dir, "received");
    const files = readdirSync(dir).sort();
    const bigName = files.find((f) => f.startsWith("big-"))!;
    expect(bigName).toMatch(/^big-\d{8}-\d{6}\.\d{3}(-\d+)?\.bin$/);
    expect(createHash("sha256").update(readFileSync(join(dir, bigName))).digest("hex")).toBe(sha);
    expect(statSync(join(dir, bigName)).mode & 0o777).toBe(0o600);
    const pw = files.filter((f) => f.startsWith("passwd-"));
    expect(pw.length).toBe(3); // three distinct files even within one millisecond
    expect(pw.map((f) => readFileSync(join(dir, f), "utf8")).sort()).toEqual(["pw0", "pw1", "pw2"]);
    expect(files.some((f) => f.startsWith("file-") && f.endsWith(".bashrc"))).toBe(true);
    expect(files.length).toBe(5);
    const hook = server.hooks.find((h) => h.event === "file.received" && h.data?.filename === "passwd")!;
    expect(hook.data!.size).toBe(3);
    expect(String(hook.data!.path).startsWith(dir + "/")).toBe(true);
  });

  test("same-millisecond collision with an existing file gets a counter suffix", async () => {
    const fixed = 1736944212345;
    const n = makeNode(new MemNet(), new FakeRegistry(), 9, { now: () => fixed });
    dirs.push(n.dir);
    const net2 = new MemNet();
    const srv = makeNode(net2, new FakeRegistry(), 10, { now: () => fixed });
    dirs.push(srv.dir);
    startDataExchange(srv.ctx);
    void n;
    const c = new DataExchangeClient(await net2.dial({ network: 0, node: 11 }, srv.addr, 1001));
    await c.sendFile("x.txt", new TextEncoder().encode("one"));
    await c.sendFile("x.txt", new TextEncoder().encode("two"));
    const files = readdirSync(join(srv.dir, "received")).sort();
    expect(files.length).toBe(2);
    expect(files.filter((f) => /^x-\d{8}-\d{6}\.345-1\.txt$/.test(f)).length).toBe(1);
    c.close();
  });

  test("oversize frame: server closes without replying; save errors produce ERR", async () => {
    const conn = await client.ctx.dial(server.addr, 1001);
    const dx = new DataExchangeClient(conn);
    const p = dx.recv();
    conn.write(new Uint8Array([0, 0, 0, 1, 0xff, 0, 0, 0]));
    await expect(p).rejects.toBeDefined();

    // make received/ unwritable by replacing it with a file in a fresh server dir
    const net3 = new MemNet();
    const srv = makeNode(net3, new FakeRegistry(), 12);
    dirs.push(srv.dir);
    writeFileSync(join(srv.dir, "received"), "not a dir");
    startDataExchange(srv.ctx);
    const c = new DataExchangeClient(await net3.dial({ network: 0, node: 13 }, srv.addr, 1001));
    const ack = await c.sendFile("a.txt", new Uint8Array([1]));
    expect(ack.startsWith("ERR FILE save failed: ")).toBe(true);
    expect(parseAck(ack).ok).toBe(false);
    expect(await c.sendMessage("still alive")).toBe("ACK TEXT 11 bytes");
    c.close();
  });

  test("frames split at random segment boundaries are reassembled", async () => {
    const net4 = new MemNet();
    net4.opts = { randomSplitSeed: 99 };
    const srv = makeNode(net4, new FakeRegistry(), 14);
    dirs.push(srv.dir);
    startDataExchange(srv.ctx);
    const c = new DataExchangeClient(await net4.dial({ network: 0, node: 15 }, srv.addr, 1001));
    const data = new Uint8Array(100_000).map((_, i) => i * 7);
    expect(await c.sendFile("r.bin", data)).toBe("ACK FILE 100000 bytes");
    const f = readdirSync(join(srv.dir, "received"))[0]!;
    expect(Buffer.compare(readFileSync(join(srv.dir, "received", f)), Buffer.from(data))).toBe(0);
    c.close();
  });

  test("frames: TYPE constants match the spec", () => {
    expect([TYPE_TEXT, TYPE_BINARY, TYPE_JSON, TYPE_FILE]).toEqual([1, 2, 3, 4]);
  });
});
