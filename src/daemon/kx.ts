// Key-exchange policy for the tunnel (docs/protocol.md §4.5.8), on top of src/crypto/tunnel.ts.
// Differences from the reference, all wire-compatible (docs/protocol.md §4.7 "recommended local behaviour"):
// - an existing session is KEPT when a key-exchange frame repeats the same peer X25519 key
//   (the reference recreates it, which makes its own in-flight frames look like replays);
// - we answer a valid PILA/PILK with our own PILA only when we had no session, when the peer's key
//   changed, or when we have not sent one to that peer for ANSWER_REFRESH_MS — never
//   unconditionally, so two pilot-ts daemons cannot loop;
// - key-exchange frames triggered by sends are rate-limited per peer (the reference sends one
//   before EVERY packet while no session exists);
// - a key exchange signed by the peer's registered identity but carrying a DIFFERENT X25519 key
//   does not replace a session that is proven live (a PILS opened under it within LIVE_MS): such a
//   frame may be a replay from the peer's previous process (the signature has no freshness). The new
//   key waits as a candidate and becomes current on the first PILS that opens under it, or when the
//   current session has been silent for LIVE_MS. A replaced session is kept for receiving until one
//   of the two proves live, so a stale key installed while idle is undone by the next genuine frame.
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
import type { Logger } from "../sys/log.ts";

const ANSWER_REFRESH_MS = 3000;
const SEND_KX_MIN_INTERVAL_MS = 200;
/** A session that opened a PILS within this window is live: a new key must prove itself first. */
export const LIVE_MS = 15_000;
/** How long after our re-key a new peer key counts as its answer. */
const SOLICITED_MS = 2_000;

export interface PeerCrypto {
  /** current session: used for sending, tried first for receiving */
  session: TunnelSession | null;
  authenticated: boolean;
  lastKxSentAt: number;
  /** a verified new peer key received while `session` was live; receive-only until proven */
  candidate: TunnelSession | null;
  /** the session an unproven key replaced; receive-only until one of the two proves live */
  prev: TunnelSession | null;
  /** last time a PILS opened under `session` (0: never) */
  lastOpenAt: number;
  /** when we last re-sent our key exchange because the peer went silent (0: never) */
  rekeyAskedAt: number;
}

export interface OpenResult {
  plain: Uint8Array | null;
  /** a candidate or previous session proved live and became current */
  switched: boolean;
  /** why the current session refused the frame */
  drop: TunnelSession["lastDrop"];
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
    return { session: null, authenticated: false, lastKxSentAt: -Infinity, candidate: null, prev: null, lastOpenAt: 0, rekeyAskedAt: 0 };
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

  /** docs/protocol.md §4.7 steps 3-4 against the registry key. */
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
   * Install (or keep) the session for a verified exchange. `installed`: a new session became current
   * (first session or rekey); `candidate`: the key waits for proof (see the file comment).
   */
  accept(
    p: PeerCrypto,
    peerX25519: Uint8Array,
    authenticated: boolean,
    now: number,
  ): { answer: boolean; rekeyed: boolean; installed: boolean; candidate: boolean } {
    const old = p.session;
    const none = { answer: false, rekeyed: false, installed: false, candidate: false };
    if (old?.peerX25519 !== undefined && equal(old.peerX25519, peerX25519)) {
      // The current key repeated: keep everything (an exhausted session is renewed under it).
      if (old.exhausted) p.session = TunnelSession.fromKeyExchange(this.keys.priv, peerX25519, { authenticated });
      p.candidate = null;
      return { ...none, answer: now - p.lastKxSentAt >= ANSWER_REFRESH_MS };
    }
    if (p.candidate?.peerX25519 && equal(p.candidate.peerX25519, peerX25519)) {
      return { ...none, candidate: true, answer: now - p.lastKxSentAt >= ANSWER_REFRESH_MS };
    }
    // The previous key back again: reuse its session (and its replay windows).
    const back = p.prev?.peerX25519 && equal(p.prev.peerX25519, peerX25519) ? p.prev : null;
    let s: TunnelSession;
    try {
      s = back ?? TunnelSession.fromKeyExchange(this.keys.priv, peerX25519, { authenticated });
    } catch (e) {
      // all-zero shared secret (low-order key) etc.: drop the exchange
      this.log.debug("key exchange rejected", { err: (e as Error).message });
      return none;
    }
    // A new key shortly after we re-keyed a silent peer is the answer we asked for (the peer
    // restarted): it is installed at once. Otherwise a live session waits for proof.
    const solicited = p.rekeyAskedAt > 0 && now - p.rekeyAskedAt < SOLICITED_MS;
    if (old && !solicited && p.lastOpenAt > 0 && now - p.lastOpenAt < LIVE_MS) {
      p.candidate = s;
      // Answer so a genuinely restarted peer can build its session and prove it (a repeat of the
      // same candidate key is answered at the refresh interval, above).
      return { ...none, candidate: true, answer: true };
    }
    if (old) p.prev = old;
    p.session = s;
    p.candidate = null;
    p.lastOpenAt = 0;
    p.authenticated = authenticated;
    return { answer: true, rekeyed: !!old, installed: true, candidate: false };
  }

  /** The session to send with; a candidate takes over once the current one has been silent. */
  sendSession(p: PeerCrypto, now: number): TunnelSession | null {
    if (p.candidate && now - p.lastOpenAt >= LIVE_MS) {
      p.prev = p.session;
      p.session = p.candidate;
      p.candidate = null;
      p.lastOpenAt = 0;
      p.authenticated = p.session.authenticated;
    }
    return p.session;
  }

  /** Open a PILS frame under the current session, else under a candidate or previous one. */
  open(p: PeerCrypto, frame: Uint8Array, now: number): OpenResult {
    const s = p.session;
    if (!s) return { plain: null, switched: false, drop: null };
    // In place: the datagram is ours, and a frame that fails to authenticate comes back intact
    // for the candidate/previous session below.
    const plain = s.openInPlace(frame);
    if (plain) {
      p.lastOpenAt = now;
      p.prev = null;
      return { plain, switched: false, drop: null };
    }
    const drop = s.lastDrop;
    if (drop === "auth") {
      for (const alt of [p.candidate, p.prev]) {
        const pt = alt?.openInPlace(frame);
        if (!alt || !pt) continue;
        p.session = alt;
        p.candidate = p.prev = null;
        p.lastOpenAt = now;
        p.authenticated = alt.authenticated;
        return { plain: pt, switched: true, drop: null };
      }
    }
    return { plain: null, switched: false, drop };
  }
}

function equal(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
