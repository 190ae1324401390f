// Harness for the IpcServer unit suites: a FAKE DaemonApi (in-memory connections, recorded calls,
// controllable dials), a raw IPC client over a REAL Unix socket, frame builders, and one fresh
// server per test (`fresh()`; the live bindings api/srv/path follow it).
import { afterAll, afterEach, beforeAll } from "bun:test";
import { mkdtempSync, rmSync, statSync, existsSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { IpcServer, type DaemonApi } from "../../src/daemon/ipc-server.ts";
import { Logger } from "../../src/sys/log.ts";
import { memConnPair, type MemConn } from "./memconn.ts";
import { FrameDecoder } from "../../src/proto/framing.ts";
import type { HandshakeSub, JsonObject } from "../../src/proto/ipc.ts";
import type { Addr } from "../../src/proto/types.ts";
import type { StreamConn } from "../../src/transport/api.ts";

export const te = new TextEncoder();
export const td = new TextDecoder();
export const SELF: Addr = { network: 0, node: 5 };

export function hex(b: Uint8Array): string {
  return Buffer.from(b).toString("hex");
}
export function cat(...parts: (Uint8Array | number[] | string)[]): Uint8Array {
  const bufs = parts.map((p) => (typeof p === "string" ? te.encode(p) : Uint8Array.from(p)));
  return Buffer.concat(bufs);
}
export function frame(body: Uint8Array | number[] | string): Uint8Array {
  const b = typeof body === "string" ? te.encode(body) : Uint8Array.from(body);
  const out = new Uint8Array(4 + b.length);
  new DataView(out.buffer).setUint32(0, b.length);
  out.set(b, 4);
  return out;
}
export function u32(n: number): number[] {
  return [(n >>> 24) & 255, (n >>> 16) & 255, (n >>> 8) & 255, n & 255];
}
export function u16(n: number): number[] {
  return [(n >>> 8) & 255, n & 255];
}
export function addr(a: Addr): number[] {
  return [...u16(a.network), ...u32(a.node)];
}
export function errBody(msg: string): Uint8Array {
  return cat([0x0a, 0x00, 0x01], msg);
}
export async function until(fn: () => boolean, what: string, ms = 10000): Promise<void> {
  const end = Date.now() + ms;
  while (!fn()) {
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await Bun.sleep(5);
  }
}

export interface Deferred<T> {
  promise: Promise<T>;
  resolve(v: T): void;
  reject(e: Error): void;
}
export function deferred<T>(): Deferred<T> {
  let resolve!: (v: T) => void, reject!: (e: Error) => void;
  const promise = new Promise<T>((a, b) => {
    resolve = a;
    reject = b;
  });
  return { promise, resolve, reject };
}

/** Fake daemon: in-memory connections (memconn), recorded calls, controllable dials. */
export class FakeApi implements DaemonApi {
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
export class Raw {
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

export let dir: string;
export let api: FakeApi;
export let srv: IpcServer;
export let path: string;
let clients: Raw[] = [];
export const log = new Logger("error", "text", () => {});

/** Register the suite's hooks: a temp dir for sockets, and cleanup of clients and server after each test. */
export function installHooks(): void {
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "pilot-ipcsrv-"));
  });
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true, maxRetries: 5 });
  });
  afterEach(() => {
    for (const c of clients) c.sock.destroy();
    clients = [];
    srv?.close();
  });
}

export let n = 0;
export async function fresh(at?: string): Promise<void> {
  api = new FakeApi();
  srv = new IpcServer(api, log);
  path = at ?? join(dir, `s${n++}.sock`);
  await srv.listen(path);
}

/** A path in the suite's temp dir. */
export function tempPath(name: string): string {
  return join(dir, name);
}

export const INFO_OK = cat([0x0e], '{"address":"0:0000.0000.0005","conn_list":[],"hostname":"\\u003cme\\u003e","node_id":5}');

