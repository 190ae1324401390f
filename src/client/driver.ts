// Low-level driver for the daemon's Unix-socket IPC: one socket, typed IPC messages, raw JSON
// replies. The typed SDK (pilot.ts) is built on it; pilotctl, the gateway and tests use it too.
//
// Correlation: the IPC protocol has no request IDs. Every outstanding call registers one waiter
// that sits in a FIFO keyed by its expected reply byte AND in one global FIFO for Error replies;
// the first reply of a byte goes to the oldest waiter of that byte, the first Error to the oldest
// waiter overall. Accept/Recv/RecvFrom are always pushes; CloseOK is a push, except that it also
// resolves the oldest pending Close waiter for the same conn_id (so Disconnect returns, which it
// never does with the reference driver). An Error arriving with no waiter is unsolicited (a
// Send/SendTo failure) and is only reported to `onUnsolicitedError`.
//
// Other fixes relative to the reference driver: writes are chunked (<= 64 KiB per Send);
// listeners are registered before Bind is sent (no lost early Accept); a closed conn's reads
// return EOF instead of hanging; a socket close fails pending datagram reads too; every call takes
// a timeout and an AbortSignal (a cancelled waiter stays queued so positional correlation stays
// correct, and its late reply is consumed and dropped).
//
// Runs under Bun and Node >= 20 (see ipc-socket.ts).
import { formatAddr } from "../proto/addr.ts";
import { FrameDecoder } from "../proto/framing.ts";
import {
  CMD_BIND_OK, CMD_CLOSE_OK, CMD_DEREGISTER_OK, CMD_DIAL_OK, CMD_HANDSHAKE_OK, CMD_INFO_OK, CMD_RESOLVE_HOSTNAME_OK,
  CMD_SET_HOSTNAME_OK, CMD_SET_TAGS_OK, CMD_SET_TASK_EXEC_OK, CMD_SET_VISIBILITY_OK, CMD_SET_WEBHOOK_OK,
  decodeIpc, encodeIpcFrame, encodeSendHead, IPC_CMD, type IpcMsg, type JsonObject,
} from "../proto/ipc.ts";
import { type Addr, ProtoError } from "../proto/types.ts";
import { abortError, arm, type CallOptions, PilotError } from "./errors.ts";
import { AsyncQueue } from "../sys/queue.ts";
import { connectIpcSocket, type IpcSocket } from "./ipc-socket.ts";

export type { CallOptions } from "./errors.ts";
/** Former name of PilotError, kept for existing callers. */
export const DriverError = PilotError;
export type DriverError = PilotError;

import { DEFAULT_SOCKET } from "../sys/constants.ts";
export { DEFAULT_SOCKET };
/** Max data bytes per Send message written by this driver. */
export const WRITE_CHUNK = 64 * 1024;
/** Data at least this large goes to the socket as it is, behind a separate 9-byte head (no copy). */
const WRITE_NO_COPY = 16 * 1024;

export interface Datagram {
  src: Addr;
  srcPort: number;
  dstPort: number;
  data: Uint8Array;
}

interface Waiter {
  reply: number;
  label: string;
  connId?: number; // for Close waiters
  hook?: (m: IpcMsg) => void; // runs synchronously on the reply, before later messages
  done: boolean;
  resolve: (m: IpcMsg) => void;
  reject: (e: Error) => void;
}

/** One stream connection owned by this driver. */
export class DriverConn {
  private chunks = new AsyncQueue<Uint8Array | null>();
  private eof = false;
  private closedLocal = false;
  /** Optional push callback; when set, chunks are delivered here instead of being queued. */
  onData: ((chunk: Uint8Array) => void) | null = null;
  onEnd: (() => void) | null = null;

  constructor(
    private readonly drv: Driver,
    readonly id: number,
    readonly remote: Addr,
    readonly remotePort: number,
    readonly localPort: number,
  ) {}

  get remoteAddr(): string {
    return `${formatAddr(this.remote)}:${this.remotePort}`;
  }
  get ended(): boolean {
    return this.eof;
  }

  /** @internal */ _push(chunk: Uint8Array): void {
    if (this.eof) return;
    if (this.onData) return this.onData(chunk);
    this.chunks.push(chunk);
  }
  /** @internal */ _end(): void {
    if (this.eof) return;
    this.eof = true;
    this.chunks.end(null);
    this.onEnd?.();
  }

  /** Next chunk of received data, or null at end of stream. */
  read(opts: CallOptions = {}): Promise<Uint8Array | null> {
    return this.chunks.take((cancel) => arm(opts, "read", cancel, "read timeout"));
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    for (;;) {
      const c = await this.read();
      if (c === null) return;
      yield c;
    }
  }

  /** Write data; chunked into Send messages of ≤ 64 KiB. Resolves when handed to the socket. */
  async write(data: Uint8Array | string): Promise<void> {
    if (this.closedLocal) throw new PilotError("connection_failed", "write: connection closed");
    const b = typeof data === "string" ? new TextEncoder().encode(data) : data;
    if (b.length === 0) return;
    for (let off = 0; off < b.length; off += WRITE_CHUNK) {
      const part = b.subarray(off, Math.min(b.length, off + WRITE_CHUNK));
      if (part.length >= WRITE_NO_COPY) await this.drv._write(encodeSendHead(this.id, part.length), part);
      else await this.drv._write(encodeIpcFrame({ cmd: "Send", connId: this.id, data: part }));
    }
  }

  /** Close locally and tell the daemon (no reply awaited). Later reads return EOF. */
  close(): void {
    if (this.closedLocal) return;
    this.closedLocal = true;
    this.drv._forget(this.id);
    this._end();
    this.drv._write(encodeIpcFrame({ cmd: "Close", connId: this.id })).catch(() => {});
  }
}

/** A bound port. accept() yields inbound connections in order. */
export class DriverListener {
  private queue = new AsyncQueue<DriverConn>();
  constructor(
    private readonly drv: Driver,
    readonly port: number,
  ) {}

  /** @internal */ _push(c: DriverConn): void {
    this.queue.push(c);
  }
  /** @internal */ _close(why?: Error): void {
    this.queue.fail(why ?? new PilotError("connection_failed", "listener closed"));
  }

  accept(opts: CallOptions = {}): Promise<DriverConn> {
    return this.queue.take((cancel) => arm(opts, "accept", cancel, "accept timeout"));
  }

  /** Stops local accepts. The port stays bound in the daemon until the driver disconnects. */
  close(): void {
    this._close();
    this.drv._unlisten(this.port, this);
  }
}

export class Driver {
  private dec = new FrameDecoder();
  private byReply = new Map<number, Waiter[]>();
  private errq: Waiter[] = [];
  private conns = new Map<number, DriverConn>();
  private listeners = new Map<number, DriverListener>();
  private dgrams = new AsyncQueue<Datagram>(1024);
  private dead: Error | null = null;
  private closeHandlers: (() => void)[] = [];
  /** Called for Errors nobody waits for (Send/SendTo failures). */
  onUnsolicitedError: ((message: string) => void) | null = null;
  /** Optional datagram push callback; when set, datagrams are not queued. */
  onDatagram: ((d: Datagram) => void) | null = null;
  /** Max queued datagrams (oldest dropped). */
  get maxQueuedDatagrams(): number {
    return this.dgrams.max;
  }
  set maxQueuedDatagrams(n: number) {
    this.dgrams.max = n;
  }

  private constructor(
    private readonly sock: IpcSocket,
    readonly socketPath: string,
  ) {}

  /** Connect to the daemon. Fails with code "not_running" when the socket is missing or refused. */
  static async connect(socketPath: string = DEFAULT_SOCKET, opts: CallOptions = {}): Promise<Driver> {
    const path = socketPath || DEFAULT_SOCKET;
    if (opts.signal?.aborted) throw abortError("connect", opts.signal);
    let drv: Driver | null = null;
    let sock: IpcSocket;
    try {
      sock = await connectIpcSocket(path, {
        data: (b) => drv?.onBytes(b),
        close: () => drv?.fail(new PilotError("connection_failed", "daemon disconnected")),
      }, opts.timeoutMs);
    } catch {
      throw new PilotError("not_running", "daemon is not running", "start the daemon with: pilotctl daemon start");
    }
    if (opts.signal?.aborted) {
      sock.destroy();
      throw abortError("connect", opts.signal);
    }
    drv = new Driver(sock, path);
    return drv;
  }

  get closed(): boolean {
    return this.dead !== null;
  }

  onClose(fn: () => void): void {
    if (this.dead) fn();
    else this.closeHandlers.push(fn);
  }

  /**
   * @internal Write one frame, or a frame's head and then its data (written back to back, so
   * nothing can come between them; the data is referenced, not copied, until the kernel has it).
   */ _write(frame: Uint8Array, data?: Uint8Array): Promise<void> {
    if (this.dead) return Promise.reject(new PilotError("connection_failed", "daemon disconnected"));
    const whole = this.sock.write(frame);
    if ((data === undefined || this.sock.write(data)) && whole) return Promise.resolve();
    if (this.sock.destroyed) return Promise.reject(new PilotError("connection_failed", "daemon disconnected"));
    return this.sock.waitDrain();
  }
  /** @internal */ _forget(id: number): void {
    this.conns.delete(id);
  }
  /** @internal */ _unlisten(port: number, l: DriverListener): void {
    if (this.listeners.get(port) === l) this.listeners.delete(port);
  }

  private onBytes(b: Uint8Array): void {
    let frames: Uint8Array[];
    try {
      frames = this.dec.push(b, true); // every read arrives in a fresh buffer: frames inside one are views
    } catch (e) {
      this.fail(new PilotError("connection_failed", (e as Error).message));
      this.sock.destroy();
      return;
    }
    for (const f of frames) {
      let m: IpcMsg;
      try {
        m = decodeIpc(f);
      } catch (e) {
        if (e instanceof ProtoError) continue; // malformed message: skip it
        throw e;
      }
      this.dispatch(m);
    }
  }

  private dispatch(m: IpcMsg): void {
    switch (m.cmd) {
      case "Recv": {
        this.conns.get(m.connId)?._push(m.data);
        return;
      }
      case "CloseOK": {
        const q = this.byReply.get(CMD_CLOSE_OK);
        if (q) {
          const i = q.findIndex((w) => w.connId === m.connId);
          if (i >= 0) this.settle(q[i], m);
        }
        const c = this.conns.get(m.connId);
        if (c) {
          this.conns.delete(m.connId);
          c._end();
        }
        return;
      }
      case "Accept": {
        const l = this.listeners.get(m.localPort);
        const c = new DriverConn(this, m.connId, m.remote, m.remotePort, m.localPort);
        this.conns.set(m.connId, c);
        if (l) l._push(c);
        else c.close(); // nobody listens locally any more: give the connection back
        return;
      }
      case "RecvFrom": {
        const d: Datagram = { src: m.src, srcPort: m.srcPort, dstPort: m.dstPort, data: m.data };
        if (this.onDatagram) return this.onDatagram(d);
        this.dgrams.push(d);
        return;
      }
      case "Error": {
        const w = this.errq[0];
        if (!w) {
          this.onUnsolicitedError?.(m.message);
          return;
        }
        this.settle(w, m);
        return;
      }
      default: {
        const byte = IPC_CMD[m.cmd];
        const q = this.byReply.get(byte);
        const w = q?.[0];
        if (w) this.settle(w, m);
        return;
      }
    }
  }

  private settle(w: Waiter, m: IpcMsg): void {
    const q = this.byReply.get(w.reply);
    if (q) {
      const i = q.indexOf(w);
      if (i >= 0) q.splice(i, 1);
    }
    const j = this.errq.indexOf(w);
    if (j >= 0) this.errq.splice(j, 1);
    if (m.cmd !== "Error") w.hook?.(m); // even for timed-out waiters: keeps conn bookkeeping right
    if (w.done) return;
    w.done = true;
    if (m.cmd === "Error") w.reject(new PilotError("connection_failed", `${w.label}: daemon: ${m.message}`));
    else w.resolve(m);
  }

  private fail(err: Error): void {
    if (this.dead) return;
    this.dead = err;
    for (const w of this.errq.splice(0)) {
      if (!w.done) {
        w.done = true;
        w.reject(err);
      }
    }
    this.byReply.clear();
    for (const c of this.conns.values()) c._end();
    this.conns.clear();
    for (const l of this.listeners.values()) l._close(err);
    this.listeners.clear();
    this.dgrams.fail(err);
    for (const h of this.closeHandlers.splice(0)) h();
  }

  /** Send a request and wait for its reply (or Error). */
  request(msg: IpcMsg, reply: number, label: string, opts: CallOptions = {}, connId?: number, hook?: (m: IpcMsg) => void): Promise<IpcMsg> {
    if (this.dead) return Promise.reject(this.dead);
    if (opts.signal?.aborted) return Promise.reject(abortError(label, opts.signal));
    return new Promise((resolve, reject) => {
      let disarm = () => {};
      const w: Waiter = {
        reply, label, connId, hook, done: false,
        resolve: (m) => { disarm(); resolve(m); },
        reject: (e) => { disarm(); reject(e); },
      };
      let q = this.byReply.get(reply);
      if (!q) this.byReply.set(reply, (q = []));
      q.push(w);
      this.errq.push(w);
      // On timeout/abort the waiter stays queued (done=true) so the late reply is still consumed in order.
      disarm = arm(opts, label, (e) => {
        if (w.done) return;
        w.done = true;
        reject(e);
      }, `${label}: no reply from daemon within ${opts.timeoutMs}ms`);
      let frame: Uint8Array;
      try {
        frame = encodeIpcFrame(msg);
      } catch (e) {
        q.pop();
        this.errq.pop();
        w.done = true;
        reject(e);
        return;
      }
      this._write(frame).catch((e) => {
        if (!w.done) {
          w.done = true;
          reject(e);
        }
      });
    });
  }

  private async json(msg: IpcMsg, reply: number, label: string, opts?: CallOptions): Promise<JsonObject> {
    const m = await this.request(msg, reply, label, opts);
    return (m as { json: JsonObject }).json;
  }

  info(opts?: CallOptions): Promise<JsonObject> {
    return this.json({ cmd: "Info" }, CMD_INFO_OK, "info", opts);
  }

  /** Open a stream connection (may take ~30 s against an unreachable node). */
  async dial(addr: Addr, port: number, opts?: CallOptions): Promise<DriverConn> {
    // The conn is registered synchronously when DialOK is dispatched, so Recv pushes that follow
    // it in the same read are not lost. A dial that timed out locally closes the late conn.
    let conn: DriverConn | null = null;
    let timedOut = false;
    const hook = (m: IpcMsg) => {
      const id = (m as { connId: number }).connId;
      conn = new DriverConn(this, id, addr, port, 0);
      this.conns.set(id, conn);
      if (timedOut) conn.close();
    };
    try {
      await this.request({ cmd: "Dial", addr, port }, CMD_DIAL_OK, "dial", opts, undefined, hook);
    } catch (e) {
      timedOut = true;
      throw e;
    }
    return conn!;
  }

  /** Bind a port; Accept pushes for it are delivered to the returned listener. */
  async listen(port: number, opts?: CallOptions): Promise<DriverListener> {
    const l = new DriverListener(this, port);
    this.listeners.set(port, l); // registered before Bind, so an early Accept is not lost
    try {
      await this.request({ cmd: "Bind", port }, CMD_BIND_OK, "bind", opts);
    } catch (e) {
      if (this.listeners.get(port) === l) this.listeners.delete(port);
      throw e;
    }
    return l;
  }

  /** Send a datagram (no reply on success). */
  sendTo(addr: Addr, port: number, data: Uint8Array | string): Promise<void> {
    const b = typeof data === "string" ? new TextEncoder().encode(data) : data;
    return this._write(encodeIpcFrame({ cmd: "SendTo", addr, port, data: b }));
  }

  /** Next datagram pushed by the daemon (all datagrams reach every client; filter by dstPort). */
  recvFrom(opts: CallOptions = {}): Promise<Datagram> {
    return this.dgrams.take((cancel) => arm(opts, "recvfrom", cancel, "recvfrom timeout"));
  }


  handshake(nodeId: number, justification = "", opts?: CallOptions): Promise<JsonObject> {
    return this.json({ cmd: "Handshake", sub: "request", nodeId, justification }, CMD_HANDSHAKE_OK, "handshake", opts);
  }
  approve(nodeId: number, opts?: CallOptions): Promise<JsonObject> {
    return this.json({ cmd: "Handshake", sub: "approve", nodeId }, CMD_HANDSHAKE_OK, "approve", opts);
  }
  reject(nodeId: number, reason = "", opts?: CallOptions): Promise<JsonObject> {
    return this.json({ cmd: "Handshake", sub: "reject", nodeId, reason }, CMD_HANDSHAKE_OK, "reject", opts);
  }
  pending(opts?: CallOptions): Promise<JsonObject> {
    return this.json({ cmd: "Handshake", sub: "pending" }, CMD_HANDSHAKE_OK, "pending", opts);
  }
  trusted(opts?: CallOptions): Promise<JsonObject> {
    return this.json({ cmd: "Handshake", sub: "trusted" }, CMD_HANDSHAKE_OK, "trusted", opts);
  }
  untrust(nodeId: number, opts?: CallOptions): Promise<JsonObject> {
    return this.json({ cmd: "Handshake", sub: "revoke", nodeId }, CMD_HANDSHAKE_OK, "revoke", opts);
  }
  resolveHostname(hostname: string, opts?: CallOptions): Promise<JsonObject> {
    return this.json({ cmd: "ResolveHostname", hostname }, CMD_RESOLVE_HOSTNAME_OK, "resolve_hostname", opts);
  }
  setHostname(hostname: string, opts?: CallOptions): Promise<JsonObject> {
    return this.json({ cmd: "SetHostname", hostname }, CMD_SET_HOSTNAME_OK, "set_hostname", opts);
  }
  setVisibility(isPublic: boolean, opts?: CallOptions): Promise<JsonObject> {
    return this.json({ cmd: "SetVisibility", public: isPublic }, CMD_SET_VISIBILITY_OK, "set_visibility", opts);
  }
  deregister(opts?: CallOptions): Promise<JsonObject> {
    return this.json({ cmd: "Deregister" }, CMD_DEREGISTER_OK, "deregister", opts);
  }
  setTags(tags: string[], opts?: CallOptions): Promise<JsonObject> {
    return this.json({ cmd: "SetTags", tags }, CMD_SET_TAGS_OK, "set_tags", opts);
  }
  setWebhook(url: string, opts?: CallOptions): Promise<JsonObject> {
    return this.json({ cmd: "SetWebhook", url }, CMD_SET_WEBHOOK_OK, "set_webhook", opts);
  }
  setTaskExec(enabled: boolean, opts?: CallOptions): Promise<JsonObject> {
    return this.json({ cmd: "SetTaskExec", enabled }, CMD_SET_TASK_EXEC_OK, "set_task_exec", opts);
  }

  /** Close any connection by ID and wait for the daemon's CloseOK (the reference driver never returns here). */
  async disconnect(connId: number, opts?: CallOptions): Promise<void> {
    await this.request({ cmd: "Close", connId }, CMD_CLOSE_OK, "close", opts, connId);
  }

  /**
   * Stop reading the daemon socket (flow control for one-connection-per-driver users such as the
   * gateway): the daemon's pushes back up, it pauses the stream, and the peer's window closes.
   */
  pause(): void {
    this.sock.pause();
  }
  resume(): void {
    this.sock.resume();
  }

  /** Close the IPC connection (the daemon then releases our ports and connections). */
  close(): void {
    this.sock.end();
    this.sock.destroy();
    this.fail(new PilotError("connection_failed", "driver closed"));
  }
}
