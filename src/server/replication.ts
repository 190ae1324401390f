// Hot-standby replication (docs/protocol.md §8), wire-compatible with reference primaries/standbys.
//
// Primary side (ReplicationHub): `subscribe_replication` + token (checked in Registry.handle) turns
// a registry connection into a one-way push stream of
//   {"type":"replication_snapshot","snapshot":{<docs/protocol.md §8.5 document>}}   after state changes (≤ 1/s)
//   {"type":"heartbeat"}                                           every 15 s
// Standby side (StandbyClient): dial the primary, subscribe, replace the local store's state with
// every snapshot received, reconnect with backoff when the stream ends.
//
// Fixes of the reference's replication Observations, all invisible on the wire:
// * R20/§9.3: the reference's *initial* snapshot omitted tags, polo scores, task-exec flags and the
//   key index, and a save racing with the subscription was never sent. Every snapshot here
//   (initial or pushed) is produced by the same full export, and a subscriber that joins while a
//   change is being committed gets an extra push (generation check in attach()).
// * R20: the reference primary dropped every subscriber after 60 s without inbound bytes (reference
//   standbys never write), forcing a full re-sync every ~63 s. This primary does not time out
//   subscribers on silence; dead ones are detected by write failure / a write backlog older than
//   10 s (the reference's snapshot write deadline) and TCP keepalive. This standby still sends one
//   filler byte every 20 s so that a *reference* primary keeps it too (docs/protocol.md §8 allows it).
// * R20: the standby does not reap on its own clock (its last-seen values only advance when the
//   primary pushes); reaping is the primary's job and arrives as a snapshot. startRendezvous skips
//   the reap tick in standby mode. The primary also pushes a heartbeat-only change at most every
//   30 s so the standby's last-seen values (and thus a promoted standby) stay current.
// * Standby keeps tags/polo/task-exec/key index (the reference standby dropped them, R20) and the
//   directional trust grants of R1 (extension field `trust_grants`), so a promoted standby
//   enforces the same endpoint privacy as the primary.
// * docs/protocol.md §5.2: the token is compared in constant time over SHA-256 digests (no length leak either), and
//   repeated wrong tokens from one IP are throttled (20 per minute) so the token cannot be
//   brute-forced; the token is never logged. The snapshot (all endpoints, owners, trust graph) is
//   only ever written after a successful token check.
import { createHash, timingSafeEqual } from "node:crypto";
import { MAX_FRAME, encodeFrame } from "../proto/framing.ts";
import { registryJsonCodec } from "../proto/registry-frames.ts";
import { goJsonBytes } from "../proto/gojson.ts";
import { REPLICATION_HEARTBEAT, REPLICATION_SNAPSHOT, REPL_SNAPSHOT_FAILED, type OutgoingRequest } from "../proto/registry.ts";
import { applySnapshot, exportSnapshot } from "./snapshot.ts";
export { applySnapshot, exportSnapshot } from "./snapshot.ts";
import { RegError } from "./validate.ts";
import type { Store } from "./store.ts";
import { type LogFn, noLogger } from "../sys/log.ts";
import { parseHostPort } from "../sys/hostport.ts";
import { type CloseReason, type FramedConn, dialFramed } from "../sys/framed-conn.ts";
import type { DialError } from "../sys/tcp-dial.ts";

export const REPL_SAVE_INTERVAL_MS = 1000; // docs/protocol.md §8.5 coalescing
export const REPL_HEARTBEAT_MS = 15_000; // docs/protocol.md §8
export const REPL_WRITE_DEADLINE_MS = 10_000; // docs/protocol.md §8 (snapshot write deadline)
export const REPL_TOUCH_PUSH_MS = 30_000; // heartbeat-only changes pushed at most this often
export const STANDBY_READ_DEADLINE_S = 45; // docs/protocol.md §8
export const STANDBY_DIAL_TIMEOUT_MS = 10_000; // docs/protocol.md §8
export const STANDBY_FILLER_MS = 20_000; // docs/protocol.md §8 "MAY send filler bytes"
/**
 * A lower bound of the bytes one live node adds to a snapshot document (measured: about 217 for
 * a minimal record with its key-index entry). Above MAX_FRAME / this many nodes the snapshot
 * certainly exceeds the frame limit, and a subscription is refused without exporting the state.
 */
export const SNAPSHOT_MIN_NODE_BYTES = 128;
export const SNAPSHOT_MAX_NODES = Math.floor(MAX_FRAME / SNAPSHOT_MIN_NODE_BYTES);
/** Why replication stopped, for logs on both sides: the way out is a shared PostgreSQL store. */
export const SNAPSHOT_TOO_LARGE_HINT =
  "hot-standby replication sends the whole registry in one frame of at most 1 MiB (about 4,800 nodes); " +
  "for larger registries run several rendezvous processes on one PostgreSQL store (-store postgres://...) " +
  "and use PostgreSQL's own replication for a standby copy";

type Log = LogFn;
/** One byte the primary discards, sent now and then so a reference primary keeps the stream. */
const FILLER = new Uint8Array([0x0a]);
const noLog: Log = noLogger;

// ------------------------------------------------------------------ token check (docs/protocol.md §5.2, §8)

const digest = (s: string) => createHash("sha256").update(s, "utf8").digest();

export class TokenChecker {
  private readonly want: Buffer | null;
  private fails = new Map<string, { n: number; since: number }>();
  constructor(token: string, private maxFails = 20, private windowMs = 60_000) {
    this.want = token ? digest(token) : null;
  }
  get configured(): boolean {
    return this.want !== null;
  }
  /** Constant-time comparison of digests; throttles IPs that keep presenting wrong tokens. */
  check(token: unknown, ip: string, now = Date.now()): boolean {
    if (!this.want) return false;
    const f = this.fails.get(ip);
    if (f && now - f.since > this.windowMs) this.fails.delete(ip);
    const got = digest(typeof token === "string" ? token : "");
    const ok = timingSafeEqual(got, this.want);
    const cur = this.fails.get(ip);
    if (cur && cur.n >= this.maxFails) return false; // throttled (answered like a wrong token)
    if (!ok) {
      if (cur) cur.n++;
      else {
        if (this.fails.size > 10_000) this.fails.clear();
        this.fails.set(ip, { n: 1, since: now });
      }
    }
    return ok;
  }
}

// ------------------------------------------------------------------ primary: push hub

/** One subscriber stream (a registry connection after a successful subscribe_replication). */
export interface ReplSubscriber {
  /** Queue a frame; returns false if the subscriber is dead or its backlog is older than the deadline. */
  send(frame: Uint8Array): boolean;
  close(): void;
}

export class ReplicationHub {
  private subs = new Set<ReplSubscriber>();
  private dirty = false;
  private touched = false;
  private lastPush = 0;
  private flushing = false;
  /** Incremented on every change; lets attach() detect a change racing with the initial snapshot. */
  gen = 0;
  private saveTimer: ReturnType<typeof setInterval> | null = null;
  private hbTimer: ReturnType<typeof setInterval> | null = null;
  pushes = 0;

  constructor(private store: Store, private log: Log = noLog) {}

  get subscriberCount(): number {
    return this.subs.size;
  }

  /** A saving mutation was committed (docs/protocol.md §8.5). */
  markDirty(): void {
    this.gen++;
    this.dirty = true;
    this.ensureTimers();
  }
  /** A non-saving change (heartbeat last-seen) was committed: pushed at most every 30 s. */
  markTouched(): void {
    this.touched = true;
  }

  /** Register a subscriber after its initial snapshot was written (gen = hub.gen before export). */
  attach(sub: ReplSubscriber, genAtExport: number): void {
    this.subs.add(sub);
    this.ensureTimers();
    if (this.gen !== genAtExport) this.dirty = true; // a change committed after the export: resend
    this.log("info", "replication subscriber attached", { subscribers: this.subs.size });
  }
  detach(sub: ReplSubscriber): void {
    if (this.subs.delete(sub)) this.log("info", "replication subscriber detached", { subscribers: this.subs.size });
  }

  private ensureTimers(): void {
    if (this.saveTimer || !this.subs.size) return;
    this.saveTimer = setInterval(() => void this.flush(), REPL_SAVE_INTERVAL_MS);
    this.hbTimer = setInterval(() => this.broadcast(encodeFrame(goJsonBytes({ type: REPLICATION_HEARTBEAT }))), REPL_HEARTBEAT_MS);
    (this.saveTimer as any).unref?.();
    (this.hbTimer as any).unref?.();
  }

  private broadcast(frame: Uint8Array): void {
    for (const s of this.subs) {
      if (!s.send(frame)) {
        this.subs.delete(s);
        s.close();
        this.log("warn", "replication subscriber dropped (write failed or backlog past deadline)", { subscribers: this.subs.size });
      }
    }
  }

  /** Build one snapshot frame (shared by all subscribers); null if it cannot be produced. */
  async snapshotFrame(): Promise<Uint8Array | null> {
    const doc = await exportSnapshot(this.store);
    const body = goJsonBytes({ type: REPLICATION_SNAPSHOT, snapshot: doc });
    if (body.length > MAX_FRAME) {
      // R14: a reference standby rejects frames above 1 MiB; do not send what it cannot read.
      this.log("error", "replication snapshot exceeds the 1 MiB frame limit; not sent", { bytes: body.length, hint: SNAPSHOT_TOO_LARGE_HINT });
      return null;
    }
    return encodeFrame(body);
  }

  /** Saver tick: push the current state if anything changed since the last push. */
  async flush(): Promise<void> {
    if (this.flushing) return;
    if (!this.subs.size) {
      if (this.saveTimer) { clearInterval(this.saveTimer); clearInterval(this.hbTimer!); this.saveTimer = this.hbTimer = null; }
      return;
    }
    const now = Date.now();
    if (!this.dirty && !(this.touched && now - this.lastPush >= REPL_TOUCH_PUSH_MS)) return;
    this.flushing = true;
    this.dirty = false;
    this.touched = false;
    this.lastPush = now;
    try {
      const frame = await this.snapshotFrame();
      if (frame) { this.broadcast(frame); this.pushes++; }
      else {
        // The state outgrew the frame: a standby kept on this stream would silently serve an
        // ever older copy. End the streams instead; resubscribing is refused with the error
        // reply (Registry.subscribeReplication), which our standby logs with the hint.
        for (const sub of this.subs) sub.close();
        this.subs.clear();
      }
    } catch (e) {
      this.log("error", "replication snapshot failed", { err: String(e) });
    } finally {
      this.flushing = false;
    }
  }

  stop(): void {
    if (this.saveTimer) clearInterval(this.saveTimer);
    if (this.hbTimer) clearInterval(this.hbTimer);
    this.saveTimer = this.hbTimer = null;
    for (const s of this.subs) s.close();
    this.subs.clear();
  }
}

// ------------------------------------------------------------------ standby: follower

export interface StandbyOptions {
  log?: Log;
  /** Reconnect backoff: first delay, doubling up to max (reference: flat 3 s). */
  minBackoffMs?: number;
  maxBackoffMs?: number;
  /** Dial the primary over TLS and pin its leaf certificate (lower-case hex SHA-256 of the DER). */
  tlsFingerprint?: string;
  /** Called after each applied snapshot (chaining: mark the local hub dirty). */
  onApplied?: (r: { nodes: number; pairs: number }) => void;
}

/**
 * Follows a primary (docs/protocol.md §8): dial (10 s timeout), send subscribe_replication, apply every
 * replication_snapshot, ignore heartbeat frames, 45 s read deadline, reconnect with backoff.
 * Snapshots arriving while one is being applied are coalesced (only the newest is applied).
 */
export class StandbyClient {
  private conn: FramedConn | null = null;
  private stopped = false;
  private backoff: number;
  private retryTimer: ReturnType<typeof setTimeout> | null = null;
  private fillerTimer: ReturnType<typeof setInterval> | null = null;
  private pending: unknown = undefined;
  private applying = false;
  private readonly log: Log;
  readonly host: string;
  readonly port: number;
  /** Observability (tests, /healthz). */
  connected = false;
  snapshots = 0;
  connects = 0;
  lastError = "";
  private waiters: (() => void)[] = [];

  constructor(readonly primary: string, private token: string, private store: Store, private opts: StandbyOptions = {}) {
    this.log = opts.log ?? noLog;
    this.backoff = opts.minBackoffMs ?? 500;
    const hp = parseHostPort(primary);
    if (!hp || hp.port === 0) throw new RegError("bad_address", `invalid standby primary address ${JSON.stringify(primary)}`);
    this.host = hp.host || "127.0.0.1";
    this.port = hp.port;
  }

  start(): void {
    this.stopped = false;
    this.dial();
  }

  /** Resolves after the next snapshot has been applied (tests). */
  nextApplied(): Promise<void> {
    return new Promise((r) => this.waiters.push(r));
  }

  private dial(): void {
    if (this.stopped) return;
    const self = this;
    dialFramed({
      host: this.host,
      port: this.port,
      // The reference standby could only dial plain TCP. With a pinned fingerprint this one
      // follows a TLS primary (same pin rule as daemons: lower-case hex SHA-256 of the leaf DER).
      pin: this.opts.tlsFingerprint || undefined,
      timeoutMs: STANDBY_DIAL_TIMEOUT_MS,
      codec: registryJsonCodec,
      idleTimeoutS: STANDBY_READ_DEADLINE_S,
      keepAliveMs: 15_000,
      ready(c) {
        if (self.stopped) {
          c.close("closed", "standby stopped", true);
          return;
        }
        self.subscribe(c);
      },
      onMessage(m, c) {
        self.onMessage(m, c);
      },
      onClose(r, c) {
        self.onClosed(r, c);
      },
    }).catch((e: DialError) => {
      self.lastError =
        e.code === "dial_timeout" ? "dial timeout"
        : e.code === "tls_pin_mismatch" ? `primary certificate fingerprint ${e.fingerprint || "(none)"} does not match the pinned one`
        : e.code === "tls_failed" ? e.message
        : `connect: ${e.message}`;
      self.scheduleRetry();
    });
  }

  private subscribe(c: FramedConn): void {
    this.conn = c;
    this.connects++;
    // The token field is omitted when empty.
    const req: OutgoingRequest<"subscribe_replication"> = { type: "subscribe_replication" };
    if (this.token) req.token = this.token;
    c.send(req);
    this.fillerTimer = setInterval(() => { try { this.conn?.sendRaw(FILLER); } catch {} }, STANDBY_FILLER_MS);
    (this.fillerTimer as any).unref?.();
    this.log("info", "standby connected to primary", { primary: this.primary, tls: !!this.opts.tlsFingerprint });
  }

  // A frame above 1 MiB, an empty frame or a body that is not JSON ends the stream (FramedConn
  // closes it with that reason, kept in lastError), like any dead stream.
  private onMessage(msg: unknown, c: FramedConn): void {
    if (this.conn !== c) return;
    if (!msg || typeof msg !== "object") return;
    const m = msg as { type?: unknown; error?: unknown; snapshot?: unknown };
    if (m.type === "heartbeat") return;
    if (m.type === REPLICATION_SNAPSHOT) {
      this.pending = m.snapshot;
      void this.applyLoop();
      return;
    }
    if (m.type === "error") {
      // "replication not configured" / "invalid replication token" / "failed to generate
      // snapshot": the primary closes next.
      this.lastError = String(m.error);
      const hint = m.error === REPL_SNAPSHOT_FAILED ? { hint: SNAPSHOT_TOO_LARGE_HINT } : {};
      this.log("error", "primary refused replication", { primary: this.primary, error: String(m.error), ...hint });
      return;
    }
    this.log("warn", "unexpected replication frame ignored", { type: String(m.type) });
  }

  private async applyLoop(): Promise<void> {
    if (this.applying) return;
    this.applying = true;
    try {
      while (this.pending !== undefined) {
        const doc = this.pending;
        this.pending = undefined;
        try {
          const r = await applySnapshot(this.store, doc);
          this.snapshots++;
          this.connected = true;
          this.backoff = this.opts.minBackoffMs ?? 500; // healthy stream: reset the backoff
          this.log("debug", "applied replication snapshot", { nodes: r.nodes });
          this.opts.onApplied?.(r);
          const w = this.waiters;
          this.waiters = [];
          for (const f of w) f();
        } catch (e) {
          this.lastError = String(e);
          this.log("error", "failed to apply replication snapshot", { err: String(e) });
        }
      }
    } finally {
      this.applying = false;
    }
  }

  private onClosed(r: CloseReason, c: FramedConn): void {
    if (this.conn !== c) return;
    this.conn = null;
    if (r.code === "idle_timeout") this.lastError = `read deadline (${STANDBY_READ_DEADLINE_S} s) exceeded`;
    else if (r.code !== "eof") this.lastError = r.message;
    this.connected = false;
    if (this.fillerTimer) { clearInterval(this.fillerTimer); this.fillerTimer = null; }
    if (!this.stopped) {
      this.log("warn", "replication stream ended; reconnecting", { primary: this.primary, err: this.lastError });
      this.scheduleRetry();
    }
  }

  private scheduleRetry(): void {
    if (this.stopped || this.retryTimer) return;
    const d = this.backoff;
    this.backoff = Math.min(this.backoff * 2, this.opts.maxBackoffMs ?? 3000);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.dial();
    }, d);
  }

  stop(): void {
    this.stopped = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    if (this.fillerTimer) clearInterval(this.fillerTimer);
    this.retryTimer = this.fillerTimer = null;
    const c = this.conn;
    this.conn = null;
    c?.close("closed", "standby stopped", true);
  }
}

