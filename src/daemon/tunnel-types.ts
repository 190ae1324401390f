// Types and endpoint helpers of the tunnel (see tunnel.ts).
import type { Packet } from "../proto/types.ts";
import type { Logger } from "../sys/log.ts";
import type { PeerCrypto } from "./kx.ts";
import type { Clock, PacketNet } from "./net/packet-conn.ts";
import { type Endpoint, formatHostPort } from "../proto/beacon.ts";
import { parseHostPort } from "../sys/hostport.ts";

export type { Endpoint };

export function formatEndpoint(e: Endpoint | null): string {
  return e ? formatHostPort(e) : "";
}

/** Parse "host:port", "[v6]:port" or ":port" (empty host = wildcard). */
export function parseEndpoint(s: string): Endpoint | null {
  const hp = parseHostPort(s);
  return hp && { ip: hp.host, port: hp.port };
}

export type PeerPath = "direct" | "punched" | "relayed";

export interface Peer {
  nodeId: number;
  endpoint: Endpoint | null; // UDP endpoint (for relay peers: unused; frames go to the beacon)
  relay: boolean;
  crypto: PeerCrypto;
  /** marshaled packets waiting for a session (at most 64, oldest dropped) */
  pending: Uint8Array[];
  /** time the first unanswered key exchange was sent (for plaintext fallback) */
  kxFirstUnansweredAt: number;
  punched: boolean;
  /** a RelayDeliver from this peer has been seen (tunnel.relay_activated emitted) */
  relayActivated?: boolean;
  lastRecvAt: number;
  /** last frame sent (tracked for unverified peers only: an entry in use is not idle) */
  lastSendAt: number;
  createdAt: number;
  /** created by our own dial (registry resolve) or by a PILA verified against the registry key */
  verified: boolean;
  /** a key-exchange frame from this peer has been seen */
  kxSeen: boolean;
  /** the peer speaks plaintext (sent PILT, never a key exchange): no wait before PILT copies */
  plain: boolean;
  /** last key exchange repeated because the peer's punch arrived */
  punchKxAt: number;
  /** pending plaintext-fallback timer */
  fallbackTimer?: unknown;
}

export interface TunnelStats {
  bytesSent: number;
  bytesRecv: number;
  pktsSent: number;
  pktsRecv: number;
}

export interface TunnelOptions {
  encrypt: boolean;
  log: Logger;
  /** Inbound packet from the tunnel (already decrypted and decoded). */
  onPacket(pkt: Packet, from: Endpoint, viaRelay: boolean): void;
  /** Ed25519 key of a node from the registry (cached by the caller); null when unknown. */
  lookupPublicKey(nodeId: number, refresh?: boolean): Promise<Uint8Array | null>;
  /** Plaintext fallback for peers that never answer the key exchange (encryption disabled there). */
  plaintextFallbackMs?: number;
  /** Webhook events: tunnel.peer_added, tunnel.established, tunnel.relay_activated, tunnel.plaintext. */
  onEvent?(event: string, data: Record<string, unknown>): void;
  /** A frame was dropped, with a short reason (metrics). */
  onDrop?(reason: string): void;
  /**
   * Asked before re-keying to a silent peer: may we still reach it? "denied" when the registry
   * refuses to resolve it (a private peer that revoked its trust in us); "unknown" when the registry
   * cannot be asked. Without it, re-keying is unconditional.
   */
  confirmPeer?(nodeId: number): Promise<"ok" | "denied" | "unknown">;
  /** Datagram sockets (default: real UDP). */
  net?: PacketNet;
  /** Time and timers (default: the system clock). */
  clock?: Clock;
}

export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

export function sameHost(a: string, b: string): boolean {
  if (a === b) return true;
  const norm = (h: string) => h.replace(/^::ffff:/, "");
  return norm(a) === norm(b);
}

export function sameEndpoint(a: Endpoint, b: Endpoint): boolean {
  return a.port === b.port && sameHost(a.ip, b.ip);
}
