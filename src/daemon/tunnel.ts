// Tunnel manager: the daemon's single UDP socket, per-peer endpoints and crypto sessions, key
// exchange (PILA/PILK), relay through the beacon, NAT punching and beacon messages.
// wire.md §3-4 and beacon.md §6-8. The layer above (router/transport) sees decoded Packets only.
import type { Packet } from "../proto/types.ts";
import { HEADER_SIZE } from "../proto/types.ts";
import { decodePacket, encodePacketInto } from "../proto/packet.ts";
import type { Logger } from "./log.ts";
import { KeyExchange, type PeerCrypto } from "./kx.ts";
import { setSocketBuffers } from "../sys/sockopt.ts";
import { UdpBatcher } from "../sys/udp-batch.ts";
import {
  type Endpoint,
  BEACON_DISCOVER_REPLY,
  BEACON_PUNCH_COMMAND,
  BEACON_RELAY_DELIVER,
  decodeBeacon,
  encodeDiscover,
  encodePunchRequest,
  encodeRelay,
  formatHostPort,
} from "../proto/beacon.ts";

export type { Endpoint };

export function formatEndpoint(e: Endpoint | null): string {
  return e ? formatHostPort(e) : "";
}

/** Parse "host:port", "[v6]:port" or ":port" (empty host = wildcard). */
export function parseEndpoint(s: string): Endpoint | null {
  const m = /^\[([^\]]*)\]:(\d+)$/.exec(s) ?? /^([^:]*):(\d+)$/.exec(s);
  if (!m) return null;
  const port = Number(m[2]);
  if (!Number.isInteger(port) || port < 0 || port > 65535) return null;
  return { ip: m[1], port };
}

export type PeerPath = "direct" | "punched" | "relayed";

export interface Peer {
  nodeId: number;
  endpoint: Endpoint | null; // UDP endpoint (for relay peers: unused; frames go to the beacon)
  relay: boolean;
  crypto: PeerCrypto;
  /** marshaled packets waiting for a session (wire.md §4.6: at most 64, oldest dropped) */
  pending: Uint8Array[];
  /** time the first unanswered key exchange was sent (for plaintext fallback) */
  kxFirstUnansweredAt: number;
  punched: boolean;
  /** a RelayDeliver from this peer has been seen (tunnel.relay_activated emitted) */
  relayActivated?: boolean;
  lastRecvAt: number;
  createdAt: number;
}

export interface TunnelStats {
  bytesSent: number;
  bytesRecv: number;
  pktsSent: number;
  pktsRecv: number;
}

export interface TunnelOptions {
  encrypt: boolean;
  log: Logger;
  /** Inbound packet from the tunnel (already decrypted and decoded). */
  onPacket(pkt: Packet, from: Endpoint, viaRelay: boolean): void;
  /** Ed25519 key of a node from the registry (cached by the caller); null when unknown. */
  lookupPublicKey(nodeId: number, refresh?: boolean): Promise<Uint8Array | null>;
  /** Plaintext fallback for peers that never answer the key exchange (encryption disabled there). */
  plaintextFallbackMs?: number;
  /** Webhook events (services.md §11.3): tunnel.peer_added, tunnel.established, tunnel.relay_activated. */
  onEvent?(event: string, data: Record<string, unknown>): void;
  /** A frame was dropped, with a short reason (metrics). */
  onDrop?(reason: string): void;
}

const MAX_PENDING_PER_PEER = 64;
/** Kernel socket buffers for the tunnel socket (see sockopt.ts). */
const UDP_BUFFER_BYTES = 8 << 20;
const NO_BATCH = process.env.PILOT_NO_BATCH === "1";
const MAX_PEERS_WITH_PENDING = 256;
const PILP = new Uint8Array([0x50, 0x49, 0x4c, 0x50]);
const MAGIC_PILT = 0x50494c54;
const MAGIC_PILS = 0x50494c53;
const MAGIC_PILK = 0x50494c4b;
const MAGIC_PILA = 0x50494c41;
const MAGIC_PILP = 0x50494c50;

type UdpSocket = import("bun").udp.Socket<"uint8array">;

export class Tunnel {
  private sock: UdpSocket | null = null;
  readonly peers = new Map<number, Peer>();
  readonly stats: TunnelStats = { bytesSent: 0, bytesRecv: 0, pktsSent: 0, pktsRecv: 0 };
  private localNodeId = 0;
  beacon: Endpoint | null = null;
  private kx: KeyExchange;
  private peersWithPending = 0;
  private readonly fallbackMs: number;
  /** listeners for raw beacon replies (STUN discovery on the tunnel socket) */
  private discoverWaiters: ((e: Endpoint) => void)[] = [];
  private txBuf = new Uint8Array(65536 + 64);

  constructor(private readonly opts: TunnelOptions) {
    this.kx = new KeyExchange(opts.log);
    this.fallbackMs = opts.plaintextFallbackMs ?? 1500;
  }

  get port(): number {
    return this.sock?.port ?? 0;
  }
  get address(): string {
    return this.sock?.hostname ?? "";
  }
  get encrypt(): boolean {
    return this.opts.encrypt;
  }
  get x25519Public(): Uint8Array {
    return this.kx.publicKey;
  }

  setIdentity(nodeId: number, identity: import("../crypto/identity.ts").Identity): void {
    this.localNodeId = nodeId;
    this.kx.setIdentity(nodeId, identity);
  }

  async listen(host: string, port: number): Promise<Endpoint> {
    this.sock = await Bun.udpSocket({
      hostname: host || "0.0.0.0",
      binaryType: "uint8array",
      port,
      socket: {
        data: (_s, buf, rport, raddr) => {
          try {
            this.onDatagram(buf, { ip: raddr, port: rport });
          } catch (e) {
            this.opts.onDrop?.("error");
            this.opts.log.debug("tunnel datagram dropped", { err: (e as Error).message });
          }
        },
        drain: () => this.out.drain(),
        // ICMP errors (e.g. port unreachable after a peer went away) surface here; they must
        // never take the daemon down.
        error: (...args: unknown[]) => {
          const err = args.find((a) => a instanceof Error) as Error | undefined;
          this.opts.log.debug("tunnel socket error", { err: err?.message ?? String(args[0]) });
        },
      },
    });
    const s = this.sock;
    const bufs = setSocketBuffers((s as unknown as { fd: number }).fd, UDP_BUFFER_BYTES);
    this.opts.log.debug("tunnel socket buffers", { rcv: bufs?.rcv ?? "default", snd: bufs?.snd ?? "default" });
    return { ip: s.hostname, port: s.port };
  }

  close(): void {
    this.flush();
    this.sock?.close();
    this.sock = null;
  }

  // ---------------------------------------------------------------- peers

  hasPeer(nodeId: number): boolean {
    return this.peers.has(nodeId);
  }

  getPeer(nodeId: number): Peer | undefined {
    return this.peers.get(nodeId);
  }

  /** Create (or keep) the tunnel entry for nodeId at `endpoint`; sends the key exchange at once. */
  addPeer(nodeId: number, endpoint: Endpoint | null, relay = false): Peer {
    let p = this.peers.get(nodeId);
    if (!p) {
      p = this.addPeerSilently(nodeId, endpoint, relay);
      if (this.opts.encrypt) this.sendKeyExchange(p);
    } else if (relay) {
      p.relay = true;
    }
    return p;
  }

  /**
   * Nodes whose trust we revoked. Their key exchanges and plaintext frames are refused until trust
   * is re-established (unblock), so an untrusted peer cannot simply re-key its way back in. The
   * reference keeps accepting them (services.md §13.10-1: no service checks trust); refusing is a
   * local policy a reference peer cannot observe except as silence.
   */
  private blocked = new Set<number>();

  block(nodeId: number): void {
    this.blocked.add(nodeId);
    this.removePeer(nodeId);
  }

  unblock(nodeId: number): void {
    this.blocked.delete(nodeId);
  }

  isBlocked(nodeId: number): boolean {
    return this.blocked.has(nodeId);
  }

  blockedIds(): number[] {
    return [...this.blocked];
  }

  /** Trust revoked: forget endpoint and session (wire.md §4.9). */
  removePeer(nodeId: number): void {
    const p = this.peers.get(nodeId);
    if (!p) return;
    if (p.pending.length) this.peersWithPending--;
    this.peers.delete(nodeId);
  }

  /** Send our key exchange again now (the peer may have lost its session). */
  rekey(nodeId: number): void {
    const p = this.peers.get(nodeId);
    if (p && this.opts.encrypt) this.sendKeyExchange(p, true);
  }

  setRelay(nodeId: number): void {
    const p = this.peers.get(nodeId);
    if (p && !p.relay) {
      p.relay = true;
      this.opts.log.info("peer switched to relay", { node_id: nodeId });
    }
  }

  pathOf(nodeId: number): PeerPath | null {
    const p = this.peers.get(nodeId);
    if (!p) return null;
    if (p.relay) return "relayed";
    return p.punched ? "punched" : "direct";
  }

  // ---------------------------------------------------------------- send path

  /**
   * Send one packet to pkt.dst.node. Throws Error("no tunnel to node N") when there is no entry
   * (the caller resolves through the registry first).
   */
  sendPacket(pkt: Packet): void {
    const nodeId = pkt.dst.node;
    const p = this.peers.get(nodeId);
    if (!p) throw new Error(`no tunnel to node ${nodeId}`);
    if (!this.opts.encrypt) {
      this.sendPlain(p, pkt);
      return;
    }
    const s = p.crypto.session;
    if (s) {
      // Encode into the scratch buffer, seal into a fresh frame.
      const n = encodePacketInto(pkt, this.txBuf, 0);
      const frame = s.seal(this.txBuf.subarray(0, n), this.localNodeId);
      this.writeFrame(p, frame);
      return;
    }
    // No session yet (wire.md §4.6): key exchange (rate-limited), queue the packet.
    const now = Date.now();
    if (p.kxFirstUnansweredAt === 0) p.kxFirstUnansweredAt = now;
    this.sendKeyExchange(p);
    const bytes = new Uint8Array(HEADER_SIZE + pkt.payload.length);
    encodePacketInto(pkt, bytes, 0);
    if (p.pending.length === 0) {
      if (this.peersWithPending < MAX_PEERS_WITH_PENDING) {
        this.peersWithPending++;
        p.pending.push(bytes);
      } else this.opts.onDrop?.("pending_overflow");
    } else {
      if (p.pending.length >= MAX_PENDING_PER_PEER) { p.pending.shift(); this.opts.onDrop?.("pending_overflow"); }
      p.pending.push(bytes);
    }
    // Improvement over the reference (wire.md §4.8 recommendation): no plaintext copy while the
    // exchange is young. Only when the peer has not answered for `fallbackMs` (it most likely has
    // encryption disabled: it ignores PILA) do we send PILT copies, as the reference always does.
    if (now - p.kxFirstUnansweredAt >= this.fallbackMs) {
      this.writeFrame(p, this.pilt(bytes));
    }
  }

  private sendPlain(p: Peer, pkt: Packet): void {
    const frame = new Uint8Array(4 + HEADER_SIZE + pkt.payload.length);
    new DataView(frame.buffer).setUint32(0, MAGIC_PILT);
    encodePacketInto(pkt, frame, 4);
    this.writeFrame(p, frame);
  }

  private pilt(packetBytes: Uint8Array): Uint8Array {
    const frame = new Uint8Array(4 + packetBytes.length);
    new DataView(frame.buffer).setUint32(0, MAGIC_PILT);
    frame.set(packetBytes, 4);
    return frame;
  }

  private sendKeyExchange(p: Peer, force = false): void {
    const frame = this.kx.buildFrame(p.crypto, Date.now(), force);
    if (frame) this.writeFrame(p, frame);
  }

  /** Write a tunnel frame to a peer: directly, or wrapped for the beacon relay (wire.md §3.7). */
  private writeFrame(p: Peer, frame: Uint8Array): void {
    if (!this.sock) return;
    if (p.relay && this.beacon) {
      const w = encodeRelay(this.localNodeId, p.nodeId, frame);
      this.queue(w, this.beacon.port, this.beacon.ip);
      this.stats.bytesSent += w.length;
    } else if (p.endpoint) {
      this.queue(frame, p.endpoint.port, p.endpoint.ip);
      this.stats.bytesSent += frame.length;
    } else {
      return;
    }
    this.stats.pktsSent++;
  }

  /** Send raw bytes (beacon control messages, PILP) to an endpoint. Not counted in stats. */
  sendRaw(data: Uint8Array, to: Endpoint): void {
    this.queue(data, to.port, to.ip);
  }

  private readonly out = new UdpBatcher(
    () => this.sock,
    (e) => this.opts.log.debug("tunnel send failed", { err: e.message }),
  );

  private queue(data: Uint8Array, port: number, ip: string): void {
    if (NO_BATCH) this.sock?.send(data, port, ip);
    else this.out.queue(data, port, ip);
  }

  /** Write every queued datagram now. */
  flush(): void {
    this.out.flush();
  }

  /** Send 3 × PILP to open NAT mappings towards `to` (beacon PunchCommand). */
  punch(to: Endpoint): void {
    for (let i = 0; i < 3; i++) this.sendRaw(PILP, to);
  }

  // ---------------------------------------------------------------- beacon helpers

  sendDiscover(): void {
    if (!this.beacon) return;
    this.sendRaw(encodeDiscover(this.localNodeId), this.beacon);
  }

  requestPunch(target: number): void {
    if (!this.beacon) return;
    this.sendRaw(encodePunchRequest(this.localNodeId, target), this.beacon);
  }

  /** Resolves with the endpoint in the next DiscoverReply seen on this socket. */
  waitDiscoverReply(timeoutMs: number): Promise<Endpoint | null> {
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.discoverWaiters = this.discoverWaiters.filter((w) => w !== cb);
        resolve(null);
      }, timeoutMs);
      const cb = (e: Endpoint) => {
        clearTimeout(t);
        resolve(e);
      };
      this.discoverWaiters.push(cb);
    });
  }

  // ---------------------------------------------------------------- receive path

  private onDatagram(buf: Uint8Array, from: Endpoint): void {
    if (buf.length === 0) return;
    if (buf[0] < 0x10) {
      this.onBeaconMessage(buf, from);
      return;
    }
    if (buf.length < 4) return this.opts.onDrop?.("malformed");
    this.onFrame(buf, from, false, 0);
  }

  private onFrame(buf: Uint8Array, from: Endpoint, viaRelay: boolean, relaySrc: number): void {
    const magic = ((buf[0] << 24) | (buf[1] << 16) | (buf[2] << 8) | buf[3]) >>> 0;
    switch (magic) {
      case MAGIC_PILT: {
        if (buf.length < 4 + HEADER_SIZE) return this.opts.onDrop?.("malformed");
        let pkt: Packet;
        try {
          pkt = decodePacket(buf, 4);
        } catch {
          return this.opts.onDrop?.("malformed"); // malformed: logged at debug only, dropped
        }
        this.stats.bytesRecv += viaRelay ? pkt.payload.length : buf.length;
        this.stats.pktsRecv++;
        // An encrypted session exists for this peer: PILT is still accepted (interop, wire.md §3.2)
        // but only from peers whose session is not established yet, or when encryption is off.
        if (this.blocked.has(pkt.src.node)) return this.opts.onDrop?.("blocked");
        const p = this.peers.get(pkt.src.node);
        if (this.opts.encrypt && p?.crypto.session && p.crypto.authenticated) {
          // Reference peers send PILT copies only while THEY lack a session; once we have an
          // authenticated session, plaintext from that node id is unauthenticated and could be
          // injected by anyone: drop it. (Improvement over the reference, which accepts it.)
          return this.opts.onDrop?.("plaintext_after_session");
        }
        this.learn(pkt.src.node, from, viaRelay);
        this.opts.onPacket(pkt, from, viaRelay);
        return;
      }
      case MAGIC_PILS: {
        if (buf.length < 4 + 32) return this.opts.onDrop?.("malformed");
        const nodeId = ((buf[4] << 24) | (buf[5] << 16) | (buf[6] << 8) | buf[7]) >>> 0;
        const p = this.peers.get(nodeId);
        const s = p?.crypto.session;
        if (!p || !s) return this.opts.onDrop?.("no_session"); // "encrypted packet from node but no key": drop silently
        const plain = s.open(buf);
        if (!plain) {
          // auth failure or replay: dropped, session kept (wire.md §4.5)
          this.opts.onDrop?.(s.lastDrop === "replay" ? "replay" : "auth_failed");
          if (s.lastDrop === "replay") {
            const dv = new DataView(buf.buffer, buf.byteOffset, buf.length);
            const counter = dv.getUint32(12) * 0x100000000 + dv.getUint32(16); // nonce counter (wire.md §4.3)
            this.opts.onEvent?.("security.nonce_replay", { counter, peer_node_id: nodeId });
          }
          return;
        }
        let pkt: Packet;
        try {
          pkt = decodePacket(plain, 0);
        } catch {
          return;
        }
        this.stats.bytesRecv += viaRelay ? pkt.payload.length : buf.length;
        this.stats.pktsRecv++;
        p.lastRecvAt = Date.now();
        p.kxFirstUnansweredAt = 0;
        this.opts.onPacket(pkt, from, viaRelay);
        return;
      }
      case MAGIC_PILA:
      case MAGIC_PILK: {
        if (!this.opts.encrypt) return;
        void this.onKeyExchange(buf, magic === MAGIC_PILA, from, viaRelay, relaySrc);
        return;
      }
      case MAGIC_PILP:
        return; // punch: opens NAT state only
      default:
        return;
    }
  }

  /** Peer learning from plaintext traffic (transport.md §1 step 1). */
  private learn(nodeId: number, from: Endpoint, viaRelay: boolean): void {
    if (this.peers.has(nodeId)) return;
    if (this.opts.encrypt) return; // with encryption on, only key exchanges create entries
    this.addPeer(nodeId, viaRelay ? null : from, viaRelay);
    this.opts.onEvent?.("tunnel.peer_added", { endpoint: formatEndpoint(from), peer_node_id: nodeId });
  }

  private async onKeyExchange(buf: Uint8Array, authenticated: boolean, from: Endpoint, viaRelay: boolean, _relaySrc: number): Promise<void> {
    const parsed = authenticated ? this.kx.parsePILA(buf) : this.kx.parsePILK(buf);
    if (!parsed) return;
    const nodeId = parsed.nodeId;
    if (nodeId === this.localNodeId || this.blocked.has(nodeId)) return;
    let regKey = await this.opts.lookupPublicKey(nodeId).catch(() => null);
    if (authenticated) {
      // wire.md §4.7: the Ed25519 key in the frame must equal the registry's, signature valid.
      if (regKey && !this.kx.verifyPILA(parsed, regKey) && parsed.ed25519 && !sameBytes(parsed.ed25519, regKey)) {
        // The reference caches a peer's key forever (W11), so a peer that rotated its key is
        // locked out until restart. Ask the registry once more (rate-limited by the caller).
        regKey = await this.opts.lookupPublicKey(nodeId, true).catch(() => null);
      }
      if (!regKey || !this.kx.verifyPILA(parsed, regKey)) {
        this.opts.onDrop?.("kx_rejected");
        this.opts.log.debug("key exchange rejected", { node_id: nodeId });
        return;
      }
    } else if (regKey) {
      // PILK from a registered node: refuse an unauthenticated session; answer with our PILA.
      const p = this.peers.get(nodeId);
      if (p) this.sendKeyExchange(p, true);
      return;
    }
    let p = this.peers.get(nodeId);
    if (!p) {
      p = this.addPeerSilently(nodeId, viaRelay ? null : from, viaRelay);
      this.opts.onEvent?.("tunnel.peer_added", { endpoint: formatEndpoint(from), peer_node_id: nodeId });
    } else if (!viaRelay) {
      p.endpoint = from; // endpoint learning / roaming (only from direct key exchanges)
    }
    if (viaRelay) p.relay = true;
    const hadSession = !!p.crypto.session;
    const { answer, rekeyed } = this.kx.accept(p.crypto, parsed.x25519, authenticated, Date.now());
    if (p.crypto.session && (!hadSession || rekeyed)) {
      this.opts.onEvent?.("tunnel.established", { authenticated, peer_node_id: nodeId, rekeyed, relay: p.relay });
    }
    p.kxFirstUnansweredAt = 0;
    p.lastRecvAt = Date.now();
    if (answer) this.sendKeyExchange(p, true);
    // Flush queued packets as PILS (wire.md §4.6 step 4).
    if (p.pending.length) {
      const q = p.pending;
      p.pending = [];
      this.peersWithPending--;
      const s = p.crypto.session!;
      for (const bytes of q) this.writeFrame(p, s.seal(bytes, this.localNodeId));
    }
  }

  private addPeerSilently(nodeId: number, endpoint: Endpoint | null, relay: boolean): Peer {
    const p: Peer = {
      nodeId,
      endpoint,
      relay,
      crypto: this.kx.newPeer(),
      pending: [],
      kxFirstUnansweredAt: 0,
      punched: false,
      lastRecvAt: 0,
      createdAt: Date.now(),
    };
    this.peers.set(nodeId, p);
    return p;
  }

  private onBeaconMessage(buf: Uint8Array, from: Endpoint): void {
    let m;
    try {
      m = decodeBeacon(buf);
    } catch {
      return; // malformed beacon message: ignored (beacon.md §6)
    }
    switch (m.type) {
      case BEACON_DISCOVER_REPLY: {
        const ws = this.discoverWaiters;
        this.discoverWaiters = [];
        for (const w of ws) w(m.ep);
        return;
      }
      case BEACON_PUNCH_COMMAND: {
        // 3 × PILP to the named endpoint (beacon.md §4).
        this.punch(m.ep);
        // Path bookkeeping: a peer counts as "punched" only if the punch happened before the key
        // exchange with it completed; a peer that already answered directly stays "direct".
        for (const p of this.peers.values()) {
          if (!p.crypto.session && p.endpoint && p.endpoint.port === m.ep.port && sameHost(p.endpoint.ip, m.ep.ip)) p.punched = true;
        }
        return;
      }
      case BEACON_RELAY_DELIVER: {
        // Accept RelayDeliver only from the configured beacon (the reference accepts it from
        // any source address — beacon.md Observations — which lets anyone inject frames).
        if (this.beacon && !(from.port === this.beacon.port && sameHost(from.ip, this.beacon.ip))) return;
        const src = m.sender;
        if (this.blocked.has(src)) return;
        let p = this.peers.get(src);
        if (!p) p = this.addPeerSilently(src, this.beacon, true);
        if (!p.relay || !p.relayActivated) {
          p.relayActivated = true;
          this.opts.onEvent?.("tunnel.relay_activated", { peer_node_id: src });
        }
        p.relay = true;
        const inner = m.payload;
        if (inner.length < 4) return;
        if (inner[0] === 0x50 && inner[1] === 0x49 && inner[2] === 0x4c && inner[3] === 0x50) return;
        this.onFrame(inner, from, true, src);
        return;
      }
      default:
        return;
    }
  }
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function sameHost(a: string, b: string): boolean {
  if (a === b) return true;
  const norm = (h: string) => h.replace(/^::ffff:/, "");
  return norm(a) === norm(b);
}

