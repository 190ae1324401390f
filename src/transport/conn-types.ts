// Connection states, tuning, and the small interface through which a connection talks to the
// transport that owns it (so the connection code does not depend on the Transport class).
import type { Packet } from "../proto/types.ts";
import type { TransportHost } from "./api.ts";
import type { Timed } from "./timers.ts";

/**
 * Connection states. A passive open goes straight to ESTABLISHED when the SYN+ACK is sent (like
 * the reference, whose SYN_RECV lasts only an instant). FIN_WAIT: local end(), queued data is
 * still being drained before our FIN. TIME_WAIT: FIN exchanged, lingering for late packets.
 */
export type ConnState = "SYN_SENT" | "ESTABLISHED" | "FIN_WAIT" | "TIME_WAIT" | "CLOSED";
export const S_SYN_SENT = "SYN_SENT";
export const S_ESTABLISHED = "ESTABLISHED";
export const S_FIN_WAIT = "FIN_WAIT";
export const S_TIME_WAIT = "TIME_WAIT";
export const S_CLOSED = "CLOSED";

export interface ConnTuning {
  recvBufBytes: number; // soft: advertised window is derived from it
  recvHardBytes: number; // in-order data beyond this is dropped (not acked)
  oooMaxBytes: number; // out-of-order bytes buffered
  sendHighWater: number;
  maxCwnd: number;
  maxRetx: number; // consecutive RTO expiries (with a silent peer) before abort
  dupAckBurst: boolean;
  payloadsOwned: boolean; // inbound payloads may be kept without copying (TransportOptions)
}

/** What a connection needs from the transport that owns it. */
export interface ConnHost {
  /** Cached clock of the current entry point (ms). */
  readonly now: number;
  readonly host: TransportHost;
  readonly keepaliveMs: number;
  readonly idleTimeoutMs: number;
  readonly timeWaitMs: number;
  readonly dialMaxRetries: number;
  readonly timers: { arm(obj: Timed, at: number): void };
  /** Refresh the cached clock (a public entry point was called on the connection). */
  enter(): void;
  /** Emit one packet. */
  out(p: Packet): void;
  /** In-order segments acknowledged together (at most; see TransportOptions.batchAcks). */
  readonly ackEvery: number;
  /** An emitter holds a deferred ACK that the next flushAcks() must send. */
  deferAck(e: { flushAck(): void }): void;
  /** The connection leaves the connection table. */
  remove(c: Timed): void;
  /** Connection-limit counters: the connection started (+1) or stopped (-1) counting on `port`. */
  countActive(port: number, d: number): void;
}
