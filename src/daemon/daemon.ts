// The daemon: glues tunnel (UDP + crypto), transport (streams), registration session, IPC server
// and built-in services together, and runs the packet path between tunnel and transport.
// Start-up order: tunnel socket, endpoint discovery (overlapped with loading the identity and
// dialing the registry), register, transport, beacon, visibility/hostname, IPC, services.
import { homedir } from "node:os";
import { join } from "node:path";
import { formatAddr } from "../proto/addr.ts";
import type { Addr, Packet } from "../proto/types.ts";
import { Transport } from "../transport/transport.ts";
import { TransportClock } from "./clock.ts";
import { DaemonIpcApi } from "./daemon-api.ts";
import { DaemonError } from "./errors.ts";
import { IpcServer } from "./ipc-server.ts";
import type { Logger } from "../sys/log.ts";
import type { DaemonObserver } from "./metrics.ts";
import { PeerResolver, resolveEndpoint } from "./peer-resolver.ts";
import { RegistrationSession, discoverEndpoint, isLocalHost, wildcardToLoopback } from "./registration.ts";
import type { ServiceHandle } from "./services/context.ts";
import type { TrustService } from "./services/trust.ts";
import { serviceContext, startServices, type Webhooks } from "./service-context.ts";
import { type Endpoint, Tunnel, formatEndpoint, parseEndpoint } from "./tunnel.ts";

// In-order data is acknowledged once per event-loop turn or every ACK_BATCH segments (fewer ACKs
// to seal, send, open and process on both daemons; senders count acknowledged bytes, so batching
// does not slow their window growth, docs/protocol.md §6.8). 32 measured best of 8/16/32/64 on a
// loopback stream. PILOT_ACK_BATCH=0 restores an ACK every second segment (for measurements).
const ackBatchEnv = Number(process.env.PILOT_ACK_BATCH ?? 32);
const ACK_BATCH = Number.isFinite(ackBatchEnv) && ackBatchEnv >= 2 ? ackBatchEnv : undefined;

export { DaemonError } from "./errors.ts";

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
  /** per-source SYN/s (10 in the reference, not configurable there) */
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

export class Daemon {
  readonly tunnel: Tunnel;
  transport!: Transport;
  readonly session: RegistrationSession;
  readonly resolver: PeerResolver;
  readonly api: DaemonIpcApi;
  ipc!: IpcServer;
  trust: TrustService | null = null;
  private readonly clock: TransportClock;
  private services: ServiceHandle[] = [];
  private webhooks: Webhooks | null = null;
  private webhookUrl: string;
  private startedAt = 0;
  private stopping = false;
  private beaconEp: Endpoint | null = null;
  /** Events raised before the webhook service exists (delivered once it does). */
  private pendingEvents: [string, Record<string, unknown>][] = [];
  /** Opt-in metrics (metrics.ts): told about every event and dropped frame. */
  observer: DaemonObserver | null = null;

  constructor(
    readonly cfg: DaemonConfig,
    readonly log: Logger,
  ) {
    this.webhookUrl = cfg.webhook;
    this.clock = new TransportClock(() => (this.stopping ? undefined : this.transport));
    this.tunnel = new Tunnel({
      encrypt: cfg.encrypt,
      log,
      onPacket: (pkt) => this.onPacket(pkt),
      lookupPublicKey: (id, refresh) => this.resolver.lookupPublicKey(id, refresh),
      onEvent: (ev, data) => this.emit(ev, data),
      confirmPeer: (id) => this.resolver.confirmPeer(id),
      onDrop: (reason) => this.observer?.drop(reason),
    });
    this.session = new RegistrationSession({
      cfg,
      log,
      tunnel: this.tunnel,
      beacon: () => this.beaconEp,
      onAddress: (addr) => this.transport?.setLocalAddr(addr),
      onHeartbeat: async () => {
        this.api.sweepConns();
        // Trust re-established by any path (e.g. a relayed mutual handshake): lift the block.
        for (const id of this.tunnel.blockedIds()) if (this.trust?.isTrusted(id)) this.tunnel.unblock(id);
        await this.trust?.poll().catch((e: Error) => this.log.debug("poll handshakes failed", { err: e.message }));
      },
      onReRegistered: async () => {
        await this.trust?.reportAll();
      },
      // Push extension: a relayed handshake is waiting; fetch it now instead of at the next poll.
      onPush: () => void this.trust?.poll().catch((e: Error) => this.log.debug("poll handshakes failed", { err: e.message })),
      emit: (ev, data) => this.emit(ev, data),
    });
    this.resolver = new PeerResolver({ tunnel: this.tunnel, registry: () => this.session.registry, selfId: () => this.session.nodeId, log });
    this.api = new DaemonIpcApi({
      transport: () => this.transport,
      tunnel: this.tunnel,
      session: this.session,
      resolver: this.resolver,
      cfg,
      log,
      kick: () => this.clock.kick(),
      trust: () => this.trust,
      setWebhook: (url) => {
        this.webhookUrl = url;
        this.webhooks?.setUrl(url);
      },
      beacon: () => this.beaconEp,
      startedAt: () => this.startedAt,
    });
  }

  get dataDir(): string {
    return this.cfg.dataDir ?? join(homedir(), ".pilot");
  }
  get nodeId(): number {
    return this.session.nodeId;
  }
  get address(): Addr {
    return this.session.address;
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
    // Improvement over the reference: it asks the beacon from a TEMPORARY socket and then binds
    // the tunnel socket; with `-listen :0` (the default) the two sockets get different NAT
    // mappings and the registered port is wrong behind any NAT. We send the same Discover(0)
    // from the tunnel socket itself, so the observed endpoint is exactly the mapping peers must
    // dial. The beacon cannot tell the difference.
    const local = await this.tunnel.listen(listen.ip, listen.port);
    this.log.info("tunnel listening", { addr: formatEndpoint(local) });
    let endpoint: Endpoint | null = cfg.endpoint ? parseEndpoint(cfg.endpoint) : null;
    // The beacon's answer, the identity (a few ms of key loading) and the registry dial overlap.
    const discovering = !cfg.endpoint && this.beaconEp ? discoverEndpoint(this.tunnel, this.beaconEp, 0, 3000) : null;
    // 3. identity
    this.session.loadIdentity();
    // 4-5. registry. Start-up dial: one attempt, fatal on failure ("daemon start: registry dial:
    // …"), so `pilotctl daemon start` can report the cause at once instead of waiting through
    // the client's reconnect back-off.
    const connecting = this.session.connect();
    if (discovering) {
      connecting.catch(() => {}); // awaited below; not an unhandled rejection meanwhile
      endpoint = await discovering;
      if (!endpoint) this.log.warn("beacon discover failed, using local addr");
    }
    if (!endpoint || isLocalHost(endpoint.ip)) endpoint = { ip: wildcardToLoopback(local.ip), port: local.port };
    await connecting;
    await this.session.register(formatEndpoint(endpoint), true);
    this.log.info("daemon registered", { node_id: this.nodeId, addr: formatAddr(this.address), endpoint: formatEndpoint(endpoint) });
    this.pendingEvents.push(["node.registered", { address: formatAddr(this.address), endpoint: formatEndpoint(endpoint) }]);
    this.transport = this.makeTransport();
    // 6. beacon registration
    if (this.beaconEp) {
      this.tunnel.beacon = this.beaconEp;
      this.tunnel.sendDiscover();
    }
    // 7. visibility, hostname (failures only logged)
    if (cfg.public) await this.session.setVisibility(true).catch((e) => this.log.warn("failed to set visibility", { err: e.message }));
    if (cfg.hostname) {
      await this.session.setHostname(cfg.hostname).catch((e) => {
        this.log.warn("failed to set hostname", { hostname: cfg.hostname, err: e.message });
      });
    }
    // 8. IPC + services
    this.ipc = new IpcServer(this.api, this.log);
    await this.ipc.listen(cfg.socket);
    this.log.info("IPC listening", { socket: cfg.socket });
    await this.startServices();
    for (const [ev, data] of this.pendingEvents.splice(0)) this.emit(ev, data); // webhooks exist now
    this.startedAt = Date.now();
    this.session.startHeartbeat(cfg.keepaliveMs);
    this.clock.kick();
    this.log.info("daemon running", { node_id: this.nodeId, addr: formatAddr(this.address) });
  }

  private makeTransport(): Transport {
    const cfg = this.cfg;
    return new Transport(
      {
        now: () => performance.now(),
        output: (pkt) => this.output(pkt),
        onSynTimeout: (dst, n) => {
          this.log.debug("SYN timeout", { node_id: dst.node, attempts: n });
          // At the third SYN timeout switch the peer to the beacon relay.
          if (n >= 3 && this.beaconEp && !this.tunnel.getPeer(dst.node)?.relay) {
            this.tunnel.setRelay(dst.node);
            return true;
          }
          // Improvement: the peer may have restarted (new key, maybe a new port) and silently
          // drops our frames. Re-key and re-resolve its endpoint instead of waiting for it to
          // talk first.
          if (n <= 2 || this.tunnel.getPeer(dst.node)?.relay) void this.resolver.refreshPeer(dst.node);
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
        batchAcks: ACK_BATCH,
        // Bun's own UDP socket hands every datagram over in fresh memory; the receive ring does not.
        payloadsOwned: this.tunnel.receivedBuffersOwned,
        keepaliveMs: cfg.keepaliveMs,
        idleTimeoutMs: cfg.idleTimeoutMs,
        timeWaitMs: cfg.timeWaitMs,
        synRateLimit: cfg.synRateLimit,
        perSourceSynLimit: cfg.synRateLimitPerSource,
        maxConnsPerPort: cfg.maxConnsPerPort,
        maxConnsTotal: cfg.maxConnsTotal,
        // Bytes a connection accepts from its application ahead of the congestion window. The
        // application's IPC round trip is far shorter than any tunnel's, so 1 MiB keeps the
        // window full while bounding what many parallel streams make the daemon hold.
        sendHighWater: 1 << 20,
        // 512 segments, the reference's receive buffer: the most we advertise, and (with as much
        // again out of order) what one connection can make us hold.
        recvBufBytes: 512 * 4096,
      },
    );
  }

  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    this.log.info("shutting down");
    if (this.nodeId) this.emit("node.deregistered", {});
    for (const s of this.services) {
      try {
        s.stop();
      } catch (e) {
        this.log.debug("service stop failed", { err: (e as Error).message });
      }
    }
    this.transport?.closeAll();
    this.ipc?.close();
    await this.session.stop();
    // give the FINs a moment to leave the socket
    await new Promise((r) => setTimeout(r, 50));
    this.clock.stop();
    this.tunnel.close();
  }

  /** Re-register now (also done after repeated heartbeat failures). */
  reRegister(): Promise<void> {
    return this.session.reRegister();
  }

  // ------------------------------------------------------------------ packet path

  private onPacket(pkt: Packet): void {
    this.transport.handlePacket(pkt);
    this.clock.kick();
    if (!this.ackFlushScheduled && this.transport.acksDeferred) {
      this.ackFlushScheduled = true;
      setImmediate(this.flushAcks);
    }
  }

  // ACKs are batched per event-loop turn (Transport option batchAcks): after every datagram
  // received in one poll has been handled, the ACKs the transport deferred go out together.
  private ackFlushScheduled = false;
  private readonly flushAcks = (): void => {
    this.ackFlushScheduled = false;
    if (this.stopping) return;
    this.transport.flushAcks();
    this.tunnel.flush();
  };

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

  // ------------------------------------------------------------------ services and events

  /** Webhook event; Addr values become their text form. Never throws. */
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

  private async startServices(): Promise<void> {
    const ctx = serviceContext({
      session: this.session,
      dataDir: this.dataDir,
      identityPath: this.cfg.identity,
      log: this.log,
      listen: (port, onAccept) => this.api.listen(port, onAccept),
      dial: (addr, port) => this.api.dial(addr, port),
      dropTunnel: (nodeId) => this.tunnel.block(nodeId),
      webhook: (event, data) => {
        this.observer?.event(event);
        this.webhooks?.emit(event, data);
      },
    });
    const s = await startServices(ctx, {
      webhook: this.webhookUrl,
      noEcho: this.cfg.noEcho,
      noDataExchange: this.cfg.noDataExchange,
      noEventStream: this.cfg.noEventStream,
    });
    this.webhooks = s.webhooks;
    this.trust = s.trust;
    this.services = s.all;
  }
}
