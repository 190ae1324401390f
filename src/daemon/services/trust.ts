// Trust handshake, port 444 (services.md §3): message codec, receiver, local trust state with
// trust.json persistence, registry relay for private peers, and the operations behind the IPC
// Handshake sub-commands (ipc.md §4.11).
//
// Fixes of the reference's flaws (services.md §13.1), all compatible with honest reference peers:
//  F1 public keys that are not exactly 32 bytes of strict base64 are rejected (remote crash).
//  F2 node_id must equal the stream's remote node; the key must equal the registry's key for that
//     node (cached lookups); an empty key is only tolerated for a node the registry knows
//     without a key. Forged requests, accepts and revokes are therefore dropped.
//  F3 handshake_accept (direct or relayed) creates trust only if we asked that node (an
//     `outgoing` entry); `outgoing` is persisted in trust.json so answers after a restart count.
//  F4 the receiver accumulates bytes until the JSON is complete (not only the first segment).
//  F5 trust.json is written 0600; a corrupt file is kept aside instead of silently replaced.
//  F6 registry lookups for the network rule are cached and never block other handshake work.
//  F7 approve/reject return after the local effect; network sends continue in the background.
//  F8 revoke notifies the peer before tearing the tunnel down and before revoke_trust.
//  F9 reject sends rejection messages only when a request from that node was pending.
//  F10 stale `pending` entries are removed when trust is created by accept or mutual rules.
import { createHash } from "node:crypto";
import { readFileSync, renameSync } from "node:fs";
import type { HandshakeSub } from "../../proto/ipc.ts";
import { PORT_HANDSHAKE, ProtoError } from "../../proto/types.ts";
import type { Listener, StreamConn } from "../../transport/api.ts";
import { nowMs, type RegistryLookup, type RegistryPoll, type ServiceContext, type ServiceHandle } from "./context.ts";
import { atomicWriteFile, errText, GO_ZERO_UNIX, goString, parseRfc3339, rfc3339Local, utf8, utf8Lossy } from "./util.ts";
import { handshakeChallenge, pollHandshakesChallenge, reportTrustChallenge, respondChallenge, revokeTrustChallenge } from "../../proto/registry-challenges.ts";

export const HS_REQUEST = "handshake_request";
export const HS_ACCEPT = "handshake_accept";
export const HS_REJECT = "handshake_reject";
export const HS_REVOKE = "handshake_revoke";

export const MAX_AGE_S = 300;
export const MAX_SKEW_S = 30;
export const RECV_TIMEOUT_MS = 10_000;
export const SEND_CLOSE_DELAY_MS = 500;
/** A reference receiver only reads one segment. */
export const MAX_MESSAGE_BYTES = 4096;
/** Our own receiver accumulates up to this many bytes (F4). */
const MAX_ACCUMULATE = 64 * 1024;
const REPLAY_KEEP_MS = 10 * 60_000;
const REPLAY_REAP_MS = 5 * 60_000;
const LOOKUP_TTL_MS = 5 * 60_000;

export interface HandshakeMsg {
  type: string;
  node_id: number;
  public_key: string;
  justification: string;
  signature: string;
  reason: string;
  timestamp: number;
}

// ---------------------------------------------------------------------------------------------
// Codec (MUST-match, services.md §3.2)

/** Struct-order compact JSON, Go escaping, no trailing newline. */
export function encodeHandshakeMsg(m: HandshakeMsg): string {
  return (
    '{"type":' + goString(m.type) +
    ',"node_id":' + (m.node_id >>> 0) +
    ',"public_key":' + goString(m.public_key) +
    ',"justification":' + goString(m.justification) +
    ',"signature":' + goString(m.signature) +
    ',"reason":' + goString(m.reason) +
    ',"timestamp":' + Math.trunc(m.timestamp) + "}"
  );
}

const FIELDS = ["type", "node_id", "public_key", "justification", "signature", "reason", "timestamp"] as const;

function badMsg(message: string): ProtoError {
  return new ProtoError("bad_handshake_message", message, "a handshake message is one JSON object with type, node_id, public_key, justification, signature, reason, timestamp");
}

/**
 * Lenient decode like Go's encoding/json into the message struct: unknown keys ignored, missing or
 * null fields take zero values, key names matched case-insensitively (exact match wins); a wrong
 * type or a node_id outside u32 fails the whole message.
 */
export function decodeHandshakeMsg(data: Uint8Array | string): HandshakeMsg {
  const text = typeof data === "string" ? data : utf8Lossy.decode(data);
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw badMsg("handshake message is not valid JSON");
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw badMsg("handshake message is not a JSON object");
  const o = v as Record<string, unknown>;
  const m: HandshakeMsg = { type: "", node_id: 0, public_key: "", justification: "", signature: "", reason: "", timestamp: 0 };
  const lower = new Map<string, string>();
  for (const k of Object.keys(o)) {
    const lk = k.toLowerCase();
    if (!lower.has(lk)) lower.set(lk, k);
  }
  for (const f of FIELDS) {
    const key = f in o ? f : lower.get(f);
    if (key === undefined) continue;
    const val = o[key];
    if (val === null) continue;
    if (f === "node_id") {
      if (typeof val !== "number" || !Number.isInteger(val) || val < 0 || val > 0xffffffff) throw badMsg("node_id must be an integer 0..4294967295");
      m.node_id = val;
    } else if (f === "timestamp") {
      if (typeof val !== "number" || !Number.isInteger(val)) throw badMsg("timestamp must be an integer");
      m.timestamp = val;
    } else {
      if (typeof val !== "string") throw badMsg(`${f} must be a string`);
      m[f] = val;
    }
  }
  return m;
}

const B64_RE = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Strict padded standard base64 → bytes, or null. */
export function strictBase64(s: string): Uint8Array | null {
  if (!B64_RE.test(s)) return null;
  return new Uint8Array(Buffer.from(s, "base64"));
}

// ---------------------------------------------------------------------------------------------
// State and persistence (services.md §3.4, §3.9)

export interface TrustedPeer {
  nodeId: number;
  publicKey: string;
  /** ms since epoch; null = unparsable stored time (Go zero time) */
  approvedAt: number | null;
  mutual: boolean;
  network: number;
}

export interface PendingRequest {
  nodeId: number;
  publicKey: string;
  justification: string;
  receivedAt: number | null;
}

const GO_ZERO_TEXT = "0001-01-01T00:00:00Z";
const timeText = (ms: number | null) => (ms === null ? GO_ZERO_TEXT : rfc3339Local(ms));
const unixS = (ms: number | null) => (ms === null ? GO_ZERO_UNIX : Math.floor(ms / 1000));

/** trust.json as the reference writes it (Go json.MarshalIndent, 2 spaces, struct order). */
export function encodeTrustFile(trusted: TrustedPeer[], pending: PendingRequest[], outgoing: number[] = []): string {
  const I2 = "    ", I3 = "      ";
  let s = "{\n";
  if (trusted.length === 0) s += '  "trusted": null';
  else {
    s += '  "trusted": [\n' + trusted.map((t) => {
      let r = I2 + "{\n" + I3 + '"node_id": ' + t.nodeId + ",\n" +
        I3 + '"public_key": ' + goString(t.publicKey) + ",\n" +
        I3 + '"approved_at": ' + goString(timeText(t.approvedAt)) + ",\n" +
        I3 + '"mutual": ' + (t.mutual ? "true" : "false");
      if (t.network !== 0) r += ",\n" + I3 + '"network": ' + t.network;
      return r + "\n" + I2 + "}";
    }).join(",\n") + "\n  ]";
  }
  if (pending.length > 0) {
    s += ',\n  "pending": [\n' + pending.map((p) => {
      let r = I2 + "{\n" + I3 + '"node_id": ' + p.nodeId;
      if (p.publicKey !== "") r += ",\n" + I3 + '"public_key": ' + goString(p.publicKey);
      if (p.justification !== "") r += ",\n" + I3 + '"justification": ' + goString(p.justification);
      r += ",\n" + I3 + '"received_at": ' + goString(timeText(p.receivedAt));
      return r + "\n" + I2 + "}";
    }).join(",\n") + "\n  ]";
  }
  // F3: extra key, ignored by the reference's decoder (unknown keys are skipped).
  if (outgoing.length > 0) s += ',\n  "outgoing": [\n' + outgoing.map((n) => I2 + n).join(",\n") + "\n  ]";
  return s + "\n}";
}

export function decodeTrustFile(text: string): { trusted: TrustedPeer[]; pending: PendingRequest[]; outgoing: number[] } {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new ProtoError("bad_trust_file", "trust.json is not valid JSON", "fix or delete the file; it is rewritten on the next change");
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw new ProtoError("bad_trust_file", "trust.json is not a JSON object", "fix or delete the file");
  const o = v as Record<string, unknown>;
  const u32 = (x: unknown) => (typeof x === "number" && Number.isInteger(x) && x >= 0 && x <= 0xffffffff ? x : null);
  const str = (x: unknown) => (typeof x === "string" ? x : "");
  const time = (x: unknown) => {
    const ms = parseRfc3339(x);
    return Number.isNaN(ms) || x === GO_ZERO_TEXT ? null : ms;
  };
  const trusted: TrustedPeer[] = [];
  for (const r of Array.isArray(o.trusted) ? o.trusted : []) {
    if (typeof r !== "object" || r === null) continue;
    const t = r as Record<string, unknown>;
    const id = u32(t.node_id);
    if (id === null) continue;
    const net = typeof t.network === "number" && Number.isInteger(t.network) && t.network >= 0 && t.network <= 0xffff ? t.network : 0;
    trusted.push({ nodeId: id, publicKey: str(t.public_key), approvedAt: time(t.approved_at), mutual: t.mutual === true, network: net });
  }
  const pending: PendingRequest[] = [];
  for (const r of Array.isArray(o.pending) ? o.pending : []) {
    if (typeof r !== "object" || r === null) continue;
    const p = r as Record<string, unknown>;
    const id = u32(p.node_id);
    if (id === null) continue;
    pending.push({ nodeId: id, publicKey: str(p.public_key), justification: str(p.justification), receivedAt: time(p.received_at) });
  }
  const outgoing: number[] = [];
  for (const x of Array.isArray(o.outgoing) ? o.outgoing : []) {
    const id = u32(x);
    if (id !== null) outgoing.push(id);
  }
  return { trusted, pending, outgoing };
}

// ---------------------------------------------------------------------------------------------
// Service

export class TrustError extends Error {
  constructor(readonly code: string, message: string) {
    super(message);
    this.name = "TrustError";
  }
}

/** Why an inbound message was not acted upon (or "ok"); reported to onProcessed for tests/logs. */
export type Verdict =
  | "ok" | "decode" | "timeout" | "stale" | "future" | "replay" | "node_mismatch" | "bad_key"
  | "key_mismatch" | "bad_signature" | "no_registry" | "unsolicited" | "unknown_type";

export interface TrustStats {
  received: number;
  accepted: number;
  dropped: Record<string, number>;
}

export interface TrustOptions {
  port?: number;
  /** F2: compare the message key with the registry's key (default true). */
  checkRegistryKey?: boolean;
}

export interface PendingJson { justification: string; node_id: number; public_key: string; received_at: number }
export interface TrustedJson { approved_at: number; mutual: boolean; network: number; node_id: number; public_key: string }

export class TrustService implements ServiceHandle {
  private trusted = new Map<number, TrustedPeer>();
  private pending = new Map<number, PendingRequest>();
  private outgoing = new Set<number>();
  private replay = new Map<string, number>();
  private lookups = new Map<number, { at: number; rec: Promise<RegistryLookup> }>();
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
    this.load();
  }

  start(): this {
    this.listener = this.ctx.listen(this.opts.port ?? PORT_HANDSHAKE, (c) => this.handleInbound(c));
    this.reaper = setInterval(() => this.reapReplay(), REPLAY_REAP_MS);
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
    return {
      pending: [...this.pending.values()].map((p) => ({
        justification: p.justification, node_id: p.nodeId, public_key: p.publicKey, received_at: unixS(p.receivedAt),
      })),
    };
  }

  /** IPC sub-command 0x05 reply body. */
  listTrusted(): { trusted: TrustedJson[] } {
    return {
      trusted: [...this.trusted.values()].map((t) => ({
        approved_at: unixS(t.approvedAt), mutual: t.mutual, network: t.network, node_id: t.nodeId, public_key: t.publicKey,
      })),
    };
  }

  // ---- persistence --------------------------------------------------------------------------

  private load(): void {
    const path = this.ctx.trustPath;
    if (!path) return;
    let text: string;
    try {
      text = readFileSync(path, "utf8");
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "ENOENT") this.ctx.log.warn("trust: cannot read trust.json", { error: errText(e) });
      return;
    }
    try {
      const d = decodeTrustFile(text);
      for (const t of d.trusted) this.trusted.set(t.nodeId, t);
      for (const p of d.pending) this.pending.set(p.nodeId, p);
      for (const n of d.outgoing) this.outgoing.add(n);
    } catch (e) {
      // F5: keep the unreadable file for the user instead of overwriting it on the next save.
      const aside = `${path}.corrupt-${nowMs(this.ctx)}`;
      this.ctx.log.warn("trust: trust.json undecodable; starting empty", { error: errText(e), movedTo: aside });
      try { renameSync(path, aside); } catch {}
    }
  }

  private save(): void {
    const path = this.ctx.trustPath;
    if (!path) return;
    try {
      atomicWriteFile(path, encodeTrustFile([...this.trusted.values()], [...this.pending.values()], [...this.outgoing]), 0o600);
    } catch (e) {
      this.ctx.log.warn("trust: save failed", { error: errText(e) });
    }
  }

  // ---- helpers ------------------------------------------------------------------------------

  private self(): number {
    return this.ctx.nodeId() >>> 0;
  }

  private sign(challenge: string): string {
    return this.ctx.identity ? this.ctx.identity.sign(challenge) : "";
  }

  private message(type: string, to: number, justification = "", reason = ""): HandshakeMsg {
    const self = this.self();
    return {
      type, node_id: self, public_key: this.ctx.identity?.publicKey ?? "", justification,
      signature: this.sign(handshakeChallenge(self, to)), reason, timestamp: Math.floor(nowMs(this.ctx) / 1000),
    };
  }

  /** Cached registry lookup (F2, F6). Failed lookups are not cached. */
  private lookup(nodeId: number): Promise<RegistryLookup> {
    const now = nowMs(this.ctx);
    const c = this.lookups.get(nodeId);
    if (c && now - c.at < LOOKUP_TTL_MS) return c.rec;
    const rec = this.ctx.registry.lookup(nodeId);
    this.lookups.set(nodeId, { at: now, rec });
    rec.catch(() => { if (this.lookups.get(nodeId)?.rec === rec) this.lookups.delete(nodeId); });
    return rec;
  }

  private bg(what: string, p: Promise<unknown>): void {
    p.catch((e) => this.ctx.log.debug(`trust: ${what} failed`, { error: errText(e) }));
  }

  /**
   * Open a stream to 0:<to> port 444, write the message in ONE write (a reference receiver reads
   * one segment), close 500 ms later. Rejects on dial/write failure ("direct failure").
   */
  async sendMessage(to: number, m: HandshakeMsg): Promise<void> {
    const bytes = utf8.encode(encodeHandshakeMsg(m));
    if (bytes.length > MAX_MESSAGE_BYTES) {
      throw new TrustError("message_too_large", `handshake message too large (${bytes.length} bytes, max ${MAX_MESSAGE_BYTES}); shorten the justification`);
    }
    const conn = await this.ctx.dial({ network: 0, node: to >>> 0 }, PORT_HANDSHAKE);
    try {
      conn.write(bytes);
    } catch (e) {
      conn.abort();
      throw e;
    }
    conn.onData = () => {}; // the receiver never replies on this stream
    const t = setTimeout(() => { try { conn.end(); } catch {} }, SEND_CLOSE_DELAY_MS);
    (t as { unref?: () => void }).unref?.();
  }

  /** §3.6 "sending an accept": direct, else registry respond_handshake(accept). */
  private async sendAccept(to: number): Promise<void> {
    try {
      await this.sendMessage(to, this.message(HS_ACCEPT, to));
    } catch (e) {
      this.ctx.log.debug("trust: direct accept failed, relaying", { peer: to, error: errText(e) });
      const self = this.self();
      await this.ctx.registry.respondHandshake(to, true, this.sign(respondChallenge(self, to)));
    }
  }

  private reportTrust(peer: number): Promise<void> {
    return this.ctx.registry.reportTrust(peer, this.sign(reportTrustChallenge(this.self(), peer)));
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
    const parts: Uint8Array[] = [];
    let total = 0;
    let done = false;
    const finish = (verdict: Verdict | null, raw: Uint8Array | null) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      conn.onData = () => {};
      if (verdict) this.report(verdict, null);
      else if (raw) void this.processRaw(raw, conn.remoteAddr.node >>> 0);
    };
    const timer = setTimeout(() => { finish("timeout", null); try { conn.end(); } catch {} }, RECV_TIMEOUT_MS);
    (timer as { unref?: () => void }).unref?.();
    const tryParse = (final: boolean) => {
      const buf = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
      // F4: accept the message once it is complete JSON, however it was segmented.
      try {
        JSON.parse(utf8Lossy.decode(buf));
      } catch {
        if (final || total > MAX_ACCUMULATE) finish("decode", null);
        return;
      }
      finish(null, buf);
    };
    conn.onData = (chunk) => {
      if (done) return;
      parts.push(chunk);
      total += chunk.length;
      tryParse(false);
    };
    conn.onEnd = () => {
      if (!done) {
        if (total > 0) tryParse(true);
        else finish("decode", null);
      }
    };
    conn.onClose = () => {
      this.conns.delete(conn);
      if (!done) finish(total > 0 ? "decode" : "timeout", null);
    };
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
   * Validate and apply one message (services.md §3.3, §3.5). `remoteNode` is the node the stream
   * came from (tunnel-authenticated), or null when unknown.
   */
  async processMessage(m: HandshakeMsg, remoteNode: number | null): Promise<Verdict> {
    if (this.stopped) return "unknown_type";
    const now = nowMs(this.ctx);
    const nowS = Math.floor(now / 1000);
    // 1. freshness
    if (nowS - m.timestamp > MAX_AGE_S) return "stale";
    if (m.timestamp - nowS > MAX_SKEW_S) return "future";
    // F2: the claimed sender must be the stream's remote node.
    if (remoteNode !== null && m.node_id !== remoteNode) return "node_mismatch";
    // 3a. F1: key shape (before anything is remembered, so a bad message cannot poison the replay set)
    let keyBytes: Uint8Array | null = null;
    if (m.public_key !== "") {
      keyBytes = strictBase64(m.public_key);
      if (!keyBytes || keyBytes.length !== 32) return "bad_key";
      const sig = strictBase64(m.signature);
      if (!sig || sig.length !== 64) return "bad_signature";
    }
    // 2. replay: hash of the canonical re-encoding
    const h = createHash("sha256").update(encodeHandshakeMsg(m)).digest("hex");
    if (this.replay.has(h)) return "replay";
    this.replay.set(h, now);
    // 3b. F2: key must be the registry's key for node_id.
    let rec: RegistryLookup | null = null;
    if (this.checkKey) {
      try {
        rec = await this.lookup(m.node_id);
      } catch {
        return "no_registry";
      }
      if (m.public_key !== rec.public_key) {
        const a = m.public_key === "" ? null : keyBytes;
        const b = rec.public_key === "" ? null : strictBase64(rec.public_key);
        if (!a || !b || Buffer.compare(a, b) !== 0) return "key_mismatch";
      }
    }
    // 3c. signature over handshake:<from>:<self>
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
    if (this.trusted.has(P)) {
      this.bg("accept", this.sendAccept(P));
      return "ok";
    }
    if (this.outgoing.has(P)) {
      this.outgoing.delete(P);
      this.pending.delete(P); // F10
      this.trusted.set(P, { nodeId: P, publicKey: m.public_key, approvedAt: now, mutual: true, network: 0 });
      this.ctx.webhook("handshake.auto_approved", { peer_node_id: P, reason: "mutual" });
      this.save();
      this.bg("accept", this.sendAccept(P));
      this.bg("report_trust", this.reportTrust(P));
      return "ok";
    }
    // Network rule (F6: cached lookups, no lock held).
    try {
      const [mine, theirs] = await Promise.all([this.lookup(this.self()), rec ? Promise.resolve(rec) : this.lookup(P)]);
      const net = (mine.networks ?? []).find((n) => n !== 0 && (theirs.networks ?? []).includes(n));
      if (net !== undefined && !this.trusted.has(P)) {
        this.pending.delete(P);
        this.trusted.set(P, { nodeId: P, publicKey: m.public_key, approvedAt: now, mutual: false, network: net });
        this.ctx.webhook("handshake.auto_approved", { peer_node_id: P, reason: "same_network" });
        this.save();
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

  private onAccept(m: HandshakeMsg, P: number): Verdict {
    if (!this.outgoing.has(P)) {
      // F3: unsolicited accept. An accept from an already trusted peer is harmless (it happens
      // after a mutual auto-approve) and changes nothing.
      return this.trusted.has(P) ? "ok" : "unsolicited";
    }
    this.outgoing.delete(P);
    this.pending.delete(P); // F10
    this.trusted.set(P, { nodeId: P, publicKey: m.public_key, approvedAt: nowMs(this.ctx), mutual: true, network: 0 });
    this.save();
    this.bg("report_trust", this.reportTrust(P));
    return "ok";
  }

  private onRevoke(P: number): Verdict {
    this.ctx.webhook("trust.revoked_by_peer", { peer_node_id: P });
    const wasTrusted = this.trusted.delete(P);
    const hadPending = this.pending.delete(P);
    const hadOut = this.outgoing.delete(P);
    if (wasTrusted || hadPending || hadOut) this.save();
    this.ctx.dropTunnel?.(P);
    if (wasTrusted) {
      this.ctx.registry.revokeTrust(P, this.sign(revokeTrustChallenge(this.self(), P))).catch(() => {});
    }
    return "ok";
  }

  // ---- relay (services.md §3.7) -------------------------------------------------------------

  /** Call after every successful registry heartbeat. */
  async pollRelayed(): Promise<void> {
    const self = this.self();
    const r = await this.ctx.registry.pollHandshakes(this.sign(pollHandshakesChallenge(self)));
    this.processPoll(r);
  }

  processPoll(r: RegistryPoll): void {
    const now = nowMs(this.ctx);
    const self = this.self();
    let dirty = false;
    for (const q of r.requests ?? []) {
      const F = q.from_node_id >>> 0;
      if (this.trusted.has(F)) {
        this.bg("respond_handshake", this.ctx.registry.respondHandshake(F, true, this.sign(respondChallenge(self, F))));
      } else if (this.outgoing.has(F)) {
        this.outgoing.delete(F);
        this.pending.delete(F); // F10
        this.trusted.set(F, { nodeId: F, publicKey: "", approvedAt: now, mutual: true, network: 0 });
        dirty = true;
        this.bg("respond_handshake", this.ctx.registry.respondHandshake(F, true, this.sign(respondChallenge(self, F))).then(() => this.backfillKey(F)));
      } else {
        this.pending.set(F, { nodeId: F, publicKey: "", justification: q.justification ?? "", receivedAt: now });
        dirty = true;
        // Extension: the reference emits no event for relayed requests (services.md §11.3), so a
        // webhook could never see a private node being asked for trust. `relayed` marks the source.
        this.ctx.webhook("handshake.pending", { peer_node_id: F, justification: q.justification ?? "", relayed: true });
      }
    }
    for (const s of r.responses ?? []) {
      const F = s.from_node_id >>> 0;
      if (s.accept) {
        if (this.trusted.has(F)) continue;
        // F3: relayed accepts are authenticated by the registry, but still only count when we asked.
        if (!this.outgoing.has(F)) continue;
        this.outgoing.delete(F);
        this.pending.delete(F);
        this.trusted.set(F, { nodeId: F, publicKey: "", approvedAt: now, mutual: true, network: 0 });
        dirty = true;
        this.bg("key backfill", this.backfillKey(F));
      } else if (this.outgoing.delete(F)) {
        dirty = true;
      }
    }
    if (dirty) this.save();
  }

  /** Alias of pollRelayed() (the daemon calls it after each successful heartbeat). */
  poll(): Promise<void> {
    return this.pollRelayed();
  }

  /** After a re-registration: re-send report_trust for every trusted peer (§3.8). Never rejects. */
  async reportAll(): Promise<void> {
    await Promise.all([...this.trusted.keys()].map((id) =>
      this.reportTrust(id).catch((e) => this.ctx.log.debug("trust: report_trust failed", { peer: id, error: errText(e) }))));
  }

  /**
   * IPC Handshake (0x0F) dispatcher: returns the HandshakeOK JSON object (Go-sort it when
   * encoding); throws Error whose message is the IPC error text (ipc.md §4.11).
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

  // ---- local operations (ipc.md §4.11) --------------------------------------------------------

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
      this.save(); // F3: outgoing is persisted
    }
    try {
      await this.sendMessage(P, m);
      return reply;
    } catch (e) {
      this.ctx.log.debug("trust: direct request failed, relaying", { peer: P, error: errText(e) });
    }
    try {
      await this.ctx.registry.requestHandshake(P, justification, this.sign(handshakeChallenge(this.self(), P)));
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
    this.pending.delete(P);
    this.outgoing.delete(P);
    this.trusted.set(P, { nodeId: P, publicKey: p.publicKey, approvedAt: nowMs(this.ctx), mutual: false, network: 0 });
    this.save();
    this.ctx.webhook("handshake.approved", { peer_node_id: P });
    const self = this.self();
    this.bg("report/respond", this.reportTrust(P).catch(() => {}).then(() =>
      this.ctx.registry.respondHandshake(P, true, this.sign(respondChallenge(self, P)))));
    // F7: the accept is delivered in the background; the IPC caller does not wait ~29 s.
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
      // F9: only nodes that asked are told.
      const self = this.self();
      this.bg("respond_handshake", this.ctx.registry.respondHandshake(P, false, this.sign(respondChallenge(self, P))));
      this.bg("reject", this.sendMessage(P, this.message(HS_REJECT, P, "", reason)));
    }
    return { node_id: P, status: "rejected" };
  }

  /** Sub-command 0x06. Throws TrustError("not_trusted", "node <P> was not trusted"). */
  async revoke(P: number): Promise<{ node_id: number; status: "revoked" }> {
    P >>>= 0;
    const wasTrusted = this.trusted.delete(P);
    const hadPending = this.pending.delete(P);
    const hadOut = this.outgoing.delete(P);
    if (wasTrusted || hadPending || hadOut) this.save();
    if (!wasTrusted) throw new TrustError("not_trusted", `node ${P} was not trusted`);
    this.ctx.webhook("trust.revoked", { peer_node_id: P });
    const self = this.self();
    // F8: tell the peer first (while the tunnel and the registry pair still exist), then revoke
    // the pair, then drop the tunnel.
    const notify = this.sendMessage(P, this.message(HS_REVOKE, P, "", "trust revoked"))
      .catch((e) => this.ctx.log.debug("trust: revoke notification failed", { error: errText(e) }))
      .then(() => new Promise((r) => setTimeout(r, SEND_CLOSE_DELAY_MS)));
    this.bg("revoke_trust", notify.then(async () => {
      try {
        await this.ctx.registry.revokeTrust(P, this.sign(revokeTrustChallenge(self, P)));
      } finally {
        this.ctx.dropTunnel?.(P);
      }
    }));
    return { node_id: P, status: "revoked" };
  }

  private reapReplay(): void {
    const cutoff = nowMs(this.ctx) - REPLAY_KEEP_MS;
    for (const [h, t] of this.replay) if (t < cutoff) this.replay.delete(h);
  }
}

export function startTrust(ctx: ServiceContext, opts: TrustOptions = {}): TrustService {
  return new TrustService(ctx, opts).start();
}
