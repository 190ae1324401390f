// Beacon UDP server (docs/protocol.md §7.1): Discover/STUN reply, punch coordination, relay.
// Standalone beacon as started by `rendezvous` (ID 0, no peers). IPv4 and IPv6 (dual-stack
// socket when bound to a wildcard).
//
// Hardening (all compatible with reference daemons, which send Discover, PunchRequest and Relay
// from their one tunnel socket):
// * B2 mapping hijack: a Discover may move an existing node ID to a new source only if the new
//   source has the same IP (NAT rebinding) or the old mapping has been silent for MOVE_AFTER_MS.
// * B1 IP harvesting: a PunchRequest is honoured only if the requester ID is recorded with exactly
//   this source (it sent Discover from this socket) and, when an authorizer is configured (the
//   in-process registry), only if the requester may `resolve` the target. A PunchRequest no
//   longer creates/overwrites the requester's entry.
// * B3 relay spoofing: a Relay is forwarded only if its source equals the recorded address of
//   its sender ID.
// * B6: entries expire after ENTRY_TTL_MS without Discover (daemons send one every 30 s) and the
//   table is capped. B15: ID 0 (STUN probes) is answered but never recorded.
// * B11: relay is sent inline in the receive path, so per-flow order is preserved.
import { setSocketBuffers } from "../sys/sockopt.ts";
import { UdpBatcher } from "../sys/udp-batch.ts";
import type { udp } from "bun";
import {
  BEACON_DISCOVER, BEACON_PUNCH_REQUEST, BEACON_RELAY, decodeBeacon, encodeDiscoverReply, encodePunchCommand,
  parseIp, relayToDeliver,
} from "../proto/beacon.ts";
import { normIp } from "./registry.ts";
import { splitHostPort } from "./server.ts";

export const ENTRY_TTL_MS = 5 * 60_000;
export const MOVE_AFTER_MS = 60_000;
export const MAX_ENTRIES = 1_000_000;

interface Entry { ip: string; port: number; seen: number }

export interface BeaconOptions {
  /** Authorize a punch: may `requester` learn `target`'s endpoint? */
  authorize?: (requester: number, target: number) => Promise<boolean>;
  now?: () => number;
}

export class BeaconServer {
  private sock: udp.Socket<"buffer"> | null = null;
  readonly table = new Map<number, Entry>();
  stats = { discover: 0, punch: 0, punchDenied: 0, relay: 0, relayDropped: 0, malformed: 0 };
  private now: () => number;

  constructor(readonly opts: BeaconOptions = {}) {
    this.now = opts.now ?? Date.now;
  }

  get port(): number {
    return this.sock?.port ?? 0;
  }

  async listen(addr: string): Promise<{ host: string; port: number }> {
    const { host, port } = splitHostPort(addr);
    const self = this;
    const mk = (hostname: string) =>
      Bun.udpSocket({
        hostname,
        port,
        socket: {
          data(_s, buf, rport, raddr) {
            self.onPacket(buf, rport, raddr);
          },
          drain() {
            self.out.drain();
          },
          // ICMP port-unreachable (a daemon's temporary STUN socket already closed) is reported
          // as a socket error; without a handler it kills the process.
          error() {},
        },
      });
    if (host === "") {
      try { this.sock = await mk("::"); } catch { this.sock = await mk("0.0.0.0"); }
    } else {
      this.sock = await mk(host);
    }
    // Relaying is the beacon's bulk path: default kernel buffers (~208 KiB) overflowed under a
    // relayed stream (measured: 15 MB/s with drops on the beacon's port). Same fix as the tunnel.
    setSocketBuffers((this.sock as unknown as { fd: number }).fd, 8 << 20);
    return { host: this.sock.hostname, port: this.sock.port };
  }

  private readonly out = new UdpBatcher(() => this.sock as never);

  private send(data: Uint8Array, ip: string, port: number): void {
    // Batched (sendMany per event-loop turn); send errors — family mismatch, unreachable — are
    // dropped (B16).
    this.out.queue(data, port, ip);
  }

  /** Reply address: keep the socket's view (IPv4-mapped on a dual-stack socket) for sending. */
  onPacket(buf: Uint8Array, rport: number, raddr: string): void {
    let msg;
    try {
      msg = decodeBeacon(buf);
    } catch {
      this.stats.malformed++;
      return; // malformed or unknown: dropped silently (docs/protocol.md §7.1)
    }
    const now = this.now();
    const ip = normIp(raddr);
    switch (msg.type) {
      case BEACON_DISCOVER: {
        this.stats.discover++;
        if (msg.nodeId !== 0) this.record(msg.nodeId, raddr, rport, now);
        let reply: Uint8Array;
        try { reply = encodeDiscoverReply({ ip, port: rport }); } catch { return; }
        this.send(reply, raddr, rport);
        return;
      }
      case BEACON_PUNCH_REQUEST: {
        this.stats.punch++;
        const req = this.table.get(msg.requester);
        const tgt = this.table.get(msg.target);
        if (!req || req.ip !== raddr || req.port !== rport || now - req.seen > ENTRY_TTL_MS) { this.stats.punchDenied++; return; }
        if (!tgt || now - tgt.seen > ENTRY_TTL_MS) return;
        req.seen = now;
        const go = () => {
          try {
            this.send(encodePunchCommand({ ip: normIp(tgt.ip), port: tgt.port }), req.ip, req.port);
            this.send(encodePunchCommand({ ip: normIp(req.ip), port: req.port }), tgt.ip, tgt.port);
          } catch {}
        };
        if (!this.opts.authorize) { go(); return; }
        this.opts.authorize(msg.requester, msg.target).then((ok) => (ok ? go() : void this.stats.punchDenied++), () => void this.stats.punchDenied++);
        return;
      }
      case BEACON_RELAY: {
        const snd = this.table.get(msg.sender);
        if (!snd || snd.ip !== raddr || snd.port !== rport) { this.stats.relayDropped++; return; }
        const dst = this.table.get(msg.dest);
        if (!dst || now - dst.seen > ENTRY_TTL_MS) { this.stats.relayDropped++; return; }
        this.stats.relay++;
        this.send(relayToDeliver(buf), dst.ip, dst.port);
        return;
      }
      default:
        // DiscoverReply / PunchCommand / RelayDeliver / Sync are not accepted by a standalone beacon.
        return;
    }
  }

  private record(id: number, ip: string, port: number, now: number): void {
    const e = this.table.get(id);
    if (e) {
      if (e.ip !== ip && now - e.seen < MOVE_AFTER_MS) return; // B2: same IP (rebinding) or old mapping silent
      e.ip = ip;
      e.port = port;
      e.seen = now;
      return;
    }
    if (this.table.size >= MAX_ENTRIES) this.expire(now);
    if (this.table.size >= MAX_ENTRIES) return;
    try { parseIp(ip); } catch { return; }
    this.table.set(id, { ip, port, seen: now });
  }

  expire(now = this.now()): void {
    for (const [id, e] of this.table) if (now - e.seen > ENTRY_TTL_MS) this.table.delete(id);
  }

  stop(): void {
    this.sock?.close();
    this.sock = null;
  }
}
