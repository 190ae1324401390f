// In-memory datagram network for the tunnel simulator: public hosts, hosts behind NATs of three
// kinds, seeded per-datagram latency (and optional loss). Deterministic for a given seed.
//   full-cone:       one public port per inside socket; anyone may send to it.
//   port-restricted: one public port per inside socket; only endpoints it has sent to may answer.
//   symmetric:       a new public port per (inside socket, destination); only that destination
//                    may answer.
import type { Endpoint } from "../../src/proto/beacon.ts";
import type { PacketConn, PacketHandler, PacketNet } from "../../src/daemon/net/packet-conn.ts";
import type { Logger } from "../../src/sys/log.ts";
import { mulberry32 } from "../../src/sys/prng.ts";
import type { VirtualClock } from "./clock.ts";

export type NatKind = "full-cone" | "port-restricted" | "symmetric";

const key = (ip: string, port: number) => `${ip}:${port}`;

interface Mapping {
  pubPort: number;
  inside: Endpoint;
  /** remote endpoints this mapping has sent to */
  sent: Set<string>;
}

export class Nat {
  private byInside = new Map<string, Mapping>(); // inside (+ dst for symmetric) -> mapping
  private byPort = new Map<number, Mapping>();
  private nextPort: number;

  constructor(
    readonly publicIp: string,
    readonly kind: NatKind,
    rand: () => number,
  ) {
    this.nextPort = 20000 + Math.floor(rand() * 20000);
  }

  /** Translate an outbound datagram's source; returns the public source endpoint. */
  outbound(src: Endpoint, dst: Endpoint): Endpoint {
    const k = this.kind === "symmetric" ? `${key(src.ip, src.port)}>${key(dst.ip, dst.port)}` : key(src.ip, src.port);
    let m = this.byInside.get(k);
    if (!m) {
      m = { pubPort: this.nextPort++, inside: src, sent: new Set() };
      this.byInside.set(k, m);
      this.byPort.set(m.pubPort, m);
    }
    m.sent.add(key(dst.ip, dst.port));
    return { ip: this.publicIp, port: m.pubPort };
  }

  /** Translate an inbound datagram's destination; null when the NAT filters it. */
  inbound(from: Endpoint, pubPort: number): Endpoint | null {
    const m = this.byPort.get(pubPort);
    if (!m) return null;
    if (this.kind !== "full-cone" && !m.sent.has(key(from.ip, from.port))) return null;
    return m.inside;
  }

  /** Forget every mapping (a NAT reboot / rebinding). */
  reset(): void {
    this.byInside.clear();
    this.byPort.clear();
  }
}

interface Sock {
  host: SimHost;
  port: number;
  onPacket: PacketHandler;
}

export class SimHost {
  constructor(
    readonly net: SimNet,
    readonly ip: string,
    readonly nat: Nat | null,
  ) {}

  /** A PacketNet whose sockets live on this host. */
  get packetNet(): PacketNet {
    return { listen: (_h, port, onPacket, _log: Logger) => Promise.resolve(this.net.bind(this, port, onPacket)) };
  }
}

export interface SimNetOptions {
  seed: number;
  /** one-way delay per datagram: base + uniform jitter (ms) */
  latencyMs?: number;
  jitterMs?: number;
  /** probability a datagram is lost */
  loss?: number;
}

export class SimNet {
  private socks = new Map<string, Sock>();
  private nats = new Map<string, Nat>(); // by public IP
  private readonly rand: () => number;
  private nextEphemeral = 40000;
  /** datagrams delivered / dropped by a NAT filter / lost / to nowhere */
  readonly counts = { delivered: 0, filtered: 0, lost: 0, unroutable: 0 };
  /** every datagram put on the wire (after NAT translation), for assertions */
  readonly trace: { from: Endpoint; to: Endpoint; data: Uint8Array }[] = [];
  /** when set and true for a datagram, the datagram is lost (counted as lost) */
  dropIf: ((data: Uint8Array, from: Endpoint, to: Endpoint) => boolean) | null = null;

  constructor(
    readonly clock: VirtualClock,
    private readonly opts: SimNetOptions,
  ) {
    this.rand = mulberry32(opts.seed);
  }

  publicHost(ip: string): SimHost {
    return new SimHost(this, ip, null);
  }

  nat(publicIp: string, kind: NatKind): Nat {
    const n = new Nat(publicIp, kind, this.rand);
    this.nats.set(publicIp, n);
    return n;
  }

  hostBehind(nat: Nat, privateIp: string): SimHost {
    return new SimHost(this, privateIp, nat);
  }

  bind(host: SimHost, port: number, onPacket: PacketHandler): PacketConn {
    const p = port || this.nextEphemeral++;
    const k = key(host.ip, p);
    if (this.socks.has(k)) throw new Error(`address in use: ${k}`);
    const s: Sock = { host, port: p, onPacket };
    this.socks.set(k, s);
    return {
      local: { ip: host.ip, port: p },
      send: (data, to) => this.send(s, data, to),
      flush: () => {},
      close: () => {
        if (this.socks.get(k) === s) this.socks.delete(k);
      },
    };
  }

  /** Send as if from `from` (no NAT): for hostile datagrams with a chosen source. */
  inject(from: Endpoint, to: Endpoint, data: Uint8Array): void {
    this.route(from, to, data.slice());
  }

  private send(s: Sock, data: Uint8Array, to: Endpoint): void {
    let src: Endpoint = { ip: s.host.ip, port: s.port };
    if (s.host.nat) src = s.host.nat.outbound(src, to);
    this.route(src, to, data.slice());
  }

  private route(src: Endpoint, to: Endpoint, data: Uint8Array): void {
    this.trace.push({ from: src, to, data });
    if ((this.opts.loss && this.rand() < this.opts.loss) || this.dropIf?.(data, src, to)) {
      this.counts.lost++;
      return;
    }
    const delay = (this.opts.latencyMs ?? 5) + (this.opts.jitterMs ?? 0) * this.rand();
    this.clock.setTimeout(() => this.deliver(src, to, data), delay);
  }

  private deliver(src: Endpoint, to: Endpoint, data: Uint8Array): void {
    let dst: Endpoint | null = to;
    const nat = this.nats.get(to.ip);
    if (nat) {
      dst = nat.inbound(src, to.port);
      if (!dst) {
        this.counts.filtered++;
        return;
      }
    }
    const s = this.socks.get(key(dst.ip, dst.port));
    if (!s) {
      this.counts.unroutable++;
      return;
    }
    this.counts.delivered++;
    s.onPacket(data, src);
  }
}
