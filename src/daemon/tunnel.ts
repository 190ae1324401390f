// Tunnel manager: the daemon's datagram socket, per-peer endpoints and crypto sessions, key
// exchange (PILA/PILK), relay through the beacon, NAT punching and beacon messages.
// docs/protocol.md §3 and docs/protocol.md §7. The layer above (router/transport) sees decoded Packets only.
// Sans-IO: the socket (PacketNet) and the clock are injected; the daemon passes real UDP and the
// system clock, the tests an in-memory network with NATs, a beacon and a virtual clock (test/sim).
import type { Packet } from "../proto/types.ts";
import { HEADER_SIZE } from "../proto/types.ts";
import { decodePacket, encodePacketInto } from "../proto/packet.ts";
import { PILS_HEADER_SIZE, PILS_OVERHEAD } from "../proto/tunnel.ts";
import { KeyExchange } from "./kx.ts";
import { type Clock, type PacketConn, systemClock } from "./net/packet-conn.ts";
import { udpNet } from "./net/udp.ts";
import { RateGate } from "./net/rate-gate.ts";
import { type Endpoint, encodeRelay } from "../proto/beacon.ts";
import { BeaconLink } from "./tunnel-beacon.ts";
import { PeerTable } from "./tunnel-peers.ts";
import { PlainNotices, isPlainNotice } from "./tunnel-plain.ts";
import { type Peer, type PeerPath, type TunnelOptions, type TunnelStats, formatEndpoint, sameBytes, sameEndpoint } from "./tunnel-types.ts";

export * from "./tunnel-types.ts";
export { MAX_UNVERIFIED_PEERS, UNVERIFIED_IDLE_MS } from "./tunnel-peers.ts";

const MAX_PENDING_PER_PEER = 64;
const MAX_PEERS_WITH_PENDING = 256;
const SWEEP_MS = 10_000;
/** Answers to unverifiable PILKs: at most one per source address per interval. */
const PILK_ANSWER_INTERVAL_MS = 10_000;
const MAGIC_PILT = 0x50494c54;
const MAGIC_PILS = 0x50494c53;
const MAGIC_PILK = 0x50494c4b;
const MAGIC_PILA = 0x50494c41;
const MAGIC_PILP = 0x50494c50;

export class Tunnel {
  private conn: PacketConn | null = null;
  private readonly table: PeerTable;
  readonly stats: TunnelStats = { bytesSent: 0, bytesRecv: 0, pktsSent: 0, pktsRecv: 0 };
  private localNodeId = 0;
  private readonly link: BeaconLink;
  private kx: KeyExchange;
  /** peers with queued packets (waiting for a session); at most MAX_PEERS_WITH_PENDING */
  private readonly waiting = new Set<Peer>();
  private readonly fallbackMs: number;
  private readonly clock: Clock;
  private readonly pilkGate = new RateGate(PILK_ANSWER_INTERVAL_MS);
  private readonly notices = new PlainNotices();
  private sweepTimer: unknown = null;

  constructor(private readonly opts: TunnelOptions) {
    this.kx = new KeyExchange(opts.log);
    this.fallbackMs = opts.plaintextFallbackMs ?? 1500;
    this.clock = opts.clock ?? systemClock;
    this.link = new BeaconLink((d, to) => this.sendRaw(d, to), this.clock, () => this.localNodeId);
    this.table = new PeerTable(this.clock, (p) => {
      this.waiting.delete(p);
      if (p.fallbackTimer) this.clock.clearTimeout(p.fallbackTimer);
    });
  }

  /** Every peer entry by node ID (read-only for callers). */
  get peers(): ReadonlyMap<number, Peer> { return this.table.map; }

  get port(): number { return this.conn?.local.port ?? 0; }
  get address(): string { return this.conn?.local.ip ?? ""; }
  get encrypt(): boolean { return this.opts.encrypt; }
  get x25519Public(): Uint8Array { return this.kx.publicKey; }
  /** Received datagrams are fresh memory nobody reuses (packet payloads may be kept as they are). */
  get receivedBuffersOwned(): boolean { return this.conn?.reusesBuffers === false; }

  setIdentity(nodeId: number, identity: import("../crypto/identity.ts").Identity): void {
    this.localNodeId = nodeId;
    this.kx.setIdentity(nodeId, identity);
  }

  async listen(host: string, port: number): Promise<Endpoint> {
    const net = this.opts.net ?? udpNet;
    this.conn = await net.listen(host, port, (buf, from) => this.onDatagram(buf, from), this.opts.log);
    this.armSweep();
    return this.conn.local;
  }

  close(): void {
    this.conn?.close();
    this.conn = null;
    if (this.sweepTimer) this.clock.clearTimeout(this.sweepTimer);
    this.sweepTimer = null;
    for (const p of this.table.map.values()) if (p.fallbackTimer) this.clock.clearTimeout(p.fallbackTimer);
  }

  // ---------------------------------------------------------------- peers

  hasPeer(nodeId: number): boolean { return this.table.map.has(nodeId); }

  getPeer(nodeId: number): Peer | undefined { return this.table.map.get(nodeId); }

  /**
   * Create (or keep) the tunnel entry for nodeId at `endpoint` (the caller resolved it through the
   * registry, so the entry counts as verified); sends the key exchange at once.
   */
  addPeer(nodeId: number, endpoint: Endpoint | null, relay = false): Peer {
    let p = this.table.map.get(nodeId);
    if (!p) {
      p = this.addPeerSilently(nodeId, endpoint, relay, true);
      if (this.opts.encrypt) this.sendKeyExchange(p);
    } else {
      this.table.markVerified(p);
      if (!p.endpoint && endpoint) p.endpoint = endpoint;
      if (relay) p.relay = true;
    }
    return p;
  }

  /**
   * Nodes whose trust we revoked. Their key exchanges and plaintext frames are refused until trust
   * is re-established (unblock), so an untrusted peer cannot simply re-key its way back in. The
   * reference keeps accepting them (no service there checks trust); refusing is a local policy a
   * reference peer cannot observe except as silence.
   */
  block(nodeId: number): void {
    this.table.block(nodeId);
  }
  unblock(nodeId: number): void {
    this.table.unblock(nodeId);
  }
  isBlocked(nodeId: number): boolean {
    return this.table.isBlocked(nodeId);
  }
  blockedIds(): number[] {
    return this.table.blockedIds();
  }

  /** Trust revoked: forget endpoint and session (docs/protocol.md §4.9). */
  removePeer(nodeId: number): void {
    this.table.remove(nodeId);
  }

  /** Send our key exchange again now (the peer may have lost its session). */
  rekey(nodeId: number): void {
    const p = this.table.map.get(nodeId);
    if (!p || !this.opts.encrypt) return;
    p.crypto.rekeyAskedAt = this.clock.now();
    this.sendKeyExchange(p, true);
  }

  /**
   * Re-key to a peer that went silent (it may have restarted), but first confirm through the
   * registry that we may still reach it: a peer that revoked its trust in us often loses the revoke
   * notice, and re-keying would let us straight back in. A denial blocks the peer ("revoked").
   */
  async refresh(nodeId: number): Promise<"rekeyed" | "revoked" | "gone"> {
    if (!this.table.map.has(nodeId)) return "gone";
    const verdict = this.opts.confirmPeer ? await this.opts.confirmPeer(nodeId).catch(() => "unknown" as const) : "unknown";
    if (verdict === "denied") {
      this.block(nodeId);
      this.opts.log.info("peer denied by the registry: trust revoked", { node_id: nodeId });
      this.opts.onEvent?.("tunnel.trust_revoked", { peer_node_id: nodeId });
      return "revoked";
    }
    if (!this.table.map.has(nodeId)) return "gone";
    this.rekey(nodeId);
    return "rekeyed";
  }

  setRelay(nodeId: number): void {
    const p = this.table.map.get(nodeId);
    if (p && !p.relay) {
      p.relay = true;
      this.opts.log.info("peer switched to relay", { node_id: nodeId });
    }
  }

  pathOf(nodeId: number): PeerPath | null {
    const p = this.table.map.get(nodeId);
    if (!p) return null;
    if (p.relay) return "relayed";
    return p.punched ? "punched" : "direct";
  }

  /** How many peer entries nobody vouched for (bounded by MAX_UNVERIFIED_PEERS). */
  get unverifiedCount(): number { return this.table.unverifiedCount; }

  /** Forget unverified peers silent for UNVERIFIED_IDLE_MS. */
  sweep(): void {
    this.table.sweep();
  }

  private armSweep(): void {
    this.sweepTimer = this.clock.setTimeout(() => {
      this.sweep();
      if (this.conn) this.armSweep();
    }, SWEEP_MS);
  }

  // ---------------------------------------------------------------- send path

  /**
   * Send one packet to pkt.dst.node. Throws Error("no tunnel to node N") when there is no entry
   * (the caller resolves through the registry first).
   */
  sendPacket(pkt: Packet): void {
    const nodeId = pkt.dst.node;
    const p = this.table.map.get(nodeId);
    if (!p) throw new Error(`no tunnel to node ${nodeId}`);
    if (!this.opts.encrypt) {
      this.sendPlain(p, pkt);
      return;
    }
    const now = this.clock.now();
    const s = this.kx.sendSession(p.crypto, now);
    if (s) {
      // Encoded and sealed where it is sent from: the socket's slab (direct), else a new frame.
      const size = HEADER_SIZE + pkt.payload.length + PILS_OVERHEAD;
      const slot = (!p.relay && this.conn?.scratch?.(size)) || new Uint8Array(size);
      encodePacketInto(pkt, slot, PILS_HEADER_SIZE);
      return this.writeFrame(p, s.sealInPlace(slot, this.localNodeId));
    }
    // No session yet (docs/protocol.md §4.5): key exchange (rate-limited), queue the packet.
    if (p.kxFirstUnansweredAt === 0) p.kxFirstUnansweredAt = now;
    this.sendKeyExchange(p);
    const bytes = new Uint8Array(HEADER_SIZE + pkt.payload.length);
    encodePacketInto(pkt, bytes, 0);
    if (p.pending.length === 0) {
      if (this.waiting.size < MAX_PEERS_WITH_PENDING) {
        this.waiting.add(p);
        p.pending.push(bytes);
      } else this.opts.onDrop?.("pending_overflow");
    } else {
      if (p.pending.length >= MAX_PENDING_PER_PEER) {
        p.pending.shift();
        this.opts.onDrop?.("pending_overflow");
      }
      p.pending.push(bytes);
    }
    // Improvement over the reference: no plaintext copy while the exchange is young. Only when the
    // peer has not answered for `fallbackMs` (it most likely has encryption disabled: it ignores
    // PILA), or it already spoke plaintext to us, do we send PILT copies, as the reference always
    // does. The fallback timer sends the queued packets the moment the wait ends.
    if (p.plain || now - p.kxFirstUnansweredAt >= this.fallbackMs) this.writeFrame(p, this.pilt(bytes));
    else if (!p.fallbackTimer) {
      p.fallbackTimer = this.clock.setTimeout(() => this.plainFallback(p), p.kxFirstUnansweredAt + this.fallbackMs - now);
    }
  }

  /** The key exchange with `p` went unanswered for fallbackMs: send its queue as PILT copies. */
  private plainFallback(p: Peer): void {
    p.fallbackTimer = undefined;
    if (this.table.map.get(p.nodeId) !== p || p.crypto.session || p.kxFirstUnansweredAt === 0) return;
    this.opts.onEvent?.("tunnel.plaintext", { cause: "no_answer", peer_node_id: p.nodeId });
    // The copies stay queued: if a session appears after all they are sent again as PILS
    // (the peer's transport tolerates the duplicates, as with the reference).
    for (const bytes of p.pending) this.writeFrame(p, this.pilt(bytes));
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

  /** Our key-exchange frame to the peer (to `to` instead of its endpoint when given). */
  private sendKeyExchange(p: Peer, force = false, to?: Endpoint): void {
    const frame = this.kx.buildFrame(p.crypto, this.clock.now(), force);
    if (!frame) return;
    if (to && !p.relay) {
      this.conn?.send(frame, to);
      this.stats.bytesSent += frame.length;
      this.stats.pktsSent++;
    } else this.writeFrame(p, frame);
  }

  /** Write a tunnel frame to a peer: directly, or wrapped for the beacon relay (docs/protocol.md §7.1). */
  private writeFrame(p: Peer, frame: Uint8Array): void {
    if (!this.conn) return;
    if (!p.verified) p.lastSendAt = this.clock.now();
    if (p.relay && this.beacon) {
      const w = encodeRelay(this.localNodeId, p.nodeId, frame);
      this.conn.send(w, this.beacon);
      this.stats.bytesSent += w.length;
    } else if (p.endpoint) {
      this.conn.send(frame, p.endpoint);
      this.stats.bytesSent += frame.length;
    } else {
      return;
    }
    this.stats.pktsSent++;
  }

  /** Send raw bytes (beacon control messages, PILP) to an endpoint. Not counted in stats. */
  sendRaw(data: Uint8Array, to: Endpoint): void {
    this.conn?.send(data, to);
  }

  /** Write every queued datagram now. */
  flush(): void {
    this.conn?.flush();
  }

  // ---------------------------------------------------------------- beacon

  /** The beacon (relay, punches, STUN); control messages are accepted from it only. */
  get beacon(): Endpoint | null {
    return this.link.beacon;
  }
  set beacon(e: Endpoint | null) {
    this.link.beacon = e;
  }
  /** Send 3 × PILP to open NAT mappings towards `to`. */
  punch(to: Endpoint): void {
    this.link.punch(to);
  }
  sendDiscover(): void {
    this.link.sendDiscover();
  }
  requestPunch(target: number): void {
    this.link.requestPunch(target);
  }
  /** Resolves with the endpoint in the next DiscoverReply seen on this socket. */
  waitDiscoverReply(timeoutMs: number): Promise<Endpoint | null> {
    return this.link.waitDiscoverReply(timeoutMs);
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
      case MAGIC_PILT:
        this.onPlain(buf, from, viaRelay, relaySrc);
        return;
      case MAGIC_PILS:
        this.onSealed(buf, from, viaRelay, relaySrc);
        return;
      case MAGIC_PILA:
      case MAGIC_PILK: {
        if (!this.opts.encrypt) return this.sendPlainNotice(buf, from, viaRelay, relaySrc);
        void this.onKeyExchange(buf, magic === MAGIC_PILA, from, viaRelay, relaySrc);
        return;
      }
      case MAGIC_PILP:
        if (!viaRelay) this.onPunch(from);
        return;
      default:
        return;
    }
  }

  /**
   * A PILP: the peer's punch has opened its NAT towards us, so our first key exchange (which its
   * NAT most likely dropped) can be repeated now instead of at the next retransmission. At most
   * once per second per peer we are waiting for.
   */
  private onPunch(from: Endpoint): void {
    if (!this.opts.encrypt || this.waiting.size === 0) return;
    const now = this.clock.now();
    for (const p of this.waiting) {
      if (p.crypto.session || !p.endpoint || !sameEndpoint(p.endpoint, from) || now - p.punchKxAt < 1000) continue;
      p.punchKxAt = now;
      this.sendKeyExchange(p, true);
    }
  }

  private onPlain(buf: Uint8Array, from: Endpoint, viaRelay: boolean, relaySrc: number): void {
    if (buf.length < 4 + HEADER_SIZE) return this.opts.onDrop?.("malformed");
    let pkt: Packet;
    try {
      pkt = decodePacket(buf, 4);
    } catch {
      return this.opts.onDrop?.("malformed");
    }
    const src = pkt.src.node;
    // A relayed frame must come from the node the beacon names as its sender.
    if (viaRelay && src !== relaySrc) return;
    this.stats.bytesRecv += viaRelay ? pkt.payload.length : buf.length;
    this.stats.pktsRecv++;
    if (this.table.isBlocked(src)) return this.opts.onDrop?.("blocked");
    const p = this.table.map.get(src);
    if (this.opts.encrypt && p?.crypto.session && p.crypto.authenticated) {
      // Reference peers send PILT copies only while THEY lack a session; once we have an
      // authenticated session, plaintext from that node id is unauthenticated and could be
      // injected by anyone: drop it. (Improvement over the reference, which accepts it.)
      return this.opts.onDrop?.("plaintext_after_session");
    }
    if (this.opts.encrypt && !p?.kxSeen) this.table.rememberPlain(src);
    if (p && this.opts.encrypt && !p.crypto.session && !p.kxSeen && (viaRelay || (p.endpoint && sameEndpoint(p.endpoint, from)))) {
      // The peer speaks plaintext without ever sending a key exchange (or answered ours with the
      // plaintext notice): its encryption is off. Send what waits for it now, not after the wait.
      if (!p.plain) {
        p.plain = true;
        if (p.fallbackTimer) this.clock.clearTimeout(p.fallbackTimer);
        p.fallbackTimer = undefined;
        this.opts.onEvent?.("tunnel.plaintext", { cause: "peer_plaintext", peer_node_id: src });
        for (const bytes of p.pending) this.writeFrame(p, this.pilt(bytes));
      }
    }
    if (p) p.lastRecvAt = this.clock.now();
    if (isPlainNotice(pkt)) return; // it only says "this peer speaks plaintext": consumed here
    if (!p && !this.learn(src, from, viaRelay)) return;
    this.opts.onPacket(pkt, from, viaRelay);
  }

  /** Encryption off: answer a key exchange with the plaintext notice (see tunnel-plain.ts). */
  private sendPlainNotice(kx: Uint8Array, from: Endpoint, viaRelay: boolean, relaySrc: number): void {
    const n = this.notices.answer(kx, viaRelay ? `relay:${relaySrc}` : formatEndpoint(from), this.localNodeId, this.clock.now());
    const p = n && viaRelay && n.nodeId === relaySrc ? this.table.map.get(relaySrc) : undefined;
    if (p) this.writeFrame(p, n!.frame);
    else if (n && !viaRelay) this.sendRaw(n.frame, from);
  }

  private onSealed(buf: Uint8Array, from: Endpoint, viaRelay: boolean, relaySrc: number): void {
    if (buf.length < 4 + 32) return this.opts.onDrop?.("malformed");
    const nodeId = ((buf[4] << 24) | (buf[5] << 16) | (buf[6] << 8) | buf[7]) >>> 0;
    if (viaRelay && nodeId !== relaySrc) return;
    const p = this.table.map.get(nodeId);
    if (!p || !p.crypto.session) return this.opts.onDrop?.("no_session"); // "encrypted packet from node but no key": drop silently
    const now = this.clock.now();
    const r = this.kx.open(p.crypto, buf, now);
    if (!r.plain) {
      // auth failure or replay: dropped, the session is kept
      this.opts.onDrop?.(r.drop === "replay" ? "replay" : "auth_failed");
      if (r.drop === "replay") {
        const dv = new DataView(buf.buffer, buf.byteOffset, buf.length);
        const counter = dv.getUint32(12) * 0x100000000 + dv.getUint32(16); // nonce counter: bytes 12..19, big-endian
        this.opts.onEvent?.("security.nonce_replay", { counter, peer_node_id: nodeId });
      }
      return;
    }
    let pkt: Packet;
    try {
      pkt = decodePacket(r.plain, 0);
    } catch {
      return;
    }
    // The inner source must be the node the session belongs to: a session with node N only ever
    // speaks for N (otherwise any keyed peer could forge packets "from" any other node).
    if (pkt.src.node !== nodeId) {
      this.opts.log.debug("sealed packet with a foreign source dropped", { node_id: nodeId, src: pkt.src.node });
      return;
    }
    if (r.switched) {
      this.opts.onEvent?.("tunnel.established", { authenticated: p.crypto.authenticated, peer_node_id: nodeId, rekeyed: true, relay: p.relay });
    }
    // Endpoint learning: only an authenticated frame with a fresh counter proves the peer is live at
    // the new address (NAT rebinding, roaming); key-exchange frames can be replayed from anywhere.
    if (!viaRelay && (!p.endpoint || !sameEndpoint(p.endpoint, from))) {
      if (p.endpoint) this.opts.log.info("peer endpoint changed", { node_id: nodeId, endpoint: formatEndpoint(from) });
      p.endpoint = from;
    }
    this.stats.bytesRecv += viaRelay ? pkt.payload.length : buf.length;
    this.stats.pktsRecv++;
    p.lastRecvAt = now;
    p.kxFirstUnansweredAt = 0;
    this.opts.onPacket(pkt, from, viaRelay);
  }

  /** Peer learning from plaintext traffic (encryption off). False: no room, dropped. */
  private learn(nodeId: number, from: Endpoint, viaRelay: boolean): boolean {
    if (this.opts.encrypt) return true; // with encryption on, only key exchanges create entries
    if (!this.table.admitUnverified()) return false;
    const p = this.addPeerSilently(nodeId, viaRelay ? null : from, viaRelay, false);
    p.lastRecvAt = this.clock.now();
    this.opts.onEvent?.("tunnel.peer_added", { endpoint: formatEndpoint(from), peer_node_id: nodeId });
    return true;
  }

  private async onKeyExchange(buf: Uint8Array, authenticated: boolean, from: Endpoint, viaRelay: boolean, relaySrc: number): Promise<void> {
    buf = new Uint8Array(buf); // a copy: used across awaits, and the datagram is only valid during the call
    const parsed = authenticated ? this.kx.parsePILA(buf) : this.kx.parsePILK(buf);
    if (!parsed) return;
    const nodeId = parsed.nodeId;
    if (nodeId === this.localNodeId || this.table.isBlocked(nodeId)) return;
    if (viaRelay && nodeId !== relaySrc) return; // a relayed frame speaks for its relay sender only
    let regKey = await this.opts.lookupPublicKey(nodeId).catch(() => null);
    if (authenticated) {
      // docs/protocol.md §4.7: the Ed25519 key in the frame must equal the registry's, signature valid.
      if (regKey && !this.kx.verifyPILA(parsed, regKey) && parsed.ed25519 && !sameBytes(parsed.ed25519, regKey)) {
        // The reference caches a peer's key forever, so a peer that rotated its key is locked out
        // until restart. Ask the registry once more (rate-limited by the caller).
        regKey = await this.opts.lookupPublicKey(nodeId, true).catch(() => null);
      }
      if (!regKey || !this.kx.verifyPILA(parsed, regKey)) {
        this.opts.onDrop?.("kx_rejected");
        this.opts.log.debug("key exchange rejected", { node_id: nodeId });
        return;
      }
    } else if (regKey) {
      // PILK from a registered node: refuse an unauthenticated session; answer with our PILA (to
      // the peer's known endpoint, and like every answer to an unverifiable frame at most once per
      // source per interval).
      const p = this.table.map.get(nodeId);
      if (p && this.pilkGate.allow(formatEndpoint(from), this.clock.now())) this.sendKeyExchange(p, true);
      return;
    }
    if (!this.conn || this.table.isBlocked(nodeId)) return; // closed or revoked while looking up
    const now = this.clock.now();
    let p = this.table.map.get(nodeId);
    if (!p) {
      // A PILK from an unregistered node can be sent by anyone: such peers are capped and expire.
      if (!authenticated && !this.table.admitUnverified()) return;
      p = this.addPeerSilently(nodeId, viaRelay ? null : from, viaRelay, authenticated);
      this.opts.onEvent?.("tunnel.peer_added", { endpoint: formatEndpoint(from), peer_node_id: nodeId });
    } else if (authenticated) this.table.markVerified(p);
    if (viaRelay) p.relay = true;
    p.kxSeen = true;
    p.plain = false;
    this.table.forgetPlain(nodeId);
    p.lastRecvAt = now;
    const res = this.kx.accept(p.crypto, parsed.x25519, authenticated, now);
    // Endpoint: set when unknown; moved only by a verified exchange that installed a new key (a
    // replayed frame repeating the current key, or a stale key while the session is live, moves
    // nothing; a later authenticated PILS from the new address does).
    if (!viaRelay && (!p.endpoint || (res.installed && authenticated && !sameEndpoint(p.endpoint, from)))) {
      if (p.endpoint) this.opts.log.info("peer endpoint changed", { node_id: nodeId, endpoint: formatEndpoint(from) });
      p.endpoint = from;
    }
    if (res.installed) {
      this.opts.onEvent?.("tunnel.established", { authenticated, peer_node_id: nodeId, rekeyed: res.rekeyed, relay: p.relay });
    }
    if (p.crypto.session) p.kxFirstUnansweredAt = 0;
    // Answer to the address the exchange came from (that is where the peer listens). An answer to
    // an unverifiable PILK is larger than the PILK and its source may be spoofed: at most one per
    // source address per interval.
    if (res.answer && (authenticated || this.pilkGate.allow(formatEndpoint(from), now))) {
      this.sendKeyExchange(p, true, viaRelay ? undefined : from);
    }
    // Flush queued packets as PILS (docs/protocol.md §4.5 step 4).
    if (p.pending.length && p.crypto.session) {
      const q = p.pending;
      p.pending = [];
      this.waiting.delete(p);
      const s = p.crypto.session;
      for (const bytes of q) this.writeFrame(p, s.seal(bytes, this.localNodeId));
    }
  }

  private addPeerSilently(nodeId: number, endpoint: Endpoint | null, relay: boolean, verified: boolean): Peer {
    const p: Peer = {
      nodeId,
      endpoint,
      relay,
      crypto: this.kx.newPeer(),
      pending: [],
      kxFirstUnansweredAt: 0,
      punched: false,
      lastRecvAt: 0,
      lastSendAt: 0,
      punchKxAt: -Infinity,
      createdAt: this.clock.now(),
      verified,
      kxSeen: false,
      plain: this.table.isPlain(nodeId),
    };
    this.table.add(p);
    return p;
  }

  private onBeaconMessage(buf: Uint8Array, from: Endpoint): void {
    const a = this.link.handle(buf, from);
    if (!a) return;
    if ("punched" in a) {
      // Path bookkeeping: a peer counts as "punched" only if the punch happened before the key
      // exchange with it completed; a peer that already answered directly stays "direct".
      for (const p of this.table.map.values()) {
        if (!p.crypto.session && p.endpoint && sameEndpoint(p.endpoint, a.punched)) p.punched = true;
      }
      return;
    }
    const src = a.relayFrom;
    if (this.table.isBlocked(src) || src === this.localNodeId) return;
    let p = this.table.map.get(src);
    if (!p) {
      if (!this.table.admitUnverified()) return;
      p = this.addPeerSilently(src, null, true, false);
    }
    if (!p.relay || !p.relayActivated) {
      p.relayActivated = true;
      this.opts.onEvent?.("tunnel.relay_activated", { peer_node_id: src });
    }
    p.relay = true;
    this.onFrame(a.frame, from, true, src);
  }
}
