// The tunnel's view of the network and of time, injected so the tunnel is sans-IO: the daemon
// passes the real UDP socket and the system clock; tests pass an in-memory network with NATs and a
// virtual clock (test/sim), which makes key exchange, punching, relay and re-keying testable
// without root and in milliseconds.
import type { Endpoint } from "../../proto/beacon.ts";
import type { Logger } from "../../sys/log.ts";

/** One bound datagram socket (in the spirit of wireguard-go's conn.Bind). */
export interface PacketConn {
  /** The bound local address (wildcard host as bound). */
  readonly local: Endpoint;
  /** Queue one datagram to `to`; written at the latest at the end of the current event-loop turn. */
  send(data: Uint8Array, to: Endpoint): void;
  /** Write every queued datagram now. */
  flush(): void;
  /**
   * Optional scratch space for one outgoing datagram of `n` bytes, to be filled and passed to
   * send() at once; valid until the datagram is written. Saves an allocation per datagram.
   */
  scratch?(n: number): Uint8Array;
  /** false: every received datagram is fresh memory nobody reuses (it may be kept as it is). */
  readonly reusesBuffers?: boolean;
  close(): void;
}

/** Called for every datagram received; `data` is only valid during the call unless copied. */
export type PacketHandler = (data: Uint8Array, from: Endpoint) => void;

/** Opens datagram sockets: real UDP in the daemon, an in-memory network in tests. */
export interface PacketNet {
  listen(host: string, port: number, onPacket: PacketHandler, log: Logger): Promise<PacketConn>;
}

export type TimerHandle = unknown;

/** Milliseconds clock and one-shot timers. Timers must not keep the process alive. */
export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): TimerHandle;
  clearTimeout(h: TimerHandle): void;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, ms);
    (t as { unref?: () => void }).unref?.();
    return t;
  },
  clearTimeout: (h) => clearTimeout(h as ReturnType<typeof setTimeout>),
};
