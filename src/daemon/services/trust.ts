// Trust handshake service, port 444: receives handshake messages on streams, relays through the
// registry for private peers, and carries out the IPC Handshake sub-commands. The message codec
// is src/proto/handshake.ts, the persisted state trust-store.ts, the decisions trust-decide.ts.
//
// Hardening over the reference, compatible with honest reference peers:
//  - a message's node_id must be the stream's remote node, and its key the registry's key for that
//    node (cached lookups, never blocking other handshake work); forged requests, accepts and
//    revokes are dropped;
//  - an accept (direct or relayed) creates trust only if we asked that node; what we asked is
//    persisted, so answers after a restart still count;
//  - the receiver accumulates a segmented message until its JSON is complete;
//  - approve/reject return after the local effect, network sends continue in the background;
//  - revoke notifies the peer before dropping the tunnel and before revoke_trust;
//  - reject notifies only nodes whose request was pending; stale pending entries go when trust
//    is created another way.
// Registry requests are signed once, by the daemon's registry adapter (TrustRegistry).
import { createHash } from "node:crypto";
import type { HandshakeSub } from "../../proto/ipc.ts";
import {
  encodeHandshakeMsg, decodeHandshakeMsg, handshakeChallenge, HS_ACCEPT, HS_REJECT, HS_REQUEST, HS_REVOKE, MAX_MESSAGE_BYTES,
  type HandshakeMsg,
} from "../../proto/handshake.ts";
import { PORT_HANDSHAKE } from "../../proto/types.ts";
import type { Listener, StreamConn } from "../../transport/api.ts";
import { nowMs, type RegistryLookup, type RegistryPoll, type ServiceContext, type ServiceHandle } from "./context.ts";
import {
  acceptAction, keyMatches, TrustError, precheck, relayedRequestAction, relayedResponseAction, requestAction, sharedNetwork, type Verdict,
} from "./trust-decide.ts";
import { LookupCache, ReplayCache } from "./trust-caches.ts";
import { TrustStore, type PendingJson, type PendingRequest, type TrustedJson, type TrustedPeer } from "./trust-store.ts";
import { receiveHandshake, SEND_CLOSE_DELAY_MS, sendHandshake } from "./trust-stream.ts";
import { errText, utf8 } from "./util.ts";

export { decodeHandshakeMsg, encodeHandshakeMsg, type HandshakeMsg } from "../../proto/handshake.ts";
export { decodeTrustFile, encodeTrustFile, type PendingJson, type PendingRequest, type TrustedJson, type TrustedPeer } from "./trust-store.ts";
export { TrustError, type Verdict } from "./trust-decide.ts";

const REPLAY_REAP_MS = 5 * 60_000;
/** revoke_trust after a peer revoked us: retried after these delays before giving up loudly. */
const REVOKE_RETRY_MS = [1_000, 5_000, 30_000];

export interface TrustStats {
  received: number;
  accepted: number;
  dropped: Record<string, number>;
}

export interface TrustOptions {
  port?: number;
  /** Compare the message key with the registry's key for its node (default true). */
  checkRegistryKey?: boolean;
  /** Delays between revoke_trust attempts after a peer revoked us (default 1 s, 5 s, 30 s). */
  revokeRetryMs?: number[];
}

export class TrustService implements ServiceHandle {
  private readonly store: TrustStore;
  private get trusted(): Map<number, TrustedPeer> {
    return this.store.trusted;
  }
  private get pending(): Map<number, PendingRequest> {
    return this.store.pending;
  }
  private get outgoing(): Set<number> {
    return this.store.outgoing;
  }
  private replay = new ReplayCache();
  private lookups: LookupCache;
  private listener: Listener | null = null;
  private reaper: ReturnType<typeof setInterval> | null = null;
  private conns = new Set<StreamConn>();
  private stopped = false;
  private readonly checkKey: boolean;
  readonly stats: TrustStats = { received: 0, accepted: 0, dropped: {} };
  /** Called after every inbound message (direct) with the verdict; for tests and diagnostics. */
  onProcessed: ((verdict: Verdict, msg: HandshakeMsg | null) => void) | null = null;

  constructor(private readonly ctx: ServiceContext, private readonly opts: TrustOptions = {}) {
    this.checkKey = opts.checkRegistryKey ?? true;
    this.store = new TrustStore(ctx.trustPath, ctx.log, () => nowMs(ctx));
    this.lookups = new LookupCache((id) => ctx.registry.lookup(id));
  }

  start(): this {
    this.listener = this.ctx.listen(this.opts.port ?? PORT_HANDSHAKE, (c) => this.handleInbound(c));
    this.reaper = setInterval(() => this.replay.reap(nowMs(this.ctx)), REPLAY_REAP_MS);
    (this.reaper as { unref?: () => void }).unref?.();
    return this;
  }

  stop(): void {
    this.stopped = true;
    this.listener?.close();
    this.listener = null;
    if (this.reaper) clearInterval(this.reaper);
    for (const c of this.conns) c.abort();
    this.conns.clear();
  }

  // ---- queries ------------------------------------------------------------------------------

  isTrusted(nodeId: number): boolean {
    return this.trusted.has(nodeId >>> 0);
  }
  trustedPeer(nodeId: number): TrustedPeer | undefined {
    return this.trusted.get(nodeId >>> 0);
  }
  pendingRequest(nodeId: number): PendingRequest | undefined {
    return this.pending.get(nodeId >>> 0);
  }
  hasOutgoing(nodeId: number): boolean {
    return this.outgoing.has(nodeId >>> 0);
  }
  trustedIds(): number[] {
    return [...this.trusted.keys()];
  }

  /** IPC sub-command 0x04 reply body (Go-sort it with goJson). */
  listPending(): { pending: PendingJson[] } {
    return { pending: this.store.pendingJson() };
  }

  /** IPC sub-command 0x05 reply body. */
  listTrusted(): { trusted: TrustedJson[] } {
    return { trusted: this.store.trustedJson() };
  }

  private save(): void {
    this.store.save();
  }

  // ---- helpers ------------------------------------------------------------------------------

  private self(): number {
    return this.ctx.nodeId() >>> 0;
  }

  /** A message from us to `to`, signed over its handshake challenge (empty without an identity). */
  private message(type: string, to: number, justification = "", reason = ""): HandshakeMsg {
    const self = this.self();
    const id = this.ctx.identity;
    return {
      type, node_id: self, public_key: id?.publicKey ?? "", justification,
      signature: id ? id.sign(handshakeChallenge(self, to)) : "", reason, timestamp: Math.floor(nowMs(this.ctx) / 1000),
    };
  }

  /** Cached registry lookup (key check, network rule). Failed lookups are not cached. */
  private lookup(nodeId: number): Promise<RegistryLookup> {
    return this.lookups.get(nodeId, nowMs(this.ctx));
  }

  private bg(what: string, p: Promise<unknown>): void {
    p.catch((e) => this.ctx.log.debug(`trust: ${what} failed`, { error: errText(e) }));
  }

  /** Send one message on its own stream to node `to` (rejects on dial/write failure). */
  sendMessage(to: number, m: HandshakeMsg): Promise<void> {
    return sendHandshake(this.ctx, to, m);
  }

  /** Send an accept: directly, else through the registry (respond_handshake accept). */
  private async sendAccept(to: number): Promise<void> {
    try {
      await this.sendMessage(to, this.message(HS_ACCEPT, to));
    } catch (e) {
      this.ctx.log.debug("trust: direct accept failed, relaying", { peer: to, error: errText(e) });
      await this.ctx.registry.respondHandshake(to, true);
    }
  }

  private reportTrust(peer: number): Promise<void> {
    return this.ctx.registry.reportTrust(peer);
  }

  private async backfillKey(peer: number): Promise<void> {
    const rec = await this.lookup(peer);
    const t = this.trusted.get(peer);
    if (t && t.publicKey === "" && rec.public_key) {
      t.publicKey = rec.public_key;
      this.save();
    }
  }

  // ---- inbound ------------------------------------------------------------------------------

  private handleInbound(conn: StreamConn): void {
    this.conns.add(conn);
    receiveHandshake(conn, (verdict, raw) => {
      if (verdict) this.report(verdict, null);
      else if (raw) void this.processRaw(raw, conn.remoteAddr.node >>> 0);
    }, () => this.conns.delete(conn));
  }

  private report(v: Verdict, m: HandshakeMsg | null): void {
    if (v === "ok") this.stats.accepted++;
    else {
      this.stats.dropped[v] = (this.stats.dropped[v] ?? 0) + 1;
      this.ctx.log.debug("trust: handshake message dropped", { reason: v, peer: m?.node_id, type: m?.type });
    }
    this.onProcessed?.(v, m);
  }

  private async processRaw(raw: Uint8Array, remoteNode: number): Promise<void> {
    this.stats.received++;
    let m: HandshakeMsg;
    try {
      m = decodeHandshakeMsg(raw);
    } catch {
      return this.report("decode", null);
    }
    let v: Verdict;
    try {
      v = await this.processMessage(m, remoteNode);
    } catch (e) {
      this.ctx.log.warn("trust: processing failed", { error: errText(e) });
      v = "no_registry";
    }
    this.report(v, m);
  }

  /**
   * Validate and apply one message. `remoteNode` is the node the stream
   * came from (tunnel-authenticated), or null when unknown.
   */
  async processMessage(m: HandshakeMsg, remoteNode: number | null): Promise<Verdict> {
    if (this.stopped) return "unknown_type";
    const now = nowMs(this.ctx);
    // Shape first, before anything is remembered, so a bad message cannot poison the replay set.
    const refused = precheck(m, Math.floor(now / 1000), remoteNode);
    if (refused) return refused;
    // Replay: hash of the canonical re-encoding.
    const h = createHash("sha256").update(encodeHandshakeMsg(m)).digest("hex");
    if (!this.replay.add(h, now)) return "replay";
    // The key must be the registry's key for node_id.
    let rec: RegistryLookup | null = null;
    if (this.checkKey) {
      try {
        rec = await this.lookup(m.node_id);
      } catch {
        return "no_registry";
      }
      if (!keyMatches(m.public_key, rec.public_key)) return "key_mismatch";
    }
    if (m.public_key !== "" && !this.ctx.verify(m.public_key, handshakeChallenge(m.node_id, this.self()), m.signature)) {
      return "bad_signature";
    }
    const P = m.node_id >>> 0;
    switch (m.type) {
      case HS_REQUEST:
        return this.onRequest(m, P, rec);
      case HS_ACCEPT:
        return this.onAccept(m, P);
      case HS_REJECT:
        this.ctx.log.info("trust: handshake rejected by peer", { peer: P, reason: m.reason });
        if (this.outgoing.delete(P)) this.save();
        return "ok";
      case HS_REVOKE:
        return this.onRevoke(P);
      default:
        return "unknown_type";
    }
  }

  private async onRequest(m: HandshakeMsg, P: number, rec: RegistryLookup | null): Promise<Verdict> {
    this.ctx.webhook("handshake.received", { peer_node_id: P, justification: m.justification });
    const now = nowMs(this.ctx);
    const action = requestAction(this.facts(P));
    if (action === "accept_again") {
      this.bg("accept", this.sendAccept(P));
      return "ok";
    }
    if (action === "mutual") {
      this.store.trust({ nodeId: P, publicKey: m.public_key, approvedAt: now, mutual: true, network: 0 });
      this.ctx.webhook("handshake.auto_approved", { peer_node_id: P, reason: "mutual" });
      this.bg("accept", this.sendAccept(P));
      this.bg("report_trust", this.reportTrust(P));
      return "ok";
    }
    // Network rule (cached lookups, nothing held while waiting).
    try {
      const [mine, theirs] = await Promise.all([this.lookup(this.self()), rec ? Promise.resolve(rec) : this.lookup(P)]);
      const net = sharedNetwork(mine.networks, theirs.networks);
      if (net !== undefined && !this.trusted.has(P)) {
        this.store.trust({ nodeId: P, publicKey: m.public_key, approvedAt: now, mutual: false, network: net });
        this.ctx.webhook("handshake.auto_approved", { peer_node_id: P, reason: "same_network" });
        this.bg("accept", this.sendAccept(P));
        this.bg("report_trust", this.reportTrust(P));
        return "ok";
      }
    } catch (e) {
      this.ctx.log.debug("trust: network lookup failed", { error: errText(e) });
    }
    if (this.trusted.has(P)) return "ok";
    this.pending.set(P, { nodeId: P, publicKey: m.public_key, justification: m.justification, receivedAt: now });
    this.save();
    this.ctx.webhook("handshake.pending", { peer_node_id: P, justification: m.justification });
    return "ok";
  }

  private facts(P: number): { trusted: boolean; asked: boolean } {
    return { trusted: this.trusted.has(P), asked: this.outgoing.has(P) };
  }

  private onAccept(m: HandshakeMsg, P: number): Verdict {
    const action = acceptAction(this.facts(P));
    // An accept from an already trusted peer (after a mutual auto-approve) changes nothing.
    if (action !== "trust") return action === "ignore" ? "ok" : "unsolicited";
    this.store.trust({ nodeId: P, publicKey: m.public_key, approvedAt: nowMs(this.ctx), mutual: true, network: 0 });
    this.bg("report_trust", this.reportTrust(P));
    return "ok";
  }

  private onRevoke(P: number): Verdict {
    this.ctx.webhook("trust.revoked_by_peer", { peer_node_id: P });
    const { wasTrusted } = this.store.forget(P);
    this.ctx.dropTunnel?.(P);
    // The registry still lists the pair until we revoke it too: retry, then say so loudly.
    if (wasTrusted) void this.revokeInRegistry(P, 0);
    return "ok";
  }

  private async revokeInRegistry(P: number, attempt: number): Promise<void> {
    try {
      await this.ctx.registry.revokeTrust(P);
    } catch (e) {
      if (this.stopped || pairAlreadyGone(e)) return;
      const delays = this.opts.revokeRetryMs ?? REVOKE_RETRY_MS;
      if (attempt >= delays.length || this.trusted.has(P)) {
        if (!this.trusted.has(P)) {
          this.ctx.log.warn("trust: revoke_trust failed; the registry still lists the trust pair", { peer: P, error: errText(e), attempts: attempt + 1 });
        }
        return;
      }
      const t = setTimeout(() => void this.revokeInRegistry(P, attempt + 1), delays[attempt]);
      (t as { unref?: () => void }).unref?.();
    }
  }

  // ---- relay through the registry -------------------------------------------------------------

  /** Fetch and apply relayed handshakes (after every successful heartbeat, or on a registry push). */
  async poll(): Promise<void> {
    this.processPoll(await this.ctx.registry.pollHandshakes());
  }

  processPoll(r: RegistryPoll): void {
    const now = nowMs(this.ctx);
    let dirty = false;
    for (const q of r.requests ?? []) {
      const F = q.from_node_id >>> 0;
      const action = relayedRequestAction(this.facts(F));
      if (action === "respond") {
        this.bg("respond_handshake", this.ctx.registry.respondHandshake(F, true));
      } else if (action === "mutual") {
        this.store.trust({ nodeId: F, publicKey: "", approvedAt: now, mutual: true, network: 0 }, false);
        dirty = true;
        this.bg("respond_handshake", this.ctx.registry.respondHandshake(F, true).then(() => this.backfillKey(F)));
      } else {
        this.pending.set(F, { nodeId: F, publicKey: "", justification: q.justification ?? "", receivedAt: now });
        dirty = true;
        // Extension: the reference emits no event for relayed requests, so a webhook could never
        // see a private node being asked for trust. `relayed` marks the source.
        this.ctx.webhook("handshake.pending", { peer_node_id: F, justification: q.justification ?? "", relayed: true });
      }
    }
    for (const resp of r.responses ?? []) {
      const F = resp.from_node_id >>> 0;
      const action = relayedResponseAction(resp.accept, this.facts(F));
      if (action === "trust") {
        this.store.trust({ nodeId: F, publicKey: "", approvedAt: now, mutual: true, network: 0 }, false);
        dirty = true;
        this.bg("key backfill", this.backfillKey(F));
      } else if (action === "forget_request") {
        this.outgoing.delete(F);
        dirty = true;
      }
    }
    if (dirty) this.save();
  }

  /** After a re-registration: re-send report_trust for every trusted peer. Never rejects. */
  async reportAll(): Promise<void> {
    await Promise.all([...this.trusted.keys()].map((id) =>
      this.reportTrust(id).catch((e) => this.ctx.log.debug("trust: report_trust failed", { peer: id, error: errText(e) }))));
  }

  /**
   * IPC Handshake (0x0F) dispatcher: returns the HandshakeOK JSON object (Go-sort it when
   * encoding); throws Error whose message is the IPC error text.
   */
  async ipc(h: HandshakeSub): Promise<Record<string, unknown>> {
    switch (h.sub) {
      case "request":
        try {
          return await this.sendRequest(h.nodeId, h.justification);
        } catch (e) {
          throw new Error(`handshake request: ${errText(e)}`);
        }
      case "approve":
        return this.approve(h.nodeId);
      case "reject":
        return this.reject(h.nodeId, h.reason);
      case "pending":
        return this.listPending();
      case "trusted":
        return this.listTrusted();
      case "revoke":
        try {
          return await this.revoke(h.nodeId);
        } catch (e) {
          throw new Error(`handshake revoke: ${errText(e)}`);
        }
    }
  }

  // ---- local operations (IPC Handshake sub-commands) ------------------------------------------

  /** Sub-command 0x01. Throws TrustError("relay_failed", "handshake relay: …") when both paths fail. */
  async sendRequest(P: number, justification: string): Promise<{ node_id: number; status: "sent" }> {
    P >>>= 0;
    const reply = { node_id: P, status: "sent" as const };
    if (this.trusted.has(P)) return reply;
    const m = this.message(HS_REQUEST, P, justification);
    if (utf8.encode(encodeHandshakeMsg(m)).length > MAX_MESSAGE_BYTES) {
      throw new TrustError("message_too_large", `justification too long: the handshake message must fit in ${MAX_MESSAGE_BYTES} bytes`);
    }
    if (!this.outgoing.has(P)) {
      this.outgoing.add(P);
      this.save(); // what we asked is persisted
    }
    try {
      await this.sendMessage(P, m);
      return reply;
    } catch (e) {
      this.ctx.log.debug("trust: direct request failed, relaying", { peer: P, error: errText(e) });
    }
    try {
      await this.ctx.registry.requestHandshake(P, justification);
    } catch (e) {
      throw new TrustError("relay_failed", `handshake relay: ${errText(e)}`);
    }
    return reply;
  }

  /** Sub-command 0x02. */
  async approve(P: number): Promise<{ node_id: number; status: "approved" }> {
    P >>>= 0;
    const reply = { node_id: P, status: "approved" as const };
    const p = this.pending.get(P);
    if (!p) return reply;
    this.store.trust({ nodeId: P, publicKey: p.publicKey, approvedAt: nowMs(this.ctx), mutual: false, network: 0 });
    this.ctx.webhook("handshake.approved", { peer_node_id: P });
    const reported = this.reportTrust(P).catch((e) => this.ctx.log.warn("trust: report_trust failed; the peer may not resolve us", { peer: P, error: errText(e) }));
    this.bg("respond_handshake", reported.then(() => this.ctx.registry.respondHandshake(P, true)));
    // The accept is delivered in the background; the IPC caller does not wait ~29 s.
    this.bg("accept", this.sendAccept(P));
    if (p.publicKey === "") this.bg("key backfill", this.backfillKey(P));
    return reply;
  }

  /** Sub-command 0x03. */
  async reject(P: number, reason: string): Promise<{ node_id: number; status: "rejected" }> {
    P >>>= 0;
    const had = this.pending.delete(P);
    this.save();
    this.ctx.webhook("handshake.rejected", { peer_node_id: P, reason });
    if (had) {
      // Only nodes that asked are told.
      this.bg("respond_handshake", this.ctx.registry.respondHandshake(P, false));
      this.bg("reject", this.sendMessage(P, this.message(HS_REJECT, P, "", reason)));
    }
    return { node_id: P, status: "rejected" };
  }

  /** Sub-command 0x06. Throws TrustError("not_trusted", "node <P> was not trusted"). */
  async revoke(P: number): Promise<{ node_id: number; status: "revoked" }> {
    P >>>= 0;
    const { wasTrusted } = this.store.forget(P);
    if (!wasTrusted) throw new TrustError("not_trusted", `node ${P} was not trusted`);
    this.ctx.webhook("trust.revoked", { peer_node_id: P });
    // Tell the peer first (while the tunnel and the registry pair still exist), then revoke
    // the pair, then drop the tunnel.
    const notify = this.sendMessage(P, this.message(HS_REVOKE, P, "", "trust revoked"))
      .catch((e) => this.ctx.log.debug("trust: revoke notification failed", { error: errText(e) }))
      .then(() => new Promise((r) => setTimeout(r, SEND_CLOSE_DELAY_MS)));
    void notify.then(async () => {
      try {
        await this.ctx.registry.revokeTrust(P);
      } catch (e) {
        if (!pairAlreadyGone(e)) this.ctx.log.warn("trust: revoke_trust failed; the registry still lists the trust pair", { peer: P, error: errText(e) });
      } finally {
        this.ctx.dropTunnel?.(P);
      }
    });
    return { node_id: P, status: "revoked" };
  }
}

export function startTrust(ctx: ServiceContext, opts: TrustOptions = {}): TrustService {
  return new TrustService(ctx, opts).start();
}

/** Both sides revoke after a revocation; the second finds the registry's pair already removed. */
function pairAlreadyGone(e: unknown): boolean {
  return /no trust pair/i.test(errText(e));
}
