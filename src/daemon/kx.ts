// Key-exchange policy for the tunnel (wire.md §4.6-4.8), on top of src/crypto/tunnel.ts.
// Differences from the reference, all wire-compatible (wire.md §4.8 "recommended local behaviour"):
// - an existing session is KEPT when a key-exchange frame repeats the same peer X25519 key
//   (the reference recreates it, which makes its own in-flight frames look like replays);
// - we answer a valid PILA/PILK with our own PILA only when we had no session, when the peer's key
//   changed, or when we have not sent one to that peer for ANSWER_REFRESH_MS — never
//   unconditionally, so two pilot-ts daemons cannot loop;
// - key-exchange frames triggered by sends are rate-limited per peer (the reference sends one
//   before EVERY packet while no session exists).
import {
  TunnelSession,
  buildAuthKeyExchange,
  buildKeyExchange,
  generateX25519,
  parseAuthKeyExchange,
  parseKeyExchange,
  verifyAuthKeyExchange,
  type X25519KeyPair,
} from "../crypto/tunnel.ts";
import type { Identity } from "../crypto/identity.ts";
import type { Logger } from "./log.ts";

const ANSWER_REFRESH_MS = 3000;
const SEND_KX_MIN_INTERVAL_MS = 200;

export interface PeerCrypto {
  session: TunnelSession | null;
  authenticated: boolean;
  lastKxSentAt: number;
}

export interface ParsedKx {
  nodeId: number;
  x25519: Uint8Array;
  ed25519?: Uint8Array;
  frame: Uint8Array;
}

export class KeyExchange {
  private readonly keys: X25519KeyPair;
  private identity: Identity | null = null;
  private nodeId = 0;
  private frameCache: Uint8Array | null = null;

  constructor(private readonly log: Logger) {
    this.keys = generateX25519();
  }

  get publicKey(): Uint8Array {
    return this.keys.pub;
  }

  setIdentity(nodeId: number, identity: Identity): void {
    this.nodeId = nodeId;
    this.identity = identity;
    this.frameCache = null;
  }

  newPeer(): PeerCrypto {
    return { session: null, authenticated: false, lastKxSentAt: -Infinity };
  }

  /** Our key-exchange frame (PILA with an identity, else PILK), or null when rate-limited. */
  buildFrame(p: PeerCrypto, now: number, force = false): Uint8Array | null {
    if (!force && now - p.lastKxSentAt < SEND_KX_MIN_INTERVAL_MS) return null;
    p.lastKxSentAt = now;
    if (!this.frameCache) {
      this.frameCache = this.identity
        ? buildAuthKeyExchange(this.identity, this.nodeId, this.keys.pub)
        : buildKeyExchange(this.nodeId, this.keys.pub);
    }
    return this.frameCache;
  }

  parsePILA(buf: Uint8Array): ParsedKx | null {
    try {
      const k = parseAuthKeyExchange(buf);
      return { nodeId: k.nodeId, x25519: k.x25519Pub, ed25519: k.ed25519Pub, frame: buf };
    } catch {
      return null;
    }
  }

  parsePILK(buf: Uint8Array): ParsedKx | null {
    try {
      const k = parseKeyExchange(buf);
      return { nodeId: k.nodeId, x25519: k.x25519Pub, frame: buf };
    } catch {
      return null;
    }
  }

  /** wire.md §4.7 steps 3-4 against the registry key. */
  verifyPILA(k: ParsedKx, registryKey: Uint8Array): boolean {
    try {
      verifyAuthKeyExchange(k.frame, registryKey);
      return true;
    } catch (e) {
      this.log.debug("PILA verification failed", { node_id: k.nodeId, err: (e as Error).message });
      return false;
    }
  }

  /**
   * Install (or keep) the session for a verified exchange. Returns whether we should answer with
   * our own key-exchange frame.
   */
  accept(p: PeerCrypto, peerX25519: Uint8Array, authenticated: boolean, now: number): { answer: boolean; rekeyed: boolean } {
    const old = p.session;
    const same = old?.peerX25519 !== undefined && equal(old.peerX25519, peerX25519);
    let rekeyed = false;
    if (!old || !same) {
      let s: TunnelSession;
      try {
        s = TunnelSession.fromKeyExchange(this.keys.priv, peerX25519, { authenticated });
      } catch (e) {
        // all-zero shared secret (low-order key) etc.: drop the exchange
        this.log.debug("key exchange rejected", { err: (e as Error).message });
        return { answer: false, rekeyed: false };
      }
      p.session = s;
      rekeyed = !!old;
    } else if (old.exhausted) {
      p.session = TunnelSession.fromKeyExchange(this.keys.priv, peerX25519, { authenticated });
    }
    p.authenticated = authenticated;
    const answer = !old || rekeyed || now - p.lastKxSentAt >= ANSWER_REFRESH_MS;
    return { answer, rekeyed };
  }
}

function equal(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
