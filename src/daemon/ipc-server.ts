// IPC server on the daemon's Unix socket (ipc.md). Per client: requests are decoded in arrival
// order and may run concurrently (a slow Dial no longer blocks the Sends behind it, ipc.md §12.4-1),
// but replies are emitted strictly in request order, which is all the reference driver's
// positional correlation needs (ipc.md §6).
import { connect } from "node:net";
import type { UnixSocketListener } from "bun";
import { BufferedSocket } from "../sys/buffered-socket.ts";
import { chmodSync, unlinkSync, existsSync } from "node:fs";
import { FrameDecoder, MAX_FRAME } from "../proto/framing.ts";
import { decodeIpc, encodeIpcFrame, type IpcMsg, type HandshakeSub, type JsonObject } from "../proto/ipc.ts";
import { ProtoError, type Addr } from "../proto/types.ts";
import type { StreamConn } from "../transport/api.ts";
import type { Logger } from "./log.ts";

/** What the IPC layer needs from the daemon. Errors are thrown as Error(message-as-sent). */
export interface DaemonApi {
  /** Bind a port for IPC clients; throws Error("port N already bound"). Returns an unbind function. */
  bind(port: number, onAccept: (c: StreamConn) => void): () => void;
  dial(addr: Addr, port: number): Promise<StreamConn>;
  sendTo(addr: Addr, port: number, data: Uint8Array): Promise<void>;
  conn(id: number): StreamConn | undefined;
  closeConn(id: number): void;
  info(): JsonObject;
  handshake(h: HandshakeSub): Promise<JsonObject>;
  resolveHostname(name: string): Promise<JsonObject>;
  setHostname(name: string): Promise<JsonObject>;
  setVisibility(pub: boolean): Promise<JsonObject>;
  deregister(): Promise<JsonObject>;
  setTags(tags: string[] | null): Promise<JsonObject>;
  setWebhook(url: string): Promise<JsonObject>;
  setTaskExec(enabled: boolean): Promise<JsonObject>;
}

/** Client frames may exceed 1 MiB (reference driver does not chunk, ipc.md §12.2-3). */
const MAX_CLIENT_FRAME = 16 * 1024 * 1024 + 64;
/** Socket write-buffer level above which connection pushes pause (end-to-end backpressure). */
const PUSH_HIGH_WATER = 4 * 1024 * 1024;
/** Datagram pushes are dropped for a client this far behind (ipc.md §12.4-2: never block). */
const DGRAM_DROP_LEVEL = 8 * 1024 * 1024;

type Reply = IpcMsg | null;

/** Largest data per Recv push so the frame stays within 1 MiB (cmd + conn_id = 5 bytes). */
const MAX_RECV_DATA = MAX_FRAME - 5;
/** Connections waiting for a BindOK (ipc.md §4.1 AcceptQueueLen). */
const ACCEPT_QUEUE = 64;
/** Recv pushes coalesce up to this many bytes per connection per event-loop turn. */
const RECV_COALESCE = 256 * 1024;
/** How often connections that blocked a client's Sends are checked for having closed. */
const SEND_BLOCK_CHECK_MS = 500;

const discard = (): void => {};

/**
 * Run a DaemonApi call so that a synchronous throw becomes a rejected promise.
 * FIX: a DaemonApi method that threw synchronously (e.g. info()) used to escape the socket's
 * 'data' handler as an uncaught exception and kill the daemon; now it becomes an Error reply.
 */
function call<T>(fn: () => T | Promise<T>): Promise<T> {
  try {
    return Promise.resolve(fn());
  } catch (e) {
    return Promise.reject(e);
  }
}

class Client {
  readonly decoder = new FrameDecoder(MAX_CLIENT_FRAME);
  readonly ports = new Map<number, () => void>();
  readonly conns = new Map<number, StreamConn>();
  private replyChain: Promise<void> = Promise.resolve();
  private pausedConns = new Set<StreamConn>();
  /** Connections whose write() returned false: the client's socket is not read until all drain. */
  private sendBlocked = new Set<StreamConn>();
  private sendBlockTimer: ReturnType<typeof setInterval> | null = null;
  closed = false;
  dgramDropped = 0;

  constructor(
    readonly sock: BufferedSocket,
    private readonly srv: IpcServer,
  ) {
    sock.on("drain", () => {
      this.congested = false;
      this.acceptsWhileCongested = 0;
      // Take the set first: resuming delivers buffered data, which may pause (and re-add) a
      // connection again before this loop ends.
      const paused = [...this.pausedConns];
      this.pausedConns.clear();
      for (const c of paused) c.resume();
    });
  }

  /**
   * Write one message; never throws.
   * FIX: encodeIpcFrame throws for bodies > 1 MiB (or out-of-range fields). That used to throw
   * out of transport callbacks, or reject the reply chain — after which every later reply of the
   * client was lost and the unhandled rejection terminated the daemon. Now an oversized Recv is
   * split into <= 1 MiB pushes (byte-stream semantics, ipc.md §4.5) and an unencodable reply is
   * replaced by an Error carrying the reason, so the client still gets exactly one reply.
   */
  /** A write returned false and no 'drain' has followed yet: the client is not keeping up. */
  congested = false;
  /** Accepts written since the socket last reported congestion (reset on drain). */
  acceptsWhileCongested = 0;

  /** May one more Accept be pushed? False once 64 are queued behind a client that is not reading. */
  acceptSlot(): boolean {
    if (!this.congested) return true;
    return ++this.acceptsWhileCongested <= ACCEPT_QUEUE;
  }

  write(msg: IpcMsg): boolean {
    if (this.closed || this.sock.destroyed) return false;
    if (msg.cmd === "Recv" && msg.data.length > MAX_RECV_DATA) {
      let ok = true;
      for (let off = 0; off < msg.data.length; off += MAX_RECV_DATA) {
        ok = this.write({ cmd: "Recv", connId: msg.connId, data: msg.data.subarray(off, off + MAX_RECV_DATA) });
      }
      return ok;
    }
    let frame: Uint8Array;
    try {
      frame = encodeIpcFrame(msg, MAX_FRAME);
    } catch (e) {
      if (msg.cmd === "Error") return true;
      return this.write({ cmd: "Error", code: 1, message: (e as Error).message });
    }
    const ok = this.sock.write(frame);
    if (!ok) this.congested = true;
    return ok;
  }

  get backlog(): number {
    return this.sock.writableLength;
  }

  /** Queue a reply in request order. `p` resolves to the reply (or null: nothing to send). */
  enqueue(p: Promise<Reply> | Reply, after?: () => void): void {
    const prev = this.replyChain;
    this.replyChain = (async () => {
      let r: Reply;
      try {
        r = await p;
      } catch (e) {
        r = { cmd: "Error", code: 1, message: (e as Error).message };
      }
      await prev;
      // FIX: the chain must never reject (a rejected link loses every later reply and crashes
      // the daemon as an unhandled rejection); write() no longer throws and `after` is guarded.
      if (r) this.write(r);
      try {
        after?.();
      } catch (e) {
        this.srv.warn("ipc reply hook failed", e);
      }
    })();
  }

  /** Own a connection: push its data (Recv), its end (CloseOK) and honour backpressure. */
  adopt(c: StreamConn): void {
    if (this.closed) {
      // FIX: a connection accepted (or dialed) for a client that has already gone used to be
      // recorded in a map nobody cleans any more, leaking an open connection. Close it instead.
      c.onData = discard;
      c.resume();
      c.end();
      return;
    }
    this.conns.set(c.id, c);
    let ended = false;
    // Recv coalescing (ipc.md §12.4-4): segments delivered during one event-loop turn are pushed
    // as one Recv of up to RECV_COALESCE bytes instead of one 4 KiB push each. Receivers treat
    // the stream as bytes (ipc.md §4.5), so fewer, larger pushes are invisible to them but cut
    // the frame count (and both sides' per-message cost) by up to 64x on bulk transfers.
    let pend: Uint8Array | null = null;
    let pendLen = 0;
    let scheduled = false;
    const flushRecv = (): void => {
      scheduled = false;
      if (!pend || pendLen === 0) return;
      const data = pend.subarray(0, pendLen);
      pend = null;
      pendLen = 0;
      if (this.closed) return;
      if (!this.write({ cmd: "Recv", connId: c.id, data }) || this.backlog > PUSH_HIGH_WATER) {
        c.pause();
        this.pausedConns.add(c);
      }
    };
    const finish = () => {
      if (ended) return;
      ended = true;
      flushRecv(); // every Recv precedes the CloseOK that ends the stream (ipc.md §4.5)
      this.conns.delete(c.id);
      this.write({ cmd: "CloseOK", connId: c.id });
    };
    c.onData = (chunk) => {
      if (this.closed) return;
      if (!pend) pend = new Uint8Array(Math.max(RECV_COALESCE, chunk.length));
      else if (pendLen + chunk.length > pend.length) {
        flushRecv();
        pend = new Uint8Array(Math.max(RECV_COALESCE, chunk.length));
      }
      pend.set(chunk, pendLen); // copy: the chunk may be a view into a transport buffer
      pendLen += chunk.length;
      if (pendLen >= RECV_COALESCE) flushRecv();
      else if (!scheduled) {
        scheduled = true;
        setImmediate(flushRecv);
      }
    };
    c.onEnd = finish;
    c.onClose = () => finish();
    if (c.state === "CLOSED") finish();
    c.resume();
  }

  /**
   * Send backpressure: stop reading the client until `conn` drains.
   * FIX: the socket used to be resumed only by the connection's onDrain. A connection that closed
   * (RST, abort, idle timeout) while blocked never drains, which froze the client for good: none
   * of its later requests (even Info) were read. Now the client is also released when the
   * connection is no longer writable, and it stays paused while ANY blocked connection is full
   * (several connections blocking at once used to resume on the first drain).
   */
  blockSend(conn: StreamConn): void {
    if (this.closed || this.sendBlocked.has(conn)) return;
    this.sendBlocked.add(conn);
    this.sock.pause();
    const prev = conn.onDrain;
    const hook = (): void => {
      if (conn.onDrain === hook) conn.onDrain = prev;
      this.unblockSend(conn);
      prev?.();
    };
    conn.onDrain = hook;
    if (!this.sendBlockTimer) {
      this.sendBlockTimer = setInterval(() => {
        for (const b of this.sendBlocked) {
          if (b.state !== "ESTABLISHED" && b.state !== "CLOSE_WAIT") this.unblockSend(b);
        }
      }, SEND_BLOCK_CHECK_MS);
    }
  }

  private unblockSend(conn: StreamConn): void {
    if (!this.sendBlocked.delete(conn)) return;
    if (this.sendBlocked.size > 0) return;
    if (this.sendBlockTimer) clearInterval(this.sendBlockTimer);
    this.sendBlockTimer = null;
    if (!this.closed) this.sock.resume();
  }

  cleanup(): void {
    if (this.closed) return;
    this.closed = true;
    // ipc.md §7: close owned connections (FIN), then unbind ports.
    for (const c of this.conns.values()) {
      // FIX: connections paused for this client's backpressure stayed paused forever, so their
      // receive side (and the peer's FIN behind the buffered data) was never processed and the
      // connection never finished closing. Discard further data and resume before the FIN.
      c.onData = discard;
      c.onEnd = c.onClose = null;
      try {
        c.resume();
        c.end();
      } catch {
        /* already closed */
      }
    }
    this.conns.clear();
    this.pausedConns.clear();
    this.sendBlocked.clear();
    if (this.sendBlockTimer) clearInterval(this.sendBlockTimer);
    this.sendBlockTimer = null;
    for (const unbind of this.ports.values()) unbind();
    this.ports.clear();
    this.srv.clients.delete(this);
  }
}

export class IpcServer {
  private server: UnixSocketListener<Client | undefined> | null = null;
  readonly clients = new Set<Client>();

  constructor(
    private readonly api: DaemonApi,
    private readonly log: Logger,
  ) {}

  /** @internal log helper for Client. */
  warn(msg: string, e: unknown): void {
    this.log.warn(msg, { err: e instanceof Error ? e.message : String(e) });
  }

  async listen(path: string): Promise<void> {
    // ipc.md §12.3-2: do not steal a live daemon's socket.
    if (existsSync(path)) {
      const alive = await new Promise<boolean>((resolve) => {
        const s = connect(path);
        s.once("connect", () => {
          s.destroy();
          resolve(true);
        });
        s.once("error", () => resolve(false));
      });
      if (alive) throw new Error(`ipc start: another daemon is listening on ${path}`);
      try {
        unlinkSync(path);
      } catch {
        /* ignore */
      }
    }
    const oldMask = process.umask(0o177); // socket created 0600, no window with wider perms
    let srv: UnixSocketListener<Client | undefined>;
    try {
      srv = Bun.listen<Client | undefined>({
        unix: path,
        socket: {
          open: (raw) => {
            raw.data = this.onClient(new BufferedSocket(raw as never));
          },
          data: (raw, buf) => {
            if (raw.data) this.onData(raw.data, buf);
          },
          drain: (raw) => raw.data?.sock.onWritable(),
          close: (raw) => {
            if (!raw.data) return;
            raw.data.sock.destroyed = true;
            raw.data.cleanup();
          },
          error: (raw) => raw.data?.cleanup(),
        },
      });
    } catch (e) {
      throw new Error(`ipc start: listen unix ${path}: ${(e as Error).message}`);
    } finally {
      process.umask(oldMask);
    }
    try {
      chmodSync(path, 0o600);
    } catch (e) {
      throw new Error(`ipc start: chmod socket ${path}: ${(e as Error).message}`);
    }
    this.server = srv;
    this.path = path;
  }
  private path = "";

  close(): void {
    for (const c of [...this.clients]) {
      c.cleanup();
      c.sock.destroy();
    }
    this.server?.stop(true);
    this.server = null;
    if (this.path) {
      try {
        unlinkSync(this.path);
      } catch {
        /* ignore */
      }
    }
  }

  /** Push a received datagram to every client (ipc.md §4.9), never blocking the packet path. */
  pushDatagram(src: Addr, srcPort: number, dstPort: number, data: Uint8Array): void {
    if (data.length === 0) return;
    for (const c of this.clients) {
      if (c.backlog > DGRAM_DROP_LEVEL) {
        c.dgramDropped++;
        continue;
      }
      c.write({ cmd: "RecvFrom", src, srcPort, dstPort, data });
    }
  }

  private onClient(sock: BufferedSocket): Client {
    const c = new Client(sock, this);
    this.clients.add(c);
    return c;
  }

  private onData(c: Client, buf: Uint8Array): void {
    let frames: Uint8Array[];
    try {
      frames = c.decoder.push(buf);
    } catch (e) {
      this.log.warn("ipc client dropped", { err: (e as Error).message });
      c.cleanup();
      c.sock.destroy();
      return;
    }
    for (const f of frames) {
      if (c.closed) return;
      try {
        this.onFrame(c, f);
      } catch (e) {
        // FIX: an unexpected throw while handling one request used to escape the 'data'
        // handler and terminate the daemon. Answer it with an Error instead so the client's
        // positional reply correlation (ipc.md §6) stays intact.
        this.warn("ipc request failed", e);
        if (f[0] !== 0x06 && f[0] !== 0x0b) c.enqueue({ cmd: "Error", code: 1, message: (e as Error).message });
      }
    }
  }

  private onFrame(c: Client, body: Uint8Array): void {
    let msg: IpcMsg;
    try {
      msg = decodeIpc(body);
    } catch (e) {
      c.enqueue(errorFor(body, e as Error));
      return;
    }
    const api = this.api;
    switch (msg.cmd) {
      case "Bind": {
        const port = msg.port;
        // FIX: Accept pushes used to be written as soon as a connection arrived, even while the
        // BindOK was still queued behind an earlier slow request (e.g. a Dial). The reference
        // driver drops an Accept for a port it has not seen BindOK for (ipc.md §12.2-6), so the
        // connection was lost. Connections now wait (paused) until the BindOK is on the wire.
        let ready = false;
        const early: StreamConn[] = [];
        const announce = (conn: StreamConn): void => {
          if (c.closed) {
            c.adopt(conn); // closes it
            return;
          }
          c.write({ cmd: "Accept", localPort: port, connId: conn.id, remote: conn.remoteAddr, remotePort: conn.remotePort });
          c.adopt(conn); // Accept precedes any Recv for the connection
        };
        let unbind: () => void;
        try {
          unbind = api.bind(port, (conn) => {
            // ipc.md §4.1: the accept queue is bounded (64): while the client's socket is congested
            // (it is not reading), at most 64 Accepts are queued for it; later connections are
            // reset instead of piling up without bound.
            if (early.length >= ACCEPT_QUEUE || !c.acceptSlot()) {
              conn.abort();
              return;
            }
            conn.pause();
            if (ready) announce(conn);
            else early.push(conn);
          });
        } catch (e) {
          c.enqueue({ cmd: "Error", code: 1, message: (e as Error).message });
          return;
        }
        c.ports.set(port, unbind);
        c.enqueue({ cmd: "BindOK", port }, () => {
          ready = true;
          for (const conn of early.splice(0)) announce(conn);
        });
        return;
      }
      case "Dial": {
        let conn: StreamConn | null = null;
        const { addr, port } = msg;
        const p = call(() => api.dial(addr, port)).then((cn) => {
          conn = cn;
          cn.pause(); // hold data until the DialOK is on the wire
          return { cmd: "DialOK", connId: cn.id } as IpcMsg;
        });
        c.enqueue(p, () => {
          if (conn) c.adopt(conn); // closes it if the client has gone meanwhile
        });
        return;
      }
      case "Send": {
        if (msg.data.length === 0) return;
        const conn = api.conn(msg.connId);
        if (!conn) {
          // ipc.md §12.2-2: errors for Send are unsolicited from the driver's view: log, don't reply.
          this.log.debug("ipc send on unknown connection", { conn_id: msg.connId });
          return;
        }
        try {
          if (!conn.write(msg.data, true)) c.blockSend(conn);
        } catch (e) {
          this.log.debug("ipc send failed", { conn_id: msg.connId, err: (e as Error).message });
        }
        return;
      }
      case "Close": {
        try {
          api.closeConn(msg.connId);
        } catch (e) {
          // Close always answers CloseOK (ipc.md §4.6); a failing close is only logged.
          this.log.debug("ipc close failed", { conn_id: msg.connId, err: (e as Error).message });
        }
        c.enqueue({ cmd: "CloseOK", connId: msg.connId });
        return;
      }
      case "SendTo": {
        if (msg.addr.node === 0xffffffff) {
          this.log.debug("sendto broadcast refused");
          return;
        }
        const { addr, port, data } = msg;
        call(() => api.sendTo(addr, port, data)).catch((e) => this.log.debug("sendto failed", { err: (e as Error).message }));
        return;
      }
      case "Info":
        c.enqueue(call(() => api.info()).then((json) => ({ cmd: "InfoOK", json }) as IpcMsg));
        return;
      case "Handshake": {
        const { cmd: _cmd, ...sub } = msg;
        c.enqueue(call(() => api.handshake(sub as HandshakeSub)).then((json) => ({ cmd: "HandshakeOK", json }) as IpcMsg));
        return;
      }
      case "ResolveHostname":
        { const v = msg.hostname; c.enqueue(call(() => api.resolveHostname(v)).then((json) => ({ cmd: "ResolveHostnameOK", json }) as IpcMsg)); }
        return;
      case "SetHostname":
        { const v = msg.hostname; c.enqueue(call(() => api.setHostname(v)).then((json) => ({ cmd: "SetHostnameOK", json }) as IpcMsg)); }
        return;
      case "SetVisibility":
        { const v = msg.public; c.enqueue(call(() => api.setVisibility(v)).then((json) => ({ cmd: "SetVisibilityOK", json }) as IpcMsg)); }
        return;
      case "Deregister":
        c.enqueue(call(() => api.deregister()).then((json) => ({ cmd: "DeregisterOK", json }) as IpcMsg));
        return;
      case "SetTags":
        if (msg.tags && msg.tags.length > 3) {
          c.enqueue({ cmd: "Error", code: 1, message: "set_tags: maximum 3 tags allowed" });
          return;
        }
        { const v = msg.tags; c.enqueue(call(() => api.setTags(v)).then((json) => ({ cmd: "SetTagsOK", json }) as IpcMsg)); }
        return;
      case "SetWebhook":
        { const v = msg.url; c.enqueue(call(() => api.setWebhook(v)).then((json) => ({ cmd: "SetWebhookOK", json }) as IpcMsg)); }
        return;
      case "SetTaskExec":
        { const v = msg.enabled; c.enqueue(call(() => api.setTaskExec(v)).then((json) => ({ cmd: "SetTaskExecOK", json }) as IpcMsg)); }
        return;
      default:
        c.enqueue({ cmd: "Error", code: 1, message: `unknown command: 0x${hex2(body[0])}` });
    }
  }
}

function hex2(n: number): string {
  return n.toString(16).toUpperCase().padStart(2, "0");
}

/** Map a decode failure to the reference's error text for that command (ipc.md §5). */
function errorFor(body: Uint8Array, e: Error): IpcMsg | null {
  const cmd = body[0];
  if (cmd === 0x06 || cmd === 0x0b) return null; // Send/SendTo: no reply (ipc.md §12.2-2)
  // decodeIpc's ProtoError messages are exactly the reference's Error texts (src/proto/ipc.ts
  // header). FIX: set_tags used to be prefixed twice ("set_tags: invalid JSON: set_tags: invalid
  // JSON: ..."), and a reply/push byte sent by a client with a malformed payload is still
  // "unknown command" (checked below, decodeIpc reports truncation for those).
  if (e instanceof ProtoError && (e.code === "ipc_malformed" || e.code === "ipc_unknown_command" || e.code === "ipc_invalid_json") && isRequestByte(cmd)) {
    return { cmd: "Error", code: 1, message: e.message };
  }
  return { cmd: "Error", code: 1, message: `unknown command: 0x${hex2(cmd)}` };
}

function isRequestByte(cmd: number): boolean {
  switch (cmd) {
    case 0x01: case 0x03: case 0x06: case 0x08: case 0x0b: case 0x0d: case 0x0f: case 0x11:
    case 0x13: case 0x15: case 0x17: case 0x19: case 0x1b: case 0x1d:
      return true;
    default:
      return false;
  }
}
