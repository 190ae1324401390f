// A simulated pilot network: a beacon (STUN discover, punch, relay), a registry table (node ->
// Ed25519 key, registered endpoint) and nodes, each one real Tunnel on the in-memory network. A
// node's dial follows the daemon's policy: resolve, ask the beacon for a punch, add the peer, and
// switch to the relay after three unanswered attempts.
import { Tunnel, type Endpoint } from "../../src/daemon/tunnel.ts";
import { Logger } from "../../src/sys/log.ts";
import { generateIdentity, type Identity } from "../../src/crypto/identity.ts";
import {
  BEACON_DISCOVER,
  BEACON_PUNCH_REQUEST,
  BEACON_RELAY,
  decodeBeacon,
  encodeDiscoverReply,
  encodePunchCommand,
  relayToDeliver,
} from "../../src/proto/beacon.ts";
import { makePacket } from "../../src/proto/packet.ts";
import { PROTO_DATAGRAM, type Packet } from "../../src/proto/types.ts";
import type { PacketConn } from "../../src/daemon/net/packet-conn.ts";
import { VirtualClock } from "./clock.ts";
import { type NatKind, SimHost, SimNet, type SimNetOptions } from "./net.ts";

export const BEACON_EP: Endpoint = { ip: "198.51.100.1", port: 9001 };

export class SimBeacon {
  conn!: PacketConn;
  readonly table = new Map<number, Endpoint>();

  async start(host: SimHost): Promise<void> {
    this.conn = await host.packetNet.listen("", BEACON_EP.port, (b, from) => this.onMessage(b, from), quiet);
  }

  private onMessage(b: Uint8Array, from: Endpoint): void {
    const m = decodeBeacon(b);
    if (m.type === BEACON_DISCOVER) {
      if (m.nodeId) this.table.set(m.nodeId, from);
      this.conn.send(encodeDiscoverReply(from), from);
    } else if (m.type === BEACON_PUNCH_REQUEST) {
      const req = this.table.get(m.requester);
      const tgt = this.table.get(m.target);
      if (!req || !tgt) return;
      this.conn.send(encodePunchCommand(tgt), req);
      this.conn.send(encodePunchCommand(req), tgt);
    } else if (m.type === BEACON_RELAY) {
      const dst = this.table.get(m.dest);
      if (dst) this.conn.send(relayToDeliver(b), dst);
    }
  }
}

export const quiet = new Logger("error", "text", () => {});

export class SimNode {
  tunnel!: Tunnel;
  identity: Identity = generateIdentity();
  readonly got: Packet[] = [];
  readonly events: [string, Record<string, unknown>][] = [];
  /** the endpoint the beacon observed (what the node registers) */
  endpoint: Endpoint | null = null;

  constructor(
    readonly world: World,
    readonly nodeId: number,
    readonly host: SimHost,
    readonly encrypt = true,
  ) {}

  /** Bind the tunnel, learn the public endpoint from the beacon, register. */
  async start(port = 0): Promise<void> {
    const w = this.world;
    this.tunnel = new Tunnel({
      encrypt: this.encrypt,
      log: quiet,
      net: this.host.packetNet,
      clock: w.clock,
      onPacket: (pkt) => this.got.push(pkt),
      lookupPublicKey: (id) => Promise.resolve(w.keys.get(id) ?? null),
      onEvent: (ev, data) => this.events.push([ev, data]),
    });
    await this.tunnel.listen("", port);
    this.tunnel.setIdentity(this.nodeId, this.identity);
    this.tunnel.beacon = BEACON_EP;
    w.keys.set(this.nodeId, this.identity.publicKey);
    const reply = this.tunnel.waitDiscoverReply(2000);
    this.tunnel.sendDiscover();
    let ep: Endpoint | null = null;
    void reply.then((e) => (ep = e));
    await w.clock.until(() => ep !== null, `node ${this.nodeId} discover`, 3000);
    this.endpoint = ep;
    w.registered.set(this.nodeId, ep!);
  }

  /** The process restarts: new tunnel (new X25519 key), same identity and node ID. */
  async restart(port = 0): Promise<void> {
    this.tunnel.close();
    await this.start(port);
  }

  /** Dial like the daemon: resolve, punch request, peer entry. */
  dial(target: number): void {
    if (this.tunnel.hasPeer(target)) return;
    const ep = this.world.registered.get(target);
    if (!ep) throw new Error(`node ${target} not registered`);
    this.tunnel.requestPunch(target);
    this.tunnel.addPeer(target, ep);
  }

  packet(dst: number, text: string): Packet {
    return makePacket({
      protocol: PROTO_DATAGRAM,
      src: { network: 0, node: this.nodeId },
      dst: { network: 0, node: dst },
      srcPort: 1000,
      dstPort: 1001,
      payload: new TextEncoder().encode(text),
    });
  }

  send(dst: number, text: string): void {
    this.tunnel.sendPacket(this.packet(dst, text));
  }

  texts(from?: number): string[] {
    return this.got.filter((p) => from === undefined || p.src.node === from).map((p) => new TextDecoder().decode(p.payload));
  }
}

export class World {
  readonly clock = new VirtualClock();
  readonly net: SimNet;
  readonly beacon = new SimBeacon();
  readonly keys = new Map<number, Uint8Array>();
  readonly registered = new Map<number, Endpoint>();
  private natIp = 1;
  private hostIp = 1;

  constructor(opts: Partial<SimNetOptions> = {}) {
    this.net = new SimNet(this.clock, { seed: 1, ...opts });
  }

  async start(): Promise<this> {
    await this.beacon.start(this.net.publicHost(BEACON_EP.ip));
    return this;
  }

  /** A node on a public address, or behind its own NAT of the given kind. */
  async node(nodeId: number, where: "public" | NatKind, encrypt = true): Promise<SimNode> {
    const host =
      where === "public"
        ? this.net.publicHost(`203.0.113.${this.hostIp++}`)
        : this.net.hostBehind(this.net.nat(`192.0.2.${this.natIp++}`, where), `10.0.0.${this.hostIp++}`);
    const n = new SimNode(this, nodeId, host, encrypt);
    await n.start();
    return n;
  }

  /**
   * `a` sends `text` to `b` the way the daemon's transport would: dial, then retry with the
   * SYN back-off (1, 2, 4 s); after the third unanswered attempt switch to the relay.
   */
  async deliver(a: SimNode, b: SimNode, text: string, maxMs = 30_000): Promise<number> {
    a.dial(b.nodeId);
    const start = this.clock.now();
    let attempts = 0;
    let wait = 1000;
    const got = () => b.texts(a.nodeId).includes(text);
    a.send(b.nodeId, text);
    while (!got()) {
      try {
        await this.clock.until(got, "delivery", wait);
      } catch {
        attempts++;
        if (attempts >= 3) a.tunnel.setRelay(b.nodeId);
        else a.tunnel.rekey(b.nodeId);
        if (this.clock.now() - start > maxMs) throw new Error(`${a.nodeId} -> ${b.nodeId}: "${text}" not delivered in ${maxMs} ms`);
        wait = Math.min(wait * 2, 8000);
        a.send(b.nodeId, text);
      }
    }
    return this.clock.now() - start;
  }
}
