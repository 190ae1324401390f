// Registry client (docs/protocol.md §8.1, §8) used by the daemon and pilotctl.
//
// * One TCP (optionally TLS, pinned by SHA-256 of the leaf certificate DER, docs/protocol.md §8.1) connection.
// * Requests are pipelined: the server answers strictly in order (docs/protocol.md §8.1), so responses are matched
//   positionally with a FIFO. Frames with `type: "push"` are unsolicited pushes (extension, only
//   after subscribe()) and go to onPush handlers instead.
// * Connection failure: reconnect with backoff (5 attempts, 0.5/1/2/4/8 s) and resend every
//   unanswered request once, like the reference (R25 caveat applies). Error responses are never
//   retried. Every request has a deadline (R16).
import { registryJsonCodec } from "../proto/registry-frames.ts";
import { type FramedConn, dialFramed } from "../sys/framed-conn.ts";
import { parseHostPort } from "../sys/hostport.ts";
import type { DialError } from "../sys/tcp-dial.ts";
import {
  EXT_FRESH_SIGNATURES, classifyReply, deregisterChallenge, freshChallenge, handshakeChallenge, heartbeatChallenge,
  pollHandshakesChallenge, punchChallenge, reportTrustChallenge, resolveChallenge, respondChallenge, revokeTrustChallenge,
  rotateChallenge, setHostnameChallenge, setTagsChallenge, setTaskExecChallenge, setVisibilityChallenge, subscribeChallenge,
  updatePoloChallenge, type OutgoingRequest, type PushFrame, type ReplyOf, type RequestType,
} from "../proto/registry.ts";

export class RegistryError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly response?: Record<string, unknown>,
  ) {
    super(message);
    this.name = "RegistryError";
  }
}

export type Signer = (challenge: string) => string; // base64 Ed25519 signature
export type PushHandler = (msg: PushFrame) => void;

export interface RegistryClientOptions {
  /** TLS with a pinned lower-case hex SHA-256 fingerprint of the server's leaf certificate. */
  tls?: { fingerprint: string };
  sign?: Signer;
  dialTimeoutMs?: number; // default 5000
  requestTimeoutMs?: number; // default 15000
  reconnectAttempts?: number; // default 5
  backoffMs?: number; // first backoff, default 500 (doubling, cap 10 s)
  /**
   * Send timestamped signatures (`ts` field, challenge + ":" + ts): replay-resistant, but only a
   * pilot-ts registry accepts them. Turned on automatically after a successful subscribe().
   */
  freshSignatures?: boolean;
}

interface Pending {
  msg: Record<string, unknown>;
  resolve: (v: Record<string, unknown>) => void;
  reject: (e: Error) => void;
  retried: boolean;
  timer: ReturnType<typeof setTimeout> | null;
}

export class RegistryClient {
  private conn: FramedConn | null = null;
  private connecting: Promise<void> | null = null;
  private inflight: Pending[] = [];
  private pushHandlers: PushHandler[] = [];
  private closed = false;
  private host: string;
  private port: number;
  sign?: Signer;
  freshSignatures: boolean;
  /** Node ID for which we are subscribed (re-subscribed after reconnects). */
  private subscribedNode = 0;
  private lastTs = 0;
  /** Node ID from the last successful register (default signer of polo-score updates). */
  nodeId = 0;

  constructor(readonly addr: string, readonly opts: RegistryClientOptions = {}) {
    const hp = parseHostPort(addr);
    if (!hp || hp.port === 0) throw new RegistryError("bad_address", `invalid registry address ${JSON.stringify(addr)}`);
    this.host = hp.host || "127.0.0.1";
    this.port = hp.port;
    this.sign = opts.sign;
    this.freshSignatures = !!opts.freshSignatures;
  }

  onPush(h: PushHandler): () => void {
    this.pushHandlers.push(h);
    return () => { this.pushHandlers = this.pushHandlers.filter((x) => x !== h); };
  }

  get connected(): boolean {
    return this.conn !== null;
  }

  /** Connect (single attempt). */
  connect(): Promise<void> {
    if (this.conn) return Promise.resolve();
    if (this.connecting) return this.connecting;
    this.connecting = this.dial().finally(() => { this.connecting = null; });
    return this.connecting;
  }

  private async dial(): Promise<void> {
    try {
      await dialFramed({
        host: this.host,
        port: this.port,
        pin: this.opts.tls?.fingerprint,
        timeoutMs: this.opts.dialTimeoutMs ?? 5000,
        codec: registryJsonCodec,
        ready: (c) => { this.conn = c; },
        onMessage: (m) => this.onMessage(m),
        onClose: (_r, c) => this.onClose(c),
      });
    } catch (e) {
      const d = e as DialError;
      if (d.code === "dial_timeout") throw new RegistryError(d.code, `connect to ${this.addr} timed out`);
      if (d.code === "tls_pin_mismatch") throw new RegistryError(d.code, `registry certificate fingerprint ${d.fingerprint || "(none)"} does not match the pinned one`);
      if (d.code === "tls_failed") throw new RegistryError(d.code, d.message);
      throw new RegistryError("connect_failed", `connect to ${this.addr}: ${d.message}`);
    }
  }

  // An oversized, empty or non-JSON frame closes the connection (FramedConn): a connection failure.
  private onMessage(body: unknown): void {
    const r = classifyReply(body);
    if (r.kind === "push") {
      for (const h of this.pushHandlers) { try { h(r.push); } catch {} }
      return;
    }
    const p = this.inflight.shift();
    if (!p) return;
    if (p.timer) clearTimeout(p.timer);
    if (r.kind === "error") p.reject(new RegistryError(r.err.code ?? "request_failed", r.err.error, body as Record<string, unknown>));
    else if (r.kind === "bad") p.reject(new RegistryError("bad_response", "registry response is not an object"));
    else p.resolve(r.reply);
  }

  private onClose(c: FramedConn): void {
    if (this.conn !== c && this.conn !== null) return;
    if (this.conn === null && !this.inflight.length) return;
    this.conn = null;
    const pending = this.inflight;
    this.inflight = [];
    if (this.closed) {
      for (const p of pending) { if (p.timer) clearTimeout(p.timer); p.reject(new RegistryError("closed", "registry client closed")); }
      return;
    }
    // Resend unanswered requests once after reconnecting.
    const retry: Pending[] = [];
    for (const p of pending) {
      if (p.retried) { if (p.timer) clearTimeout(p.timer); p.reject(new RegistryError("connection_lost", "registry connection lost")); }
      else { p.retried = true; retry.push(p); }
    }
    if (retry.length || this.subscribedNode) void this.reconnectAndResend(retry);
  }

  private async reconnectAndResend(retry: Pending[]): Promise<void> {
    try {
      await this.reconnect();
    } catch (e) {
      for (const p of retry) { if (p.timer) clearTimeout(p.timer); p.reject(e as Error); }
      return;
    }
    for (const p of retry) this.transmit(p);
    if (this.subscribedNode) this.subscribe(this.subscribedNode).catch(() => {});
  }

  /** Reconnect with backoff: attempts × (dial, then sleep 0.5, 1, 2, 4, 8 s on failure). */
  async reconnect(): Promise<void> {
    const n = this.opts.reconnectAttempts ?? 5;
    let delay = this.opts.backoffMs ?? 500;
    let last: Error = new RegistryError("connect_failed", "no attempt");
    for (let i = 0; i < n && !this.closed; i++) {
      try {
        await this.connect();
        return;
      } catch (e) {
        last = e as Error;
      }
      await Bun.sleep(delay);
      delay = Math.min(delay * 2, 10_000);
    }
    throw new RegistryError("reconnect_failed", `registry unreachable after ${n} attempts: ${last.message}`);
  }

  private transmit(p: Pending): void {
    const c = this.conn;
    if (!c) { p.reject(new RegistryError("not_connected", "not connected")); return; }
    if (c.isClosed) { this.inflight.push(p); return; } // closing: resent with the others after the reconnect
    try {
      c.send(p.msg); // requests issued in the same event-loop turn go out in one socket write
    } catch (e) {
      p.reject(new RegistryError("request_too_large", (e as Error).message));
      return;
    }
    this.inflight.push(p);
  }

  /** Send one request, resolve with the success response; RegistryError for error responses. */
  request<T extends RequestType>(msg: OutgoingRequest<T>): Promise<ReplyOf<T>>;
  /** Untyped form (tools and tests that send arbitrary or malformed requests). */
  request(msg: Record<string, unknown>): Promise<Record<string, unknown>>;
  async request(msg: Record<string, unknown>): Promise<Record<string, unknown>> {
    if (this.closed) throw new RegistryError("closed", "registry client closed");
    if (!this.conn) await this.reconnect();
    return new Promise((resolve, reject) => {
      const p: Pending = { msg, resolve, reject, retried: false, timer: null };
      const to = this.opts.requestTimeoutMs ?? 15_000;
      p.timer = setTimeout(() => {
        // A lost response breaks positional matching: drop the connection, fail this request.
        const i = this.inflight.indexOf(p);
        if (i >= 0) {
          p.retried = true;
          reject(new RegistryError("timeout", `registry request ${String(msg.type)} timed out`));
          this.conn?.close("timeout", "request timed out");
        }
      }, to);
      this.transmit(p);
    });
  }

  close(): void {
    this.closed = true;
    this.subscribedNode = 0;
    const c = this.conn;
    this.conn = null;
    for (const p of this.inflight) { if (p.timer) clearTimeout(p.timer); p.reject(new RegistryError("closed", "registry client closed")); }
    this.inflight = [];
    c?.close();
  }

  // ---------------------------------------------------------------- signing helpers

  private signed<T extends RequestType>(challenge: string, msg: OutgoingRequest<T>): OutgoingRequest<T> {
    if (!this.sign) return msg;
    if (this.freshSignatures) {
      const ts = (this.lastTs = Math.max(Date.now(), this.lastTs + 1)); // Unix ms, strictly increasing
      return { ...msg, ts, signature: this.sign(freshChallenge(challenge, ts)) };
    }
    return { ...msg, signature: this.sign(challenge) };
  }

  private noteExtensions(ext: unknown): void {
    if (Array.isArray(ext) && ext.includes(EXT_FRESH_SIGNATURES) && this.opts.freshSignatures !== false) this.freshSignatures = true;
  }

  // ---------------------------------------------------------------- messages (docs/protocol.md §8.3)

  async register(publicKey: string, listenAddr: string, owner = "", hostname = ""): Promise<ReplyOf<"register">> {
    const m: OutgoingRequest<"register"> = { type: "register", public_key: publicKey, listen_addr: listenAddr };
    if (owner) m.owner = owner;
    if (hostname) m.hostname = hostname;
    const r = await this.request(m);
    this.noteExtensions(r.extensions);
    if (typeof r.node_id === "number") this.nodeId = r.node_id;
    return r;
  }
  heartbeat(nodeId: number) {
    return this.request(this.signed(heartbeatChallenge(nodeId), { type: "heartbeat", node_id: nodeId }));
  }
  deregister(nodeId: number) {
    return this.request(this.signed(deregisterChallenge(nodeId), { type: "deregister", node_id: nodeId }));
  }
  lookup(nodeId: number) {
    return this.request({ type: "lookup", node_id: nodeId });
  }
  resolve(nodeId: number, requesterId: number) {
    return this.request(this.signed(resolveChallenge(requesterId, nodeId), { type: "resolve", node_id: nodeId, requester_id: requesterId }));
  }
  resolveHostname(hostname: string) {
    return this.request({ type: "resolve_hostname", hostname });
  }
  setHostname(nodeId: number, hostname: string) {
    return this.request(this.signed(setHostnameChallenge(nodeId), { type: "set_hostname", node_id: nodeId, hostname }));
  }
  setVisibility(nodeId: number, isPublic: boolean) {
    return this.request(this.signed(setVisibilityChallenge(nodeId), { type: "set_visibility", node_id: nodeId, public: isPublic }));
  }
  reportTrust(nodeId: number, peerId: number) {
    return this.request(this.signed(reportTrustChallenge(nodeId, peerId), { type: "report_trust", node_id: nodeId, peer_id: peerId }));
  }
  revokeTrust(nodeId: number, peerId: number) {
    return this.request(this.signed(revokeTrustChallenge(nodeId, peerId), { type: "revoke_trust", node_id: nodeId, peer_id: peerId }));
  }
  requestHandshake(fromNodeId: number, toNodeId: number, justification: string) {
    return this.request(this.signed(handshakeChallenge(fromNodeId, toNodeId), { type: "request_handshake", from_node_id: fromNodeId, to_node_id: toNodeId, justification }));
  }
  pollHandshakes(nodeId: number) {
    return this.request(this.signed(pollHandshakesChallenge(nodeId), { type: "poll_handshakes", node_id: nodeId }));
  }
  respondHandshake(nodeId: number, peerId: number, accept: boolean) {
    return this.request(this.signed(respondChallenge(nodeId, peerId), { type: "respond_handshake", node_id: nodeId, peer_id: peerId, accept }));
  }
  punch(requesterId: number, nodeA: number, nodeB: number) {
    return this.request(this.signed(punchChallenge(nodeA, nodeB), { type: "punch", requester_id: requesterId, node_a: nodeA, node_b: nodeB }));
  }
  setTags(nodeId: number, tags: string[]) {
    return this.request(this.signed(setTagsChallenge(nodeId), { type: "set_tags", node_id: nodeId, tags }));
  }
  setTaskExec(nodeId: number, enabled: boolean) {
    return this.request(this.signed(setTaskExecChallenge(nodeId), { type: "set_task_exec", node_id: nodeId, enabled }));
  }
  /** `signature` = sign("rotate:<id>") with the CURRENT key (the caller provides it, docs/protocol.md §5.2). */
  rotateKey(nodeId: number, newPublicKey: string, signature?: string) {
    const sig = signature ?? (this.sign ? this.sign(rotateChallenge(nodeId)) : "");
    return this.request({ type: "rotate_key", node_id: nodeId, new_public_key: newPublicKey, signature: sig });
  }
  listNetworks() {
    return this.request({ type: "list_networks" });
  }
  listNodes(networkId: number) {
    return this.request({ type: "list_nodes", network_id: networkId });
  }
  /**
   * Adjust a node's polo score. Signed by `requesterId` (default: the node this client
   * registered) when a signer is set; `adminToken` instead authorizes it as an operator. A
   * pilot-ts registry refuses unsigned updates; a node may not raise its own score.
   */
  updatePoloScore(nodeId: number, delta: number, opts: { requesterId?: number; adminToken?: string } = {}) {
    const m: OutgoingRequest<"update_polo_score"> = { type: "update_polo_score", node_id: nodeId, delta };
    if (opts.adminToken) return this.request({ ...m, admin_token: opts.adminToken });
    const rid = opts.requesterId ?? this.nodeId;
    if (!rid || !this.sign) return this.request(m);
    return this.request(this.signed(updatePoloChallenge(rid, nodeId, delta), { ...m, requester_id: rid }));
  }
  /** Set a node's polo score: an operator action, needs the registry's admin token. */
  setPoloScore(nodeId: number, score: number, adminToken = "") {
    const m: OutgoingRequest<"set_polo_score"> = { type: "set_polo_score", node_id: nodeId, polo_score: score };
    return this.request(adminToken ? { ...m, admin_token: adminToken } : m);
  }
  getPoloScore(nodeId: number) {
    return this.request({ type: "get_polo_score", node_id: nodeId });
  }
  beaconRegister(beaconId: number, addr: string) {
    return this.request({ type: "beacon_register", beacon_id: beaconId, addr });
  }
  beaconList() {
    return this.request({ type: "beacon_list" });
  }

  /**
   * Push extension (pilot-ts registries only): after success the server pushes
   * {"type":"push","event":"handshake_request"|"handshake_response",...} frames for `nodeId`
   * to onPush handlers, and this client switches to timestamped signatures. A reference registry
   * answers with an error (unknown type) — callers should then keep polling.
   */
  async subscribe(nodeId: number): Promise<ReplyOf<"subscribe">> {
    if (!this.sign) throw new RegistryError("no_signer", "subscribe needs a signer");
    const ts = Math.floor(Date.now() / 1000);
    const r = await this.request({ type: "subscribe", node_id: nodeId, timestamp: ts, signature: this.sign(subscribeChallenge(nodeId, ts)) });
    this.subscribedNode = nodeId;
    this.noteExtensions(r.extensions);
    return r;
  }
}
