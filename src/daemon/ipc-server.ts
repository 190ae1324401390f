// IPC server on the daemon's Unix socket (ipc.md). Per client: requests are decoded in arrival
// order and may run concurrently (a slow Dial no longer blocks the Sends behind it, ipc.md §12.4-1),
// but replies are emitted strictly in request order, which is all the reference driver's
// positional correlation needs (ipc.md §6).
import { connect, createServer, type Server, type Socket } from "node:net";
import { chmodSync, unlinkSync, existsSync } from "node:fs";
import { FrameDecoder, MAX_FRAME } from "../proto/framing.ts";
import { decodeIpc, encodeIpcFrame, type IpcMsg, type HandshakeSub, type JsonObject } from "../proto/ipc.ts";
import type { Addr } from "../proto/types.ts";
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

class Client {
  readonly decoder = new FrameDecoder(MAX_CLIENT_FRAME);
  readonly ports = new Map<number, () => void>();
  readonly conns = new Map<number, StreamConn>();
  private replyChain: Promise<void> = Promise.resolve();
  private pausedConns = new Set<StreamConn>();
  closed = false;
  dgramDropped = 0;

  constructor(
    readonly sock: Socket,
    private readonly srv: IpcServer,
  ) {
    sock.on("drain", () => {
      // Take the set first: resuming delivers buffered data, which may pause (and re-add) a
      // connection again before this loop ends.
      const paused = [...this.pausedConns];
      this.pausedConns.clear();
      for (const c of paused) c.resume();
    });
  }

  write(msg: IpcMsg): boolean {
    if (this.closed) return false;
    return this.sock.write(encodeIpcFrame(msg, MAX_FRAME));
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
      if (r) this.write(r);
      after?.();
    })();
  }

  /** Own a connection: push its data (Recv), its end (CloseOK) and honour backpressure. */
  adopt(c: StreamConn): void {
    this.conns.set(c.id, c);
    let ended = false;
    const finish = () => {
      if (ended) return;
      ended = true;
      this.conns.delete(c.id);
      this.write({ cmd: "CloseOK", connId: c.id });
    };
    c.onData = (chunk) => {
      if (this.closed) return;
      if (!this.write({ cmd: "Recv", connId: c.id, data: chunk }) || this.backlog > PUSH_HIGH_WATER) {
        c.pause();
        this.pausedConns.add(c);
      }
    };
    c.onEnd = finish;
    c.onClose = () => finish();
    if (c.state === "CLOSED") finish();
    c.resume();
  }

  cleanup(): void {
    if (this.closed) return;
    this.closed = true;
    // ipc.md §7: close owned connections (FIN), then unbind ports.
    for (const c of this.conns.values()) {
      c.onData = c.onEnd = c.onClose = null;
      try {
        c.end();
      } catch {
        /* already closed */
      }
    }
    this.conns.clear();
    for (const unbind of this.ports.values()) unbind();
    this.ports.clear();
    this.srv.clients.delete(this);
  }
}

export class IpcServer {
  private server: Server | null = null;
  readonly clients = new Set<Client>();

  constructor(
    private readonly api: DaemonApi,
    private readonly log: Logger,
  ) {}

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
    const srv = createServer((sock) => this.onClient(sock));
    const oldMask = process.umask(0o177); // socket created 0600, no window with wider perms
    try {
      await new Promise<void>((resolve, reject) => {
        srv.once("error", reject);
        srv.listen(path, () => resolve());
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
    this.server?.close();
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

  private onClient(sock: Socket): void {
    const c = new Client(sock, this);
    this.clients.add(c);
    sock.on("data", (buf: Buffer) => {
      let frames: Uint8Array[];
      try {
        frames = c.decoder.push(buf);
      } catch (e) {
        this.log.warn("ipc client dropped", { err: (e as Error).message });
        c.cleanup();
        sock.destroy();
        return;
      }
      for (const f of frames) this.onFrame(c, f);
    });
    sock.on("close", () => c.cleanup());
    sock.on("error", () => c.cleanup());
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
        try {
          const port = msg.port;
          const unbind = api.bind(port, (conn) => {
            // Accept push, then adopt (Accept precedes any Recv for the connection).
            conn.pause();
            c.write({ cmd: "Accept", localPort: port, connId: conn.id, remote: conn.remoteAddr, remotePort: conn.remotePort });
            c.adopt(conn);
          });
          c.ports.set(port, unbind);
          c.enqueue({ cmd: "BindOK", port });
        } catch (e) {
          c.enqueue({ cmd: "Error", code: 1, message: (e as Error).message });
        }
        return;
      }
      case "Dial": {
        let conn: StreamConn | null = null;
        const p = api.dial(msg.addr, msg.port).then((cn) => {
          conn = cn;
          cn.pause(); // hold data until the DialOK is on the wire
          return { cmd: "DialOK", connId: cn.id } as IpcMsg;
        });
        c.enqueue(p, () => {
          if (conn) {
            if (c.closed) conn.end();
            else c.adopt(conn);
          }
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
          if (!conn.write(msg.data)) {
            // Backpressure: stop reading this client until the connection drains.
            c.sock.pause();
            const prev = conn.onDrain;
            conn.onDrain = () => {
              conn.onDrain = prev;
              c.sock.resume();
              prev?.();
            };
          }
        } catch (e) {
          this.log.debug("ipc send failed", { conn_id: msg.connId, err: (e as Error).message });
        }
        return;
      }
      case "Close": {
        api.closeConn(msg.connId);
        c.enqueue({ cmd: "CloseOK", connId: msg.connId });
        return;
      }
      case "SendTo": {
        if (msg.addr.node === 0xffffffff) {
          this.log.debug("sendto broadcast refused");
          return;
        }
        api.sendTo(msg.addr, msg.port, msg.data).catch((e) => this.log.debug("sendto failed", { err: (e as Error).message }));
        return;
      }
      case "Info":
        c.enqueue({ cmd: "InfoOK", json: api.info() });
        return;
      case "Handshake": {
        const { cmd: _cmd, ...sub } = msg;
        c.enqueue(api.handshake(sub as HandshakeSub).then((json) => ({ cmd: "HandshakeOK", json }) as IpcMsg));
        return;
      }
      case "ResolveHostname":
        c.enqueue(api.resolveHostname(msg.hostname).then((json) => ({ cmd: "ResolveHostnameOK", json }) as IpcMsg));
        return;
      case "SetHostname":
        c.enqueue(api.setHostname(msg.hostname).then((json) => ({ cmd: "SetHostnameOK", json }) as IpcMsg));
        return;
      case "SetVisibility":
        c.enqueue(api.setVisibility(msg.public).then((json) => ({ cmd: "SetVisibilityOK", json }) as IpcMsg));
        return;
      case "Deregister":
        c.enqueue(api.deregister().then((json) => ({ cmd: "DeregisterOK", json }) as IpcMsg));
        return;
      case "SetTags":
        if (msg.tags && msg.tags.length > 3) {
          c.enqueue({ cmd: "Error", code: 1, message: "set_tags: maximum 3 tags allowed" });
          return;
        }
        c.enqueue(api.setTags(msg.tags).then((json) => ({ cmd: "SetTagsOK", json }) as IpcMsg));
        return;
      case "SetWebhook":
        c.enqueue(api.setWebhook(msg.url).then((json) => ({ cmd: "SetWebhookOK", json }) as IpcMsg));
        return;
      case "SetTaskExec":
        c.enqueue(api.setTaskExec(msg.enabled).then((json) => ({ cmd: "SetTaskExecOK", json }) as IpcMsg));
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
  const texts: Record<number, string> = {
    0x01: "bind: missing port",
    0x03: "dial: missing address/port",
    0x08: "close: missing conn_id",
    0x0f: "handshake: missing sub-command",
    0x11: "resolve_hostname: missing hostname",
    0x15: "set_visibility: missing value",
    0x1d: "set_task_exec: missing value",
  };
  if (cmd === 0x06 || cmd === 0x0b) return null; // Send/SendTo: no reply (ipc.md §12.2-2)
  if (cmd === 0x0f && body.length >= 2) {
    const sub = body[1];
    const names: Record<number, string> = { 1: "request", 2: "approve", 3: "reject", 6: "revoke" };
    if (names[sub]) return { cmd: "Error", code: 1, message: `handshake ${names[sub]}: missing node_id` };
    return { cmd: "Error", code: 1, message: `handshake: unknown sub-command 0x${hex2(sub)}` };
  }
  if (cmd === 0x19) return { cmd: "Error", code: 1, message: `set_tags: invalid JSON: ${e.message}` };
  const t = texts[cmd];
  if (t) return { cmd: "Error", code: 1, message: t };
  return { cmd: "Error", code: 1, message: `unknown command: 0x${hex2(cmd)}` };
}
