// The daemon: glues tunnel (UDP + crypto), transport (streams), registry client, IPC server and
// built-in services together. Start-up order follows registry.md §11.1 / cli.md §6.1.
import { homedir } from "node:os";
import { dirname, join } from "node:path";
import { mkdirSync, statSync } from "node:fs";
import type { Addr, Packet } from "../proto/types.ts";
import { formatAddr, parseAddr } from "../proto/addr.ts";
import type { HandshakeSub, JsonObject } from "../proto/ipc.ts";
import { Transport } from "../transport/transport.ts";
import type { Listener, StreamConn } from "../transport/api.ts";
import { TransportError } from "../transport/api.ts";
import {
  type Identity,
  generateIdentity,
  loadOrCreateIdentity,
  sign,
  verify,
  encodePublicKey,
  decodePublicKey,
  encodeSignature,
  decodeSignature,
} from "../crypto/identity.ts";
import { type Endpoint, Tunnel, formatEndpoint, parseEndpoint } from "./tunnel.ts";
import { IpcServer, type DaemonApi } from "./ipc-server.ts";
import type { Logger } from "./log.ts";
import { RegistryClient, RegistryError } from "./registry-client.ts";
import type { DaemonObserver } from "./metrics.ts";
import type { ServiceContext, TrustRegistry, RegistryPoll, RegistryLookup, ServiceHandle } from "./services/context.ts";

export interface DaemonConfig {
  registry: string;
  beacon: string;
  listen: string;
  socket: string;
  endpoint: string;
  encrypt: boolean;
  registryTls: boolean;
  registryFingerprint: string;
  identity: string;
  owner: string;
  keepaliveMs: number;
  idleTimeoutMs: number;
  synRateLimit: number;
  /** per-source SYN/s (transport.md §0: 10, not configurable in the reference) */
  synRateLimitPerSource?: number;
  maxConnsPerPort: number;
  maxConnsTotal: number;
  timeWaitMs: number;
  public: boolean;
  hostname: string;
  noEcho: boolean;
  noDataExchange: boolean;
  noEventStream: boolean;
  webhook: string;
  /** data directory for received/, inbox/, tasks/ (default ~/.pilot) */
  dataDir?: string;
}

export class DaemonError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export class Daemon implements DaemonApi {
  readonly tunnel: Tunnel;
  transport!: Transport;
  registry!: RegistryClient;
  ipc!: IpcServer;
  identity!: Identity;
  nodeId = 0;
  address: Addr = { network: 0, node: 0 };
  hostname: string;
  private visibilityPublic: boolean;
  private startedAt = 0;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private timerAt = Infinity;
  private kickScheduled = false;
  private heartbeatTimer: ReturnType<typeof setInterval> | null = null;
  private heartbeatFailures = 0;
  private pubKeyCache = new Map<number, Uint8Array>();
  private resolving = new Map<number, Promise<void>>();
  private conns = new Map<number, StreamConn>();
  private ipcPorts = new Map<number, Listener>();
  /** every bound port (IPC clients and built-in services), for Info's `ports` */
  private boundPorts = new Set<number>();
  private services: ServiceHandle[] = [];
  trust: import("./services/trust.ts").TrustService | null = null;
  private webhookUrl: string;
  private stopping = false;
  private beaconEp: Endpoint | null = null;
  /** Opt-in metrics (metrics.ts): told about every event and dropped frame. */
  observer: DaemonObserver | null = null;

  constructor(
    readonly cfg: DaemonConfig,
    readonly log: Logger,
  ) {
    this.hostname = cfg.hostname;
    this.visibilityPublic = cfg.public;
    this.webhookUrl = cfg.webhook;
    this.tunnel = new Tunnel({
      encrypt: cfg.encrypt,
      log,
      onPacket: (pkt) => this.onPacket(pkt),
      lookupPublicKey: (id, refresh) => this.lookupPublicKey(id, refresh),
      onEvent: (ev, data) => this.emit(ev, data),
      onDrop: (reason) => this.observer?.drop(reason),
    });
  }

  get dataDir(): string {
    return this.cfg.dataDir ?? join(homedir(), ".pilot");
  }

  // ------------------------------------------------------------------ start / stop

  async start(): Promise<void> {
    const cfg = this.cfg;
    const listen = parseEndpoint(cfg.listen.startsWith(":") || cfg.listen.includes(":") ? cfg.listen : `${cfg.listen}:0`);
    if (!listen) throw new DaemonError("invalid_flag", `invalid -listen address: ${cfg.listen}`);
    if (cfg.beacon) {
      const b = parseEndpoint(cfg.beacon);
      if (!b) throw new DaemonError("invalid_flag", `invalid -beacon address: ${cfg.beacon}`);
      this.beaconEp = await resolveEndpoint(b);
    }
    // 1-2. tunnel socket, then the endpoint: -endpoint, else STUN.
    // Improvement over the reference (beacon.md §8.2, registry.md R22/R23): the reference asks the
    // beacon from a TEMPORARY socket and then binds the tunnel socket; with `-listen :0` (the
    // default) the two sockets get different NAT mappings and the registered port is wrong behind
    // any NAT. We send the same Discover(0) from the tunnel socket itself, so the observed
    // endpoint is exactly the mapping peers must dial. The beacon cannot tell the difference.
    const local = await this.tunnel.listen(listen.ip, listen.port);
    this.log.info("tunnel listening", { addr: formatEndpoint(local) });
    let endpoint: Endpoint | null = cfg.endpoint ? parseEndpoint(cfg.endpoint) : null;
    if (!cfg.endpoint && this.beaconEp) {
      endpoint = await this.tunnelDiscover(this.beaconEp, 0, 3000);
      if (!endpoint) this.log.warn("beacon discover failed, using local addr");
    }
    if (!endpoint || isLocalHost(endpoint.ip)) endpoint = { ip: wildcardToLoopback(local.ip), port: local.port };
    // 3. identity
    if (cfg.identity) {
      this.identity = loadOrCreateIdentity(cfg.identity);
      this.identityMtime = statSync(cfg.identity).mtimeMs;
      this.log.info("loaded identity", { path: cfg.identity });
    } else {
      this.identity = generateIdentity();
    }
    // 4-5. registry
    if (cfg.registryTls && !cfg.registryFingerprint) {
      throw new DaemonError("registry_tls", "registry TLS requires RegistryFingerprint for certificate pinning");
    }
    this.registry = new RegistryClient(cfg.registry, {
      tls: cfg.registryTls ? { fingerprint: cfg.registryFingerprint.toLowerCase() } : undefined,
      sign: (challenge) => this.signature(challenge),
    });
    // Start-up registry dial: one attempt, fatal on failure (cli.md §6.1 "daemon start: registry
    // dial: …"), so `pilotctl daemon start` can report the cause at once instead of waiting
    // through the client's reconnect back-off.
    try {
      await this.registry.connect();
    } catch (e) {
      throw new DaemonError("registry", `daemon start: registry dial: ${(e as Error).message}`);
    }
    this.registry.onPush(() => {
      // Push extension: a relayed handshake is waiting; fetch it now instead of at the next poll.
      void this.trust?.poll().catch(() => {});
    });
    await this.register(formatEndpoint(endpoint), true);
    this.log.info("daemon registered", { node_id: this.nodeId, addr: formatAddr(this.address), endpoint: formatEndpoint(endpoint) });
    this.pendingEvents.push(["node.registered", { address: formatAddr(this.address), endpoint: formatEndpoint(endpoint) }]);
    this.transport = new Transport(
      {
        now: () => performance.now(),
        output: (pkt) => this.output(pkt),
        onSynTimeout: (dst, n) => {
          this.log.debug("SYN timeout", { node_id: dst.node, attempts: n });
          // beacon.md §8.5: at the third SYN timeout switch the peer to the beacon relay.
          if (n >= 3 && this.beaconEp && !this.tunnel.getPeer(dst.node)?.relay) {
            this.tunnel.setRelay(dst.node);
            return true;
          }
          // Improvement: the peer may have restarted (new key, maybe a new port) and silently
          // drops our frames (wire.md §4.9). Re-key and re-resolve its endpoint instead of
          // waiting for it to talk first.
          if (n <= 2 || this.tunnel.getPeer(dst.node)?.relay) void this.refreshPeer(dst.node);
          return false;
        },
        onDatagram: (pkt) => {
          this.emit("data.datagram", { dst_port: pkt.dstPort, size: pkt.payload.length, src_addr: pkt.src, src_port: pkt.srcPort });
          this.ipc?.pushDatagram(pkt.src, pkt.srcPort, pkt.dstPort, pkt.payload);
        },
        onEvent: (ev, data) => this.emit(ev, data),
      },
      {
        localAddr: this.address,
        keepaliveMs: cfg.keepaliveMs,
        idleTimeoutMs: cfg.idleTimeoutMs,
        timeWaitMs: cfg.timeWaitMs,
        synRateLimit: cfg.synRateLimit,
        perSourceSynLimit: cfg.synRateLimitPerSource,
        maxConnsPerPort: cfg.maxConnsPerPort,
        maxConnsTotal: cfg.maxConnsTotal,
      },
    );
    // 6. beacon registration
    if (this.beaconEp) {
      this.tunnel.beacon = this.beaconEp;
      this.tunnel.sendDiscover();
    }
    // 7. visibility, hostname (failures only logged)
    if (cfg.public) await this.setVisibility(true).catch((e) => this.log.warn("failed to set visibility", { err: e.message }));
    if (cfg.hostname) {
      await this.setHostname(cfg.hostname).catch((e) => {
        this.log.warn("failed to set hostname", { hostname: cfg.hostname, err: e.message });
      });
    }
    // 8. IPC + services
    this.ipc = new IpcServer(this, this.log);
    await this.ipc.listen(cfg.socket);
    this.log.info("IPC listening", { socket: cfg.socket });
    await this.startServices();
    for (const [ev, data] of this.pendingEvents.splice(0)) this.emit(ev, data); // webhooks exist now
    this.startedAt = Date.now();
    this.heartbeatTimer = setInterval(() => void this.heartbeat(), cfg.keepaliveMs);
    this.kick();
    this.log.info("daemon running", { node_id: this.nodeId, addr: formatAddr(this.address) });
  }

  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    this.log.info("shutting down");
    if (this.nodeId) this.emit("node.deregistered", {});
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer);
    for (const s of this.services) {
      try {
        s.stop();
      } catch {
        /* ignore */
      }
    }
    this.transport?.closeAll();
    this.ipc?.close();
    if (this.registry && this.nodeId) {
      await withTimeout(this.registry.deregister(this.nodeId), 2000).catch(() => {});
    }
    this.registry?.close();
    // give the FINs a moment to leave the socket
    await new Promise((r) => setTimeout(r, 50));
    if (this.timer) clearTimeout(this.timer);
    this.tunnel.close();
  }

  /** STUN through the tunnel socket: Discover(nodeId) to the beacon, first DiscoverReply wins. */
  private async tunnelDiscover(beacon: Endpoint, nodeId: number, timeoutMs: number): Promise<Endpoint | null> {
    const { encodeDiscover } = await import("../proto/beacon.ts");
    const reply = this.tunnel.waitDiscoverReply(timeoutMs);
    // Datagrams can be lost: ask up to three times within the timeout.
    const msg = encodeDiscover(nodeId);
    this.tunnel.sendRaw(msg, beacon);
    const retry = setInterval(() => this.tunnel.sendRaw(msg, beacon), Math.max(200, Math.floor(timeoutMs / 3)));
    try {
      return await reply;
    } finally {
      clearInterval(retry);
    }
  }

  // ------------------------------------------------------------------ registry

  private signature(challenge: string): string {
    return encodeSignature(sign(this.identity, challenge));
  }

  /** Run a registry call; errors become Error("registry: <error>") as the reference words them (ipc.md §5). */
  async reg<T>(p: Promise<T>): Promise<T> {
    try {
      return await p;
    } catch (e) {
      if (e instanceof RegistryError && e.response) throw new Error(`registry: ${e.message}`);
      throw new Error(`send: ${(e as Error).message}`);
    }
  }

  private async register(listenAddr: string, first: boolean): Promise<Record<string, unknown>> {
    let r: Record<string, unknown>;
    try {
      r = await this.reg(this.registry.register(encodePublicKey(this.identity.publicKey), listenAddr, this.cfg.owner));
    } catch (e) {
      if (first) throw new DaemonError("registry", `daemon start: register: ${(e as Error).message}`);
      throw e;
    }
    const id = r.node_id;
    if (typeof id !== "number" || typeof r.address !== "string") {
      throw new DaemonError("registry", "daemon start: register: invalid response");
    }
    const addr = parseAddr(r.address);
    if (!first && id !== this.nodeId) this.log.warn("node ID changed on re-registration", { old: this.nodeId, new: id });
    this.nodeId = id;
    this.address = addr;
    this.tunnel.setIdentity(id, this.identity);
    this.transport?.setLocalAddr(addr);
    if (first) {
      // Push extension (pilot-ts registries): relayed handshakes arrive at once. A reference
      // registry refuses the unknown message type; we then just keep polling.
      this.registry.subscribe(id).catch(() => {});
    }
    return r;
  }

  private async heartbeat(): Promise<void> {
    if (this.stopping) return;
    try {
      await this.reg(this.registry.heartbeat(this.nodeId));
      this.heartbeatFailures = 0;
      this.tunnel.sendDiscover();
      this.sweepConns();
      // Trust re-established by any path (e.g. a relayed mutual handshake): lift the block.
      for (const id of this.tunnel.blockedIds()) if (this.trust?.isTrusted(id)) this.tunnel.unblock(id);
      await this.trust?.poll().catch((e: Error) => this.log.debug("poll handshakes failed", { err: e.message }));
    } catch (e) {
      // `pilotctl rotate-key` may have replaced our identity file while we run: adopt the new
      // key instead of failing every signed request until the daemon is restarted.
      if (this.reloadIdentityIfChanged()) return;
      this.heartbeatFailures++;
      this.log.warn("heartbeat failed", { err: (e as Error).message, failures: this.heartbeatFailures });
      if (this.heartbeatFailures >= 3) {
        this.heartbeatFailures = 0;
        this.log.info("attempting re-registration");
        await this.reRegister().catch((err) => this.log.warn("re-registration failed", { err: err.message }));
      }
    }
  }

  private identityMtime = 0;

  /** Reload the identity file when it changed on disk (key rotation). Returns true if reloaded. */
  private reloadIdentityIfChanged(): boolean {
    if (!this.cfg.identity) return false;
    try {
      const m = statSync(this.cfg.identity).mtimeMs;
      if (m === this.identityMtime) return false;
      const id = loadOrCreateIdentity(this.cfg.identity);
      this.identityMtime = m;
      if (Buffer.compare(Buffer.from(id.publicKey), Buffer.from(this.identity.publicKey)) === 0) return false;
      this.identity = id;
      this.tunnel.setIdentity(this.nodeId, id);
      this.log.info("identity changed on disk, reloaded", { path: this.cfg.identity, public_key: encodePublicKey(id.publicKey) });
      return true;
    } catch (e) {
      this.log.warn("identity reload failed", { err: (e as Error).message });
      return false;
    }
  }

  async reRegister(): Promise<void> {
    // The reference re-registers with the tunnel's LOCAL address (registry.md §11.3), which is
    // wrong behind a NAT that does not preserve ports. We ask the beacon again first (from the
    // tunnel socket, so it is the mapping peers need) and fall back to the local address.
    let ep = this.cfg.endpoint;
    if (!ep && this.beaconEp) {
      const seen = await this.tunnelDiscover(this.beaconEp, this.nodeId, 2000);
      if (seen && !isLocalHost(seen.ip)) ep = formatEndpoint(seen);
    }
    if (!ep) ep = formatEndpoint({ ip: wildcardToLoopback(this.tunnel.address), port: this.tunnel.port });
    await this.register(ep, false);
    if (this.visibilityPublic) await this.setVisibility(true).catch(() => {});
    if (this.hostname) await this.setHostname(this.hostname).catch(() => {});
    await this.trust?.reportAll().catch(() => {});
    this.tunnel.sendDiscover();
    this.emit("node.reregistered", { address: formatAddr(this.address) });
  }

  /** Last forced refresh per node (a forged PILA must not make us hammer the registry). */
  private keyRefreshAt = new Map<number, number>();

  async lookupPublicKey(nodeId: number, refresh = false): Promise<Uint8Array | null> {
    const c = this.pubKeyCache.get(nodeId);
    if (c && !refresh) return c;
    if (c && refresh) {
      const last = this.keyRefreshAt.get(nodeId) ?? 0;
      if (Date.now() - last < 10_000) return c;
      this.keyRefreshAt.set(nodeId, Date.now());
    }
    try {
      const r = await this.registry.lookup(nodeId);
      if (typeof r.public_key !== "string") return c ?? null;
      const k = decodePublicKey(r.public_key);
      this.pubKeyCache.set(nodeId, k);
      return k;
    } catch {
      return c ?? null;
    }
  }

  /** Create a tunnel entry for nodeId via registry resolve + beacon punch (beacon.md §8.4). */
  async ensureTunnel(nodeId: number): Promise<void> {
    if (nodeId === this.nodeId || this.tunnel.hasPeer(nodeId)) return; // self: loopback, no tunnel
    if (this.tunnel.isBlocked(nodeId)) {
      // We revoked this node (or it revoked us): its frames are refused, so a dial could only
      // time out. Fail at once with the way out.
      throw new DaemonError("revoked", `node ${nodeId}: trust was revoked (send a new handshake to reconnect)`);
    }
    let p = this.resolving.get(nodeId);
    if (!p) {
      p = (async () => {
        let r: Record<string, unknown>;
        try {
          r = await this.reg(this.registry.resolve(nodeId, this.nodeId));
        } catch (e) {
          throw new DaemonError("resolve_failed", `resolve node ${nodeId}: ${(e as Error).message}`);
        }
        const real = typeof r.real_addr === "string" ? r.real_addr : "";
        if (!real) throw new DaemonError("no_address", `node ${nodeId} has no real address`);
        const ep = parseEndpoint(real);
        if (!ep) throw new DaemonError("no_address", `resolve ${real}: invalid address`);
        if (this.tunnel.hasPeer(nodeId)) return;
        this.tunnel.requestPunch(nodeId);
        this.tunnel.addPeer(nodeId, await resolveEndpoint(ep));
      })().finally(() => this.resolving.delete(nodeId));
      this.resolving.set(nodeId, p);
    }
    await p;
  }

  /**
   * After a SYN timeout: the peer may have restarted (new key, maybe a new port: it silently drops
   * our frames, wire.md §4.9), or an idle NAT mapping between us may have expired. The reference
   * only waits (and eventually relays for good). We re-send our key exchange (also through the
   * relay), ask the beacon for a fresh hole punch, and pick up a changed registered endpoint.
   */
  private async refreshPeer(nodeId: number): Promise<void> {
    const p = this.tunnel.getPeer(nodeId);
    if (!p) return;
    this.tunnel.rekey(nodeId);
    if (p.relay) return;
    this.tunnel.requestPunch(nodeId);
    try {
      const r = await this.registry.resolve(nodeId, this.nodeId);
      const ep = typeof r.real_addr === "string" ? parseEndpoint(r.real_addr) : null;
      if (!ep) return;
      const resolved = await resolveEndpoint(ep);
      const cur = this.tunnel.getPeer(nodeId);
      if (cur && cur.endpoint && (cur.endpoint.ip !== resolved.ip || cur.endpoint.port !== resolved.port)) {
        this.log.info("peer endpoint changed", { node_id: nodeId, endpoint: formatEndpoint(resolved) });
        cur.endpoint = resolved;
        this.tunnel.rekey(nodeId);
      }
    } catch {
      /* registry refused: nothing better to do */
    }
  }

  // ------------------------------------------------------------------ packet path

  private onPacket(pkt: Packet): void {
    this.transport.handlePacket(pkt);
    this.kick();
  }

  private output(pkt: Packet): void {
    if (pkt.dst.node === this.nodeId && pkt.dst.network === this.address.network) {
      // Loopback (an agent talking to its own services): no tunnel, delivered on the next turn.
      const copy = { ...pkt, payload: pkt.payload.slice() };
      queueMicrotask(() => this.onPacket(copy));
      return;
    }
    try {
      this.tunnel.sendPacket(pkt);
    } catch (e) {
      this.log.debug("send failed", { err: (e as Error).message, node: pkt.dst.node });
    }
  }

  /** Re-arm the transport timer after any event (coalesced per macrotask). */
  kick(): void {
    if (this.kickScheduled) return;
    this.kickScheduled = true;
    queueMicrotask(() => {
      this.kickScheduled = false;
      this.arm();
    });
  }

  private arm(): void {
    if (!this.transport || this.stopping) return;
    const d = this.transport.nextDeadline();
    if (d >= this.timerAt && this.timer) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.timerAt = Infinity;
    if (d === Infinity) return;
    const delay = Math.max(0, d - performance.now());
    this.timerAt = d;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.timerAt = Infinity;
      this.transport.tick();
      this.arm();
    }, delay);
  }

  // ------------------------------------------------------------------ DaemonApi (IPC)

  /** Remember a connection by ID for IPC Send/Close; closed ones are pruned by sweep(). */
  private track(c: StreamConn): StreamConn {
    this.conns.set(c.id, c);
    if (this.conns.size > 256 && this.conns.size % 256 === 0) this.sweepConns();
    return c;
  }

  private sweepConns(): void {
    for (const [id, c] of this.conns) if (c.state === "CLOSED") this.conns.delete(id);
  }

  bind(port: number, onAccept: (c: StreamConn) => void): () => void {
    let l: Listener;
    try {
      l = this.transport.listen(port, (c) => {
        this.track(c);
        onAccept(c);
        this.kick();
      });
    } catch (e) {
      if (e instanceof TransportError && e.code === "port_in_use") throw new Error(`port ${port} already bound`);
      throw e;
    }
    this.ipcPorts.set(port, l);
    this.boundPorts.add(port);
    return () => {
      l.close();
      this.ipcPorts.delete(port);
      this.boundPorts.delete(port);
    };
  }

  async dial(addr: Addr, port: number): Promise<StreamConn> {
    this.log.debug("dial", { node_id: addr.node, port, has_tunnel: this.tunnel.hasPeer(addr.node) });
    await this.ensureTunnel(addr.node);
    const p = this.transport.dial(addr, port);
    this.kick();
    try {
      return this.track(await p);
    } catch (e) {
      if (e instanceof TransportError) {
        if (e.code === "connection_refused") throw new Error("connection refused");
        if (e.code === "dial_timeout") throw new Error("dial timeout");
      }
      throw e;
    } finally {
      this.kick();
    }
  }

  async sendTo(addr: Addr, port: number, data: Uint8Array): Promise<void> {
    if (addr.node === 0xffffffff) throw new Error("sendto: broadcast is not available — custom networks are WIP");
    try {
      await this.ensureTunnel(addr.node);
    } catch (e) {
      throw new Error(`sendto: ${(e as Error).message}`);
    }
    this.transport.sendDatagram(addr, port, data);
    this.kick();
  }

  conn(id: number): StreamConn | undefined {
    const c = this.conns.get(id);
    if (c && c.state === "CLOSED") {
      this.conns.delete(id);
      return undefined;
    }
    return c;
  }

  closeConn(id: number): void {
    const c = this.conns.get(id);
    if (c) {
      c.end();
      this.kick();
    }
  }

  info(): JsonObject {
    const peers = [...this.tunnel.peers.values()];
    const all = this.transport.connections();
    return {
      address: formatAddr(this.address),
      authenticated_peers: peers.filter((p) => p.crypto.authenticated && p.crypto.session).length,
      bytes_recv: this.tunnel.stats.bytesRecv,
      bytes_sent: this.tunnel.stats.bytesSent,
      conn_list: capBySize(all, 800 * 1024).map((c) => ({
        bytes_recv: c.stats.bytesRecv,
        bytes_sent: c.stats.bytesSent,
        cong_win: c.stats.cwnd,
        dup_acks: (c.stats as unknown as Record<string, number>).dupAcks ?? 0,
        fast_retx: c.stats.fastRetransmits,
        id: c.id,
        in_flight: c.stats.inFlight,
        in_recovery: Boolean((c.stats as unknown as Record<string, unknown>).inRecovery),
        local_port: c.localPort,
        ooo_buf: (c.stats as unknown as Record<string, number>).oooSegments ?? 0,
        peer_recv_win: c.stats.peerWindow * 4096,
        recv_win: Number((c.stats as unknown as Record<string, number>).recvWindow ?? 0) * 4096,
        remote_addr: formatAddr(c.remoteAddr),
        remote_port: c.remotePort,
        retransmits: c.stats.retransmits,
        rttvar_ms: Math.trunc(c.stats.rttvarMs),
        sack_recv: (c.stats as unknown as Record<string, number>).sackRecv ?? 0,
        sack_sent: (c.stats as unknown as Record<string, number>).sackSent ?? 0,
        segs_recv: c.stats.segsRecv,
        segs_sent: c.stats.segsSent,
        srtt_ms: Math.trunc(c.stats.srttMs),
        ssthresh: c.stats.ssthresh,
        state: c.state,
        unacked: Math.ceil(c.stats.inFlight / 4096),
      })),
      connections: all.filter((c) => c.state === "ESTABLISHED" || c.state === "SYN_SENT" || c.state === "SYN_RECV").length,
      encrypt: this.cfg.encrypt,
      encrypted_peers: peers.filter((p) => p.crypto.session).length,
      hostname: this.hostname,
      identity: this.cfg.identity !== "",
      node_id: this.nodeId,
      owner: this.cfg.owner,
      peer_list: peers.map((p) => ({
        authenticated: p.crypto.authenticated && !!p.crypto.session,
        encrypted: !!p.crypto.session,
        endpoint: formatEndpoint(p.relay ? this.beaconEp : p.endpoint),
        node_id: p.nodeId,
        // extension: which path the tunnel takes (direct / punched / relayed)
        path: this.tunnel.pathOf(p.nodeId),
      })),
      peers: peers.length,
      pkts_recv: this.tunnel.stats.pktsRecv,
      pkts_sent: this.tunnel.stats.pktsSent,
      ports: this.boundPorts.size,
      public_key: encodePublicKey(this.identity.publicKey),
      uptime_secs: this.startedAt ? Math.round((Date.now() - this.startedAt) / 1000) : 0,
    };
  }

  async handshake(h: HandshakeSub): Promise<JsonObject> {
    if (!this.trust) throw new Error("handshake: trust service unavailable");
    // Asking for (or granting) trust again lifts a revocation block on that node.
    if (h.sub === "request" || h.sub === "approve") this.tunnel.unblock(h.nodeId);
    return this.trust.ipc(h);
  }

  async resolveHostname(name: string): Promise<JsonObject> {
    try {
      return await this.reg(this.registry.resolveHostname(name));
    } catch (e) {
      throw new Error(`resolve_hostname: ${(e as Error).message}`);
    }
  }

  async setHostname(name: string): Promise<JsonObject> {
    try {
      const r = await this.reg(this.registry.setHostname(this.nodeId, name));
      this.hostname = name;
      return r;
    } catch (e) {
      throw new Error(`set_hostname: ${(e as Error).message}`);
    }
  }

  async setVisibility(pub: boolean): Promise<JsonObject> {
    try {
      const r = await this.reg(this.registry.setVisibility(this.nodeId, pub));
      this.visibilityPublic = pub;
      return r;
    } catch (e) {
      throw new Error(`set_visibility: ${(e as Error).message}`);
    }
  }

  async deregister(): Promise<JsonObject> {
    try {
      return await this.reg(this.registry.deregister(this.nodeId));
    } catch (e) {
      throw new Error(`deregister: ${(e as Error).message}`);
    }
  }

  async setTags(tags: string[] | null): Promise<JsonObject> {
    try {
      return await this.reg(this.registry.setTags(this.nodeId, tags ?? []));
    } catch (e) {
      throw new Error(`set_tags: ${(e as Error).message}`);
    }
  }

  async setWebhook(url: string): Promise<JsonObject> {
    this.webhookUrl = url;
    this.webhooks?.setUrl(url);
    return { webhook: url };
  }

  async setTaskExec(enabled: boolean): Promise<JsonObject> {
    try {
      return await this.reg(this.registry.setTaskExec(this.nodeId, enabled));
    } catch (e) {
      throw new Error(`set_task_exec: ${(e as Error).message}`);
    }
  }

  // ------------------------------------------------------------------ services

  private pendingEvents: [string, Record<string, unknown>][] = [];

  /** Webhook event (services.md §11.3); Addr values become their text form. Never throws. */
  emit(event: string, data: Record<string, unknown>): void {
    this.observer?.event(event);
    if (!this.webhooks) return;
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(data)) {
      out[k] = v && typeof v === "object" && "network" in v && "node" in v ? formatAddr(v as Addr) : v;
    }
    try {
      this.webhooks.emit(event, out);
    } catch {
      /* webhooks never break the daemon */
    }
  }

  private webhooks: { setUrl(u: string): void; emit(ev: string, data?: Record<string, unknown>): void; stop(): void } | null = null;

  serviceContext(): ServiceContext {
    const self = this;
    // The trust service signs the reference challenges itself; we re-sign through the registry
    // client instead, which adds the timestamp a pilot-ts registry demands after `subscribe`
    // (replay protection) and falls back to the plain challenge with a reference registry.
    const reg: TrustRegistry = {
      lookup: async (nodeId) => (await self.reg(self.registry.lookup(nodeId))) as unknown as RegistryLookup,
      requestHandshake: async (to, justification) => {
        await self.reg(self.registry.requestHandshake(self.nodeId, to, justification));
      },
      respondHandshake: async (peer, accept) => {
        await self.reg(self.registry.respondHandshake(self.nodeId, peer, accept));
      },
      pollHandshakes: async () => (await self.reg(self.registry.pollHandshakes(self.nodeId))) as unknown as RegistryPoll,
      reportTrust: async (peer) => {
        await self.reg(self.registry.reportTrust(self.nodeId, peer));
      },
      revokeTrust: async (peer) => {
        await self.reg(self.registry.revokeTrust(self.nodeId, peer));
      },
    };
    return {
      nodeId: () => self.nodeId,
      localAddr: () => self.address,
      dataDir: self.dataDir,
      trustPath: self.cfg.identity ? join(dirname(self.cfg.identity), "trust.json") : null,
      listen: (port, onAccept) => {
        const l = self.transport.listen(port, (c) => {
          self.track(c);
          onAccept(c);
          self.kick();
        });
        self.boundPorts.add(port);
        return {
          port: l.port,
          close: () => {
            l.close();
            self.boundPorts.delete(port);
          },
        };
      },
      dial: (addr, port) => self.dial(addr, port),
      identity: {
        // getter: the identity can be replaced at run time (key rotation)
        get publicKey() {
          return encodePublicKey(self.identity.publicKey);
        },
        sign: (challenge) => self.signature(challenge),
      },
      verify: (pub, challenge, sig) => {
        try {
          return verify(decodePublicKey(pub), challenge, decodeSignature(sig));
        } catch {
          return false;
        }
      },
      registry: reg,
      polo: {
        get: async (nodeId: number) => Number((await self.reg(self.registry.getPoloScore(nodeId))).polo_score ?? 0),
        update: async (nodeId: number, delta: number) => {
          await self.reg(self.registry.updatePoloScore(nodeId, delta));
        },
      },
      dropTunnel: (nodeId) => self.tunnel.block(nodeId),
      webhook: (event, data) => { self.observer?.event(event); self.webhooks?.emit(event, data); },
      log: self.log,
    };
  }

  private async startServices(): Promise<void> {
    const ctx = this.serviceContext();
    mkdirSync(this.dataDir, { recursive: true, mode: 0o700 });
    // Static imports only: `bun build --compile` must see every module.
    const wh = await import("./services/webhooks.ts");
    this.webhooks = wh.startWebhooks(ctx, this.webhookUrl);
    this.services.push(this.webhooks);
    const { startTrust } = await import("./services/trust.ts");
    this.trust = startTrust(ctx);
    this.services.push(this.trust);
    if (!this.cfg.noEcho) this.services.push((await import("./services/echo.ts")).startEcho(ctx));
    if (!this.cfg.noDataExchange) this.services.push((await import("./services/dataexchange.ts")).startDataExchange(ctx));
    if (!this.cfg.noEventStream) this.services.push((await import("./services/eventstream.ts")).startEventStream(ctx));
    // Task submit (port 1003) is always on, like the reference (cli.md §6.1).
    this.services.push((await import("./services/tasks.ts")).startTasks(ctx));
  }
}

/**
 * ipc.md §12.2-4: with thousands of connections `conn_list` alone exceeds the 1 MiB frame limit and
 * the reference driver disconnects. Keep the list under `budget` bytes of JSON (≈ 480 bytes per
 * entry); the `connections` count stays exact.
 */
function capBySize<T>(items: T[], budget: number): T[] {
  const max = Math.floor(budget / 480);
  return items.length > max ? items.slice(0, max) : items;
}

function isLocalHost(h: string): boolean {
  return h === "" || h === "127.0.0.1" || h === "::1" || h === "0.0.0.0" || h === "::" || h === "localhost";
}

function wildcardToLoopback(h: string): string {
  if (h === "" || h === "0.0.0.0") return "127.0.0.1";
  if (h === "::") return "::1";
  return h;
}

/** Resolve a host name to an IP (endpoints may name hosts, e.g. "localhost:9001"). */
async function resolveEndpoint(e: Endpoint): Promise<Endpoint> {
  if (/^[\d.]+$/.test(e.ip) || e.ip.includes(":")) return e;
  if (e.ip === "") return { ip: "127.0.0.1", port: e.port };
  const { lookup } = await import("node:dns/promises");
  const r = await lookup(e.ip);
  return { ip: r.address, port: e.port };
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error("timeout")), ms);
    p.then(
      (v) => {
        clearTimeout(t);
        resolve(v);
      },
      (e) => {
        clearTimeout(t);
        reject(e);
      },
    );
  });
}
