// The registration session with the registry: identity, register, heartbeats, re-registration
// after repeated heartbeat failures (re-applying visibility and hostname), the push subscription,
// and adoption of a key rotated on disk while we run.
import { statSync } from "node:fs";
import { encodePublicKey, encodeSignature, generateIdentity, type Identity, loadOrCreateIdentity, sign } from "../crypto/identity.ts";
import { formatAddr, parseAddr } from "../proto/addr.ts";
import { encodeDiscover } from "../proto/beacon.ts";
import type { Addr } from "../proto/types.ts";
import type { JsonObject } from "../proto/ipc.ts";
import { DaemonError, isRefusal, regCall } from "./errors.ts";
import { withTimeout } from "../sys/queue.ts";
import type { Logger } from "../sys/log.ts";
import { RegistryClient } from "./registry-client.ts";
import { type Endpoint, type Tunnel, formatEndpoint } from "./tunnel.ts";

/** Heartbeat failures in a row after which we register again. */
const REREGISTER_AFTER_FAILURES = 3;

export interface RegistrationConfig {
  registry: string;
  registryTls: boolean;
  registryFingerprint: string;
  /** identity file ("" = ephemeral identity) */
  identity: string;
  owner: string;
  /** fixed public endpoint ("" = ask the beacon) */
  endpoint: string;
  public: boolean;
  hostname: string;
}

export interface RegistrationDeps {
  readonly cfg: RegistrationConfig;
  readonly log: Logger;
  readonly tunnel: Tunnel;
  /** The beacon's endpoint, null without one. */
  beacon(): Endpoint | null;
  /** Our virtual address was assigned (or changed). */
  onAddress(addr: Addr): void;
  /** After each successful heartbeat (housekeeping, relayed-handshake poll). */
  onHeartbeat(): Promise<void>;
  /** After a re-registration: re-announce what the registry may have lost (trust pairs). */
  onReRegistered(): Promise<void>;
  /** The registry pushed a notification (a relayed handshake is waiting). */
  onPush(): void;
  emit(event: string, data: Record<string, unknown>): void;
}

export class RegistrationSession {
  registry!: RegistryClient;
  identity!: Identity;
  nodeId = 0;
  address: Addr = { network: 0, node: 0 };
  hostname: string;
  private visibilityPublic: boolean;
  private identityMtime = 0;
  private heartbeatTimer: ReturnType<typeof setInterval> | null = null;
  private heartbeatFailures = 0;
  /** Push subscription: "no" until it succeeds; "refused" = the registry has no push (poll only). */
  private subscribed: "no" | "yes" | "refused" = "no";
  /** Settings a re-registration could not re-apply: retried after each heartbeat. */
  private reapply = { visibility: false, hostname: false };
  private stopped = false;

  constructor(private readonly d: RegistrationDeps) {
    this.hostname = d.cfg.hostname;
    this.visibilityPublic = d.cfg.public;
  }

  /** Load (or create) the identity file, or make an ephemeral identity. */
  loadIdentity(): void {
    const path = this.d.cfg.identity;
    if (path) {
      this.identity = loadOrCreateIdentity(path);
      this.identityMtime = statSync(path).mtimeMs;
      this.d.log.info("loaded identity", { path });
    } else {
      this.identity = generateIdentity();
    }
  }

  /** base64 Ed25519 signature of `challenge` with the current identity. */
  signature(challenge: string): string {
    return encodeSignature(sign(this.identity, challenge));
  }

  /** Dial the registry once; failure is fatal at start-up (the caller reports the cause). */
  async connect(): Promise<void> {
    const cfg = this.d.cfg;
    if (cfg.registryTls && !cfg.registryFingerprint) {
      throw new DaemonError("registry_tls", "registry TLS requires RegistryFingerprint for certificate pinning");
    }
    this.registry = new RegistryClient(cfg.registry, {
      tls: cfg.registryTls ? { fingerprint: cfg.registryFingerprint.toLowerCase() } : undefined,
      sign: (challenge) => this.signature(challenge),
    });
    try {
      await this.registry.connect();
    } catch (e) {
      throw new DaemonError("registry", `daemon start: registry dial: ${(e as Error).message}`);
    }
    this.registry.onPush(() => this.d.onPush());
  }

  async register(listenAddr: string, first: boolean): Promise<Record<string, unknown>> {
    let r: Record<string, unknown>;
    try {
      r = await regCall(this.registry.register(encodePublicKey(this.identity.publicKey), listenAddr, this.d.cfg.owner));
    } catch (e) {
      if (first) throw new DaemonError("registry", `daemon start: register: ${(e as Error).message}`);
      throw e;
    }
    const id = r.node_id;
    if (typeof id !== "number" || typeof r.address !== "string") {
      throw new DaemonError("registry", "daemon start: register: invalid response");
    }
    const addr = parseAddr(r.address);
    if (!first && id !== this.nodeId) this.d.log.warn("node ID changed on re-registration", { old: this.nodeId, new: id });
    if (id !== this.nodeId) this.subscribed = this.subscribed === "refused" ? "refused" : "no";
    this.nodeId = id;
    this.address = addr;
    this.d.tunnel.setIdentity(id, this.identity);
    this.d.onAddress(addr);
    void this.subscribe();
    return r;
  }

  /**
   * Push extension (pilot-ts registries): relayed handshakes arrive at once. A reference registry
   * refuses the unknown request; we then just keep polling. Any other failure is logged and the
   * subscription retried after the next heartbeat.
   */
  private async subscribe(): Promise<void> {
    if (this.subscribed !== "no" || this.subscribing) return;
    this.subscribing = true;
    try {
      await this.registry.subscribe(this.nodeId);
      this.subscribed = "yes";
    } catch (e) {
      if (isRefusal(e)) {
        this.subscribed = "refused";
        this.d.log.debug("registry has no push subscription; polling for relayed handshakes", { err: (e as Error).message });
      } else {
        this.d.log.warn("registry subscribe failed; retrying after the next heartbeat", { err: (e as Error).message });
      }
    } finally {
      this.subscribing = false;
    }
  }
  private subscribing = false;

  startHeartbeat(everyMs: number): void {
    this.heartbeatTimer = setInterval(() => void this.heartbeat(), everyMs);
  }

  /** Stop heartbeats and deregister (bounded wait), then close the registry connection. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer);
    this.heartbeatTimer = null;
    if (this.registry && this.nodeId) {
      await withTimeout(this.registry.deregister(this.nodeId), 2000).catch((e) =>
        this.d.log.debug("deregister at shutdown failed", { err: (e as Error).message }),
      );
    }
    this.registry?.close();
  }

  private async heartbeat(): Promise<void> {
    if (this.stopped) return;
    try {
      await regCall(this.registry.heartbeat(this.nodeId));
    } catch (e) {
      // `pilotctl rotate-key` may have replaced our identity file while we run: adopt the new
      // key instead of failing every signed request until the daemon is restarted.
      if (this.reloadIdentityIfChanged()) return;
      this.heartbeatFailures++;
      this.d.log.warn("heartbeat failed", { err: (e as Error).message, failures: this.heartbeatFailures });
      if (this.heartbeatFailures >= REREGISTER_AFTER_FAILURES) {
        this.heartbeatFailures = 0;
        this.d.log.info("attempting re-registration");
        await this.reRegister().catch((err) => this.d.log.warn("re-registration failed", { err: (err as Error).message }));
      }
      return;
    }
    this.heartbeatFailures = 0;
    this.d.tunnel.sendDiscover();
    await this.subscribe();
    await this.reapplySettings();
    await this.d.onHeartbeat().catch((e) => this.d.log.debug("heartbeat housekeeping failed", { err: (e as Error).message }));
  }

  /** Reload the identity file when it changed on disk (key rotation). Returns true if reloaded. */
  private reloadIdentityIfChanged(): boolean {
    const path = this.d.cfg.identity;
    if (!path) return false;
    try {
      const m = statSync(path).mtimeMs;
      if (m === this.identityMtime) return false;
      const id = loadOrCreateIdentity(path);
      this.identityMtime = m;
      if (Buffer.compare(Buffer.from(id.publicKey), Buffer.from(this.identity.publicKey)) === 0) return false;
      this.identity = id;
      this.d.tunnel.setIdentity(this.nodeId, id);
      this.d.log.info("identity changed on disk, reloaded", { path, public_key: encodePublicKey(id.publicKey) });
      return true;
    } catch (e) {
      this.d.log.warn("identity reload failed", { err: (e as Error).message });
      return false;
    }
  }

  async reRegister(): Promise<void> {
    // The reference re-registers with the tunnel's LOCAL address, which is wrong behind a NAT that
    // does not preserve ports. We ask the beacon again first (from the tunnel socket, so it is the
    // mapping peers need) and fall back to the local address.
    const { tunnel } = this.d;
    let ep = this.d.cfg.endpoint;
    const beacon = this.d.beacon();
    if (!ep && beacon) {
      const seen = await discoverEndpoint(tunnel, beacon, this.nodeId, 2000);
      if (seen && !isLocalHost(seen.ip)) ep = formatEndpoint(seen);
    }
    if (!ep) ep = formatEndpoint({ ip: wildcardToLoopback(tunnel.address), port: tunnel.port });
    await this.register(ep, false);
    this.reapply = { visibility: this.visibilityPublic, hostname: this.hostname !== "" };
    await this.reapplySettings();
    await this.d.onReRegistered();
    tunnel.sendDiscover();
    this.d.emit("node.reregistered", { address: formatAddr(this.address) });
  }

  /** Re-apply visibility and hostname after a re-registration; a failure is logged and retried later. */
  private async reapplySettings(): Promise<void> {
    if (this.reapply.visibility) {
      try {
        await this.setVisibility(this.visibilityPublic);
        this.reapply.visibility = false;
      } catch (e) {
        this.d.log.warn("re-registration: visibility not restored; retrying after the next heartbeat", { err: (e as Error).message });
      }
    }
    if (this.reapply.hostname) {
      try {
        await this.setHostname(this.hostname);
        this.reapply.hostname = false;
      } catch (e) {
        this.d.log.warn("re-registration: hostname not restored; retrying after the next heartbeat", { hostname: this.hostname, err: (e as Error).message });
      }
    }
  }

  async setHostname(name: string): Promise<JsonObject> {
    try {
      const r = await regCall(this.registry.setHostname(this.nodeId, name));
      this.hostname = name;
      this.reapply.hostname = false;
      return r;
    } catch (e) {
      throw new Error(`set_hostname: ${(e as Error).message}`);
    }
  }

  async setVisibility(pub: boolean): Promise<JsonObject> {
    try {
      const r = await regCall(this.registry.setVisibility(this.nodeId, pub));
      this.visibilityPublic = pub;
      this.reapply.visibility = false;
      return r;
    } catch (e) {
      throw new Error(`set_visibility: ${(e as Error).message}`);
    }
  }
}

/** STUN through the tunnel socket: Discover(nodeId) to the beacon, first DiscoverReply wins. */
/** Sends the first Discover before returning (the caller may do other work meanwhile). */
export async function discoverEndpoint(tunnel: Tunnel, beacon: Endpoint, nodeId: number, timeoutMs: number): Promise<Endpoint | null> {
  const reply = tunnel.waitDiscoverReply(timeoutMs);
  // Datagrams can be lost: ask up to three times within the timeout.
  const msg = encodeDiscover(nodeId);
  tunnel.sendRaw(msg, beacon);
  const retry = setInterval(() => tunnel.sendRaw(msg, beacon), Math.max(200, Math.floor(timeoutMs / 3)));
  try {
    return await reply;
  } finally {
    clearInterval(retry);
  }
}

export function isLocalHost(h: string): boolean {
  return h === "" || h === "127.0.0.1" || h === "::1" || h === "0.0.0.0" || h === "::" || h === "localhost";
}

export function wildcardToLoopback(h: string): string {
  if (h === "" || h === "0.0.0.0") return "127.0.0.1";
  if (h === "::") return "::1";
  return h;
}
