// The tunnel's side of the beacon: STUN discovery, punch requests, and the beacon's control
// messages. Only the configured beacon is listened to: the reference obeys a PunchCommand or a
// RelayDeliver from any sender, so any host could make a daemon send packets wherever it likes or
// inject frames as any node.
import {
  type Endpoint,
  BEACON_DISCOVER_REPLY,
  BEACON_PUNCH_COMMAND,
  BEACON_RELAY_DELIVER,
  decodeBeacon,
  encodeDiscover,
  encodePunchRequest,
  formatHostPort,
} from "../proto/beacon.ts";
import type { Clock } from "./net/packet-conn.ts";
import { RateGate } from "./net/rate-gate.ts";
import { sameHost } from "./tunnel-types.ts";

const PILP = new Uint8Array([0x50, 0x49, 0x4c, 0x50]);
/** Beacon-ordered punches: at most one per target endpoint per interval. */
const PUNCH_INTERVAL_MS = 500;

/** What a beacon message asks of the tunnel. */
export type BeaconAction = { punched: Endpoint } | { relayFrom: number; frame: Uint8Array } | null;

export class BeaconLink {
  beacon: Endpoint | null = null;
  private discoverWaiters: ((e: Endpoint) => void)[] = [];
  private readonly punchGate = new RateGate(PUNCH_INTERVAL_MS, 256);

  constructor(
    private readonly send: (data: Uint8Array, to: Endpoint) => void,
    private readonly clock: Clock,
    private readonly localNodeId: () => number,
  ) {}

  isBeacon(from: Endpoint): boolean {
    return !!this.beacon && from.port === this.beacon.port && sameHost(from.ip, this.beacon.ip);
  }

  /** Send 3 × PILP to open NAT mappings towards `to` (beacon PunchCommand). */
  punch(to: Endpoint): void {
    for (let i = 0; i < 3; i++) this.send(PILP, to);
  }

  sendDiscover(): void {
    if (this.beacon) this.send(encodeDiscover(this.localNodeId()), this.beacon);
  }

  requestPunch(target: number): void {
    if (this.beacon) this.send(encodePunchRequest(this.localNodeId(), target), this.beacon);
  }

  /** Resolves with the endpoint in the next DiscoverReply seen on this socket. */
  waitDiscoverReply(timeoutMs: number): Promise<Endpoint | null> {
    return new Promise((resolve) => {
      const t = this.clock.setTimeout(() => {
        this.discoverWaiters = this.discoverWaiters.filter((w) => w !== cb);
        resolve(null);
      }, timeoutMs);
      const cb = (e: Endpoint) => {
        this.clock.clearTimeout(t);
        resolve(e);
      };
      this.discoverWaiters.push(cb);
    });
  }

  /** Handle one beacon datagram (first byte < 0x10). */
  handle(buf: Uint8Array, from: Endpoint): BeaconAction {
    let m;
    try {
      m = decodeBeacon(buf);
    } catch {
      return null; // malformed beacon message: ignored, as the reference does
    }
    switch (m.type) {
      case BEACON_DISCOVER_REPLY: {
        // Before the beacon is configured (start-up STUN) any reply is taken; afterwards only its.
        if (this.beacon && !this.isBeacon(from)) return null;
        const ws = this.discoverWaiters;
        this.discoverWaiters = [];
        for (const w of ws) w(m.ep);
        return null;
      }
      case BEACON_PUNCH_COMMAND: {
        // The beacon sends it because a peer asked to reach us, or we asked for it; at most once
        // per target per interval: 3 × PILP (4 bytes each) to the named endpoint.
        if (!this.isBeacon(from) || !this.punchGate.allow(formatHostPort(m.ep), this.clock.now())) return null;
        this.punch(m.ep);
        return { punched: m.ep };
      }
      case BEACON_RELAY_DELIVER: {
        if (!this.isBeacon(from) || m.payload.length < 4) return null;
        const f = m.payload;
        if (f[0] === 0x50 && f[1] === 0x49 && f[2] === 0x4c && f[3] === 0x50) return null; // relayed PILP
        return { relayFrom: m.sender, frame: f };
      }
      default:
        return null;
    }
  }
}
