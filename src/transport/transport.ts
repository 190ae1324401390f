// The transport engine: connection table, listeners, dial, datagrams, ping (docs/protocol.md §6).
// Pure and clock-injected: the host feeds packets (handlePacket), calls tick() at
// nextDeadline(), and receives packets through host.output().
import {
  type Addr,
  EPHEMERAL_MAX,
  EPHEMERAL_MIN,
  FLAG_ACK,
  FLAG_FIN,
  FLAG_RST,
  FLAG_SYN,
  MSS,
  type Packet,
  PORT_PING,
  PROTO_CONTROL,
  PROTO_DATAGRAM,
  PROTO_STREAM,
} from "../proto/types.ts";
import { type ConnInfo, type Listener, type StreamConn, TransportError, type TransportHost, type TransportOptions } from "./api.ts";
import { Conn } from "./conn.ts";
import { type ConnHost, type ConnTuning, S_CLOSED, S_ESTABLISHED, S_FIN_WAIT, S_SYN_SENT, S_TIME_WAIT } from "./conn-types.ts";
import { ListenerImpl } from "./listener.ts";
import { SYN_GLOBAL_LIMIT, SYN_OK, SynLimiter } from "./synlimit.ts";
import { type Timed, TimerHeap } from "./timers.ts";

export type { TransportOptions } from "./api.ts";

export interface DialOptions {
  noDelay?: boolean;
}

const BROADCAST_NODE = 0xffffffff;

class PendingPing implements Timed {
  scheduled = Infinity;
  constructor(
    readonly tr: Transport,
    readonly port: number,
    readonly seq: number,
    readonly sentAt: number,
    readonly deadline: number,
    readonly resolve: (ms: number) => void,
    readonly reject: (e: TransportError) => void,
  ) {}
  onTimer(now: number): void {
    if (now >= this.deadline && this.tr.pings.get(this.port) === this) {
      this.tr.pings.delete(this.port);
      this.reject(new TransportError("timeout", "ping timeout"));
    }
  }
}

export class Transport implements ConnHost {
  readonly host: TransportHost;
  localAddr: Addr;
  /** Cached clock for the current entry point. */
  now = 0;
  readonly timers = new TimerHeap();
  readonly keepaliveMs: number;
  readonly idleTimeoutMs: number;
  readonly timeWaitMs: number;
  readonly dialMaxRetries: number;
  private readonly maxPerPort: number;
  private readonly maxTotal: number;
  private readonly backlog: number;
  private readonly tune: ConnTuning;
  readonly ackEvery: number;
  /** Emitters owing an ACK at the next flushAcks() (each at most once; only with batchAcks). */
  private deferred: { flushAck(): void }[] | null;

  // node -> (network·2^32 + localPort·2^16 + remotePort) -> Conn   (O(1), no allocation, T14)
  private table = new Map<number, Map<number, Conn>>();
  private listeners = new Map<number, ListenerImpl>();
  private activePerPort = new Map<number, number>();
  private totalActive = 0;
  private nconns = 0;
  private nextId = 1;
  private nextEphemeral: number;
  readonly pings = new Map<number, PendingPing>();
  private pingSeq = 1;
  private readonly synLimit: SynLimiter;

  constructor(host: TransportHost, opts: TransportOptions) {
    this.host = host;
    this.localAddr = opts.localAddr;
    this.keepaliveMs = opts.keepaliveMs ?? 30_000;
    this.idleTimeoutMs = opts.idleTimeoutMs ?? 120_000;
    this.timeWaitMs = opts.timeWaitMs ?? 10_000;
    this.dialMaxRetries = opts.dialMaxRetries ?? 6;
    this.maxPerPort = opts.maxConnsPerPort ?? 1024;
    this.maxTotal = opts.maxConnsTotal ?? 4096;
    this.backlog = opts.acceptBacklog ?? 64;
    this.ackEvery = Math.max(2, opts.batchAcks ?? 2);
    this.deferred = opts.batchAcks ? [] : null;
    const recv = opts.recvBufBytes ?? 4 * 1024 * 1024;
    this.tune = {
      recvBufBytes: recv,
      recvHardBytes: recv + 64 * MSS,
      oooMaxBytes: Math.max(recv, 128 * MSS),
      sendHighWater: opts.sendHighWater ?? 4 * 1024 * 1024,
      maxCwnd: opts.maxCwnd ?? 16 * 1024 * 1024,
      maxRetx: opts.maxRetx ?? 10,
      dupAckBurst: opts.dupAckBurst ?? true,
      payloadsOwned: opts.payloadsOwned ?? false,
    };
    const span = EPHEMERAL_MAX - EPHEMERAL_MIN + 1;
    const r = (opts.ephemeralRandom ?? Math.random)();
    const off = Math.floor(r * span);
    this.nextEphemeral = EPHEMERAL_MIN + (off >= 0 && off < span ? off : 0);
    this.now = host.now();
    this.synLimit = new SynLimiter(this.timers, opts.synRateLimit ?? 100, opts.perSourceSynLimit ?? 10, this.now);
  }

  /** Refresh the cached clock (every public entry point). */
  enter(): void {
    this.now = this.host.now();
  }

  setLocalAddr(addr: Addr): void {
    this.localAddr = addr;
  }

  // ---------------------------------------------------------------------------------------
  // timers
  tick(): void {
    this.enter();
    this.timers.run(this.now);
  }

  nextDeadline(): number {
    return this.timers.next();
  }

  // ---------------------------------------------------------------------------------------
  // output helpers
  out(p: Packet): void {
    this.host.output(p);
  }

  deferAck(e: { flushAck(): void }): void {
    this.deferred?.push(e);
  }

  /** Some ACK waits for flushAcks(). */
  get acksDeferred(): boolean {
    return this.deferred !== null && this.deferred.length > 0;
  }

  /** End of an input batch (batchAcks): send every ACK deferred during it. */
  flushAcks(): void {
    const d = this.deferred;
    if (!d || d.length === 0) return;
    this.deferred = [];
    this.enter();
    for (const e of d) e.flushAck();
  }

  private reply(p: Packet, flags: number, protocol: number, seq: number, ack: number, payload: Uint8Array): void {
    this.host.output({
      version: 1,
      flags,
      protocol,
      src: this.localAddr,
      dst: p.src,
      srcPort: p.dstPort,
      dstPort: p.srcPort,
      seq: seq >>> 0,
      ack: ack >>> 0,
      window: 0,
      payload,
    });
  }

  /** RST in the reference's format: flags RST, seq 0, ack 0, window 0, ports swapped. */
  private sendRst(p: Packet): void {
    this.reply(p, FLAG_RST, PROTO_STREAM, 0, 0, EMPTY);
  }

  // ---------------------------------------------------------------------------------------
  // connection table
  private key(network: number, localPort: number, remotePort: number): number {
    return network * 4294967296 + localPort * 65536 + remotePort;
  }

  private find(remote: Addr, localPort: number, remotePort: number): Conn | undefined {
    const m = this.table.get(remote.node);
    return m === undefined ? undefined : m.get(this.key(remote.network, localPort, remotePort));
  }

  private insert(c: Conn): void {
    let m = this.table.get(c.remoteAddr.node);
    if (m === undefined) {
      m = new Map();
      this.table.set(c.remoteAddr.node, m);
    }
    const k = this.key(c.remoteAddr.network, c.localPort, c.remotePort);
    const old = m.get(k);
    // T15: one entry per 4-tuple; a new incarnation replaces an old TIME_WAIT entry
    if (old && old !== c) this.dropEntry(old);
    m.set(k, c);
    this.nconns++;
  }

  private dropEntry(c: Conn): void {
    if (c.dead) return;
    if (c.active) c.setState(S_CLOSED);
    c.dead = true;
    const st = c.stats(), g = this.closedTotals;
    g.bytesSent += st.bytesSent; g.bytesRecv += st.bytesRecv; g.retransmits += st.retransmits; g.fastRetransmits += st.fastRetransmits;
    this.timers.disarm(c);
    const m = this.table.get(c.remoteAddr.node);
    if (m) {
      const k = this.key(c.remoteAddr.network, c.localPort, c.remotePort);
      if (m.get(k) === c) {
        m.delete(k);
        if (m.size === 0) this.table.delete(c.remoteAddr.node);
      }
    }
    this.nconns--;
  }

  /** Stream counters summed over connections that have left the table (monotonic totals for metrics). */
  readonly closedTotals = { bytesSent: 0, bytesRecv: 0, retransmits: 0, fastRetransmits: 0 };

  /** Called by Conn when it leaves the table. */
  remove(c: Conn): void {
    this.dropEntry(c);
  }

  /** Running counters for limits and ephemeral allocation (T14). */
  countActive(port: number, d: number): void {
    this.totalActive += d;
    const n = (this.activePerPort.get(port) ?? 0) + d;
    if (n <= 0) this.activePerPort.delete(port);
    else this.activePerPort.set(port, n);
  }

  private newConn(localPort: number, remote: Addr, remotePort: number): Conn {
    const c = new Conn(this, this.nextId++, this.localAddr, localPort, remote, remotePort, this.tune);
    if (this.nextId > 0xffffffff) this.nextId = 1;
    this.insert(c);
    return c;
  }

  /** Rotating counter over 49152-65535 (from a random start), skipping ports in use. */
  private allocEphemeral(): number {
    const span = EPHEMERAL_MAX - EPHEMERAL_MIN + 1;
    let p = this.nextEphemeral;
    for (let i = 0; i < span; i++) {
      p = this.nextEphemeral;
      this.nextEphemeral = p === EPHEMERAL_MAX ? EPHEMERAL_MIN : p + 1;
      if (!this.activePerPort.has(p) && !this.pings.has(p) && !this.listeners.has(p)) return p;
    }
    return p;
  }

  // ---------------------------------------------------------------------------------------
  // inbound
  /**
   * Process one inbound packet. Unless the host said its payloads are owned (payloadsOwned),
   * `p.payload` is valid only during this call (the daemon's receive ring reuses the memory): what
   * the transport keeps beyond it (out-of-order segments, data held while the application is
   * paused) it copies; in-order data is handed to onData as a view either way.
   */
  handlePacket(p: Packet): void {
    this.enter();
    switch (p.protocol) {
      case PROTO_STREAM:
        this.handleStream(p);
        break;
      case PROTO_DATAGRAM:
        if (p.payload.length > 0 && this.host.onDatagram) this.host.onDatagram(p);
        break;
      case PROTO_CONTROL:
        this.handleControl(p);
        break;
      default:
        break; // unknown protocol: ignored (docs/protocol.md §6.2)
    }
  }

  private handleStream(p: Packet): void {
    const f = p.flags;
    // flag precedence (docs/protocol.md §6.2): SYN, SYN+ACK, FIN, RST, ACK, else drop
    if (f & FLAG_SYN) {
      if (f & FLAG_ACK) {
        const c = this.find(p.src, p.dstPort, p.srcPort);
        if (c) c.onSynAck(p);
      } else this.onSyn(p);
      return;
    }
    const c = this.find(p.src, p.dstPort, p.srcPort);
    if (c === undefined) return; // FIN/RST/ACK for nothing: ignored, no RST (docs/protocol.md §6.2)
    if (f & FLAG_FIN) c.onFin(p);
    else if (f & FLAG_RST) c.onRst();
    else if (f & FLAG_ACK) c.onAck(p);
  }

  private onSyn(p: Packet): void {
    const l = this.listeners.get(p.dstPort);
    if (l === undefined) {
      this.sendRst(p);
      return;
    }
    const existing = this.find(p.src, p.dstPort, p.srcPort);
    if (existing !== undefined) {
      if (existing.state !== S_TIME_WAIT && existing.state !== S_CLOSED) {
        if (!existing.isNewIncarnation(p)) {
          // retransmitted (or duplicated) SYN: resend SYN+ACK with the original ISN (the
          // reference resends SendSeq - 1, which is wrong once data has been sent)
          existing.sendSynAck();
          return;
        }
        // The peer restarted and reused the port: the old connection is dead on its side.
        // Reset it locally (no RST on the wire: it would reach the new incarnation, which shares
        // the 4-tuple) and accept the SYN as a new connection. The reference instead answers
        // with the old connection's SYN+ACK and the new dial stalls until a timeout.
        existing.gone(new TransportError("connection_reset", "peer restarted: new connection on the same ports"));
      }
      // a SYN for a dead incarnation starts a new connection (the reference would answer with
      // a SYN+ACK for the dead one); the old entry is replaced in insert()
    }
    const admitted = this.synLimit.admit(p.src.node, this.now);
    if (admitted !== SYN_OK) {
      if (admitted === SYN_GLOBAL_LIMIT) this.host.onEvent?.("security.syn_rate_limited", { src_addr: p.src, src_port: p.srcPort });
      return; // silent drop, no RST
    }
    if ((this.activePerPort.get(p.dstPort) ?? 0) >= this.maxPerPort || this.totalActive >= this.maxTotal) {
      this.sendRst(p);
      return;
    }
    // T20: accept-queue capacity is checked BEFORE the SYN+ACK (the reference sends SYN+ACK
    // and then RST); a plain RST is compatible and does not fool the client into "connected".
    if ((l.paused || l.closed) && l.pending.length >= this.backlog) {
      this.sendRst(p);
      return;
    }
    const c = this.newConn(p.dstPort, p.src, p.srcPort);
    c.acceptSyn(p);
    if (this.host.onEvent) {
      const ev = { conn_id: c.id, dst_port: p.dstPort, src_addr: p.src, src_port: p.srcPort };
      this.host.onEvent("conn.syn_received", ev);
      this.host.onEvent("conn.established", ev); // right after our SYN-ACK, like the reference
    }
    if (l.paused) l.pending.push(c);
    else l.onAccept(c);
  }

  private handleControl(p: Packet): void {
    if (p.flags & FLAG_ACK) {
      // a pong (never answered, T18): match a pending ping by our source port and seq
      const pp = this.pings.get(p.dstPort);
      if (pp && p.srcPort === PORT_PING && p.seq === pp.seq) {
        this.pings.delete(p.dstPort);
        this.timers.disarm(pp);
        pp.resolve(this.now - pp.sentAt);
      }
      return;
    }
    if (p.dstPort !== PORT_PING) return;
    // pong: flags ACK, src port 0, dst port = ping's src port, seq, seq+1, window 0, same payload
    this.reply(p, FLAG_ACK, PROTO_CONTROL, p.seq, p.seq + 1, new Uint8Array(p.payload)); // a copy: the ping's payload is only valid now
  }

  // ---------------------------------------------------------------------------------------
  // application API
  listen(port: number, onAccept: (c: StreamConn) => void): Listener {
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw new TransportError("bad_port", `invalid port ${port}`);
    if (this.listeners.has(port)) throw new TransportError("port_in_use", `port ${port} already bound`);
    const l = new ListenerImpl(this, port, onAccept);
    this.listeners.set(port, l);
    return l;
  }

  unbind(l: ListenerImpl): void {
    if (this.listeners.get(l.port) === l) this.listeners.delete(l.port);
  }

  dial(dst: Addr, dstPort: number, opts?: DialOptions): Promise<StreamConn> {
    this.enter();
    if (!Number.isInteger(dstPort) || dstPort < 0 || dstPort > 65535) {
      return Promise.reject(new TransportError("bad_port", `invalid port ${dstPort}`));
    }
    if (this.totalActive >= this.maxTotal) {
      return Promise.reject(new TransportError("too_many_connections", "connection limit reached"));
    }
    const port = this.allocEphemeral();
    const c = this.newConn(port, dst, dstPort);
    if (opts?.noDelay) c.setNoDelay(true);
    return new Promise<StreamConn>((resolve, reject) => {
      c.dialResolve = resolve;
      c.dialReject = reject;
      c.startDial();
    });
  }

  sendDatagram(dst: Addr, dstPort: number, data: Uint8Array, srcPort?: number): void {
    this.enter();
    if (dst.node === BROADCAST_NODE) {
      throw new TransportError("broadcast_unavailable", "broadcast is not available — custom networks are WIP");
    }
    if (data.length > 65535) throw new TransportError("too_large", "datagram payload exceeds 65535 bytes");
    const sp = srcPort ?? this.allocEphemeral();
    this.host.output({
      version: 1,
      flags: 0,
      protocol: PROTO_DATAGRAM,
      src: this.localAddr,
      dst,
      srcPort: sp,
      dstPort,
      seq: 0,
      ack: 0,
      window: 0,
      payload: data,
    });
  }

  /** Ping (control protocol, port 0) from a non-zero ephemeral port (T18). Resolves RTT ms. */
  ping(dst: Addr, payload: Uint8Array, timeoutMs: number): Promise<number> {
    this.enter();
    const port = this.allocEphemeral();
    const seq = this.pingSeq;
    this.pingSeq = (this.pingSeq + 1) >>> 0 || 1;
    return new Promise<number>((resolve, reject) => {
      const pp = new PendingPing(this, port, seq, this.now, this.now + timeoutMs, resolve, reject);
      this.pings.set(port, pp);
      this.timers.arm(pp, pp.deadline);
      this.host.output({
        version: 1,
        flags: 0,
        protocol: PROTO_CONTROL,
        src: this.localAddr,
        dst,
        srcPort: port,
        dstPort: PORT_PING,
        seq,
        ack: 0,
        window: 0,
        payload,
      });
    });
  }

  connections(): ConnInfo[] {
    const r: ConnInfo[] = [];
    for (const m of this.table.values()) {
      for (const c of m.values()) {
        r.push({ id: c.id, localPort: c.localPort, remoteAddr: c.remoteAddr, remotePort: c.remotePort, state: c.state, stats: c.stats() });
      }
    }
    r.sort((a, b) => a.id - b.id);
    return r;
  }

  /** Number of connections in the table (all states). */
  get size(): number {
    return this.nconns;
  }

  /** Shutdown (docs/protocol.md §6.10): FIN every established connection, remove everything. */
  closeAll(): void {
    this.enter();
    const all: Conn[] = [];
    for (const m of this.table.values()) for (const c of m.values()) all.push(c);
    for (const c of all) {
      if (c.dead) continue;
      if (c.state === S_SYN_SENT) c.failDial(new TransportError("closed", "transport shut down"));
      else if (c.state === S_ESTABLISHED || c.state === S_FIN_WAIT) {
        c.localClose(new TransportError("closed", "transport shut down"));
        if (!c.dead) c.gone(undefined);
      } else c.gone(undefined);
    }
    for (const l of [...this.listeners.values()]) l.close();
    for (const pp of [...this.pings.values()]) {
      this.pings.delete(pp.port);
      this.timers.disarm(pp);
      pp.reject(new TransportError("closed", "transport shut down"));
    }
  }
}

const EMPTY = new Uint8Array(0);
