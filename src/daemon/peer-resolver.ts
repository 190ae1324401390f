// Finding peers: their public keys (for the tunnel's key exchange) and their endpoints (registry
// resolve, then a beacon hole punch), and refreshing a peer that stopped answering.
import { decodePublicKey } from "../crypto/identity.ts";
import { DaemonError, regCall } from "./errors.ts";
import type { Logger } from "../sys/log.ts";
import type { RegistryClient } from "./registry-client.ts";
import { type Endpoint, type Tunnel, formatEndpoint, parseEndpoint } from "./tunnel.ts";

/** Minimum time between forced key refreshes of one node (a forged frame must not make us hammer the registry). */
const KEY_REFRESH_MIN_MS = 10_000;

export interface ResolverDeps {
  readonly tunnel: Tunnel;
  registry(): RegistryClient;
  /** Our own node ID (0 before registration). */
  selfId(): number;
  readonly log: Logger;
}

export class PeerResolver {
  private pubKeyCache = new Map<number, Uint8Array>();
  private keyRefreshAt = new Map<number, number>();
  private resolving = new Map<number, Promise<void>>();
  /** Pending dials per node, failed at once when a refresh finds the peer's trust revoked. */
  private revokeWaiters = new Map<number, Set<() => void>>();

  constructor(private readonly d: ResolverDeps) {}

  /** A node's Ed25519 key from the registry (cached); `refresh` asks again, at most every 10 s per node. */
  async lookupPublicKey(nodeId: number, refresh = false): Promise<Uint8Array | null> {
    const c = this.pubKeyCache.get(nodeId);
    if (c && !refresh) return c;
    if (c && refresh) {
      const last = this.keyRefreshAt.get(nodeId) ?? 0;
      if (Date.now() - last < KEY_REFRESH_MIN_MS) return c;
      this.keyRefreshAt.set(nodeId, Date.now());
    }
    try {
      const r = await this.d.registry().lookup(nodeId);
      if (typeof r.public_key !== "string") return c ?? null;
      const k = decodePublicKey(r.public_key);
      this.pubKeyCache.set(nodeId, k);
      return k;
    } catch (e) {
      this.d.log.debug("public key lookup failed", { node_id: nodeId, err: (e as Error).message });
      return c ?? null;
    }
  }

  /** Create a tunnel entry for nodeId via registry resolve + beacon punch (concurrent calls share one). */
  async ensureTunnel(nodeId: number): Promise<void> {
    const { tunnel } = this.d;
    if (nodeId === this.d.selfId() || tunnel.hasPeer(nodeId)) return; // self: loopback, no tunnel
    if (tunnel.isBlocked(nodeId)) {
      // We revoked this node (or it revoked us): its frames are refused, so a dial could only
      // time out. Fail at once with the way out.
      throw new DaemonError("revoked", `node ${nodeId}: trust was revoked (send a new handshake to reconnect)`);
    }
    let p = this.resolving.get(nodeId);
    if (!p) {
      p = (async () => {
        let r: Record<string, unknown>;
        try {
          r = await regCall(this.d.registry().resolve(nodeId, this.d.selfId()));
        } catch (e) {
          throw new DaemonError("resolve_failed", `resolve node ${nodeId}: ${(e as Error).message}`);
        }
        const real = typeof r.real_addr === "string" ? r.real_addr : "";
        if (!real) throw new DaemonError("no_address", `node ${nodeId} has no real address`);
        const ep = parseEndpoint(real);
        if (!ep) throw new DaemonError("no_address", `resolve ${real}: invalid address`);
        if (tunnel.hasPeer(nodeId)) return;
        tunnel.requestPunch(nodeId);
        tunnel.addPeer(nodeId, await resolveEndpoint(ep));
      })().finally(() => this.resolving.delete(nodeId));
      this.resolving.set(nodeId, p);
    }
    await p;
  }

  /**
   * After a SYN timeout: the peer may have restarted (new key, maybe a new port: it silently drops
   * our frames), or an idle NAT mapping between us may have expired. The reference only waits
   * (and eventually relays for good). We re-send our key exchange (also through the relay), ask
   * the beacon for a fresh hole punch, and pick up a changed registered endpoint.
   */
  async refreshPeer(nodeId: number): Promise<void> {
    const { tunnel } = this.d;
    const p = tunnel.getPeer(nodeId);
    if (!p) return;
    // The registry is asked first: a private peer that revoked its trust in us must not be re-keyed.
    if ((await tunnel.refresh(nodeId)) === "revoked") {
      for (const fail of this.revokeWaiters.get(nodeId) ?? []) fail();
      return;
    }
    if (p.relay) return;
    tunnel.requestPunch(nodeId);
    try {
      const r = await this.d.registry().resolve(nodeId, this.d.selfId());
      const ep = typeof r.real_addr === "string" ? parseEndpoint(r.real_addr) : null;
      if (!ep) return;
      const resolved = await resolveEndpoint(ep);
      const cur = tunnel.getPeer(nodeId);
      if (cur && cur.endpoint && (cur.endpoint.ip !== resolved.ip || cur.endpoint.port !== resolved.port)) {
        this.d.log.info("peer endpoint changed", { node_id: nodeId, endpoint: formatEndpoint(resolved) });
        cur.endpoint = resolved;
        tunnel.rekey(nodeId);
      }
    } catch (e) {
      this.d.log.debug("peer refresh: resolve failed", { node_id: nodeId, err: (e as Error).message });
    }
  }

  /** May we still reach nodeId? The registry refusing to resolve it means its trust was revoked. */
  async confirmPeer(nodeId: number): Promise<"ok" | "denied" | "unknown"> {
    try {
      await this.d.registry().resolve(nodeId, this.d.selfId());
      return "ok";
    } catch (e) {
      const err = e as { code?: string; message?: string };
      // Ours answers with code "private"; a reference registry only with the error text.
      if (err.code === "private" || /private|not trusted|trust/i.test(err.message ?? "")) return "denied";
      return "unknown";
    }
  }

  /**
   * Race a dial against a revocation of nodeId's trust found by a peer refresh: the returned
   * promise rejects with code `revoked` as soon as refreshPeer learns it. `done` unregisters.
   */
  watchRevoke(nodeId: number): { revoked: Promise<never>; done(): void } {
    let fail = () => {};
    const revoked = new Promise<never>((_, reject) => {
      fail = () => reject(new DaemonError("revoked", `node ${nodeId}: trust revoked (the registry no longer resolves it for us)`));
    });
    revoked.catch(() => {});
    const ws = this.revokeWaiters.get(nodeId) ?? new Set();
    ws.add(fail);
    this.revokeWaiters.set(nodeId, ws);
    return {
      revoked,
      done: () => {
        ws.delete(fail);
        if (!ws.size && this.revokeWaiters.get(nodeId) === ws) this.revokeWaiters.delete(nodeId);
      },
    };
  }
}

/** Resolve a host name to an IP (endpoints may name hosts, e.g. "localhost:9001"). */
export async function resolveEndpoint(e: Endpoint): Promise<Endpoint> {
  if (/^[\d.]+$/.test(e.ip) || e.ip.includes(":")) return e;
  if (e.ip === "") return { ip: "127.0.0.1", port: e.port };
  const { lookup } = await import("node:dns/promises");
  const r = await lookup(e.ip);
  return { ip: r.address, port: e.port };
}
