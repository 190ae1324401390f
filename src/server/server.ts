// Registry TCP listener (docs/protocol.md §8.1): framing, per-connection request processing with
// in-order replies, push delivery to subscribed connections, TLS.
//
// Pipelining: a connection's requests are answered strictly in request order (pipelining clients
// depend on it). Requests that the registry declares pipelinable (one transaction queued at
// call time, see Registry.pipelinable) are started as soon as they arrive, without waiting for
// the earlier ones to commit: their transactions join the same commit group behind the earlier
// ones, so each sees its predecessors' effects, and every reply still leaves only after its own
// commit. Any other request starts only once every earlier request of its connection has
// answered, and nothing starts after it until it has answered.
import type { Socket, TCPSocketListener } from "bun";
import { RegistryFrameDecoder, encodeFrame } from "../proto/registry-frames.ts";
import { goJsonBytes } from "../proto/gojson.ts";
import { ProtoError } from "../proto/types.ts";
import { parseHostPort } from "../sys/hostport.ts";
import { PUSH_TYPE, REPL_SNAPSHOT_FAILED } from "../proto/registry.ts";
import { newCtx, type ConnCtx, type Registry, type WireReply } from "./registry.ts";
import type { PushEvent } from "./store.ts";
import { REPL_WRITE_DEADLINE_MS, type ReplSubscriber } from "./replication.ts";

const MAX_SUB_BACKLOG = 8 << 20; // bytes queued to a replication subscriber before dropping it

export const IDLE_TIMEOUT_S = 300;
/** Requests of one connection executing or awaiting their commit at once. */
export const MAX_PIPELINE = 64;
/** Received frames waiting to start before the connection stops reading (resumes below half). */
export const MAX_QUEUED_FRAMES = 256;

function concat(parts: Uint8Array[], total: number): Uint8Array {
  const out = new Uint8Array(total);
  let o = 0;
  for (const p of parts) { out.set(p, o); o += p.length; }
  return out;
}

interface InFlight {
  reply: Promise<WireReply>;
  pipe: boolean;
}

interface ConnState {
  ctx: ConnCtx;
  dec: RegistryFrameDecoder;
  queue: Uint8Array[]; // received frames not started yet
  inflight: InFlight[]; // started requests, in request order, not answered yet
  replying: boolean; // replyLoop running
  halted?: boolean; // a malformed frame arrived: start nothing more, close after the earlier replies
  paused?: boolean; // reading paused: too many queued frames
  head?: { msg: unknown; pipe: boolean }; // queue[0] parsed, while it waits for earlier requests
  out: Uint8Array[]; // pending writes (backpressure)
  outSince: number; // ms when `out` became non-empty
  outBytes: number;
  closed: boolean;
  batch: Uint8Array[]; // frames of this event-loop turn, written together
  batchBytes: number;
  flushQueued: boolean;
  ending?: boolean; // closing after the queued frames are written
  /** Replication push stream (docs/protocol.md §8): inbound bytes are discarded, no requests are processed. */
  repl?: ReplSubscriber;
}

export interface TlsFiles {
  cert: string; // PEM text
  key: string; // PEM text
}

const td = new TextDecoder("utf-8", { fatal: false });

/** Split "host:port" / "[v6]:port" / ":port". Empty host → "" (wildcard). */
export function splitHostPort(a: string): { host: string; port: number } {
  const hp = parseHostPort(a);
  if (!hp) throw new ProtoError("bad_address", `invalid address ${JSON.stringify(a)}`, "use host:port with a port 0-65535, e.g. :9000, 127.0.0.1:9000 or [::1]:9000");
  return hp;
}

export class RegistryServer {
  private listener: TCPSocketListener<ConnState> | null = null;
  private subs = new Map<number, Set<Socket<ConnState>>>();
  private conns = new Set<Socket<ConnState>>();

  constructor(readonly registry: Registry) {
    registry.store.onPush((ev) => this.deliverPush(ev));
  }

  get port(): number {
    return this.listener?.port ?? 0;
  }
  get hostname(): string {
    return this.listener?.hostname ?? "";
  }

  listen(addr: string, tls?: TlsFiles): { host: string; port: number } {
    const { host, port } = splitHostPort(addr);
    const self = this;
    const opts = {
      port,
      tls: tls ? { cert: tls.cert, key: tls.key } : undefined,
      socket: {
        open(s: Socket<ConnState>) {
          const ip = s.remoteAddress ?? "";
          s.data = { ctx: newCtx(ip, (s as any).remotePort ?? 0), dec: new RegistryFrameDecoder(), queue: [], inflight: [], replying: false, out: [], outSince: 0, outBytes: 0, closed: false, batch: [], batchBytes: 0, flushQueued: false };
          s.timeout(IDLE_TIMEOUT_S);
          self.conns.add(s);
        },
        data(s: Socket<ConnState>, chunk: Buffer) {
          const st = s.data;
          if (st.closed || st.repl) return; // subscriber filler bytes are discarded (docs/protocol.md §8)
          let frames: Uint8Array[];
          try {
            frames = st.dec.push(chunk);
          } catch {
            // Oversized or zero-length frame: close without replying.
            self.kill(s);
            return;
          }
          if (frames.length === 0) return;
          s.timeout(IDLE_TIMEOUT_S);
          for (const f of frames) st.queue.push(f);
          self.pump(s);
          if (st.queue.length > MAX_QUEUED_FRAMES && !st.paused && !st.closed) {
            st.paused = true;
            s.pause();
          }
        },
        drain(s: Socket<ConnState>) {
          self.flush(s);
        },
        timeout(s: Socket<ConnState>) {
          self.kill(s);
        },
        close(s: Socket<ConnState>) {
          self.cleanup(s);
        },
        error(s: Socket<ConnState>) {
          self.cleanup(s);
        },
      },
    };
    const tryListen = (h: string) => Bun.listen<ConnState>({ ...opts, hostname: h } as any);
    if (host === "") {
      // ":9000" = all interfaces; prefer dual-stack "::", fall back to IPv4 only.
      try { this.listener = tryListen("::"); } catch { this.listener = tryListen("0.0.0.0"); }
    } else {
      this.listener = tryListen(host);
    }
    return { host: this.listener.hostname, port: this.listener.port };
  }

  /** Start every queued request that may start now (see the pipelining rule at the top). */
  private pump(s: Socket<ConnState>): void {
    const st = s.data;
    while (st.queue.length && !st.closed && !st.halted) {
      const n = st.inflight.length;
      if (n >= MAX_PIPELINE || (n && !st.inflight[n - 1].pipe)) break;
      let head = st.head;
      if (!head) {
        let msg: unknown;
        try {
          msg = JSON.parse(td.decode(st.queue[0]));
        } catch {
          msg = undefined; // invalid JSON
        }
        if (msg === undefined || (msg !== null && (typeof msg !== "object" || Array.isArray(msg)))) {
          // Invalid JSON, or valid JSON but not an object: close without reply (docs/protocol.md
          // §8.1), once the replies to the requests before it are written.
          st.queue.length = 0;
          st.halted = true;
          if (!n) this.closeHalted(s);
          return;
        }
        head = st.head = { msg, pipe: this.registry.pipelinable(msg) };
      }
      if (n && !head.pipe) break; // starts once the earlier requests have answered
      st.queue.shift();
      st.head = undefined;
      const { msg, pipe } = head;
      st.inflight.push({ reply: this.registry.handle(msg, st.ctx), pipe });
      if (!st.replying) void this.replyLoop(s);
    }
    if (st.paused && st.queue.length <= MAX_QUEUED_FRAMES >> 1 && !st.closed) {
      st.paused = false;
      s.resume();
    }
  }

  /** Send the replies in request order, each as soon as it (and every earlier one) is ready. */
  private async replyLoop(s: Socket<ConnState>): Promise<void> {
    const st = s.data;
    st.replying = true;
    try {
      while (st.inflight.length && !st.closed) {
        let res: WireReply;
        try {
          res = await st.inflight[0].reply;
        } catch (e) {
          res = this.registry.errorResponse(e) as WireReply; // handle() answers errors itself; defensive
        }
        st.inflight.shift();
        if (st.closed) return;
        if (st.ctx.replGen !== undefined) {
          this.startReplication(s, res);
          return;
        }
        this.send(s, res);
        for (const id of st.ctx.subscribed) {
          let set = this.subs.get(id);
          if (!set) this.subs.set(id, (set = new Set()));
          set.add(s);
        }
        if (st.ctx.closeAfter) {
          st.ending = true;
          this.flushBatch(s);
          st.closed = true;
          s.end();
          return;
        }
        if (st.halted && !st.inflight.length) {
          this.closeHalted(s);
          return;
        }
        this.pump(s);
      }
    } finally {
      st.replying = false;
    }
  }

  /** Close after a malformed frame: the replies already produced are written first. */
  private closeHalted(s: Socket<ConnState>): void {
    this.flushBatch(s);
    this.kill(s);
  }

  /**
   * Turn the connection into a replication push stream (docs/protocol.md §8): write the initial snapshot,
   * stop processing requests, attach to the hub. No idle timeout (R20, see replication.ts); dead
   * subscribers are found by write backlog and TCP keepalive.
   */
  private startReplication(s: Socket<ConnState>, res: Record<string, unknown>): void {
    const st = s.data;
    const hub = this.registry.replication;
    let frame: Uint8Array;
    try {
      frame = encodeFrame(goJsonBytes(res));
    } catch {
      // R14: initial snapshot above 1 MiB cannot be read by a reference standby.
      this.send(s, { type: "error", error: REPL_SNAPSHOT_FAILED });
      st.ending = true;
      this.flushBatch(s);
      st.closed = true;
      s.end();
      return;
    }
    st.queue.length = 0;
    st.head = undefined;
    if (st.paused) { st.paused = false; s.resume(); }
    st.dec = new RegistryFrameDecoder();
    s.timeout(0);
    try { (s as any).setKeepAlive?.(true, 15_000); } catch {}
    this.writeFrame(s, frame);
    const self = this;
    const sub: ReplSubscriber = {
      send(f) {
        if (st.closed) return false;
        if (st.out.length && (Date.now() - st.outSince > REPL_WRITE_DEADLINE_MS || st.outBytes > MAX_SUB_BACKLOG)) return false;
        self.writeFrame(s, f);
        return !st.closed;
      },
      close() {
        if (!st.closed) self.kill(s);
      },
    };
    st.repl = sub;
    hub.attach(sub, st.ctx.replGen!);
  }

  /**
   * Queue a frame for the connection. Frames produced in the same event-loop turn (the replies
   * to a batch of pipelined requests, pushes) are written with one socket write.
   */
  private writeFrame(s: Socket<ConnState>, frame: Uint8Array): void {
    const st = s.data;
    st.batch.push(frame);
    st.batchBytes += frame.length;
    if (!st.flushQueued) {
      st.flushQueued = true;
      setImmediate(() => this.flushBatch(s));
    }
  }

  /** Write the queued batch now (also before a deliberate close). */
  private flushBatch(s: Socket<ConnState>): void {
    const st = s.data;
    st.flushQueued = false;
    if (!st.batch.length) return;
    const frame = st.batch.length === 1 ? st.batch[0] : concat(st.batch, st.batchBytes);
    st.batch = [];
    st.batchBytes = 0;
    if (st.closed && !st.ending) return;
    if (st.out.length) {
      st.out.push(frame);
      st.outBytes += frame.length;
      return;
    }
    const n = s.write(frame);
    if (n < frame.length) {
      st.out.push(frame.subarray(Math.max(0, n)));
      st.outSince = Date.now();
      st.outBytes = frame.length - Math.max(0, n);
    }
  }

  private send(s: Socket<ConnState>, obj: unknown): void {
    let frame: Uint8Array;
    try {
      frame = encodeFrame(goJsonBytes(obj));
    } catch {
      frame = encodeFrame(goJsonBytes({ type: "error", error: "response too large", code: "response_too_large" }));
    }
    this.writeFrame(s, frame);
  }

  private flush(s: Socket<ConnState>): void {
    const st = s.data;
    while (st.out.length) {
      const f = st.out[0];
      const n = s.write(f);
      if (n < f.length) {
        st.out[0] = f.subarray(Math.max(0, n));
        st.outBytes -= Math.max(0, n);
        return;
      }
      st.out.shift();
      st.outBytes -= f.length;
      st.outSince = Date.now(); // progress: the deadline restarts for the next queued frame
    }
    st.outBytes = 0;
  }

  private deliverPush(ev: PushEvent): void {
    const set = this.subs.get(ev.node_id);
    if (!set) return;
    for (const s of set) if (!s.data.closed) this.send(s, { type: PUSH_TYPE, ...ev });
  }

  private kill(s: Socket<ConnState>): void {
    if (s.data) s.data.closed = true;
    try { s.terminate(); } catch { try { s.end(); } catch {} }
    this.cleanup(s);
  }

  private cleanup(s: Socket<ConnState>): void {
    this.conns.delete(s);
    if (!s.data) return;
    s.data.closed = true;
    if (s.data.repl) this.registry.replication.detach(s.data.repl);
    for (const id of s.data.ctx.subscribed) {
      const set = this.subs.get(id);
      if (set) { set.delete(s); if (!set.size) this.subs.delete(id); }
    }
  }

  stop(): void {
    this.listener?.stop(true);
    for (const s of this.conns) { try { s.end(); } catch {} }
    this.conns.clear();
    this.listener = null;
  }
}
