// IPC against REAL pilot-daemon processes (test/helpers/cluster.ts) with raw frames: malformed,
// oversized and zero-length frames, a 2 MiB Send, clients that vanish mid-stream (dialing and
// listening side), socket file handling — and after every abuse the daemon still answers Info.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { statSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { join } from "node:path";
import { Cluster, spawnTool, type DaemonHandle } from "./helpers/cluster.ts";
import { FrameDecoder } from "../src/proto/framing.ts";
import { parseAddr } from "../src/proto/addr.ts";
import type { Addr } from "../src/proto/types.ts";

const te = new TextEncoder();
const td = new TextDecoder();
const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const cat = (...parts: (Uint8Array | number[] | string)[]) =>
  new Uint8Array(Buffer.concat(parts.map((p) => (typeof p === "string" ? te.encode(p) : Uint8Array.from(p)))));
const u32 = (n: number) => [(n >>> 24) & 255, (n >>> 16) & 255, (n >>> 8) & 255, n & 255];
const u16 = (n: number) => [(n >>> 8) & 255, n & 255];
const addr = (a: Addr) => [...u16(a.network), ...u32(a.node)];
function frame(body: Uint8Array | number[]): Uint8Array {
  const b = Uint8Array.from(body);
  return cat(u32(b.length), b);
}
const errBody = (m: string) => cat([0x0a, 0x00, 0x01], m);
const idOf = (f: Uint8Array, off = 1) => new DataView(f.buffer, f.byteOffset).getUint32(off);

async function until(fn: () => boolean | Promise<boolean>, what: string, ms = 15000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await fn())) {
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await Bun.sleep(20);
  }
}

class Raw {
  readonly dec = new FrameDecoder(1 << 20);
  frames: Uint8Array[] = [];
  closed = false;
  constructor(readonly sock: Socket) {
    sock.on("data", (b: Buffer) => {
      for (const f of this.dec.push(b)) this.frames.push(f);
    });
    sock.on("close", () => (this.closed = true));
    sock.on("error", () => {});
  }
  static async open(path: string): Promise<Raw> {
    const s = connect(path);
    await new Promise<void>((res, rej) => {
      s.once("connect", () => res());
      s.once("error", rej);
    });
    const r = new Raw(s);
    opened.push(r);
    return r;
  }
  req(body: Uint8Array | number[]): void {
    this.sock.write(frame(body));
  }
  async next(ms = 20000): Promise<Uint8Array> {
    await until(() => this.frames.length > 0 || this.closed, "a frame", ms);
    if (this.frames.length === 0) throw new Error("socket closed while waiting for a frame");
    return this.frames.shift()!;
  }
  /** Next frame that is not a push (RecvFrom/Recv/CloseOK pushes may interleave). */
  async reply(): Promise<Uint8Array> {
    for (;;) {
      const f = await this.next();
      if (f[0] !== 0x0c && f[0] !== 0x07) return f;
    }
  }
  async info(): Promise<any> {
    this.req([0x0d]);
    for (;;) {
      const f = await this.next();
      if (f[0] === 0x0e) return JSON.parse(td.decode(f.subarray(1)));
    }
  }
}

const cl = new Cluster("pilot-ipcd-");
let A: DaemonHandle, B: DaemonHandle;
let opened: Raw[] = [];

/** The daemon process is alive and a fresh client gets a well-formed InfoOK. */
async function survives(h: DaemonHandle): Promise<void> {
  expect(h.proc.proc.exitCode).toBeNull();
  const c = await Raw.open(h.socket);
  const info = await c.info();
  expect(info.node_id).toBe(h.nodeId);
  c.sock.destroy();
}

async function connState(h: DaemonHandle, id: number): Promise<string | undefined> {
  const c = await Raw.open(h.socket);
  const info = await c.info();
  c.sock.destroy();
  return (info.conn_list as any[]).find((x) => x.id === id)?.state;
}

beforeAll(async () => {
  await cl.startRendezvous();
  A = await cl.startDaemon("a");
  B = await cl.startDaemon("b");
  // make B reachable without a trust handshake (also exercises SetVisibility against the registry)
  const c = await Raw.open(B.socket);
  c.req([0x15, 0x01]);
  const r = await c.reply();
  expect(td.decode(r.subarray(1))).toBe(`{"node_id":${B.nodeId},"type":"set_visibility_ok","visibility":"public"}`);
  c.sock.destroy();
}, 60000);

afterAll(async () => {
  for (const r of opened) r.sock.destroy();
  await cl.stop();
});

describe("real daemon: malformed input", () => {
  test("Error texts for missing fields, unknown and reply bytes, bad handshake sub, set_tags; zero-length ignored", async () => {
    const c = await Raw.open(A.socket);
    const cases: [number[] | Uint8Array, string][] = [
      [[0x01], "bind: missing port"],
      [[0x03, 0, 0, 0, 0, 0, 7, 0], "dial: missing address/port"],
      [[0x08, 0, 0, 1], "close: missing conn_id"],
      [[0x0f], "handshake: missing sub-command"],
      [[0x0f, 0x01, 0, 0, 7], "handshake request: missing node_id"],
      [[0x0f, 0x02], "handshake approve: missing node_id"],
      [[0x0f, 0x03, 0], "handshake reject: missing node_id"],
      [[0x0f, 0x06], "handshake revoke: missing node_id"],
      [[0x0f, 0x09], "handshake: unknown sub-command 0x09"],
      [[0x11], "resolve_hostname: missing hostname"],
      [[0x15], "set_visibility: missing value"],
      [[0x1d], "set_task_exec: missing value"],
      [[0x2a], "unknown command: 0x2A"],
      [[0x02, 0x03, 0xe8], "unknown command: 0x02"],
      [[0x04, 0, 0, 0, 1], "unknown command: 0x04"],
      [[0x09, 0, 0, 0, 1], "unknown command: 0x09"],
      [[0x0a, 0, 1, 0x41], "unknown command: 0x0A"],
      [cat([0x0e], "{}"), "unknown command: 0x0E"],
      [cat([0x19], '["a","b","c","d"]'), "set_tags: maximum 3 tags allowed"],
      [[0x01, 0x00, 0x07], "port 7 already bound"],
    ];
    c.sock.write(Uint8Array.from([0, 0, 0, 0]));
    for (const [req] of cases) c.req(req);
    c.req([0x06, 0, 0]); // short Send: no reply
    c.req([0x0b, 0, 0, 0]); // short SendTo: no reply
    c.req(cat([0x06, ...u32(987654)], "x")); // Send on an unknown connection: no reply
    c.req([0x08, ...u32(0xfffffff0)]); // Close of an unknown id: CloseOK
    for (const [req, want] of cases) {
      const got = await c.reply();
      expect(`${hex(Uint8Array.from(req))} -> ${hex(got)}`).toBe(`${hex(Uint8Array.from(req))} -> ${hex(errBody(want))}`);
    }
    expect(hex(await c.reply())).toBe("09fffffff0");
    c.req(cat([0x19], "[1,"));
    const bad = td.decode((await c.reply()).subarray(3));
    expect(bad.startsWith("set_tags: invalid JSON: ")).toBe(true);
    expect(bad.slice(24)).not.toContain("set_tags");
    const info = await c.info();
    expect(info.node_id).toBe(A.nodeId);
    await survives(A);
  });

  test("oversized frame drops the client, its port is released, the daemon keeps serving", async () => {
    const c = await Raw.open(A.socket);
    c.req([0x01, ...u16(6000)]);
    expect(hex(await c.reply())).toBe("021770");
    const other = await Raw.open(A.socket);
    other.req([0x01, ...u16(6000)]);
    expect(hex(await other.reply())).toBe(hex(errBody("port 6000 already bound")));
    c.sock.write(Uint8Array.from([0x01, 0x00, 0x00, 0x41])); // announces 16 MiB + 65 bytes
    await until(() => c.closed, "daemon closes the offending client");
    other.req([0x01, ...u16(6000)]);
    expect(hex(await other.reply())).toBe("021770");
    await survives(A);
  });

  test("garbage bytes (random frames) never crash the daemon", async () => {
    const c = await Raw.open(A.socket);
    let seed = 12345;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 8) & 255;
    let expectReplies = 0;
    for (let i = 0; i < 300; i++) {
      const len = 1 + (rnd() % 12);
      const body = Array.from({ length: len }, rnd);
      // avoid commands with side effects on the node's registration / network
      if ([0x01, 0x03, 0x06, 0x08, 0x0b, 0x0f, 0x11, 0x13, 0x15, 0x17, 0x19, 0x1b, 0x1d].includes(body[0])) body[0] = 0x20 + (body[0] & 0x0f);
      c.req(body);
      expectReplies++;
    }
    for (let i = 0; i < expectReplies; i++) {
      const f = await c.reply();
      expect([0x0a, 0x0e, 0x09]).toContain(f[0]);
    }
    await survives(A);
  });
});

describe("real daemon: streams and vanishing clients", () => {
  test("a 2 MiB Send frame is accepted and echoed back by B's echo service", async () => {
    const c = await Raw.open(A.socket);
    c.req([0x03, ...addr(parseAddr(B.address)), ...u16(7)]);
    const ok = await c.reply();
    expect(ok[0]).toBe(0x04);
    const id = idOf(ok);
    const data = new Uint8Array(2 * 1024 * 1024);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7 + (i >>> 11)) & 255;
    c.req(cat([0x06, ...u32(id)], data));
    const back: Uint8Array[] = [];
    let got = 0;
    while (got < data.length) {
      const f = await c.next();
      if (f[0] !== 0x07) continue;
      expect(idOf(f)).toBe(id);
      back.push(f.subarray(5));
      got += f.length - 5;
    }
    expect(Buffer.compare(Buffer.concat(back), Buffer.from(data))).toBe(0);
    c.req([0x08, ...u32(id)]);
    await until(async () => (await connState(A, id)) !== "ESTABLISHED", "connection closed");
    await survives(A);
  }, 60000);

  test("dialing client vanishes mid-stream: its connection is closed (FIN), the daemon keeps serving", async () => {
    const c = await Raw.open(A.socket);
    c.req([0x03, ...addr(parseAddr(B.address)), ...u16(7)]);
    const ok = await c.reply();
    expect(ok[0]).toBe(0x04);
    const id = idOf(ok);
    const chunk = new Uint8Array(256 * 1024).fill(0x5a);
    for (let i = 0; i < 8; i++) c.req(cat([0x06, ...u32(id)], chunk));
    await until(() => c.frames.filter((f) => f[0] === 0x07).length > 4, "echo data flowing back");
    c.sock.destroy(); // vanish while data is in flight both ways
    await until(async () => {
      const st = await connState(A, id);
      return st === undefined || st === "FIN_WAIT" || st === "TIME_WAIT" || st === "CLOSED";
    }, "A closes the orphaned connection");
    await survives(A);
    await survives(B);
  }, 60000);

  test("listening client vanishes mid-stream: the dialer gets CloseOK, the port can be bound again", async () => {
    const lb = await Raw.open(B.socket);
    lb.req([0x01, ...u16(7100)]);
    expect(hex(await lb.reply())).toBe("021bbc");
    const da = await Raw.open(A.socket);
    da.req([0x03, ...addr(parseAddr(B.address)), ...u16(7100)]);
    const ok = await da.reply();
    expect(ok[0]).toBe(0x04);
    const id = idOf(ok);
    const acc = await lb.next();
    expect(acc.length).toBe(15);
    expect(acc[0]).toBe(0x05);
    expect(hex(acc.subarray(1, 3))).toBe("1bbc");
    expect(hex(acc.subarray(7, 13))).toBe(hex(Uint8Array.from(addr(parseAddr(A.address)))));
    const bId = idOf(acc, 3);
    const chunk = new Uint8Array(64 * 1024).fill(1);
    for (let i = 0; i < 8; i++) da.req(cat([0x06, ...u32(id)], chunk));
    await until(() => lb.frames.some((f) => f[0] === 0x07 && idOf(f) === bId), "B's client receives data");
    lb.sock.destroy();
    await until(() => da.frames.some((f) => f[0] === 0x09 && idOf(f) === id), "dialer sees CloseOK push (peer closed)");
    const lb2 = await Raw.open(B.socket);
    lb2.req([0x01, ...u16(7100)]);
    expect(hex(await lb2.reply())).toBe("021bbc");
    await survives(A);
    await survives(B);
  }, 60000);
});

describe("real daemon: socket file", () => {
  test("socket mode 0600; a second daemon on the same socket refuses to start and the first keeps serving", async () => {
    expect(statSync(A.socket).mode & 0o777).toBe(0o600);
    const home = join(cl.dir, "second");
    const p = spawnTool("pilot-daemon", [
      "-registry", cl.registry, "-beacon", cl.beacon, "-listen", "127.0.0.1:0",
      "-socket", A.socket, "-identity", join(home, "identity.json"), "-data-dir", home,
    ], { HOME: home }, "second");
    const code = await p.proc.exited;
    expect(code).not.toBe(0);
    expect(p.log.join("\n")).toContain("another daemon is listening");
    expect(statSync(A.socket).isSocket()).toBe(true);
    await survives(A);
  }, 30000);
});
