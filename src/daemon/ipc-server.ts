// IPC server on the daemon's Unix socket. Per client: requests are decoded in arrival order and
// may run concurrently (a slow Dial does not block the Sends behind it), but replies are emitted
// strictly in request order, which is all the reference driver's positional correlation needs.
// What clients can make the daemon hold is bounded: per client by its unsent replies (see
// ipc-client.ts), across clients by a budget for large request frames.
import type { UnixSocketListener } from "bun";
import { BufferedSocket } from "../sys/buffered-socket.ts";
import { chmodSync, unlinkSync, existsSync } from "node:fs";
import { CMD_SEND, decodeIpc, type IpcMsg, type HandshakeSub, type JsonObject } from "../proto/ipc.ts";
import { ProtoError, type Addr } from "../proto/types.ts";
import type { StreamConn } from "../transport/api.ts";
import type { Logger } from "../sys/log.ts";
import { ReadBuffers } from "./ipc-read-buffers.ts";
import { ACCEPT_QUEUE, Client, DEFAULT_CLIENT_LIMITS, type ClientHost, type ClientLimits } from "./ipc-client.ts";

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

/** Datagram pushes are dropped for a client this far behind (never block the packet path). */
const DGRAM_DROP_LEVEL = 8 * 1024 * 1024;
/** Frame bytes all clients together may hold in partly received or unhandled requests. */
const MAX_BUFFERED_FRAMES = 64 * 1024 * 1024;
/** Large-frame bytes handled between two forced collections. */
const GC_AFTER_FREED = 16 * 1024 * 1024;
/** What one client may hold before it needs a share of that budget (covers ordinary requests). */
const FREE_PER_CLIENT = 256 * 1024;

/** Limits of the IPC server; every field has a production default. */
export interface IpcServerOptions extends Partial<ClientLimits> {
  /** Cap on request frame bytes buffered across all clients (default 64 MiB). */
  maxBufferedBytes?: number;
}

/** Counters for tests and metrics. */
export interface IpcServerStats {
  clients: number;
  /** Frame bytes currently granted from the cross-client budget. */
  bufferedBytes: number;
  peakBufferedBytes: number;
  /** Clients whose reading is stopped (backlogged replies, blocked Send or budget). */
  pausedClients: number;
  /** Bytes waiting in client sockets' queues (replies and pushes). */
  unsentBytes: number;
  /** Clients closed for not reading their replies. */
  stalledDropped: number;
}

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

export class IpcServer implements ClientHost {
  private server: UnixSocketListener<Client | undefined> | null = null;
  readonly clients = new Set<Client>();
  readonly limits: ClientLimits;
  private readonly maxBuffered: number;
  /** Frame bytes granted to clients from the cross-client budget. */
  private buffered = 0;
  private peakBuffered = 0;
  /** Clients waiting for a share of the budget, in arrival order. */
  private budgetWaiters: Client[] = [];
  private stalledDropped = 0;

  constructor(
    private readonly api: DaemonApi,
    private readonly log: Logger,
    opts: IpcServerOptions = {},
  ) {
    this.limits = {
      replyHighWater: opts.replyHighWater ?? DEFAULT_CLIENT_LIMITS.replyHighWater,
      maxPendingReplies: opts.maxPendingReplies ?? DEFAULT_CLIENT_LIMITS.maxPendingReplies,
      stallTimeoutMs: opts.stallTimeoutMs ?? DEFAULT_CLIENT_LIMITS.stallTimeoutMs,
    };
    this.maxBuffered = opts.maxBufferedBytes ?? MAX_BUFFERED_FRAMES;
  }

  stats(): IpcServerStats {
    let paused = 0;
    let unsent = 0;
    for (const c of this.clients) {
      if (c.sock.paused) paused++;
      unsent += c.sock.writableLength;
    }
    return {
      clients: this.clients.size,
      bufferedBytes: this.buffered,
      peakBufferedBytes: this.peakBuffered,
      pausedClients: paused,
      unsentBytes: unsent,
      stalledDropped: this.stalledDropped,
    };
  }

  /** @internal log helper for Client. */
  warn(msg: string, e: unknown): void {
    this.log.warn(msg, { err: e instanceof Error ? e.message : String(e) });
  }

  /** @internal a Client is being closed for `reason`. */
  dropped(reason: string, fields: Record<string, unknown>): void {
    if (reason === "not reading its replies") this.stalledDropped++;
    this.log.warn(`ipc client closed: ${reason}`, fields);
  }

  /** @internal a Client has gone: release its share of the budget. */
  remove(c: Client): void {
    this.clients.delete(c);
    const i = this.budgetWaiters.indexOf(c);
    if (i >= 0) this.budgetWaiters.splice(i, 1);
    c.budgetWait = false;
    if (c.reserved > 0) {
      this.buffered -= c.reserved;
      c.reserved = 0;
      this.grantWaiters();
    }
  }

  /**
   * Budget the client's frame bytes (the declared size of the frame it is sending plus requests
   * read but not handled). Up to FREE_PER_CLIENT needs no grant. A larger need is granted while
   * the total stays under the cap (or when nobody else holds any, so one client always
   * progresses); otherwise the client stops being read until others release theirs. A grant
   * covers a whole declared frame, so a granted client can always finish it: no deadlock.
   */
  private account(c: Client): void {
    if (c.closed) return;
    let want = c.decoder.partialFrame + c.queuedBytes;
    if (want <= FREE_PER_CLIENT) want = 0;
    if (want <= c.reserved) {
      if (want < c.reserved) {
        this.freedSinceGc += c.reserved - want;
        this.buffered -= c.reserved - want;
        c.reserved = want;
        if (this.freedSinceGc >= GC_AFTER_FREED) this.collectSoon();
        this.grantWaiters();
      }
      return;
    }
    if (c.budgetWait) return;
    if (!this.tryGrant(c, want)) {
      c.budgetWait = true;
      this.budgetWaiters.push(c);
    }
  }

  /**
   * Large frames were handled: their buffers (and the socket chunks they were assembled from) are
   * garbage now. The collector's own pace let ten concurrent 16 MiB frames push the process past
   * 250 MB while the budget held 48 MiB; one collection per GC_AFTER_FREED bytes of large frames
   * keeps memory near the budget at a small cost.
   */
  private collectSoon(): void {
    this.freedSinceGc = 0;
    if (this.gcScheduled) return;
    this.gcScheduled = true;
    setImmediate(() => {
      this.gcScheduled = false;
      Bun.gc(true);
    });
  }
  private gcScheduled = false;
  private freedSinceGc = 0;

  private tryGrant(c: Client, want: number): boolean {
    const others = this.buffered - c.reserved;
    if (others + want > this.maxBuffered && others > 0) return false;
    this.buffered = others + want;
    c.reserved = want;
    if (this.buffered > this.peakBuffered) this.peakBuffered = this.buffered;
    return true;
  }

  private grantWaiters(): void {
    while (this.budgetWaiters.length > 0) {
      const c = this.budgetWaiters[0];
      let want = c.decoder.partialFrame + c.queuedBytes;
      if (want <= FREE_PER_CLIENT) want = 0;
      if (want > c.reserved && !this.tryGrant(c, want)) return;
      this.budgetWaiters.shift();
      c.budgetWait = false;
      queueMicrotask(() => this.pump(c));
    }
  }

  /** @internal handle the client's queued requests while it keeps up, then decide on reading. */
  pump(c: Client): void {
    if (c.closed) return;
    if (this.pumping.has(c)) return;
    this.pumping.add(c);
    try {
      for (let f = c.nextFrame(); f; f = c.nextFrame()) {
        try {
          this.onFrame(c, f);
          // a Send keeps no view beyond its hold; other requests may (a queued datagram...)
          this.readBuffers.done(f, f[0] === CMD_SEND);
        } catch (e) {
          this.readBuffers.done(f, false);
          // FIX: an unexpected throw while handling one request used to escape the 'data'
          // handler and terminate the daemon. Answer it with an Error instead so the client's
          // positional reply correlation stays intact.
          this.warn("ipc request failed", e);
          if (f[0] !== 0x06 && f[0] !== 0x0b) c.enqueue({ cmd: "Error", code: 1, message: (e as Error).message });
        }
      }
    } finally {
      this.pumping.delete(c);
    }
    this.account(c);
    c.updateReading();
  }
  private pumping = new Set<Client>();
  /** Socket reads freed as soon as no frame or queued Send data views them. */
  readonly readBuffers = new ReadBuffers();

  async listen(path: string): Promise<void> {
    // docs/differences.md: do not steal a live daemon's socket.
    if (existsSync(path)) {
      // Probed with Bun.connect: node:net would be loaded for this probe alone (≈0.25 ms of
      // daemon start-up in the compiled executable).
      const alive = await Bun.connect({ unix: path, socket: { data() {}, error() {}, connectError() {} } }).then(
        (s) => {
          s.terminate();
          return true;
        },
        () => false,
      );
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

  /** Push a received datagram to every client (docs/protocol.md §9.2), never blocking the packet path. */
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
    if (c.closed) return;
    let frames: Uint8Array[];
    try {
      frames = c.decoder.push(buf, true); // Bun hands every read over in a fresh buffer
      this.readBuffers.track(buf, frames);
    } catch (e) {
      this.dropped("bad frame", { err: (e as Error).message });
      c.cleanup();
      c.sock.destroy();
      return;
    }
    c.queueFrames(frames);
    this.pump(c);
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
        // driver drops an Accept for a port it has not seen BindOK for (docs/differences.md), so the
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
            // docs/protocol.md §9.2: the accept queue is bounded (64): while the client's socket is congested
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
          // docs/differences.md: errors for Send are unsolicited from the driver's view: log, don't reply.
          this.log.debug("ipc send on unknown connection", { conn_id: msg.connId });
          return;
        }
        // The data stays a view of the socket read until the peer acknowledges it (ReadBuffers).
        const rb = this.readBuffers;
        if (conn.onAcked === null) conn.onAcked = rb.release;
        const held = conn.onAcked === rb.release;
        if (held) rb.hold(msg.data);
        try {
          if (!conn.write(msg.data, true)) c.blockSend(conn);
        } catch (e) {
          if (held) rb.release(msg.data); // not queued
          this.log.debug("ipc send failed", { conn_id: msg.connId, err: (e as Error).message });
        }
        return;
      }
      case "Close": {
        try {
          api.closeConn(msg.connId);
        } catch (e) {
          // Close always answers CloseOK (docs/protocol.md §9.2); a failing close is only logged.
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

/** Map a decode failure to the reference's error text for that command (docs/protocol.md §9.2). */
function errorFor(body: Uint8Array, e: Error): IpcMsg | null {
  const cmd = body[0];
  if (cmd === 0x06 || cmd === 0x0b) return null; // Send/SendTo: no reply (docs/differences.md)
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
