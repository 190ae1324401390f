// IpcServer (src/daemon/ipc-server.ts) against a FAKE DaemonApi over a REAL Unix socket, with raw
// frames: every command of ipc.md §3-4 with its exact reply bytes, the Error texts of §5,
// malformed/zero-length/oversized frames, reply ordering under concurrency, pushes, ownership
// cleanup of vanishing clients, datagram fan-out with a stalled client, socket file handling.
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, statSync, existsSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { IpcServer, type DaemonApi } from "../src/daemon/ipc-server.ts";
import { Logger } from "../src/daemon/log.ts";
import { memConnPair, type MemConn } from "./helpers/memconn.ts";
import { FrameDecoder } from "../src/proto/framing.ts";
import type { HandshakeSub, JsonObject } from "../src/proto/ipc.ts";
import type { Addr } from "../src/proto/types.ts";
import type { StreamConn } from "../src/transport/api.ts";

const te = new TextEncoder();
const td = new TextDecoder();
const SELF: Addr = { network: 0, node: 5 };

function hex(b: Uint8Array): string {
  return Buffer.from(b).toString("hex");
}
function cat(...parts: (Uint8Array | number[] | string)[]): Uint8Array {
  const bufs = parts.map((p) => (typeof p === "string" ? te.encode(p) : Uint8Array.from(p)));
  return Buffer.concat(bufs);
}
function frame(body: Uint8Array | number[] | string): Uint8Array {
  const b = typeof body === "string" ? te.encode(body) : Uint8Array.from(body);
  const out = new Uint8Array(4 + b.length);
  new DataView(out.buffer).setUint32(0, b.length);
  out.set(b, 4);
  return out;
}
function u32(n: number): number[] {
  return [(n >>> 24) & 255, (n >>> 16) & 255, (n >>> 8) & 255, n & 255];
}
function u16(n: number): number[] {
  return [(n >>> 8) & 255, n & 255];
}
function addr(a: Addr): number[] {
  return [...u16(a.network), ...u32(a.node)];
}
function errBody(msg: string): Uint8Array {
  return cat([0x0a, 0x00, 0x01], msg);
}
async function until(fn: () => boolean, what: string, ms = 10000): Promise<void> {
  const end = Date.now() + ms;
  while (!fn()) {
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await Bun.sleep(5);
  }
}

interface Deferred<T> {
  promise: Promise<T>;
  resolve(v: T): void;
  reject(e: Error): void;
}
function deferred<T>(): Deferred<T> {
  let resolve!: (v: T) => void, reject!: (e: Error) => void;
  const promise = new Promise<T>((a, b) => {
    resolve = a;
    reject = b;
  });
  return { promise, resolve, reject };
}

/** Fake daemon: in-memory connections (memconn), recorded calls, controllable dials. */
class FakeApi implements DaemonApi {
  ports = new Map<number, (c: StreamConn) => void>([[7, () => {}]]);
  conns = new Map<number, MemConn>();
  /** remote (peer) side of every connection, by local conn id */
  remotes = new Map<number, MemConn>();
  calls: string[] = [];
  sendTos: { addr: Addr; port: number; data: string }[] = [];
  infoCalls = 0;
  infoThrows = false;
  /** Per-dial override: return a promise to control timing, or throw. */
  dialHook: ((a: Addr, port: number) => Promise<void>) | null = null;
  remoteEnded = new Set<number>();
  /** segment size of new in-memory connections (a transport chunk may exceed one IPC frame) */
  mss = 4096;

  bind(port: number, onAccept: (c: StreamConn) => void): () => void {
    if (this.ports.has(port)) throw new Error(`port ${port} already bound`);
    this.ports.set(port, onAccept);
    this.calls.push(`bind ${port}`);
    return () => {
      this.ports.delete(port);
      this.calls.push(`unbind ${port}`);
    };
  }
  private pair(localPort: number, remote: Addr, remotePort: number): [MemConn, MemConn] {
    const [local, peer] = memConnPair({ addr: SELF, port: localPort }, { addr: remote, port: remotePort }, { mss: this.mss, highWater: 8 << 20 });
    this.conns.set(local.id, local);
    this.remotes.set(local.id, peer);
    peer.onEnd = () => this.remoteEnded.add(local.id);
    return [local, peer];
  }
  async dial(a: Addr, port: number): Promise<StreamConn> {
    this.calls.push(`dial ${a.node}:${port}`);
    if (this.dialHook) await this.dialHook(a, port);
    if (port === 9) throw new Error("connection refused");
    return this.pair(49152 + this.conns.size, a, port)[0];
  }
  /** Simulate an inbound connection on a bound port; returns the remote side. */
  incoming(port: number, from: Addr = { network: 0, node: 9 }, fromPort = 50000): MemConn {
    const cb = this.ports.get(port);
    if (!cb) throw new Error(`nothing bound on ${port}`);
    const [local, peer] = this.pair(port, from, fromPort);
    cb(local);
    return peer;
  }
  async sendTo(a: Addr, port: number, data: Uint8Array): Promise<void> {
    this.sendTos.push({ addr: a, port, data: td.decode(data) });
    if (a.node === 66) throw new Error("sendto: no route");
  }
  conn(id: number): StreamConn | undefined {
    return this.conns.get(id);
  }
  closeConn(id: number): void {
    this.calls.push(`close ${id}`);
    this.conns.get(id)?.end();
  }
  info(): JsonObject {
    this.infoCalls++;
    if (this.infoThrows) throw new Error("info exploded");
    return { node_id: 5, address: "0:0000.0000.0005", hostname: "<me>", conn_list: [] };
  }
  async handshake(h: HandshakeSub): Promise<JsonObject> {
    this.calls.push(`handshake ${JSON.stringify(h)}`);
    switch (h.sub) {
      case "pending":
        return { pending: [] };
      case "trusted":
        return { trusted: [] };
      case "revoke":
        if (h.nodeId === 99) throw new Error(`handshake revoke: node 99 was not trusted`);
        return { node_id: h.nodeId, status: "revoked" };
      case "request":
        return { node_id: h.nodeId, status: "sent" };
      case "approve":
        return { node_id: h.nodeId, status: "approved" };
      case "reject":
        return { node_id: h.nodeId, status: "rejected" };
    }
  }
  async resolveHostname(name: string): Promise<JsonObject> {
    if (name === "nope") throw new Error("resolve_hostname: registry: request failed");
    return { address: "0:0000.0000.0003", hostname: name, node_id: 3, public: false, type: "resolve_hostname_ok" };
  }
  async setHostname(name: string): Promise<JsonObject> {
    this.calls.push(`set_hostname ${JSON.stringify(name)}`);
    return { hostname: name, node_id: 5, type: "set_hostname_ok" };
  }
  async setVisibility(pub: boolean): Promise<JsonObject> {
    return { node_id: 5, type: "set_visibility_ok", visibility: pub ? "public" : "private" };
  }
  async deregister(): Promise<JsonObject> {
    return { type: "deregister_ok" };
  }
  async setTags(tags: string[] | null): Promise<JsonObject> {
    return { node_id: 5, tags, type: "set_tags_ok" };
  }
  async setWebhook(url: string): Promise<JsonObject> {
    return { webhook: url };
  }
  async setTaskExec(enabled: boolean): Promise<JsonObject> {
    return { node_id: 5, task_exec: enabled, type: "set_task_exec_ok" };
  }
}

/** Raw IPC client: writes bytes, reads frame bodies with FrameDecoder. */
class Raw {
  readonly dec = new FrameDecoder(1 << 20);
  frames: Uint8Array[] = [];
  raw: Uint8Array[] = [];
  closed = false;
  private waiters: (() => void)[] = [];
  constructor(readonly sock: Socket) {
    sock.on("data", (b: Buffer) => {
      this.raw.push(new Uint8Array(b));
      for (const f of this.dec.push(b)) this.frames.push(f);
      this.wake();
    });
    sock.on("close", () => {
      this.closed = true;
      this.wake();
    });
    sock.on("error", () => {});
  }
  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }
  static async open(path: string): Promise<Raw> {
    const s = connect(path);
    await new Promise<void>((res, rej) => {
      s.once("connect", () => res());
      s.once("error", rej);
    });
    const r = new Raw(s);
    clients.push(r);
    return r;
  }
  send(bytes: Uint8Array): void {
    this.sock.write(bytes);
  }
  req(body: Uint8Array | number[] | string): void {
    this.send(frame(body));
  }
  async next(ms = 10000): Promise<Uint8Array> {
    const end = Date.now() + ms;
    while (this.frames.length === 0) {
      if (this.closed) throw new Error("socket closed while waiting for a frame");
      if (Date.now() > end) throw new Error("timed out waiting for a frame");
      await new Promise<void>((res) => {
        this.waiters.push(res);
        setTimeout(res, 50);
      });
    }
    return this.frames.shift()!;
  }
  async nextHex(): Promise<string> {
    return hex(await this.next());
  }
  async waitClosed(ms = 10000): Promise<void> {
    await until(() => this.closed, "server closes the client socket", ms);
  }
  /** Info round trip: proves the server is still answering this client and all earlier requests are done. */
  async sync(): Promise<void> {
    this.req([0x0d]);
    for (;;) {
      const f = await this.next();
      if (f[0] === 0x0e) return;
    }
  }
}

let dir: string;
let api: FakeApi;
let srv: IpcServer;
let path: string;
let clients: Raw[] = [];
const log = new Logger("error", "text", () => {});

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "pilot-ipcsrv-"));
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

let n = 0;
async function fresh(): Promise<void> {
  api = new FakeApi();
  srv = new IpcServer(api, log);
  path = join(dir, `s${n++}.sock`);
  await srv.listen(path);
}
afterEach(() => {
  for (const c of clients) c.sock.destroy();
  clients = [];
  srv?.close();
});

const INFO_OK = cat([0x0e], '{"address":"0:0000.0000.0005","conn_list":[],"hostname":"\\u003cme\\u003e","node_id":5}');

describe("commands and exact reply bytes", () => {
  test("Bind → BindOK echoing the port; duplicate and built-in ports → Error (raw bytes as ipc.md §4.19)", async () => {
    await fresh();
    const c = await Raw.open(path);
    c.send(Uint8Array.from([0, 0, 0, 3, 0x01, 0x03, 0xe8]));
    expect(await c.nextHex()).toBe("0203e8");
    expect(hex(c.raw.splice(0).reduce((a, b) => cat(a, b), new Uint8Array(0)))).toBe("000000030203e8");
    c.req([0x01, 0x03, 0xe8, 0xff]); // extra bytes ignored
    expect(hex(await c.next())).toBe(hex(errBody("port 1000 already bound")));
    c.raw = [];
    c.req([0x01, 0x00, 0x07]);
    await c.next();
    expect(hex(c.raw.splice(0).reduce((a, b) => cat(a, b), new Uint8Array(0)))).toBe(hex(frame(errBody("port 7 already bound"))));
    expect(hex(frame(errBody("port 7 already bound")).subarray(0, 4))).toBe("00000017");
    c.req([0x01, 0x00, 0x00]); // port 0 binds port 0
    expect(await c.nextHex()).toBe("020000");
    expect(api.calls).toEqual(["bind 1000", "bind 0"]);
  });

  test("Info → InfoOK with Go-sorted, Go-escaped JSON; payload ignored", async () => {
    await fresh();
    const c = await Raw.open(path);
    c.req([0x0d, 1, 2, 3]);
    expect(hex(await c.next())).toBe(hex(INFO_OK));
  });

  test("Dial → DialOK, Send (no reply) → peer, peer data → Recv push, Close → CloseOK reply + push", async () => {
    await fresh();
    const c = await Raw.open(path);
    c.send(frame([0x03, ...addr({ network: 0, node: 7 }), 0x00, 0x07]));
    const ok = await c.next();
    expect(ok[0]).toBe(0x04);
    expect(ok.length).toBe(5);
    const id = new DataView(ok.buffer, ok.byteOffset).getUint32(1);
    expect(api.calls).toEqual(["dial 7:7"]);
    const peer = api.remotes.get(id)!;
    const got: string[] = [];
    peer.onData = (d) => got.push(td.decode(d));
    c.req(cat([0x06, ...u32(id)], "ping-0"));
    c.req([0x06, ...u32(id)]); // empty Send: no-op, no reply
    await until(() => got.join("") === "ping-0", "peer receives ping-0");
    peer.write(te.encode("pong-0"));
    expect(await c.nextHex()).toBe(hex(cat([0x07, ...u32(id)], "pong-0")));
    c.req([0x08, ...u32(id)]);
    const a = await c.nextHex();
    const b = await c.nextHex();
    const closeOk = hex(Uint8Array.from([0x09, ...u32(id)]));
    expect([a, b]).toEqual([closeOk, closeOk]);
    expect(api.calls).toContain(`close ${id}`);
    await until(() => api.remoteEnded.has(id), "peer sees FIN");
    await c.sync(); // no stray replies (e.g. for the empty Send)
  });

  test("Close of an unknown id still gets CloseOK; failing Dial → Error with the daemon's text", async () => {
    await fresh();
    const c = await Raw.open(path);
    c.req([0x08, ...u32(0xdeadbeef)]);
    expect(await c.nextHex()).toBe("09deadbeef");
    c.req([0x03, ...addr({ network: 0, node: 7 }), ...u16(9)]);
    expect(hex(await c.next())).toBe(hex(errBody("connection refused")));
  });

  test("Send on unknown conn and SendTo failures produce no reply (ipc.md §12.2-2); SendTo reaches the daemon", async () => {
    await fresh();
    const c = await Raw.open(path);
    c.req(cat([0x06, ...u32(424242)], "x"));
    c.req(cat([0x0b, ...addr({ network: 1, node: 7 }), ...u16(1234)], "dgram"));
    c.req(cat([0x0b, ...addr({ network: 0, node: 66 }), ...u16(1)], "fails"));
    c.req(cat([0x0b, ...addr({ network: 0, node: 0xffffffff }), ...u16(1)], "broadcast"));
    c.req([0x0d]);
    expect(hex(await c.next())).toBe(hex(INFO_OK)); // nothing before the InfoOK
    await until(() => api.sendTos.length === 2, "two datagrams handed to the daemon");
    expect(api.sendTos).toEqual([
      { addr: { network: 1, node: 7 }, port: 1234, data: "dgram" },
      { addr: { network: 0, node: 66 }, port: 1, data: "fails" },
    ]); // broadcast refused before reaching the daemon
  });

  test("JSON commands: Handshake subs, ResolveHostname, SetHostname, SetVisibility, Deregister, SetTags, SetWebhook, SetTaskExec", async () => {
    await fresh();
    const c = await Raw.open(path);
    const cases: [Uint8Array, Uint8Array][] = [
      [cat([0x0f, 0x01, ...u32(7)], "please"), cat([0x10], '{"node_id":7,"status":"sent"}')],
      [cat([0x0f, 0x02, ...u32(7)]), cat([0x10], '{"node_id":7,"status":"approved"}')],
      [cat([0x0f, 0x03, ...u32(8)], "no"), cat([0x10], '{"node_id":8,"status":"rejected"}')],
      [cat([0x0f, 0x04, 0xff]), cat([0x10], '{"pending":[]}')],
      [cat([0x0f, 0x05]), cat([0x10], '{"trusted":[]}')],
      [cat([0x0f, 0x06, ...u32(7)]), cat([0x10], '{"node_id":7,"status":"revoked"}')],
      [cat([0x0f, 0x06, ...u32(99)]), errBody("handshake revoke: node 99 was not trusted")],
      [cat([0x11], "other-agent"), cat([0x12], '{"address":"0:0000.0000.0003","hostname":"other-agent","node_id":3,"public":false,"type":"resolve_hostname_ok"}')],
      [cat([0x11], "nope"), errBody("resolve_hostname: registry: request failed")],
      [cat([0x13], "my-agent"), cat([0x14], '{"hostname":"my-agent","node_id":5,"type":"set_hostname_ok"}')],
      [cat([0x13]), cat([0x14], '{"hostname":"","node_id":5,"type":"set_hostname_ok"}')],
      [cat([0x15, 0x01]), cat([0x16], '{"node_id":5,"type":"set_visibility_ok","visibility":"public"}')],
      [cat([0x15, 0x02]), cat([0x16], '{"node_id":5,"type":"set_visibility_ok","visibility":"private"}')],
      [cat([0x17, 0x99]), cat([0x18], '{"type":"deregister_ok"}')],
      [cat([0x19], '["web","#api"]'), cat([0x1a], '{"node_id":5,"tags":["web","#api"],"type":"set_tags_ok"}')],
      [cat([0x19], "null"), cat([0x1a], '{"node_id":5,"tags":null,"type":"set_tags_ok"}')],
      [cat([0x1b], "http://127.0.0.1:9/h?a=1&b=2"), cat([0x1c], '{"webhook":"http://127.0.0.1:9/h?a=1\\u0026b=2"}')],
      [cat([0x1b]), cat([0x1c], '{"webhook":""}')],
      [cat([0x1d, 0x01]), cat([0x1e], '{"node_id":5,"task_exec":true,"type":"set_task_exec_ok"}')],
      [cat([0x1d, 0x00]), cat([0x1e], '{"node_id":5,"task_exec":false,"type":"set_task_exec_ok"}')],
    ];
    for (const [req] of cases) c.req(req); // pipelined: replies must come back in request order
    for (const [req, want] of cases) {
      expect(`${hex(req)} -> ${td.decode(await c.next())}`).toBe(`${hex(req)} -> ${td.decode(want)}`);
    }
    expect(api.calls).toContain('handshake {"sub":"request","nodeId":7,"justification":"please"}');
    expect(api.calls).toContain('handshake {"sub":"reject","nodeId":8,"reason":"no"}');
    expect(api.calls).toContain('set_hostname ""');
  });
});

describe("malformed requests → Error texts of ipc.md §5", () => {
  test("missing fields per command, unknown command, reply bytes from a client, bad handshake sub, set_tags errors", async () => {
    await fresh();
    const c = await Raw.open(path);
    const cases: [number[] | Uint8Array, string][] = [
      [[0x01], "bind: missing port"],
      [[0x01, 0x03], "bind: missing port"],
      [[0x03, 0, 0, 0, 0, 0, 7, 0], "dial: missing address/port"],
      [[0x08, 0, 0, 1], "close: missing conn_id"],
      [[0x0f], "handshake: missing sub-command"],
      [[0x0f, 0x01, 0, 0, 7], "handshake request: missing node_id"],
      [[0x0f, 0x02], "handshake approve: missing node_id"],
      [[0x0f, 0x03, 0], "handshake reject: missing node_id"],
      [[0x0f, 0x06, 0, 0, 0], "handshake revoke: missing node_id"],
      [[0x0f, 0x09], "handshake: unknown sub-command 0x09"],
      [[0x0f, 0xab, 1, 2, 3, 4], "handshake: unknown sub-command 0xAB"],
      [[0x11], "resolve_hostname: missing hostname"],
      [[0x15], "set_visibility: missing value"],
      [[0x1d], "set_task_exec: missing value"],
      [[0x2a], "unknown command: 0x2A"],
      [[0x2a, 1, 2, 3], "unknown command: 0x2A"],
      [[0x00], "unknown command: 0x00"],
      [[0xff], "unknown command: 0xFF"],
      // reply / push bytes sent by a client, well-formed or not
      [[0x02, 0x03, 0xe8], "unknown command: 0x02"],
      [[0x04, 0, 0, 0, 1], "unknown command: 0x04"],
      [[0x05], "unknown command: 0x05"],
      [[0x07, 0, 0, 0, 1, 0x41], "unknown command: 0x07"],
      [[0x09, 0, 0, 0, 1], "unknown command: 0x09"],
      [[0x0a, 0, 1, 0x41], "unknown command: 0x0A"],
      [[0x0a], "unknown command: 0x0A"],
      [[0x0c, ...addr({ network: 0, node: 1 }), 0, 1, 0, 2, 0x41], "unknown command: 0x0C"],
      [cat([0x0e], '{"a":1}'), "unknown command: 0x0E"],
      [cat([0x0e], "not json"), "unknown command: 0x0E"],
      [cat([0x10], "{}"), "unknown command: 0x10"],
      [cat([0x1e], "{}"), "unknown command: 0x1E"],
      [cat([0x19], '["a","b","c","d"]'), "set_tags: maximum 3 tags allowed"],
    ];
    for (const [req] of cases) c.req(req);
    for (const [req, want] of cases) {
      const got = await c.next();
      expect(`${hex(Uint8Array.from(req))} -> ${hex(got.subarray(0, 3))} ${td.decode(got.subarray(3))}`).toBe(`${hex(Uint8Array.from(req))} -> 0a0001 ${want}`);
    }
    // invalid JSON tags: one "set_tags: invalid JSON: " prefix, then the decoder's message
    for (const bad of ["[", "{}", '["a",1]', '"x"', ""]) {
      c.req(cat([0x19], bad));
      const got = td.decode((await c.next()).subarray(3));
      expect(got.startsWith("set_tags: invalid JSON: ")).toBe(true);
      expect(got.slice("set_tags: invalid JSON: ".length)).not.toContain("set_tags");
      expect(got.length).toBeGreaterThan("set_tags: invalid JSON: ".length);
    }
    // Send / SendTo too short: no reply at all; zero-length frames ignored
    c.req([0x06, 0, 0, 1]);
    c.req([0x0b, 0, 0, 0, 0, 0, 7, 0]);
    c.send(Uint8Array.from([0, 0, 0, 0, 0, 0, 0, 0]));
    c.req([0x0d]);
    expect(hex(await c.next())).toBe(hex(INFO_OK));
    expect(api.calls).toEqual([]); // nothing reached the daemon
  });

  test("a DaemonApi that throws synchronously yields an Error reply, not a dead server", async () => {
    await fresh();
    const c = await Raw.open(path);
    api.infoThrows = true;
    c.req([0x0d]);
    expect(hex(await c.next())).toBe(hex(errBody("info exploded")));
    api.infoThrows = false;
    c.req([0x0d]);
    expect(hex(await c.next())).toBe(hex(INFO_OK));
  });

  test("a frame split across many writes (byte by byte) and many frames in one write", async () => {
    await fresh();
    const c = await Raw.open(path);
    const f = frame([0x01, 0x10, 0x00]);
    for (const b of f) {
      c.send(Uint8Array.of(b));
      await Bun.sleep(1);
    }
    expect(await c.nextHex()).toBe("021000");
    c.send(cat(frame([0x0d]), frame([0x01, 0x10, 0x01]), frame([0x08, 0, 0, 0, 5])));
    expect(hex(await c.next())).toBe(hex(INFO_OK));
    expect(await c.nextHex()).toBe("021001");
    expect(await c.nextHex()).toBe("0900000005");
  });
});

describe("frame sizes", () => {
  test("2 MiB Send frame is accepted and delivered; 16 MiB + 64 frame accepted", async () => {
    await fresh();
    const c = await Raw.open(path);
    c.req([0x03, ...addr({ network: 0, node: 7 }), ...u16(1000)]);
    const ok = await c.next();
    const id = new DataView(ok.buffer, ok.byteOffset).getUint32(1);
    const peer = api.remotes.get(id)!;
    let got = 0;
    let sum = 0;
    peer.onData = (d) => {
      got += d.length;
      for (const x of d) sum = (sum + x) % 65521;
    };
    const data = new Uint8Array(2 * 1024 * 1024);
    for (let i = 0; i < data.length; i++) data[i] = (i * 31) & 255;
    let want = 0;
    for (const x of data) want = (want + x) % 65521;
    c.req(cat([0x06, ...u32(id)], data));
    await until(() => got === data.length, "peer receives 2 MiB");
    expect(sum).toBe(want);
    // exactly the maximum client frame: an unknown command padded to 16 MiB + 64 bytes
    const big = new Uint8Array(16 * 1024 * 1024 + 64);
    big[0] = 0x2a;
    c.req(big);
    expect(td.decode((await c.next()).subarray(3))).toBe("unknown command: 0x2A");
    await c.sync();
  });

  test("oversized frame (> 16 MiB + 64 announced) drops the client and cleans up its ports and conns; others unaffected", async () => {
    await fresh();
    const other = await Raw.open(path);
    const c = await Raw.open(path);
    c.req([0x01, ...u16(4000)]);
    expect(await c.nextHex()).toBe("020fa0");
    c.req([0x03, ...addr({ network: 0, node: 7 }), ...u16(1000)]);
    const ok = await c.next();
    const id = new DataView(ok.buffer, ok.byteOffset).getUint32(1);
    c.send(Uint8Array.from(u32(16 * 1024 * 1024 + 65))); // header only: body never read
    await c.waitClosed();
    await until(() => api.remoteEnded.has(id), "owned connection closed (peer sees FIN)");
    expect(api.ports.has(4000)).toBe(false);
    expect(api.calls).toContain("unbind 4000");
    expect(srv.clients.size).toBe(1);
    other.req([0x01, ...u16(4000)]);
    expect(await other.nextHex()).toBe("020fa0");
    await other.sync();
  });
});

describe("outgoing frame limit", () => {
  test("a received chunk larger than one frame is split into Recv pushes of at most 1 MiB", async () => {
    await fresh();
    api.mss = 3 << 20;
    const c = await Raw.open(path); // its FrameDecoder rejects anything above 1 MiB
    c.req([0x03, ...addr({ network: 0, node: 7 }), ...u16(1000)]);
    const ok = await c.next();
    const id = new DataView(ok.buffer, ok.byteOffset).getUint32(1);
    const big = new Uint8Array((5 << 19) + 3); // 2.5 MiB + 3 in ONE chunk
    for (let i = 0; i < big.length; i++) big[i] = (i >>> 10) & 255;
    api.remotes.get(id)!.write(big);
    const parts: Uint8Array[] = [];
    let got = 0;
    while (got < big.length) {
      const f = await c.next();
      expect(f[0]).toBe(0x07);
      expect(f.length).toBeLessThanOrEqual(1 << 20);
      parts.push(f.subarray(5));
      got += f.length - 5;
    }
    expect(parts.length).toBe(3);
    expect(Buffer.compare(Buffer.concat(parts), Buffer.from(big))).toBe(0);
    await c.sync();
  });
});

describe("reply ordering under concurrency", () => {
  test("slow Dial then fast Info: DialOK first, then InfoOK", async () => {
    await fresh();
    const c = await Raw.open(path);
    const gate = deferred<void>();
    api.dialHook = () => gate.promise;
    c.req([0x03, ...addr({ network: 0, node: 7 }), ...u16(1000)]);
    c.req([0x0d]);
    await until(() => api.infoCalls === 1, "Info handled while Dial is pending");
    expect(c.frames.length).toBe(0);
    gate.resolve();
    const first = await c.next();
    expect(first[0]).toBe(0x04);
    expect(hex(await c.next())).toBe(hex(INFO_OK));
  });

  test("two Dials answered in request order even when the second completes first", async () => {
    await fresh();
    const c = await Raw.open(path);
    const gates = new Map<number, Deferred<void>>([[7, deferred()], [8, deferred()]]);
    api.dialHook = (a) => gates.get(a.node)!.promise;
    c.req([0x03, ...addr({ network: 0, node: 7 }), ...u16(1000)]);
    c.req([0x03, ...addr({ network: 0, node: 8 }), ...u16(1000)]);
    await until(() => api.calls.length === 2, "both dials started");
    gates.get(8)!.resolve();
    await until(() => api.conns.size === 1, "second dial completed");
    const secondId = [...api.conns.keys()][0];
    gates.get(7)!.resolve();
    const a = await c.next();
    const b = await c.next();
    const ida = new DataView(a.buffer, a.byteOffset).getUint32(1);
    const idb = new DataView(b.buffer, b.byteOffset).getUint32(1);
    expect(api.remotes.get(ida)!.localAddr.node).toBe(7);
    expect(api.remotes.get(idb)!.localAddr.node).toBe(8);
    expect(idb).toBe(secondId);
  });

  test("Accept for a port bound behind a slow Dial waits for the BindOK", async () => {
    await fresh();
    const c = await Raw.open(path);
    const gate = deferred<void>();
    api.dialHook = () => gate.promise;
    c.req([0x03, ...addr({ network: 0, node: 7 }), ...u16(1000)]);
    c.req([0x01, ...u16(3000)]);
    await until(() => api.ports.has(3000), "port bound");
    const peer = api.incoming(3000);
    peer.write(te.encode("early"));
    await Bun.sleep(20);
    expect(c.frames.length).toBe(0);
    gate.resolve();
    expect((await c.next())[0]).toBe(0x04);
    expect(await c.nextHex()).toBe("020bb8");
    const acc = await c.next();
    expect(acc[0]).toBe(0x05);
    const recv = await c.next();
    expect(recv[0]).toBe(0x07);
    expect(td.decode(recv.subarray(5))).toBe("early");
  });
});

describe("pushes", () => {
  test("Accept push layout (15 bytes) before any Recv; CloseOK push after the last Recv", async () => {
    await fresh();
    const c = await Raw.open(path);
    c.req([0x01, ...u16(2000)]);
    expect(await c.nextHex()).toBe("0207d0");
    const from = { network: 3, node: 0x0a0b0c0d };
    const peer = api.incoming(2000, from, 0xc001);
    for (let i = 0; i < 20; i++) peer.write(te.encode(`chunk-${i};`));
    peer.end();
    const acc = await c.next();
    expect(acc.length).toBe(15);
    const id = new DataView(acc.buffer, acc.byteOffset).getUint32(3);
    expect(hex(acc)).toBe(hex(Uint8Array.from([0x05, ...u16(2000), ...u32(id), ...addr(from), ...u16(0xc001)])));
    let text = "";
    for (;;) {
      const f = await c.next();
      if (f[0] === 0x09) {
        expect(hex(f)).toBe(hex(Uint8Array.from([0x09, ...u32(id)])));
        break;
      }
      expect(f[0]).toBe(0x07);
      expect(new DataView(f.buffer, f.byteOffset).getUint32(1)).toBe(id);
      text += td.decode(f.subarray(5));
    }
    expect(text).toBe(Array.from({ length: 20 }, (_, i) => `chunk-${i};`).join(""));
  });

  test("datagrams go to every client; empty ones are dropped; a stalled client gets drops, others still receive", async () => {
    await fresh();
    const a = await Raw.open(path);
    const b = await Raw.open(path);
    await until(() => srv.clients.size === 2, "two clients");
    const src = { network: 0, node: 0x0102 };
    srv.pushDatagram(src, 1002, 1234, new Uint8Array(0));
    srv.pushDatagram(src, 1002, 1234, te.encode("hi"));
    const want = hex(cat([0x0c, ...addr(src), ...u16(1002), ...u16(1234)], "hi"));
    expect(await a.nextHex()).toBe(want);
    expect(await b.nextHex()).toBe(want);
    // a stops reading; b keeps reading
    a.sock.pause();
    const payload = new Uint8Array(60000);
    const N = 400; // 24 MB in total, well above the 8 MiB drop level
    let bGot = 0;
    for (let i = 0; i < N; i++) {
      payload[0] = i & 255;
      srv.pushDatagram(src, 1002, 1234, payload);
      if (i % 20 === 19) {
        // let b drain between bursts (a real packet loop interleaves with I/O)
        await until(() => {
          while (b.frames.length) {
            const f = b.frames.shift()!;
            expect(f[0]).toBe(0x0c);
            bGot++;
          }
          return bGot === i + 1;
        }, `b receives datagram ${i}`);
      }
    }
    expect(bGot).toBe(N);
    const stalled = [...srv.clients].find((x) => x.dgramDropped > 0);
    expect(stalled).toBeDefined();
    expect([...srv.clients].filter((x) => x.dgramDropped > 0).length).toBe(1);
    a.sock.resume();
    await a.sync(); // the stalled client is still served once it reads again
  });
});

describe("ownership and vanishing clients", () => {
  test("client destroyed while data is flowing: its conns get end(), its ports are unbound, a new client can bind", async () => {
    await fresh();
    const c = await Raw.open(path);
    c.req([0x01, ...u16(5000)]);
    expect(await c.nextHex()).toBe("021388");
    const peerIn = api.incoming(5000);
    c.req([0x03, ...addr({ network: 0, node: 7 }), ...u16(1000)]);
    let acc: Uint8Array | null = null;
    let dialId = 0;
    while (!acc || !dialId) {
      const f = await c.next();
      if (f[0] === 0x05) acc = f;
      if (f[0] === 0x04) dialId = new DataView(f.buffer, f.byteOffset).getUint32(1);
    }
    const accId = new DataView(acc.buffer, acc.byteOffset).getUint32(3);
    const peerOut = api.remotes.get(dialId)!;
    // stream data continuously towards the client from both peers
    let stop = false;
    const chunk = new Uint8Array(4096).fill(0x61);
    const pump = (p: MemConn) => {
      const go = () => {
        if (stop || p.state !== "ESTABLISHED") return;
        while (p.write(chunk)) {}
        p.onDrain = go;
      };
      go();
    };
    pump(peerIn);
    pump(peerOut);
    await until(() => c.frames.filter((f) => f[0] === 0x07).length > 10, "Recv pushes flowing");
    c.sock.destroy();
    await until(() => api.remoteEnded.has(accId) && api.remoteEnded.has(dialId), "both peers see FIN");
    stop = true;
    expect(api.ports.has(5000)).toBe(false);
    await until(() => srv.clients.size === 0, "client forgotten");
    const d = await Raw.open(path);
    d.req([0x01, ...u16(5000)]);
    expect(await d.nextHex()).toBe("021388");
    await d.sync();
  });

  test("client that stopped reading (conns paused by backpressure) then vanishes: its conns still close", async () => {
    await fresh();
    const c = await Raw.open(path);
    c.req([0x03, ...addr({ network: 0, node: 7 }), ...u16(1000)]);
    const ok = await c.next();
    const id = new DataView(ok.buffer, ok.byteOffset).getUint32(1);
    c.sock.pause();
    const peer = api.remotes.get(id)!;
    let blocked = false;
    const chunk = new Uint8Array(4096);
    for (let i = 0; i < 20000 && !blocked; i++) {
      if (!peer.write(chunk)) {
        // give the server time to push into the socket until it pauses the connection
        await Bun.sleep(1);
        if (peer.stats().sendBuffered > 200 * 1024) blocked = true;
      }
    }
    expect(blocked).toBe(true); // end-to-end backpressure reached the peer
    c.sock.destroy();
    await until(() => api.remoteEnded.has(id), "peer sees FIN after the client vanished");
    await until(() => api.conns.get(id)!.state === "CLOSED", "connection fully closed");
  });

  test("a listening client that stopped reading gets no more Accepts: new connections are reset (bounded accept queue)", async () => {
    await fresh();
    // A Bun socket whose pause() really stops reading at the kernel level.
    const got: Uint8Array[] = [];
    const dec = new FrameDecoder();
    const client = await Bun.connect({ unix: path, socket: { data(_s, d) { got.push(...dec.push(d)); } } });
    client.write(frame([0x01, ...u16(2222)]));
    await until(() => got.length >= 1, "BindOK");
    expect(hex(got[0])).toBe("0208ae");
    const first = api.incoming(2222, { network: 0, node: 9 }, 50001);
    await until(() => got.length >= 2, "Accept");
    expect(got[1][0]).toBe(0x05);
    const id = new DataView(got[1].buffer, got[1].byteOffset).getUint32(3);
    client.pause(); // the client stops reading: the daemon's writes to it back up
    const chunk = new Uint8Array(4096);
    for (let i = 0; i < 8000; i++) {
      if (!first.write(chunk)) await Bun.sleep(1);
      if (i % 64 === 0) await Bun.sleep(1);
      if (first.stats().sendBuffered > 1024 * 1024) break;
    }
    expect(first.stats().sendBuffered).toBeGreaterThan(1024 * 1024); // end-to-end backpressure reached the peer
    // 64 more connections are still queued for the congested client; the 65th is reset (RST)
    const queued: MemConn[] = [];
    for (let i = 0; i < 64; i++) queued.push(api.incoming(2222, { network: 0, node: 9 }, 50100 + i));
    const late = api.incoming(2222, { network: 0, node: 9 }, 50002);
    await until(() => late.state === "CLOSED", "65th connection reset");
    expect(queued.every((q) => q.state !== "CLOSED")).toBe(true);
    expect(api.conns.get(id)!.state).not.toBe("CLOSED"); // the accepted one is untouched
    client.terminate();
  }, 30000);

  test("Dial completing after its client vanished: the connection is closed, not leaked", async () => {
    await fresh();
    const c = await Raw.open(path);
    const gate = deferred<void>();
    api.dialHook = () => gate.promise;
    c.req([0x03, ...addr({ network: 0, node: 7 }), ...u16(1000)]);
    await until(() => api.calls.length === 1, "dial started");
    c.sock.destroy();
    await until(() => srv.clients.size === 0, "client gone");
    gate.resolve();
    await until(() => api.conns.size === 1, "dial completed");
    const id = [...api.conns.keys()][0];
    await until(() => api.remoteEnded.has(id), "late connection closed");
  });

  test("Send blocked by a full connection does not freeze the client when that connection dies", async () => {
    await fresh();
    const c = await Raw.open(path);
    c.req([0x03, ...addr({ network: 0, node: 7 }), ...u16(1000)]);
    const ok = await c.next();
    const id = new DataView(ok.buffer, ok.byteOffset).getUint32(1);
    const peer = api.remotes.get(id)!;
    peer.onData = () => {};
    peer.pause(); // the remote application stops reading: our write() returns false
    const data = new Uint8Array(64 * 1024);
    for (let i = 0; i < 16; i++) c.req(cat([0x06, ...u32(id)], data));
    await until(() => api.conns.get(id)!.stats().sendBuffered > 256 * 1024, "connection send buffer full");
    peer.abort(); // connection reset: it will never drain
    await c.sync(); // the client's later requests are read and answered again
  });
});

describe("socket file", () => {
  test("mode 0600, removed on close", async () => {
    await fresh();
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(statSync(path).isSocket()).toBe(true);
    srv.close();
    expect(existsSync(path)).toBe(false);
  });

  test("refuses to start when another live server owns the path; that server keeps working", async () => {
    await fresh();
    const second = new IpcServer(new FakeApi(), log);
    await expect(second.listen(path)).rejects.toThrow(`ipc start: another daemon is listening on ${path}`);
    const c = await Raw.open(path);
    await c.sync();
  });

  test("stale socket file (no listener) is replaced", async () => {
    const stale = join(dir, "stale.sock");
    // a process that listens and dies without removing its socket file
    const p = Bun.spawn([process.execPath, "-e", `require("node:net").createServer().listen(${JSON.stringify(stale)}, () => console.log("up"))`], { stdout: "pipe" });
    const reader = p.stdout.getReader();
    await reader.read();
    p.kill("SIGKILL");
    await p.exited;
    expect(statSync(stale).isSocket()).toBe(true);
    api = new FakeApi();
    srv = new IpcServer(api, log);
    path = stale;
    await srv.listen(stale);
    expect(statSync(stale).mode & 0o777).toBe(0o600);
    const c = await Raw.open(stale);
    await c.sync();
  });
});
