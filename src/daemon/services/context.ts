// What the built-in services need from the daemon. The daemon core implements this interface;
// tests implement it with in-memory streams (test/helpers/memconn.ts).
import type { ReplyFields } from "../../proto/registry.ts";
import type { Addr } from "../../proto/types.ts";
import type { Listener, StreamConn } from "../../transport/api.ts";

export interface ServiceLogger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
}

/** Registry `lookup` reply fields the trust handshake reads (docs/protocol.md §8.3). */
/** What the trust service reads of a `lookup` reply (the typed schema is src/proto/registry.ts). */
export type RegistryLookup = Pick<ReplyFields["lookup"], "node_id" | "public_key" | "networks">;

/** A `poll_handshakes` reply: relayed requests and answers waiting for this node. */
export type RegistryPoll = ReplyFields["poll_handshakes"];

/**
 * Registry requests made by the trust handshake. Each rejects (throws) with the registry's error
 * text on failure. The implementation fills in this node's ID and signs each request once, over
 * the registry's challenge for that request; callers pass no signatures.
 */
export interface TrustRegistry {
  lookup(nodeId: number): Promise<RegistryLookup>;
  /** request_handshake {from_node_id: self, to_node_id, justification, signature} */
  requestHandshake(toNodeId: number, justification: string): Promise<void>;
  /** respond_handshake {node_id: self, peer_id, accept, signature} */
  respondHandshake(peerId: number, accept: boolean): Promise<void>;
  /** poll_handshakes {node_id: self, signature} */
  pollHandshakes(): Promise<RegistryPoll>;
  /** report_trust {node_id: self, peer_id, signature} */
  reportTrust(peerId: number): Promise<void>;
  /** revoke_trust {node_id: self, peer_id, signature} */
  revokeTrust(peerId: number): Promise<void>;
}

/** Registry polo-score extension used by the task service (docs/protocol.md §8.3). */
export interface PoloRegistry {
  /** get_polo_score {node_id} → polo_score */
  get(nodeId: number): Promise<number>;
  /** update_polo_score {node_id, delta} */
  update(nodeId: number, delta: number): Promise<void>;
}

export interface ServiceIdentity {
  /** Ed25519 public key, standard base64 with padding (44 chars), as the registry stores it. */
  readonly publicKey: string;
  /** base64 Ed25519 signature over the ASCII bytes of `challenge`. */
  sign(challenge: string): string;
}

export interface ServiceContext {
  nodeId(): number;
  localAddr(): Addr;
  /** Directory for received/, inbox/, tasks/ (default ~/.pilot; tests pass a temp dir). */
  readonly dataDir: string;
  /** Path of trust.json (docs/protocol.md §10.2: next to the identity file); null = in memory only. */
  readonly trustPath: string | null;
  listen(port: number, onAccept: (conn: StreamConn) => void): Listener;
  dial(addr: Addr, port: number): Promise<StreamConn>;
  /** null when the daemon runs without an identity (messages then carry empty key/signature). */
  readonly identity: ServiceIdentity | null;
  verify(publicKeyB64: string, challenge: string, signatureB64: string): boolean;
  readonly registry: TrustRegistry;
  /** Polo scores for the task service (port 1003); absent ⇒ every submission is accepted. */
  readonly polo?: PoloRegistry;
  /** Tear down the tunnel to a node (used by untrust, docs/protocol.md §10.2). Optional. */
  dropTunnel?(nodeId: number): void;
  /** Emit a webhook event (docs/protocol.md §10.6); must never block or throw. */
  webhook(event: string, data?: Record<string, unknown>): void;
  readonly log: ServiceLogger;
  /** Wall clock in ms (Date.now by default; tests override). */
  now?(): number;
}

export interface ServiceHandle {
  stop(): void;
}

export function nowMs(ctx: ServiceContext): number {
  return ctx.now ? ctx.now() : Date.now();
}
