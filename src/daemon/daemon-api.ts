// The daemon as IPC clients see it (DaemonApi): ports, connections by ID, dials, datagrams, Info
// and the registry-backed settings, with errors worded as the reference's IPC replies.
import { encodePublicKey } from "../crypto/identity.ts";
import { formatAddr } from "../proto/addr.ts";
import type { HandshakeSub, JsonObject } from "../proto/ipc.ts";
import type { Addr } from "../proto/types.ts";
import { TransportError, type StreamConn } from "../transport/api.ts";
import type { Transport } from "../transport/transport.ts";
import { regCall } from "./errors.ts";
import { buildInfo } from "./info.ts";
import type { DaemonApi } from "./ipc-server.ts";
import type { Logger } from "../sys/log.ts";
import type { PeerResolver } from "./peer-resolver.ts";
import type { RegistrationSession } from "./registration.ts";
import type { TrustService } from "./services/trust.ts";
import { type Endpoint, type Tunnel, formatEndpoint } from "./tunnel.ts";

export interface ApiDeps {
  transport(): Transport;
  readonly tunnel: Tunnel;
  readonly session: RegistrationSession;
  readonly resolver: PeerResolver;
  readonly cfg: { owner: string; identity: string; encrypt: boolean };
  readonly log: Logger;
  /** Re-arm the transport clock after an operation. */
  kick(): void;
  trust(): TrustService | null;
  setWebhook(url: string): void;
  beacon(): Endpoint | null;
  /** When the daemon finished starting (ms since epoch; 0 = not yet). */
  startedAt(): number;
}

/** A bound port (IPC client or built-in service). */
export interface BoundPort {
  readonly port: number;
  close(): void;
}

export class DaemonIpcApi implements DaemonApi {
  /** Connections by ID for IPC Send/Close; closed ones are pruned by sweepConns(). */
  private conns = new Map<number, StreamConn>();
  /** every bound port (IPC clients and built-in services), for Info's `ports` */
  private boundPorts = new Set<number>();

  constructor(private readonly d: ApiDeps) {}

  private track(c: StreamConn): StreamConn {
    this.conns.set(c.id, c);
    if (this.conns.size > 256 && this.conns.size % 256 === 0) this.sweepConns();
    return c;
  }

  sweepConns(): void {
    for (const [id, c] of this.conns) if (c.state === "CLOSED") this.conns.delete(id);
  }

  /** Listen on a port for a built-in service or an IPC client; throws TransportError("port_in_use"). */
  listen(port: number, onAccept: (c: StreamConn) => void): BoundPort {
    const l = this.d.transport().listen(port, (c) => {
      this.track(c);
      onAccept(c);
      this.d.kick();
    });
    this.boundPorts.add(port);
    return {
      port: l.port,
      close: () => {
        l.close();
        this.boundPorts.delete(port);
      },
    };
  }

  bind(port: number, onAccept: (c: StreamConn) => void): () => void {
    try {
      const l = this.listen(port, onAccept);
      return () => l.close();
    } catch (e) {
      if (e instanceof TransportError && e.code === "port_in_use") throw new Error(`port ${port} already bound`);
      throw e;
    }
  }

  async dial(addr: Addr, port: number): Promise<StreamConn> {
    const { tunnel } = this.d;
    this.d.log.debug("dial", { node_id: addr.node, port, has_tunnel: tunnel.hasPeer(addr.node) });
    await this.d.resolver.ensureTunnel(addr.node);
    const p = this.d.transport().dial(addr, port);
    this.d.kick();
    const watch = this.d.resolver.watchRevoke(addr.node);
    try {
      return this.track(await Promise.race([p, watch.revoked]));
    } catch (e) {
      if (e instanceof TransportError) {
        if (e.code === "connection_refused") throw new Error("connection refused");
        if (e.code === "dial_timeout") throw new Error("dial timeout");
      }
      throw e;
    } finally {
      watch.done();
      p.catch(() => {}); // a dial abandoned after a revoke ends in its own time
      this.d.kick();
    }
  }

  async sendTo(addr: Addr, port: number, data: Uint8Array): Promise<void> {
    if (addr.node === 0xffffffff) throw new Error("sendto: broadcast is not available — custom networks are WIP");
    try {
      await this.d.resolver.ensureTunnel(addr.node);
    } catch (e) {
      throw new Error(`sendto: ${(e as Error).message}`);
    }
    this.d.transport().sendDatagram(addr, port, data);
    this.d.kick();
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
      this.d.kick();
    }
  }

  info(): JsonObject {
    const { tunnel, session, cfg } = this.d;
    const started = this.d.startedAt();
    const beacon = this.d.beacon();
    return buildInfo({
      address: formatAddr(session.address),
      nodeId: session.nodeId,
      hostname: session.hostname,
      owner: cfg.owner,
      identity: cfg.identity !== "",
      encrypt: cfg.encrypt,
      publicKey: encodePublicKey(session.identity.publicKey),
      uptimeSecs: started ? Math.round((Date.now() - started) / 1000) : 0,
      ports: this.boundPorts.size,
      tunnel: tunnel.stats,
      peers: [...tunnel.peers.values()].map((p) => ({
        authenticated: p.crypto.authenticated && !!p.crypto.session,
        encrypted: !!p.crypto.session,
        endpoint: formatEndpoint(p.relay ? beacon : p.endpoint),
        node_id: p.nodeId,
        path: tunnel.pathOf(p.nodeId),
      })),
      conns: this.d.transport().connections(),
    });
  }

  async handshake(h: HandshakeSub): Promise<JsonObject> {
    const trust = this.d.trust();
    if (!trust) throw new Error("handshake: trust service unavailable");
    // Asking for (or granting) trust again lifts a revocation block on that node.
    if (h.sub === "request" || h.sub === "approve") this.d.tunnel.unblock(h.nodeId);
    return trust.ipc(h);
  }

  async resolveHostname(name: string): Promise<JsonObject> {
    try {
      return await regCall(this.d.session.registry.resolveHostname(name));
    } catch (e) {
      throw new Error(`resolve_hostname: ${(e as Error).message}`);
    }
  }

  setHostname(name: string): Promise<JsonObject> {
    return this.d.session.setHostname(name);
  }

  setVisibility(pub: boolean): Promise<JsonObject> {
    return this.d.session.setVisibility(pub);
  }

  async deregister(): Promise<JsonObject> {
    const s = this.d.session;
    try {
      return await regCall(s.registry.deregister(s.nodeId));
    } catch (e) {
      throw new Error(`deregister: ${(e as Error).message}`);
    }
  }

  async setTags(tags: string[] | null): Promise<JsonObject> {
    const s = this.d.session;
    try {
      return await regCall(s.registry.setTags(s.nodeId, tags ?? []));
    } catch (e) {
      throw new Error(`set_tags: ${(e as Error).message}`);
    }
  }

  async setWebhook(url: string): Promise<JsonObject> {
    this.d.setWebhook(url);
    return { webhook: url };
  }

  async setTaskExec(enabled: boolean): Promise<JsonObject> {
    const s = this.d.session;
    try {
      return await regCall(s.registry.setTaskExec(s.nodeId, enabled));
    } catch (e) {
      throw new Error(`set_task_exec: ${(e as Error).message}`);
    }
  }
}
