// The transport's application-facing contract. The daemon, the built-in services and the IPC
// layer program against these interfaces only; src/transport/ implements them.
import type { Addr } from "../proto/types.ts";

export class TransportError extends Error {
  constructor(
    /** machine-readable: dial_timeout, connection_refused, connection_reset, timeout,
     *  port_in_use, too_many_connections, closed, no_route, ... */
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = "TransportError";
  }
}

export interface StreamStats {
  bytesSent: number;
  bytesRecv: number;
  segsSent: number;
  segsRecv: number;
  retransmits: number;
  fastRetransmits: number;
  srttMs: number;
  rttvarMs: number;
  rtoMs: number;
  cwnd: number; // bytes
  ssthresh: number;
  inFlight: number; // bytes unacknowledged
  peerWindow: number; // segments advertised by the peer
  sendBuffered: number; // bytes accepted by write() but not yet sent
  recvBuffered: number; // bytes received, not yet delivered to onData
  // Loss-recovery and reassembly diagnostics (pilotctl info). Optional so that in-memory
  // StreamConn fakes need not invent them; the Transport's connections always report them.
  dupAcks?: number; // current duplicate-ACK count (peers that never SACK)
  inRecovery?: boolean; // in fast or timeout recovery
  oooSegments?: number; // out-of-order segments buffered for reassembly
  recvWindow?: number; // window we advertise, in segments
  sackRecv?: number; // ACKs received carrying SACK blocks
  sackSent?: number; // ACKs sent carrying SACK blocks
}

/** One reliable stream connection (docs/protocol.md §6). */
export interface StreamConn {
  readonly id: number;
  readonly localAddr: Addr;
  readonly localPort: number;
  readonly remoteAddr: Addr;
  readonly remotePort: number;
  /** "SYN_SENT" | "ESTABLISHED" | "FIN_WAIT" | "TIME_WAIT" | "CLOSED". A passive open goes straight
   *  to ESTABLISHED when the SYN+ACK is sent (no SYN_RECEIVED state, as in the reference). */
  readonly state: string;
  /**
   * Queue bytes for sending (split into MSS segments, Nagle unless noDelay). Returns false when
   * the send buffer is above its high-water mark: the caller should wait for onDrain. Writing to
   * a closed connection throws TransportError("closed").
   * `owned`: the caller hands the buffer over and will never modify it again, so the transport
   * may queue it without copying (the IPC server passes freshly decoded frames this way).
   */
  write(data: Uint8Array, owned?: boolean): boolean;
  /**
   * Called with each buffer handed over by write(data, true) while this is set, once all of its
   * bytes are acknowledged: the transport then holds no view of it and never sends from it again,
   * so the owner may reuse or free it. Buffers of a connection that closes first are not reported.
   */
  onAcked: ((chunk: Uint8Array) => void) | null;
  /** In-order data, one call per received segment (services depend on segment boundaries). */
  onData: ((chunk: Uint8Array) => void) | null;
  /** Peer sent FIN: no more data will arrive. */
  onEnd: (() => void) | null;
  /** Connection fully gone (normal close, RST, retransmission limit, idle timeout). */
  onClose: ((err?: TransportError) => void) | null;
  /** Send buffer fell below the low-water mark after write() returned false. */
  onDrain: (() => void) | null;
  /** Graceful close: FIN after all queued data has been sent. */
  end(): void;
  /** Abort with RST. */
  abort(): void;
  setNoDelay(on: boolean): void;
  /** Flow control towards the peer: while paused, received data is buffered and the advertised window shrinks. */
  pause(): void;
  resume(): void;
  stats(): StreamStats;
}

export interface Listener {
  readonly port: number;
  close(): void;
  /** (optional: the Transport's listeners have it; in-memory fakes may not) Stop handing new connections to onAccept: they wait in the accept queue (backlog 64,
   *  beyond it new SYNs get RST). */
  pause?(): void;
  /** Deliver queued connections to onAccept and continue. */
  resume?(): void;
  /** Connections waiting in the accept queue. */
  readonly queued?: number;
}

/** Info about one connection for IPC Info / pilotctl connections (docs/protocol.md §9.2). */
export interface ConnInfo {
  id: number;
  localPort: number;
  remoteAddr: Addr;
  remotePort: number;
  state: string;
  stats: StreamStats;
}

/** What the transport needs from its host (the daemon, or a simulated link in tests). */
export interface TransportHost {
  /** Monotonic milliseconds. */
  now(): number;
  /** Emit one packet towards pkt.dst (the host encodes, encrypts, routes). */
  output(pkt: import("../proto/types.ts").Packet): void;
  /** Optional: a dial to `dst` has had `attempts` SYN timeouts (host may switch the peer to relay).
   *  Return true when the path changed (e.g. switched to relay): the SYN backoff restarts at 1 s
   *  as in docs/protocol.md §6.3. */
  onSynTimeout?(dst: Addr, attempts: number): boolean | void;
  /** Optional: a datagram (protocol 0x02) arrived. */
  onDatagram?(pkt: import("../proto/types.ts").Packet): void;
  /** Optional: random source (tests pass a seeded one). */
  random?(): number;
  /**
   * Optional: connection events for webhooks (docs/protocol.md §10.6): conn.syn_received,
   * conn.established, conn.fin, conn.rst, conn.idle_timeout, security.syn_rate_limited. Address
   * values are Addr objects; the host formats them.
   */
  onEvent?(event: string, data: Record<string, unknown>): void;
}

/** Options of a Transport (limits, timers, tuning). */
export interface TransportOptions {
  localAddr: Addr;
  keepaliveMs?: number; // 30 s
  idleTimeoutMs?: number; // 120 s
  timeWaitMs?: number; // 10 s
  synRateLimit?: number; // global SYN/s, bucket of the same size (100)
  perSourceSynLimit?: number; // per source node SYN/s (10)
  maxConnsPerPort?: number; // 1024
  maxConnsTotal?: number; // 4096
  acceptBacklog?: number; // 64
  dialMaxRetries?: number; // 6 SYN retransmissions
  /** Soft receive buffer per connection (drives the advertised window). Default 4 MiB. */
  recvBufBytes?: number;
  /** cwnd cap. The reference caps at 1 MiB; a larger cap only changes timing. Default 16 MiB. */
  maxCwnd?: number;
  /** write() returns false above this many unsent bytes. Default 4 MiB. */
  sendHighWater?: number;
  /** Consecutive RTO expiries with a silent peer before RST. Default 10. */
  maxRetx?: number;
  /** Send 3 pure dup ACKs when a hole first appears (helps the reference's fast retransmit). */
  dupAckBurst?: boolean;
  /**
   * The host calls flushAcks() at the end of every batch of input (one event-loop turn): in-order
   * data is then acknowledged once per batch or every `batchAcks` segments, whichever comes first,
   * instead of every second segment. Default: off (every second segment, or within 40 ms).
   */
  batchAcks?: number;
  /**
   * Inbound payloads are fresh memory the host never reuses (Bun's own UDP socket): the transport
   * may keep them as they are. Default false: a payload is valid only during handlePacket (the
   * daemon's receive ring reuses its slots), and what is kept beyond it is copied.
   */
  payloadsOwned?: boolean;
  /**
   * Random source in [0, 1) for the first ephemeral port (default Math.random). The counter starts
   * at a random point of 49152-65535 so that a restarted daemon does not reuse the port of its
   * previous life's first connection, which the peer may still hold. Tests pass a fixed one.
   */
  ephemeralRandom?: () => number;
}
