// Registry request handling (registry.md §3-7), independent of sockets and storage engine.
//
// Deviations from the reference, all wire-compatible with reference daemons (see Observations):
// * Errors carry a specific text plus an extension field `code` (R30: reference clients only look
//   at the string `error`). `opaqueErrors: true` restores the exact `request failed` body.
// * R1 (endpoint privacy): trust is stored as directional grants. `report_trust(X,P)` and an
//   accepting `respond_handshake(X,P)` let P resolve X (X consented); a signed
//   `request_handshake(R,T)` lets T resolve R (R asked to be contacted). Every reference flow
//   (services.md §3.5-3.7) still obtains the direction it needs; a node can no longer make
//   itself able to resolve somebody by reporting trust on its own. `punch` is refused unless the
//   requester could `resolve` the other node. `revoke_trust` removes both directions.
// * R2 (endpoint hijack via re-register): a known key re-registering from a different IP while
//   its node is live and heartbeating does not move the endpoint immediately; the new endpoint is
//   remembered for that TCP connection and applied only after a request on the same connection
//   carries a valid signature of that node (reference daemons send signed set_visibility /
//   heartbeat on the same connection right after registering, so real moves still work).
//   Owner strings are only attached from the node's own IP. `register` never replaces the key of
//   a live node (case B1): such a request gets a fresh node ID instead (the owner index is left
//   pointing at the original node); recovery of a *dead* node by owner (B2) is kept.
// * R3 (replayable signatures): challenges are unchanged (reference daemons), but a client may add
//   a numeric `ts` field (Unix ms) and sign `<challenge>:<ts>`; it must be within ±120 s and each such
//   signature is accepted once. A node that has used this form once is marked strict and plain
//   (replayable) signatures for it are refused from then on. Reference daemons never opt in.
// * R4: polo-score writes no longer refresh last-seen (kept unauthenticated: reference daemons'
//   task service updates other nodes' scores without a signature).
// * R5/R6/R10: keys are canonicalised; a key index entry pointing at a node that now has another
//   key is ignored; rotate_key refuses keys already indexed to another node.
// * R11: response inboxes capped (1000 per node), justification capped at 4 KiB, metrics labels
//   limited to known request types.
// * R12: the register rate limit keys IPv6 clients by /64.
// * R17: every mutation (also heartbeat, inbox) is committed before the response is sent.
import { Histogram, PromWriter } from "../sys/prom.ts";
import { ed25519 } from "@noble/curves/ed25519.js";
import { createPublicKey, verify as nodeVerify, type KeyObject } from "node:crypto";

// Ed25519 verification: node:crypto (OpenSSL, ~10x faster than pure JS) with a per-key KeyObject
// cache; @noble/curves as the fallback if the runtime lacks Ed25519 KeyObjects.
const keyCache = new Map<string, KeyObject>();
function verifyEd25519(sig: Uint8Array, msg: Uint8Array, pub: Uint8Array, pubText: string): boolean {
  try {
    let k = keyCache.get(pubText);
    if (!k) {
      k = createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x: Buffer.from(pub).toString("base64url") }, format: "jwk" });
      if (keyCache.size > 50_000) keyCache.clear();
      keyCache.set(pubText, k);
    }
    return nodeVerify(null, msg, k, sig);
  } catch {
    try { return ed25519.verify(sig, msg, pub); } catch { return false; }
  }
}
import type { NodeRec, PushEvent, Store, Tx } from "./store.ts";
import { ReplicationHub, TokenChecker, exportSnapshot } from "./replication.ts";

/** Request types a standby serves (registry.md §4 "Standby" column, §9.4). */
export const STANDBY_ALLOWED = new Set(["lookup", "resolve", "list_networks", "list_nodes", "heartbeat", "poll_handshakes", "resolve_hostname", "beacon_list"]);
/**
 * Successful requests of these types trigger a replication push (§4 "Saves" column, §8.2). Also
 * `request_handshake`, `poll_handshakes` and rejecting `respond_handshake`, which the reference
 * did not save: here they change R1 grants / inbox contents that a promoted standby should have.
 */
const SAVING = new Set([
  "register", "rotate_key", "deregister", "set_visibility", "set_hostname", "report_trust", "revoke_trust",
  "respond_handshake", "request_handshake", "poll_handshakes", "set_tags", "set_task_exec", "update_polo_score", "set_polo_score",
]);

export const STALE_MS = 3 * 60_000;
export const BEACON_TTL_MS = 60_000;
export const MAX_INBOX = 100;
export const MAX_RESP_INBOX = 1000;
export const MAX_JUSTIFICATION = 4096;
/**
 * Polo scores are kept within ±(2^53−1). The reference stores a Go int and converts the JSON
 * float with int(), which is undefined beyond int64 range; past 2^53 a JS number no longer holds
 * an exact integer, and PostgreSQL's BIGINT column would reject ±1e308 where SQLite silently
 * stored a REAL — clamping gives the same answer on both stores and exact integers on the wire.
 */
export const POLO_MAX = Number.MAX_SAFE_INTEGER;
const clampPolo = (v: number) => (v > POLO_MAX ? POLO_MAX : v < -POLO_MAX ? -POLO_MAX : v);
/**
 * U+0000 cannot be stored in a PostgreSQL text column (SQLite can), so owners and justifications
 * carrying it are refused with a typed error on every store instead of failing only on PostgreSQL.
 */
const hasNul = (s: string) => s.includes("\u0000");
export const FRESH_WINDOW_S = 120;

/** Sentinel of Registry.readOrWrite: the optimistic read found that a write is needed. */
const NEED_WRITE: unique symbol = Symbol("need_write");

export class RegError extends Error {
  constructor(readonly code: string, message: string) {
    super(message);
    this.name = "RegError";
  }
}
const fail = (code: string, msg: string): never => {
  throw new RegError(code, msg);
};

/** Per-connection state the handlers need. */
export interface ConnCtx {
  ip: string; // remote IP text, IPv4-mapped reduced to dotted IPv4
  port: number;
  pendingAddr: Map<number, string>;
  /** Set by subscribe: node IDs whose push events this connection receives. */
  subscribed: Set<number>;
  /** Set by a handler when the connection must be closed after the response is written. */
  closeAfter?: boolean;
  /** Set by a successful subscribe_replication: hub generation at snapshot export (§9.2). */
  replGen?: number;
}

export function newCtx(ip: string, port: number): ConnCtx {
  return { ip: normIp(ip), port, pendingAddr: new Map(), subscribed: new Set() };
}

export function normIp(ip: string): string {
  if (ip.startsWith("::ffff:") && ip.includes(".")) return ip.slice(7);
  return ip;
}

// ------------------------------------------------------------------ value conversion (§1.3)

export function u32(v: unknown): number {
  return typeof v === "number" && v >= 0 && v <= 4294967295 ? Math.trunc(v) : 0;
}
function u16(v: unknown): number {
  return typeof v === "number" && v >= 0 && v <= 65535 ? Math.trunc(v) : 0;
}
function str(v: unknown): string {
  return typeof v === "string" ? v : "";
}
function bool(v: unknown): boolean {
  return v === true;
}

const B64_RE = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
/** Strict standard base64 with padding; returns null if invalid. */
export function b64decode(s: string): Uint8Array | null {
  if (!B64_RE.test(s)) return null;
  return new Uint8Array(Buffer.from(s, "base64"));
}
const b64 = (b: Uint8Array) => Buffer.from(b).toString("base64");

/** Virtual address text (wire.md §1.2). */
export function addrText(net: number, node: number): string {
  const h = (x: number) => x.toString(16).toUpperCase().padStart(4, "0");
  return `${net}:${h(net)}.${h(node >>> 16)}.${h(node & 0xffff)}`;
}

const HOST_RE = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
const RESERVED = new Set(["localhost", "backbone", "broadcast"]);
export function validateHostname(h: string): string | null {
  if (h === "") return null;
  if (h.length > 63) return `hostname too long (${h.length} > 63)`;
  if (!HOST_RE.test(h)) return `hostname ${JSON.stringify(h)} must be lower-case letters, digits and hyphens, starting and ending alphanumeric`;
  if (RESERVED.has(h)) return `hostname ${JSON.stringify(h)} is reserved`;
  return null;
}
const TAG_RE = /^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$/;

/** Stored endpoint = TCP source IP + port of listen_addr (§5.1.2). */
export function sanitizeListenAddr(listen: string, ip: string, port: number): string {
  const host = ip.includes(":") ? `[${ip}]` : ip;
  if (listen === "") return `${host}:${port}`;
  const i = listen.lastIndexOf(":");
  if (i < 0) return `${host}:${port}`;
  const h = listen.slice(0, i);
  if (h.startsWith("[") !== h.endsWith("]")) return `${host}:${port}`;
  if (!h.startsWith("[") && h.includes(":")) return `${host}:${port}`; // "too many colons"
  return `${host}:${listen.slice(i + 1)}`;
}
function hostOf(addr: string): string {
  const i = addr.lastIndexOf(":");
  const h = i < 0 ? addr : addr.slice(0, i);
  return h.startsWith("[") ? h.slice(1, -1) : h;
}

// ------------------------------------------------------------------ rate limiter (§6)

export class RateLimiter {
  private b = new Map<string, { tokens: number; last: number }>();
  constructor(private rate = 10, private windowMs = 60_000) {}
  static key(ip: string): string {
    if (!ip.includes(":")) return ip;
    // R12: IPv6 per /64.
    const full = ip.split("::");
    const head = full[0] ? full[0].split(":") : [];
    const tail = full.length > 1 && full[1] ? full[1].split(":") : [];
    const groups = [...head, ...new Array(Math.max(0, 8 - head.length - tail.length)).fill("0"), ...tail];
    return groups.slice(0, 4).join(":") + "::/64";
  }
  allow(ip: string, now = Date.now()): boolean {
    const k = RateLimiter.key(ip);
    const e = this.b.get(k);
    if (!e) {
      this.b.set(k, { tokens: this.rate - 1, last: now });
      return true;
    }
    e.tokens = Math.min(this.rate, e.tokens + (this.rate * (now - e.last)) / this.windowMs);
    e.last = now;
    if (e.tokens < 1) return false;
    e.tokens -= 1;
    return true;
  }
  cleanup(now = Date.now()): void {
    for (const [k, e] of this.b) if (now - e.last > 2 * this.windowMs) this.b.delete(k);
  }
}

// ------------------------------------------------------------------ metrics (§10)

const KNOWN_TYPES = new Set([
  "register", "rotate_key", "deregister", "heartbeat", "lookup", "resolve", "set_visibility", "set_hostname",
  "resolve_hostname", "report_trust", "revoke_trust", "request_handshake", "poll_handshakes", "respond_handshake",
  "punch", "list_networks", "list_nodes", "create_network", "join_network", "leave_network", "beacon_register",
  "beacon_list", "set_tags", "set_task_exec", "update_polo_score", "set_polo_score", "get_polo_score", "subscribe",
]);
const BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1];

export class Metrics {
  requests = new Map<string, number>();
  errors = new Map<string, number>();
  hist = new Map<string, Histogram>();
  registrations = 0;
  deregistrations = 0;
  trustReports = 0;
  trustRevocations = 0;
  handshakeRequests = 0;
  total = 0;
  readonly started = Date.now();

  observe(type: string, seconds: number, ok: boolean): void {
    const t = KNOWN_TYPES.has(type) ? type : "other";
    this.total++;
    this.requests.set(t, (this.requests.get(t) ?? 0) + 1);
    if (!ok) this.errors.set(t, (this.errors.get(t) ?? 0) + 1);
    let h = this.hist.get(t);
    if (!h) this.hist.set(t, (h = new Histogram(BUCKETS)));
    h.observe(seconds);
  }

  render(g: { online: number; total: number; trust: number; taskExec: number }): string {
    const w = new PromWriter();
    w.byLabel("pilot_requests_total", "counter", "Total registry requests by type.", "type", this.requests);
    w.byLabel("pilot_errors_total", "counter", "Total registry errors by type.", "type", this.errors);
    w.histogram("pilot_request_duration_seconds", "Registry request duration.", [...this.hist].sort((a, b) => (a[0] < b[0] ? -1 : 1)).map(([k, h]) => [{ type: k }, h]));
    w.gauge("pilot_nodes_online", "Nodes seen within 3 minutes.", g.online);
    w.gauge("pilot_nodes_total", "Registered nodes.", g.total);
    w.gauge("pilot_trust_links", "Trust pairs.", g.trust);
    w.gauge("pilot_task_executors", "Nodes with task execution enabled.", g.taskExec);
    w.gauge("pilot_uptime_seconds", "Seconds since start.", Math.floor((Date.now() - this.started) / 1000));
    w.counter("pilot_registrations_total", "Successful registrations.", this.registrations);
    w.counter("pilot_deregistrations_total", "Deregistrations of existing nodes.", this.deregistrations);
    w.counter("pilot_trust_reports_total", "Trust reports.", this.trustReports);
    w.counter("pilot_trust_revocations_total", "Trust revocations.", this.trustRevocations);
    w.counter("pilot_handshake_requests_total", "Relayed handshake requests.", this.handshakeRequests);
    return w.text();
  }
}

// ------------------------------------------------------------------ registry

export interface RegistryOptions {
  /** Reference-identical bodies: `{"type":"error","error":"request failed"}`, no extension fields. */
  opaqueErrors?: boolean;
  /** Clock (ms) for tests. */
  now?: () => number;
  /** Disable the register rate limit (benchmarks). */
  noRateLimit?: boolean;
  /** Replication token (§3.3); empty = replication disabled ("replication not configured"). */
  replicationToken?: string;
  /** Standby mode (§9.4): only STANDBY_ALLOWED request types are served. */
  standby?: boolean;
  /** Logger for replication events. */
  log?: (lvl: "debug" | "info" | "warn" | "error", msg: string, attrs?: Record<string, unknown>) => void;
}

type Handler = (m: Record<string, unknown>, c: ConnCtx) => Promise<Record<string, unknown>>;

/** Requests whose fresh signature the optimistic read path already consumed (see verify()). */
const consumed = new WeakSet<Record<string, unknown>>();

export class Registry {
  readonly metrics = new Metrics();
  readonly limiter = new RateLimiter();
  private beacons = new Map<number, { addr: string; seen: number }>();
  private freshSeen = new Map<string, number>(); // fresh-signature replay cache: sig -> expiry ms
  private handlers: Record<string, Handler>;
  private now: () => number;
  /** Replication push hub (primary side of §9); always present, idle without subscribers. */
  readonly replication: ReplicationHub;
  private replToken: TokenChecker;
  /** Standby mode (§9.4). Mutable so an operator tool could promote in-process. */
  standby: boolean;
  /** Set by startRendezvous in standby mode: follower state for /metrics. */
  standbyInfo?: () => { connected: boolean; snapshots: number };

  constructor(readonly store: Store, readonly opts: RegistryOptions = {}) {
    this.now = opts.now ?? Date.now;
    this.replication = new ReplicationHub(store, opts.log);
    this.replToken = new TokenChecker(opts.replicationToken ?? "");
    this.standby = !!opts.standby;
    const h: Record<string, Handler> = {
      register: (m, c) => this.register(m, c),
      rotate_key: (m, c) => this.rotateKey(m, c),
      deregister: (m, c) => this.deregister(m, c),
      heartbeat: (m, c) => this.heartbeat(m, c),
      lookup: (m) => this.lookup(m),
      resolve: (m, c) => this.resolve(m, c),
      set_visibility: (m, c) => this.setVisibility(m, c),
      set_hostname: (m, c) => this.setHostname(m, c),
      resolve_hostname: (m) => this.resolveHostname(m),
      report_trust: (m, c) => this.reportTrust(m, c),
      revoke_trust: (m, c) => this.revokeTrust(m, c),
      request_handshake: (m, c) => this.requestHandshake(m, c),
      poll_handshakes: (m, c) => this.pollHandshakes(m, c),
      respond_handshake: (m, c) => this.respondHandshake(m, c),
      punch: (m, c) => this.punch(m, c),
      list_networks: () => this.listNetworks(),
      list_nodes: (m) => this.listNodes(m),
      create_network: async () => fail("disabled", "custom networks are disabled in this version"),
      join_network: async () => fail("disabled", "custom networks are disabled in this version"),
      leave_network: async () => fail("disabled", "custom networks are disabled in this version"),
      beacon_register: async (m) => this.beaconRegister(m),
      beacon_list: async () => this.beaconList(),
      set_tags: (m, c) => this.setTags(m, c),
      set_task_exec: (m, c) => this.setTaskExec(m, c),
      update_polo_score: (m) => this.polo(m, "update"),
      set_polo_score: (m) => this.polo(m, "set"),
      get_polo_score: (m) => this.polo(m, "get"),
      subscribe: (m, c) => this.subscribe(m, c),
    };
    this.handlers = h;
  }

  /** Process one decoded request object; always returns a response object. */
  async handle(msg: Record<string, unknown> | null, ctx: ConnCtx): Promise<Record<string, unknown>> {
    const m = msg ?? {};
    const type = typeof m.type === "string" ? m.type : "";
    if (type === "subscribe_replication") return this.subscribeReplication(m, ctx);
    const t0 = performance.now();
    let res: Record<string, unknown>;
    let ok = true;
    const h = Object.prototype.hasOwnProperty.call(this.handlers, type) ? this.handlers[type] : undefined;
    try {
      if (!h) fail("unknown_type", `unknown message type ${JSON.stringify(type)}`);
      // §4: count, then the standby gate, then dispatch. Reference wire form of the refusal is
      // the generic error (opaqueErrors: "request failed"); the specific text is R30.
      if (this.standby && !STANDBY_ALLOWED.has(type)) fail("standby", `this registry is a read-only hot standby; send ${type} to the primary`);
      res = await h!(m, ctx);
    } catch (e) {
      ok = false;
      res = this.errorResponse(e);
    }
    this.metrics.observe(type, (performance.now() - t0) / 1000, ok);
    if (ok) {
      if (SAVING.has(type)) this.replication.markDirty();
      else if (type === "heartbeat") this.replication.markTouched();
    }
    return res;
  }

  /**
   * §9.2 subscription handshake (checked before normal dispatch, not counted in metrics, allowed
   * on standbys so they can be chained). The two refusal texts are MUST-match and the only error
   * texts the reference sends verbatim; the connection is closed after them. On success the
   * response IS the initial replication_snapshot and the server turns the connection into a push
   * stream (ctx.replGen set; server.ts attaches it to the hub).
   */
  private async subscribeReplication(m: Record<string, unknown>, ctx: ConnCtx): Promise<Record<string, unknown>> {
    if (!this.replToken.configured) {
      ctx.closeAfter = true;
      return { type: "error", error: "replication not configured" };
    }
    if (!this.replToken.check(m.token, ctx.ip)) {
      ctx.closeAfter = true;
      this.opts.log?.("warn", "replication subscription refused: invalid token", { ip: ctx.ip }); // token itself never logged
      return { type: "error", error: "invalid replication token" };
    }
    const gen = this.replication.gen;
    let frameDoc: Record<string, unknown>;
    try {
      frameDoc = await exportSnapshot(this.store);
    } catch {
      ctx.closeAfter = true;
      return { type: "error", error: "failed to generate snapshot" };
    }
    ctx.replGen = gen;
    return { type: "replication_snapshot", snapshot: frameDoc };
  }

  errorResponse(e: unknown): Record<string, unknown> {
    if (this.opts.opaqueErrors) return { type: "error", error: "request failed" };
    if (e instanceof RegError) return { type: "error", error: e.message, code: e.code };
    return { type: "error", error: "internal error", code: "internal" };
  }

  // ---------------------------------------------------------------- auth helpers

  private async live(t: Tx, id: number, what = "node"): Promise<NodeRec> {
    const n = id === 0 ? null : await t.getNode(id);
    if (!n) fail("not_found", `${what} ${id} not found`);
    return n!;
  }

  /**
   * §3.1 signature check, no side effects: shape, freshness window, strict mode, Ed25519.
   * Returns whether the signature is of the timestamped (fresh) form.
   */
  private checkSig(node: NodeRec, challenge: string, m: Record<string, unknown>, sigText: string): boolean {
    if (!sigText) fail("signature_required", `signature required for ${challenge.split(":")[0]}`);
    const sig = b64decode(sigText);
    if (!sig || sig.length !== 64) fail("bad_signature", "signature is not 64 bytes of standard base64");
    const pub = b64decode(node.publicKey);
    if (!pub || pub.length !== 32) fail("bad_signature", "node has no usable public key"); // R26/R21
    let msgText = challenge;
    const fresh = typeof m.ts === "number";
    if (fresh) {
      const ts = m.ts as number;
      // `ts` = Unix milliseconds (clients keep it strictly increasing so that two identical
      // requests in the same millisecond still get distinct, non-replayable signatures).
      if (Math.abs(this.now() - ts) > FRESH_WINDOW_S * 1000) fail("stale_signature", "signature timestamp outside ±120 s");
      msgText = `${challenge}:${Math.trunc(ts)}`;
    } else if (node.strict) {
      fail("fresh_signature_required", "this node uses timestamped signatures; plain signatures are refused (replay protection)");
    }
    let ok = false;
    try {
      ok = verifyEd25519(sig!, new TextEncoder().encode(msgText), pub!, node.publicKey);
    } catch {
      ok = false;
    }
    if (!ok) fail("bad_signature", "signature verification failed");
    return fresh;
  }

  /** Fresh-signature replay check; records the signature as used (in memory, per process). */
  private useFresh(sigText: string): void {
    const now = this.now();
    if ((this.freshSeen.get(sigText) ?? 0) > now) fail("replayed_signature", "signature already used");
    this.freshSeen.set(sigText, now + 2 * FRESH_WINDOW_S * 1000);
    if (this.freshSeen.size > 100_000) for (const [k, exp] of this.freshSeen) if (exp <= now) this.freshSeen.delete(k);
  }

  /** §3.1 verification plus the fresh-signature extension (R3) and pending-endpoint commit (R2). */
  private async verify(t: Tx, node: NodeRec, challenge: string, m: Record<string, unknown>, ctx: ConnCtx): Promise<void> {
    const sigText = str(m.signature);
    const fresh = this.checkSig(node, challenge, m, sigText);
    let dirty = false;
    if (fresh) {
      // The optimistic read path may already have consumed this request's signature before it
      // found that a write is needed (e.g. poll_handshakes with a non-empty inbox); the same
      // request must not then be refused as its own replay.
      if (!consumed.has(m)) this.useFresh(sigText);
      consumed.delete(m);
      if (!node.strict) { node.strict = true; dirty = true; }
    }
    const pend = ctx.pendingAddr.get(node.id);
    if (pend !== undefined) {
      ctx.pendingAddr.delete(node.id);
      node.realAddr = pend;
      node.lastSeen = this.now();
      dirty = true;
    }
    if (dirty) await t.putNode(node);
  }

  /**
   * verify() for the optimistic read path (no write lock held): performs exactly verify()'s
   * checks and throws the same errors, but if verify() would have written the node (first
   * timestamped signature → strict flag, or a pending endpoint on this connection, R2/R3) it
   * returns false WITHOUT any side effect (the fresh signature is not consumed), so the caller
   * can rerun the whole request under Store.tx, where verify() re-reads the node and re-decides.
   * Returns true when the request is verified and needs no write (the fresh signature, if any,
   * is then consumed here; that cache is process memory, not the store).
   */
  private verifyNoWrite(node: NodeRec, challenge: string, m: Record<string, unknown>, ctx: ConnCtx): boolean {
    const sigText = str(m.signature);
    const fresh = this.checkSig(node, challenge, m, sigText);
    if ((fresh && !node.strict) || ctx.pendingAddr.has(node.id)) return false;
    if (fresh) {
      this.useFresh(sigText);
      consumed.add(m); // see verify(): a locked retry of this same request must not count it twice
    }
    return true;
  }

  /**
   * Read-mostly requests (resolve, punch, poll_handshakes with an empty inbox, heartbeat whose
   * only write is last_seen): run `fast` as a
   * plain read (Store.read: no write lock — on PostgreSQL no advisory lock and no transaction, so
   * these requests no longer serialise against every writer of every process). `fast` returns
   * NEED_WRITE when the request turns out to need a write; the request is then redone from
   * scratch by `slow` inside Store.tx, which re-reads everything under the lock (no decision made
   * on the unlocked read survives into the write). A read-path answer is one the serialised
   * version could have given at some instant during the request: committed state only.
   */
  private async readOrWrite<T>(fast: (t: Tx) => Promise<T | typeof NEED_WRITE>, slow: (t: Tx) => Promise<T>): Promise<T> {
    const r = await this.store.read(fast);
    return r === NEED_WRITE ? this.store.tx(slow) : (r as T);
  }

  private async canResolve(t: Tx, requester: NodeRec, target: NodeRec): Promise<boolean> {
    if (target.public) return true;
    if (await t.grantHas(target.id, requester.id)) return true;
    for (const n of target.networks) if (n !== 0 && requester.networks.includes(n)) return true;
    return false;
  }

  private freshNode(id: number, key: string, owner: string, addr: string, seq: number): NodeRec {
    return {
      id, owner, publicKey: key, realAddr: addr, networks: [0], public: false, lastSeen: this.now(), hostname: "",
      tags: [], polo: 0, taskExec: false, seq, strict: false,
    };
  }

  // ---------------------------------------------------------------- handlers

  private async register(m: Record<string, unknown>, ctx: ConnCtx) {
    const allowed = this.opts.noRateLimit ? true : this.limiter.allow(ctx.ip, this.now());
    const keyText = str(m.public_key);
    if (!keyText) fail("public_key_required", "public_key is required (keys are generated by the client)");
    const hostname = str(m.hostname);
    const hostErr = validateHostname(hostname);
    const keyBytes = b64decode(keyText);
    if (!keyBytes || keyBytes.length !== 32) fail("bad_public_key", "public_key must be standard base64 of 32 bytes");
    const K = b64(keyBytes!); // R10: canonical form
    const owner = str(m.owner);
    if (hasNul(owner)) fail("invalid_owner", "owner must not contain U+0000");
    const addr = sanitizeListenAddr(str(m.listen_addr), ctx.ip, ctx.port);
    const now = this.now();
    const res = await this.store.tx(async (t) => {
      let id = await t.keyGet(K);
      if (!allowed && id === null) fail("rate_limited", "too many registrations from this address; retry later");
      let node: NodeRec | null = null;
      if (id !== null) {
        node = await t.getNode(id);
        if (node && node.publicKey !== K) {
          // R5: stale index entry (node was reclaimed with another key): ignore it.
          await t.keyDelete(K);
          id = null;
          node = null;
        }
      }
      if (id !== null && node) {
        // Case A1.
        const sameIp = hostOf(node.realAddr) === ctx.ip;
        if (sameIp || now - node.lastSeen > STALE_MS) {
          node.realAddr = addr;
          node.lastSeen = now;
          ctx.pendingAddr.delete(id);
        } else {
          ctx.pendingAddr.set(id, addr); // R2: applied after a signed request on this connection
        }
        if (owner && !node.owner && sameIp) {
          node.owner = owner;
          await t.ownerSet(owner, id);
        }
      } else if (id !== null) {
        // Case A2: recreate.
        node = this.freshNode(id, K, owner, addr, await t.nextSeq());
        if (owner) await t.ownerSet(owner, id);
      } else {
        const oid = owner ? await t.ownerGet(owner) : null;
        const onode = oid !== null ? await t.getNode(oid) : null;
        if (oid !== null && !onode) {
          // Case B2: owner recovery of a dead node.
          id = oid;
          await t.keySet(K, id);
          node = this.freshNode(id, K, owner, addr, await t.nextSeq());
        } else {
          // Case C (and B1, which the reference answered by replacing a live node's key: R2).
          id = await t.allocNodeId();
          await t.keySet(K, id);
          if (owner && oid === null) await t.ownerSet(owner, id);
          node = this.freshNode(id, K, owner, addr, await t.nextSeq());
        }
      }
      const out: Record<string, unknown> = {
        type: "register_ok", node_id: id, network_id: 0, address: addrText(0, id!), public_key: keyText,
        // Extension advertisement (ignored by reference clients): this server accepts `subscribe`
        // and timestamped signatures.
        extensions: this.opts.opaqueErrors ? undefined : ["push", "fresh_signatures"],
      };
      if (hostErr) out.hostname_error = hostErr;
      else if (hostname) {
        const holder = await t.nodeByHostname(hostname);
        if (holder === null || holder === id) {
          node!.hostname = hostname;
          out.hostname = hostname;
        } else {
          out.hostname_error = `hostname ${JSON.stringify(hostname)} is already taken`; // R27 (extra field, ignored by reference clients)
        }
      }
      await t.putNode(node!);
      return out;
    });
    this.metrics.registrations++;
    return res;
  }

  private async rotateKey(m: Record<string, unknown>, ctx: ConnCtx) {
    const id = u32(m.node_id);
    if (!str(m.signature)) fail("signature_required", "signature required for rotate_key");
    const nk = str(m.new_public_key);
    const nkb = b64decode(nk);
    if (!nkb || nkb.length !== 32) fail("bad_public_key", "new_public_key must be standard base64 of 32 bytes");
    const K = b64(nkb!);
    return this.store.tx(async (t) => {
      const node = await this.live(t, id);
      await this.verify(t, node, `rotate:${id}`, m, ctx);
      const holder = await t.keyGet(K);
      if (holder !== null && holder !== id) fail("key_in_use", "new_public_key is already registered to another node"); // R6
      await t.keyDelete(node.publicKey);
      node.publicKey = K;
      node.lastSeen = this.now();
      await t.keySet(K, id);
      await t.putNode(node);
      return { type: "rotate_key_ok", node_id: id, address: addrText(0, id), public_key: nk };
    });
  }

  private async deregister(m: Record<string, unknown>, ctx: ConnCtx) {
    const id = u32(m.node_id);
    const existed = await this.store.tx(async (t) => {
      const node = id === 0 ? null : await t.getNode(id);
      if (!node) return false;
      await this.verify(t, node, `deregister:${id}`, m, ctx);
      for (const n of node.networks) {
        if (n === 0) continue;
        const net = await t.network(n);
        if (net) { net.members = net.members.filter((x) => x !== id); await t.putNetwork(net); }
      }
      await t.deleteNode(id);
      return true;
    });
    if (existed) this.metrics.deregistrations++;
    return { type: "deregister_ok" };
  }

  private async heartbeat(m: Record<string, unknown>, ctx: ConnCtx) {
    const id = u32(m.node_id);
    const now = this.now();
    const challenge = `heartbeat:${id}`;
    await this.readOrWrite(async (t) => {
      const node = await this.live(t, id);
      if (!this.verifyNoWrite(node, challenge, m, ctx)) return NEED_WRITE;
      // Only last_seen changes: one single-row UPDATE, committed before the reply (R17), needs no
      // global lock (store-pg.ts touchNode). If the node was deleted since it was read, the
      // heartbeat is ordered after the deletion, exactly as the serialised version would answer.
      if (!(await t.touchNode(id, now))) fail("not_found", `node ${id} not found`);
      return true;
    }, async (t) => {
      const node = await this.live(t, id);
      await this.verify(t, node, challenge, m, ctx);
      await t.touchNode(id, now);
      return true;
    });
    return { type: "heartbeat_ok", time: Math.floor(now / 1000) };
  }

  private async lookup(m: Record<string, unknown>) {
    const id = u32(m.node_id);
    const node = await this.store.read((t) => this.live(t, id));
    const out: Record<string, unknown> = {
      type: "lookup_ok", node_id: id, address: addrText(0, id), networks: node.networks, public_key: node.publicKey,
      public: node.public, polo_score: node.polo,
    };
    if (node.hostname) out.hostname = node.hostname;
    if (node.tags.length) out.tags = node.tags;
    if (node.taskExec) out.task_exec = true;
    if (node.public) out.real_addr = node.realAddr;
    return out;
  }

  private async resolve(m: Record<string, unknown>, ctx: ConnCtx) {
    const target = u32(m.node_id);
    const rid = u32(m.requester_id);
    const challenge = `resolve:${rid}:${target}`;
    const finish = async (t: Tx, req: NodeRec) => {
      const tn = await this.live(t, target);
      if (!(await this.canResolve(t, req, tn))) fail("private", `node ${target} is private and has not granted trust to ${rid}`);
      return { type: "resolve_ok", node_id: target, real_addr: tn.realAddr };
    };
    return this.readOrWrite(async (t) => {
      const req = await this.live(t, rid, "requester");
      if (!this.verifyNoWrite(req, challenge, m, ctx)) return NEED_WRITE;
      return finish(t, req);
    }, async (t) => {
      const req = await this.live(t, rid, "requester");
      await this.verify(t, req, challenge, m, ctx);
      return finish(t, req);
    });
  }

  private async setVisibility(m: Record<string, unknown>, ctx: ConnCtx) {
    const id = u32(m.node_id);
    const pub = bool(m.public);
    return this.store.tx(async (t) => {
      const node = await this.live(t, id);
      await this.verify(t, node, `set_visibility:${id}`, m, ctx);
      node.public = pub;
      await t.putNode(node);
      return { type: "set_visibility_ok", node_id: id, visibility: pub ? "public" : "private" };
    });
  }

  private async setHostname(m: Record<string, unknown>, ctx: ConnCtx) {
    const id = u32(m.node_id);
    const h = str(m.hostname);
    const err = validateHostname(h);
    if (err) fail("invalid_hostname", err);
    return this.store.tx(async (t) => {
      const node = await this.live(t, id);
      await this.verify(t, node, `set_hostname:${id}`, m, ctx);
      if (h) {
        const holder = await t.nodeByHostname(h);
        if (holder !== null && holder !== id) fail("hostname_taken", `hostname ${JSON.stringify(h)} is already taken`);
      }
      node.hostname = h;
      await t.putNode(node);
      return { type: "set_hostname_ok", node_id: id, hostname: h };
    });
  }

  private async resolveHostname(m: Record<string, unknown>) {
    const h = str(m.hostname);
    if (!h) fail("hostname_required", "hostname is required");
    return this.store.read(async (t) => {
      const id = await t.nodeByHostname(h);
      const node = id === null ? null : await t.getNode(id);
      if (!node) fail("not_found", `hostname ${JSON.stringify(h)} not found`);
      return { type: "resolve_hostname_ok", node_id: id, address: addrText(0, id!), public: node!.public, hostname: h };
    });
  }

  private async reportTrust(m: Record<string, unknown>, ctx: ConnCtx) {
    const id = u32(m.node_id);
    const peer = u32(m.peer_id);
    await this.store.tx(async (t) => {
      const node = await this.live(t, id);
      await this.live(t, peer, "peer");
      await this.verify(t, node, `report_trust:${id}:${peer}`, m, ctx);
      await t.grantAdd(id, peer);
    });
    this.metrics.trustReports++;
    return { type: "report_trust_ok" };
  }

  private async revokeTrust(m: Record<string, unknown>, ctx: ConnCtx) {
    const id = u32(m.node_id);
    const peer = u32(m.peer_id);
    await this.store.tx(async (t) => {
      const node = await this.live(t, id);
      await this.verify(t, node, `revoke_trust:${id}:${peer}`, m, ctx);
      if (!(await t.pairRemove(id, peer))) fail("no_trust_pair", `no trust pair between ${id} and ${peer}`);
    });
    this.metrics.trustRevocations++;
    return { type: "revoke_trust_ok" };
  }

  private async requestHandshake(m: Record<string, unknown>, ctx: ConnCtx) {
    const from = u32(m.from_node_id);
    const to = u32(m.to_node_id);
    const just = str(m.justification);
    if (just.length > MAX_JUSTIFICATION) fail("justification_too_long", `justification longer than ${MAX_JUSTIFICATION} characters`);
    if (hasNul(just)) fail("invalid_justification", "justification must not contain U+0000");
    const ts = this.now();
    await this.store.tx(async (t) => {
      const fn = await this.live(t, from, "requester");
      await this.live(t, to, "target");
      await this.verify(t, fn, `handshake:${from}:${to}`, m, ctx);
      if ((await t.inboxCount(to)) >= MAX_INBOX) fail("inbox_full", `handshake inbox of node ${to} is full`);
      if (await t.inboxHasFrom(to, from)) fail("already_pending", `a handshake request from ${from} to ${to} is already pending`);
      await t.inboxAdd(to, { from, justification: just, ts });
      await t.grantAdd(from, to); // the requester consents to being resolved by the target (R1)
    });
    this.metrics.handshakeRequests++;
    await this.store.publish({ node_id: to, event: "handshake_request", from_node_id: from, justification: just, timestamp: Math.floor(ts / 1000) });
    return { type: "request_handshake_ok", status: "delivered" };
  }

  private async pollHandshakes(m: Record<string, unknown>, ctx: ConnCtx) {
    const id = u32(m.node_id);
    const challenge = `poll_handshakes:${id}`;
    const r = await this.readOrWrite(async (t) => {
      const node = await this.live(t, id);
      if (!this.verifyNoWrite(node, challenge, m, ctx)) return NEED_WRITE;
      // Empty inboxes (the common case): nothing to take, so no write. Anything queued after
      // these reads is left for the next poll, as if this poll had run first.
      if ((await t.inboxCount(id)) !== 0 || (await t.respCount(id)) !== 0) return NEED_WRITE;
      return { requests: [], responses: [] };
    }, async (t) => {
      const node = await this.live(t, id);
      await this.verify(t, node, challenge, m, ctx);
      return t.inboxTake(id);
    });
    return {
      type: "poll_handshakes_ok",
      requests: r.requests.map((x) => ({ from_node_id: x.from, justification: x.justification, timestamp: Math.floor(x.ts / 1000) })),
      responses: r.responses.map((x) => ({ from_node_id: x.from, accept: x.accept, timestamp: Math.floor(x.ts / 1000) })),
    };
  }

  private async respondHandshake(m: Record<string, unknown>, ctx: ConnCtx) {
    const id = u32(m.node_id);
    const peer = u32(m.peer_id);
    const accept = bool(m.accept);
    const ts = this.now();
    await this.store.tx(async (t) => {
      const node = await this.live(t, id);
      await this.live(t, peer, "peer");
      await this.verify(t, node, `respond:${id}:${peer}`, m, ctx);
      if (accept) await t.grantAdd(id, peer);
      if ((await t.respCount(peer)) >= MAX_RESP_INBOX) fail("inbox_full", `response inbox of node ${peer} is full`);
      await t.respAdd(peer, { from: id, accept, ts });
    });
    await this.store.publish({ node_id: peer, event: "handshake_response", from_node_id: id, accept, timestamp: Math.floor(ts / 1000) });
    return { type: "respond_handshake_ok", accept, peer_id: peer };
  }

  private async punch(m: Record<string, unknown>, ctx: ConnCtx) {
    const rid = u32(m.requester_id);
    const a = u32(m.node_a);
    const b = u32(m.node_b);
    const challenge = `punch:${a}:${b}`;
    return this.readOrWrite(async (t) => {
      const req = await this.live(t, rid, "requester");
      if (rid !== a && rid !== b) fail("not_participant", "requester must be node_a or node_b");
      if (!this.verifyNoWrite(req, challenge, m, ctx)) return NEED_WRITE;
      return this.punchFinish(t, req, rid, a, b);
    }, async (t) => {
      const req = await this.live(t, rid, "requester");
      if (rid !== a && rid !== b) fail("not_participant", "requester must be node_a or node_b");
      await this.verify(t, req, challenge, m, ctx);
      return this.punchFinish(t, req, rid, a, b);
    });
  }

  private async punchFinish(t: Tx, req: NodeRec, rid: number, a: number, b: number) {
    const na = await this.live(t, a);
    const nb = await this.live(t, b);
    const other = rid === a ? nb : na;
    if (other.id !== rid && !(await this.canResolve(t, req, other))) fail("private", `node ${other.id} is private and has not granted trust to ${rid}`); // R1
    return { type: "punch_ok", node_a: a, node_a_addr: na.realAddr, node_b: b, node_b_addr: nb.realAddr };
  }

  private async listNetworks() {
    return this.store.read(async (t) => {
      const nets = await t.networks();
      const count = await t.nodeCount();
      return {
        type: "list_networks_ok",
        networks: nets.map((n) => ({ id: n.id, name: n.name, members: n.id === 0 ? count : n.members.length, join_rule: n.joinRule })),
      };
    });
  }

  private async listNodes(m: Record<string, unknown>) {
    const nid = u16(m.network_id);
    if (nid === 0) fail("forbidden", "listing the backbone is not allowed");
    return this.store.read(async (t) => {
      const net = await t.network(nid);
      if (!net) fail("not_found", `network ${nid} not found`);
      const nodes: Record<string, unknown>[] = [];
      for (const id of net!.members) {
        const n = await t.getNode(id);
        if (!n) continue;
        const o: Record<string, unknown> = { node_id: id, address: addrText(nid, id) };
        if (n.hostname) o.hostname = n.hostname;
        if (n.taskExec) o.task_exec = true;
        if (n.public) o.real_addr = n.realAddr;
        nodes.push(o);
      }
      return { type: "list_nodes_ok", nodes };
    });
  }

  private beaconRegister(m: Record<string, unknown>) {
    const id = u32(m.beacon_id);
    const addr = str(m.addr);
    if (id === 0) fail("bad_beacon_id", "beacon_id must be non-zero");
    if (!addr) fail("addr_required", "addr is required");
    if (this.beacons.size >= 1024 && !this.beacons.has(id)) fail("too_many_beacons", "beacon table full"); // R11
    this.beacons.set(id, { addr, seen: this.now() });
    return { type: "beacon_register_ok", beacon_id: id };
  }

  private beaconList() {
    const now = this.now();
    const beacons: { id: number; addr: string }[] = [];
    for (const [id, b] of this.beacons) if (now - b.seen <= BEACON_TTL_MS) beacons.push({ id, addr: b.addr });
    return { type: "beacon_list_ok", beacons };
  }

  private async setTags(m: Record<string, unknown>, ctx: ConnCtx) {
    const id = u32(m.node_id);
    const raw = Array.isArray(m.tags) ? (m.tags.filter((x) => typeof x === "string") as string[]) : [];
    const tags = raw.map((x) => (x.startsWith("#") ? x.slice(1) : x));
    if (tags.length > 10) fail("too_many_tags", "at most 10 tags");
    for (const tg of tags) if (!tg || tg.length > 32 || !TAG_RE.test(tg)) fail("invalid_tag", `invalid tag ${JSON.stringify(tg)}`);
    return this.store.tx(async (t) => {
      const node = await this.live(t, id);
      await this.verify(t, node, `set_tags:${id}`, m, ctx);
      node.tags = tags;
      await t.putNode(node);
      return { type: "set_tags_ok", node_id: id, tags: tags.length ? tags : null };
    });
  }

  private async setTaskExec(m: Record<string, unknown>, ctx: ConnCtx) {
    const id = u32(m.node_id);
    const en = bool(m.enabled);
    return this.store.tx(async (t) => {
      const node = await this.live(t, id);
      await this.verify(t, node, `set_task_exec:${id}`, m, ctx);
      node.taskExec = en;
      await t.putNode(node);
      return { type: "set_task_exec_ok", node_id: id, task_exec: en };
    });
  }

  private async polo(m: Record<string, unknown>, op: "update" | "set" | "get") {
    const id = u32(m.node_id);
    let v = 0;
    if (op !== "get") {
      const f = op === "update" ? m.delta : m.polo_score;
      if (typeof f !== "number") fail("bad_value", `${op === "update" ? "delta" : "polo_score"} must be a number`);
      v = Math.trunc(f as number);
    }
    const run = async (t: Tx) => {
      const node = await this.live(t, id);
      if (op !== "get") {
        node.polo = clampPolo(op === "update" ? node.polo + v : v);
        await t.putNode(node); // R4: last seen deliberately not refreshed
      }
      return { type: `${op}_polo_score_ok`, node_id: id, address: addrText(0, id), polo_score: node.polo };
    };
    return op === "get" ? this.store.read(run) : this.store.tx(run);
  }

  /**
   * Push extension. Request: {"type":"subscribe","node_id":N,"timestamp":T,"signature":sig("subscribe:N:T")}
   * (T = unix seconds, within ±120 s). Response: {"type":"subscribe_ok","node_id":N,"extensions":[...]}.
   * From then on the server may write unsolicited frames {"type":"push","event":...,"node_id":N,...}
   * on this connection, whenever a handshake request or response is queued for N (on any
   * process sharing the store). The inbox entry stays queued until poll_handshakes, so a lost push
   * loses nothing. Reference clients never send `subscribe`, so they never see pushes (§1.1 holds).
   * Clients must tell pushes from responses by `type === "push"` (no response has that type).
   */
  private async subscribe(m: Record<string, unknown>, ctx: ConnCtx) {
    const id = u32(m.node_id);
    const ts = typeof m.timestamp === "number" ? Math.trunc(m.timestamp) : NaN;
    if (!Number.isFinite(ts) || Math.abs(this.now() / 1000 - ts) > FRESH_WINDOW_S) fail("stale_signature", "timestamp missing or outside ±120 s");
    await this.store.tx(async (t) => {
      const node = await this.live(t, id);
      const { ts: _drop, ...rest } = m; // the challenge already carries the timestamp
      await this.verify(t, node, `subscribe:${id}:${ts}`, rest, ctx);
    });
    ctx.subscribed.add(id);
    return { type: "subscribe_ok", node_id: id, extensions: ["push", "fresh_signatures"] };
  }

  /** Beacon authorization hook (beacon.md B1): may `requester` learn `target`'s endpoint? */
  async mayResolve(requester: number, target: number): Promise<boolean> {
    if (requester === 0 || target === 0) return false;
    return this.store.read(async (t) => {
      const r = await t.getNode(requester);
      const tn = await t.getNode(target);
      return !!r && !!tn && (await this.canResolve(t, r, tn));
    });
  }

  // ---------------------------------------------------------------- housekeeping

  /** Reap nodes silent for > 3 min (§7). Returns the reaped IDs. */
  async reap(): Promise<number[]> {
    const before = this.now() - STALE_MS;
    const ids = await this.store.tx(async (t) => {
      const stale = await t.staleNodes(before);
      const reaped: number[] = [];
      for (const id of stale) {
        const n = await t.getNode(id);
        // Re-checked by the DELETE itself: a lock-free heartbeat (PostgreSQL) may have landed
        // since staleNodes() read the list; such a node is live and stays.
        if (!(await t.deleteStaleNode(id, before))) continue;
        if (n) for (const nid of n.networks) {
          if (nid === 0) continue;
          const net = await t.network(nid);
          if (net) { net.members = net.members.filter((x) => x !== id); await t.putNetwork(net); }
        }
        reaped.push(id);
      }
      return reaped;
    });
    if (ids.length) this.replication.markDirty();
    const now = this.now();
    for (const [id, b] of this.beacons) if (now - b.seen > BEACON_TTL_MS) this.beacons.delete(id);
    this.limiter.cleanup(now);
    return ids;
  }

  async gauges() {
    return this.store.read(async (t) => {
      const nodes = await t.allNodes();
      const cut = this.now() - STALE_MS;
      return {
        online: nodes.filter((n) => n.lastSeen >= cut).length,
        total: nodes.length,
        trust: await t.pairCount(),
        taskExec: nodes.filter((n) => n.taskExec).length,
      };
    });
  }

  async stats() {
    return this.store.read(async (t) => {
      const nodes = await t.allNodes();
      const cut = this.now() - STALE_MS;
      const pairs = await t.pairs();
      const live = new Set(nodes.map((n) => n.id));
      const links = new Map<number, number>();
      const edges: { source: string; target: string }[] = [];
      for (const [a, b] of pairs) {
        links.set(a, (links.get(a) ?? 0) + 1);
        links.set(b, (links.get(b) ?? 0) + 1);
        if (live.has(a) && live.has(b)) edges.push({ source: addrText(0, a), target: addrText(0, b) });
      }
      const tags = new Set<string>();
      for (const n of nodes) for (const tg of n.tags) tags.add(tg);
      const nets = await t.networks();
      return {
        total_nodes: nodes.length,
        active_nodes: nodes.filter((n) => n.lastSeen >= cut).length,
        total_trust_links: pairs.length,
        total_requests: this.metrics.total,
        unique_tags: tags.size,
        task_executors: nodes.filter((n) => n.taskExec).length,
        uptime_secs: Math.floor((Date.now() - this.metrics.started) / 1000),
        networks: nets.map((n) => {
          const mem = n.id === 0 ? nodes : nodes.filter((x) => n.members.includes(x.id));
          return { id: n.id, name: n.name, members: mem.length, online_members: mem.filter((x) => x.lastSeen >= cut).length };
        }),
        nodes: nodes
          .map((n) => ({ address: addrText(n.networks[0] ?? 0, n.id), tags: n.tags, online: n.lastSeen >= cut, trust_links: links.get(n.id) ?? 0, task_exec: n.taskExec, polo_score: n.polo }))
          .sort((a, b) => (a.address < b.address ? -1 : a.address > b.address ? 1 : 0)),
        edges,
      };
    });
  }
}

/** Publish a push event to the subscribed local connections. */
export type PushSink = (ev: PushEvent) => void;

// ------------------------------------------------------------------ snapshot import (§8.1, §8.4)

/**
 * Import the reference's JSON snapshot document into an empty store (first start). Validates on
 * load (R21): nodes with undecodable or non-32-byte keys are skipped, counters are clamped to ≥ 1
 * and above every imported ID, and the backbone is ensured. Trust pairs become grants in both
 * directions (the reference's pairs were symmetric).
 */
export async function importSnapshot(store: Store, doc: any): Promise<{ nodes: number; pairs: number }> {
  if (!doc || typeof doc !== "object" || Array.isArray(doc)) throw new RegError("bad_snapshot", "snapshot is not a JSON object");
  return store.tx((t) => importSnapshotTx(t, doc));
}

/**
 * The import itself, inside the caller's transaction (also used by a standby to apply a
 * replicated snapshot after Tx.wipe(), registry.md §9.4). Besides the §8.1 fields it reads the
 * extension fields written by replication.ts exportSnapshot (ignored by reference standbys, which
 * decode into fixed Go structs): `trust_grants` (directional R1 grants "grantor>grantee"; when
 * present they replace the symmetric `trust_pairs`), `owner_idx` (owner bindings of non-live
 * nodes, R17) and the node flag `strict` (R3 fresh-signature mode).
 */
export async function importSnapshotTx(t: Tx, doc: any): Promise<{ nodes: number; pairs: number }> {
  if (!doc || typeof doc !== "object" || Array.isArray(doc)) throw new RegError("bad_snapshot", "snapshot is not a JSON object");
  let nNodes = 0, nPairs = 0;
  const nodesObj = doc.nodes && typeof doc.nodes === "object" ? doc.nodes : {};
  let maxId = 0;
  let seq = 0;
  const bb = doc.networks?.["0"]?.members;
  const order: number[] = Array.isArray(bb) ? bb.map(u32) : [];
  const ordered = Object.values(nodesObj) as any[];
  ordered.sort((a, b) => {
    const ia = order.indexOf(u32(a?.id)), ib = order.indexOf(u32(b?.id));
    return (ia < 0 ? 1e12 : ia) - (ib < 0 ? 1e12 : ib) || u32(a?.id) - u32(b?.id);
  });
  for (const r of ordered) {
    const id = u32(r?.id);
    const kb = b64decode(str(r?.public_key));
    if (id === 0 || !kb || kb.length !== 32) continue;
    const K = b64(kb);
    const ls = Date.parse(str(r.last_seen));
    let hostname = str(r.hostname);
    if (validateHostname(hostname) || (hostname && (await t.nodeByHostname(hostname)) !== null)) hostname = "";
    const node: NodeRec = {
      id, owner: str(r.owner).replaceAll("\u0000", ""), publicKey: K, realAddr: str(r.real_addr),
      networks: Array.isArray(r.networks) ? r.networks.map(u16) : [0], public: bool(r.public),
      lastSeen: Number.isFinite(ls) ? ls : Date.now(), hostname,
      tags: Array.isArray(r.tags) ? r.tags.filter((x: unknown) => typeof x === "string") : [],
      polo: typeof r.polo_score === "number" ? clampPolo(Math.trunc(r.polo_score)) : 0, taskExec: bool(r.task_exec), seq: ++seq, strict: bool(r.strict),
    };
    if (!node.networks.includes(0)) node.networks.unshift(0);
    await t.putNode(node);
    await t.keySet(K, id);
    if (node.owner) await t.ownerSet(node.owner, id);
    maxId = Math.max(maxId, id);
    nNodes++;
  }
  if (doc.pub_key_idx && typeof doc.pub_key_idx === "object") {
    for (const [k, v] of Object.entries(doc.pub_key_idx)) {
      const kb = b64decode(k);
      const id = u32(v);
      if (!kb || kb.length !== 32 || id === 0) continue;
      const K = b64(kb);
      if ((await t.keyGet(K)) === null) await t.keySet(K, id);
      maxId = Math.max(maxId, id);
    }
  }
  if (doc.owner_idx && typeof doc.owner_idx === "object" && !Array.isArray(doc.owner_idx)) {
    for (const [o, v] of Object.entries(doc.owner_idx)) {
      const id = u32(v);
      if (o && !hasNul(o) && id !== 0 && (await t.ownerGet(o)) === null) await t.ownerSet(o, id);
    }
  }
  if (Array.isArray(doc.trust_grants)) {
    for (const p of doc.trust_grants) {
      const mm = /^(\d+)>(\d+)$/.exec(str(p));
      if (!mm) continue;
      await t.grantAdd(Number(mm[1]), Number(mm[2]));
      nPairs++;
    }
  } else if (Array.isArray(doc.trust_pairs)) {
    for (const p of doc.trust_pairs) {
      const mm = /^(\d+):(\d+)$/.exec(str(p));
      if (!mm) continue;
      const a = Number(mm[1]), b = Number(mm[2]);
      await t.grantAdd(a, b);
      await t.grantAdd(b, a);
      nPairs++;
    }
  }
  if (doc.networks && typeof doc.networks === "object") {
    for (const n of Object.values(doc.networks) as any[]) {
      const id = u16(n?.id);
      if (id === 0) continue;
      const c = Date.parse(str(n.created));
      await t.putNetwork({ id, name: str(n.name), joinRule: str(n.join_rule) || "open", token: str(n.token), members: Array.isArray(n.members) ? n.members.map(u32) : [], created: Number.isFinite(c) ? c : 0 });
    }
  }
  // Sequential (the SQLite tx is synchronous underneath; order preserved by array order).
  for (const [k, arr] of Object.entries(doc.handshake_inbox ?? {})) {
    if (!(Number(k) > 0) || !Array.isArray(arr)) continue;
    for (const e of arr) {
      const ts = Date.parse(str(e?.timestamp));
      await t.inboxAdd(Number(k), { from: u32(e?.from_node_id), justification: str(e?.justification).replaceAll("\u0000", ""), ts: Number.isFinite(ts) ? ts : Date.now() });
    }
  }
  for (const [k, arr] of Object.entries(doc.handshake_responses ?? {})) {
    if (!(Number(k) > 0) || !Array.isArray(arr)) continue;
    for (const e of arr) {
      const ts = Date.parse(str(e?.timestamp));
      await t.respAdd(Number(k), { from: u32(e?.from_node_id), accept: bool(e?.accept), ts: Number.isFinite(ts) ? ts : Date.now() });
    }
  }
  await t.bumpNextNode(Math.max(u32(doc.next_node), maxId + 1, 1));
  // Keep the backbone-order counter above every imported node (a fresh registration after an
  // import must sort after the imported nodes) and carry next_net over.
  const c = await t.counters();
  await t.setCounters({ nextNode: c.nextNode, nextNet: Math.max(c.nextNet, u16(doc.next_net), 1), seq: Math.max(c.seq, seq + 1) });
  return { nodes: nNodes, pairs: nPairs };
}
