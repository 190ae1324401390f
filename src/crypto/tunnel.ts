// Tunnel session crypto (docs/protocol.md §3, §4): X25519 key agreement, key derivation,
// AES-256-GCM PILS frames with prefix‖counter nonces, replay protection, PILK/PILA frames.
//
// Everything here is synchronous and allocation-light: seal() writes into the caller's datagram
// buffer (or one new frame), open() allocates the plaintext (engines: src/crypto/gcm.ts).
import { createHash, diffieHellman, randomBytes, randomFillSync, type KeyObject } from "node:crypto";
import { ProtoError } from "../proto/types.ts";
import { decodePILA, decodePILK, encodePILA, encodePILK, pilaChallenge } from "../proto/tunnel.ts";
import { newGcm, type Gcm } from "./gcm.ts";
import { sign, verify, type Identity } from "./identity.ts";
import { rawPublicOf, x25519PrivateKeyObject, x25519PublicKeyObject } from "./keyobj.ts";
import { ReplayWindow } from "./replay.ts";

export { ReplayWindow } from "./replay.ts";

// Frame magics (docs/protocol.md §3), big-endian u32.
export const MAGIC_PILS = 0x50494c53;
export const MAGIC_PILK = 0x50494c4b;
export const MAGIC_PILA = 0x50494c41;

/** PILS overhead: magic 4 + node ID 4 + nonce 12 + tag 16. */
export const PILS_HEADER_SIZE = 20;
export const GCM_TAG_SIZE = 16;
export const PILS_OVERHEAD = PILS_HEADER_SIZE + GCM_TAG_SIZE;
/** Minimum PILS frame accepted by the reference: 4 + 32 (docs/protocol.md §3). */
export const PILS_MIN_SIZE = 36;
export const PILK_SIZE = 40;
export const PILA_SIZE = 136;
export const X25519_KEY_SIZE = 32;
export const TUNNEL_KEY_SIZE = 32;

const KDF_PREFIX = Buffer.from("pilot-tunnel-v1:", "ascii"); // 16 bytes, docs/protocol.md §4.2

function lenErr(what: string, want: number, got: unknown): ProtoError {
  const n = got instanceof Uint8Array ? got.length : typeof got;
  return new ProtoError("bad_key_length", `${what} must be ${want} bytes, got ${n}`, `pass the raw ${want}-byte ${what}`);
}
function needLen(b: unknown, want: number, what: string): asserts b is Uint8Array {
  if (!(b instanceof Uint8Array) || b.length !== want) throw lenErr(what, want, b);
}

const rd32 = (b: Uint8Array, o: number): number => ((b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3]) >>> 0;
function wr32(b: Uint8Array, o: number, v: number): void {
  b[o] = (v >>> 24) & 0xff;
  b[o + 1] = (v >>> 16) & 0xff;
  b[o + 2] = (v >>> 8) & 0xff;
  b[o + 3] = v & 0xff;
}

// ---------------------------------------------------------------------------------------------
// X25519 and key derivation (docs/protocol.md §4.1, §4.2)

export interface X25519KeyPair {
  priv: Uint8Array;
  pub: Uint8Array;
}

// Keyed by array identity: callers must not mutate a private key array after first use.
const X_PRIV_CACHE = new WeakMap<Uint8Array, KeyObject>();
function xPriv(priv: Uint8Array): KeyObject {
  let k = X_PRIV_CACHE.get(priv);
  if (!k) {
    k = x25519PrivateKeyObject(priv);
    X_PRIV_CACHE.set(priv, k);
  }
  return k;
}

/** New random X25519 key pair (one per daemon process, docs/protocol.md §4.1). */
export function generateX25519(): X25519KeyPair {
  const priv = new Uint8Array(randomBytes(32));
  return { priv, pub: x25519PublicFromPrivate(priv) };
}

export function x25519PublicFromPrivate(priv: Uint8Array): Uint8Array {
  needLen(priv, X25519_KEY_SIZE, "X25519 private key");
  return rawPublicOf(xPriv(priv));
}

/**
 * RFC 7748 X25519(priv, peerPub). Any 32-byte string is accepted as a public key (as the reference
 * does); an all-zero result (low-order peer key) throws ProtoError("x25519_low_order").
 */
export function x25519Shared(priv: Uint8Array, peerPub: Uint8Array): Uint8Array {
  needLen(priv, X25519_KEY_SIZE, "X25519 private key");
  needLen(peerPub, X25519_KEY_SIZE, "X25519 public key");
  let out: Buffer;
  try {
    // BoringSSL refuses an all-zero output itself, which surfaces as an exception here.
    out = diffieHellman({ privateKey: xPriv(priv), publicKey: x25519PublicKeyObject(peerPub) });
  } catch {
    throw new ProtoError("x25519_low_order", "X25519 shared secret is all zeros (low-order peer public key)", "the peer's key exchange is invalid; drop the frame");
  }
  let acc = 0;
  for (let i = 0; i < out.length; i++) acc |= out[i];
  if (acc === 0 || out.length !== 32) {
    throw new ProtoError("x25519_low_order", "X25519 shared secret is all zeros (low-order peer public key)", "the peer's key exchange is invalid; drop the frame");
  }
  return new Uint8Array(out.buffer, out.byteOffset, 32);
}

/** key = SHA-256("pilot-tunnel-v1:" ‖ shared) — docs/protocol.md §4.2, no HKDF/salt/context (W8 is MUST-MATCH). */
export function tunnelKeyFromShared(shared: Uint8Array): Uint8Array {
  needLen(shared, 32, "X25519 shared secret");
  const d = createHash("sha256").update(KDF_PREFIX).update(shared).digest();
  return new Uint8Array(d.buffer, d.byteOffset, 32);
}

/** AES-256 tunnel key for (own X25519 private, peer X25519 public). Same key in both directions. */
export function deriveTunnelKey(ownPriv: Uint8Array, peerPub: Uint8Array): Uint8Array {
  return tunnelKeyFromShared(x25519Shared(ownPriv, peerPub));
}

// ---------------------------------------------------------------------------------------------
// PILS session (docs/protocol.md §3, §4.3, §4.6)

export interface TunnelSessionOptions {
  /** Own 4-byte nonce prefix; random when omitted (docs/protocol.md §4.3). */
  prefix?: Uint8Array;
  /** Peer X25519 public key this session was derived from (lets the daemon detect true rekeys). */
  peerX25519?: Uint8Array;
  /** True when created from a verified PILA (false for PILK). */
  authenticated?: boolean;
}

/** How many peer nonce prefixes keep a live replay window at once. */
export const ACTIVE_PREFIXES = 4;
/** How many retired prefixes are remembered before the session refuses new ones (see open()). */
export const MAX_RETIRED_PREFIXES = 4096;

/** Node ID field of a PILS frame, or -1 if the frame is not a PILS frame of acceptable length. */
export function pilsNodeId(frame: Uint8Array): number {
  if (frame.length < PILS_MIN_SIZE || rd32(frame, 0) !== MAGIC_PILS) return -1;
  return rd32(frame, 4);
}

/**
 * One peer's encrypted-tunnel state: AES-256-GCM key, own nonce prefix + send counter, and receive
 * replay windows.
 *
 * Receive side keeps one ReplayWindow PER PEER NONCE PREFIX (docs/protocol.md §4.4 "SHOULD", §4.8, W6): a
 * reference peer recreates its session (new random prefix, counter back to 1) every time it processes
 * one of our key-exchange frames, while we keep ours when the peer's X25519 key is unchanged. With a
 * single window its restarted counters would be dropped as "too old" until they passed the old max.
 * A window for a new prefix is created only after a frame under that prefix authenticated, so
 * forgeries cannot create state. The newest ACTIVE_PREFIXES prefixes stay live (in-flight frames of a
 * previous prefix still arrive); older ones are retired and then rejected outright, so captured frames
 * cannot be replayed after a peer restart. Once MAX_RETIRED_PREFIXES are retired, new prefixes are
 * refused and `exhausted` is set: the daemon should then drop this session and re-exchange keys (so
 * many restarts under one key also approach the nonce-reuse birthday bound, W6).
 */
export class TunnelSession {
  readonly key: Uint8Array;
  readonly peerX25519: Uint8Array | undefined;
  authenticated: boolean;
  /** Set when too many peer prefixes were seen; see class comment. */
  exhausted = false;

  private readonly gcm: Gcm;
  /** Reused nonce buffer: prefix (4) ‖ counter (8, BE). The engine copies the IV. */
  private readonly nonce = new Uint8Array(12);
  private counter = 0;
  private readonly windows = new Map<number, ReplayWindow>(); // insertion order = age
  private readonly retired = new Set<number>();

  constructor(key: Uint8Array, opts: TunnelSessionOptions = {}) {
    needLen(key, TUNNEL_KEY_SIZE, "AES-256 tunnel key");
    this.key = key.slice();
    this.gcm = newGcm(this.key);
    if (opts.prefix !== undefined) {
      needLen(opts.prefix, 4, "nonce prefix");
      this.nonce.set(opts.prefix, 0);
    } else {
      randomFillSync(this.nonce, 0, 4);
    }
    if (opts.peerX25519 !== undefined) needLen(opts.peerX25519, X25519_KEY_SIZE, "X25519 public key");
    this.peerX25519 = opts.peerX25519?.slice();
    this.authenticated = opts.authenticated ?? false;
  }

  /** Derives the key from our X25519 private key and the peer's public key (docs/protocol.md §4.2). */
  static fromKeyExchange(ownPriv: Uint8Array, peerPub: Uint8Array, opts: Omit<TunnelSessionOptions, "peerX25519"> = {}): TunnelSession {
    return new TunnelSession(deriveTunnelKey(ownPriv, peerPub), { ...opts, peerX25519: peerPub });
  }

  /** Own current nonce prefix (copy). */
  get sendPrefix(): Uint8Array {
    return this.nonce.slice(0, 4);
  }
  /** Counter of the last sealed frame (0 before the first). */
  get sendCounter(): number {
    return this.counter;
  }

  /**
   * Encrypts one marshaled packet into a complete PILS frame:
   * "PILS" ‖ localNodeId ‖ prefix ‖ counter(BE u64) ‖ AES-256-GCM(packet) ‖ tag. No AAD (docs/protocol.md §4.3).
   * The counter is incremented before use, so the first frame carries 1.
   *
   * `headroom` (default 0) reserves that many zero bytes IN FRONT of the frame in the returned buffer,
   * so a caller can write a wrapper (e.g. the 9-byte beacon Relay header, docs/protocol.md §7.1) without a
   * second copy; the frame itself then starts at offset `headroom`.
   *
   * `into`, when large enough, receives the frame instead of a new buffer (every byte of the
   * returned view is written); the result is then a view of it. `packet` may already lie at its
   * place inside `into` (sealInPlace): it is then encrypted where it is.
   */
  seal(packet: Uint8Array, localNodeId: number, headroom = 0, into?: Uint8Array): Uint8Array {
    const c = ++this.counter;
    const n = this.nonce;
    wr32(n, 4, Math.floor(c / 0x100000000));
    wr32(n, 8, c >>> 0);
    const h = headroom;
    const size = h + PILS_HEADER_SIZE + packet.length + GCM_TAG_SIZE;
    const out = into && into.length >= size ? into.subarray(0, size) : new Uint8Array(size);
    wr32(out, h, MAGIC_PILS);
    wr32(out, h + 4, localNodeId >>> 0);
    for (let i = 0; i < 12; i++) out[h + 8 + i] = n[i];
    this.gcm.seal(n, packet, out, h + PILS_HEADER_SIZE);
    return out;
  }

  /**
   * seal() for a packet already encoded in its place inside the frame: `frame` is the whole
   * PILS frame to be (PILS_OVERHEAD + packet length bytes) with the packet at
   * [PILS_HEADER_SIZE, length − 16). The header and tag are written around it and the packet is
   * encrypted where it lies, so the datagram costs no copy at all. Returns `frame`.
   */
  sealInPlace(frame: Uint8Array, localNodeId: number): Uint8Array {
    if (frame.length < PILS_OVERHEAD) throw new RangeError("sealInPlace: frame shorter than the PILS overhead");
    // seal() into the frame itself: the packet it encrypts is the frame's own packet bytes.
    this.seal(frame.subarray(PILS_HEADER_SIZE, frame.length - GCM_TAG_SIZE), localNodeId, 0, frame);
    return frame;
  }

  /**
   * Authenticates and decrypts a PILS frame (the whole datagram, magic included). Returns the
   * plaintext packet, or null for: short/non-PILS frame, replayed or too-old counter, retired or
   * refused prefix, GCM authentication failure. Never throws.
   *
   * Order (W5 fix, wire-compatible): cheap replay PRE-check without side effects → GCM open →
   * only on success record the counter. A forged frame (e.g. counter 2^64−1 with garbage) therefore
   * changes nothing, unlike the reference, which records before authenticating and never rolls back
   * `max`, letting one forged frame make every later genuine frame "too old".
   */
  open(frame: Uint8Array): Uint8Array | null {
    return this.openFrame(frame, false);
  }

  /**
   * open() that decrypts inside `frame` (no plaintext allocation) and returns a view of it; the
   * daemon's receive path, which owns each datagram. A frame that fails authentication is left
   * exactly as it was, so another session may still try it.
   */
  openInPlace(frame: Uint8Array): Uint8Array | null {
    return this.openFrame(frame, true);
  }

  private openFrame(frame: Uint8Array, inPlace: boolean): Uint8Array | null {
    this.lastDrop = null;
    const len = frame.length;
    if (len < PILS_MIN_SIZE || rd32(frame, 0) !== MAGIC_PILS) return this.drop("malformed");
    const prefix = rd32(frame, 8);
    const hi = rd32(frame, 12);
    if (hi > 0x1fffff) return this.drop("malformed"); // counter ≥ 2^53: no genuine peer gets there; not representable
    const c = hi * 0x100000000 + rd32(frame, 16);
    let w = this.windows.get(prefix);
    if (w) {
      if (!w.check(c)) return this.drop("replay");
    } else if (this.retired.has(prefix) || this.exhausted) {
      return this.drop("replay");
    }
    let pt: Uint8Array | null;
    if (inPlace) pt = this.gcm.openInPlace(frame.subarray(8, 20), frame.subarray(PILS_HEADER_SIZE)) ? frame.subarray(PILS_HEADER_SIZE, len - GCM_TAG_SIZE) : null;
    else pt = this.gcm.open(frame.subarray(8, 20), frame.subarray(PILS_HEADER_SIZE));
    if (!pt) return this.drop("auth");
    // Authenticated from here on.
    if (w) w.record(c);
    else {
      const nw = this.addWindow(prefix);
      if (!nw) return null;
      nw.record(c);
    }
    // W7 mitigation: both directions share the key, so the peer using our prefix means nonce reuse is
    // possible. Receivers never inspect the prefix, so we can switch ours freely (counter continues).
    if (prefix === rd32(this.nonce, 0)) this.repickPrefix(prefix);
    return pt;
  }

  /**
   * Why the last open() returned null (diagnostics, e.g. the `security.nonce_replay` webhook):
   * "replay" = counter already seen / too old / retired prefix (checked before authentication, as
   * the reference does), "auth" = GCM authentication failed, "malformed" = not a PILS frame.
   */
  lastDrop: "replay" | "auth" | "malformed" | null = null;

  private drop(why: "replay" | "auth" | "malformed"): null {
    this.lastDrop = why;
    return null;
  }

  private addWindow(prefix: number): ReplayWindow | null {
    if (this.windows.size >= ACTIVE_PREFIXES) {
      if (this.retired.size >= MAX_RETIRED_PREFIXES) {
        this.exhausted = true;
        return null;
      }
      const oldest = this.windows.keys().next().value as number;
      this.windows.delete(oldest);
      this.retired.add(oldest);
    }
    const w = new ReplayWindow();
    this.windows.set(prefix, w);
    return w;
  }

  private repickPrefix(avoid: number): void {
    do randomFillSync(this.nonce, 0, 4);
    while (rd32(this.nonce, 0) === avoid);
  }

  /** Replay window for a peer prefix (tests/diagnostics). */
  windowFor(prefix: Uint8Array | number): ReplayWindow | undefined {
    return this.windows.get(typeof prefix === "number" ? prefix >>> 0 : rd32(prefix, 0));
  }
}

// ---------------------------------------------------------------------------------------------
// PILK (docs/protocol.md §3) and PILA (§3.5, §4.7)

export interface KeyExchange {
  nodeId: number;
  x25519Pub: Uint8Array;
}
export interface AuthKeyExchange extends KeyExchange {
  ed25519Pub: Uint8Array;
  signature: Uint8Array;
}

// Frame layouts live in one place, src/proto/tunnel.ts; this module adds the keys and signatures.
// Decoding errors are the proto codec's: ProtoError "frame_too_short" / "wrong_magic".

/** 40-byte PILK frame: "PILK" ‖ node ID ‖ X25519 public key. */
export function buildKeyExchange(nodeId: number, x25519Pub: Uint8Array): Uint8Array {
  needLen(x25519Pub, X25519_KEY_SIZE, "X25519 public key");
  return encodePILK(nodeId >>> 0, x25519Pub);
}

/** Parses a PILK frame (≥ 40 bytes, extra ignored). */
export function parseKeyExchange(frame: Uint8Array): KeyExchange {
  const f = decodePILK(frame);
  return { nodeId: f.nodeId, x25519Pub: f.x25519.slice() };
}

/**
 * 136-byte PILA frame: "PILA" ‖ node ID ‖ X25519 pub ‖ Ed25519 pub ‖ Ed25519 signature over the
 * 40-byte challenge "auth" ‖ node ID ‖ X25519 pub (no colon, W2).
 */
export function buildAuthKeyExchange(identity: Identity, nodeId: number, x25519Pub: Uint8Array): Uint8Array {
  needLen(x25519Pub, X25519_KEY_SIZE, "X25519 public key");
  needLen(identity?.publicKey, 32, "Ed25519 public key");
  return encodePILA({
    nodeId: nodeId >>> 0,
    x25519: x25519Pub,
    ed25519: identity.publicKey,
    signature: sign(identity, pilaChallenge(nodeId >>> 0, x25519Pub)),
  });
}

/** Parses a PILA frame without verifying it (≥ 136 bytes, extra ignored). */
export function parseAuthKeyExchange(frame: Uint8Array): AuthKeyExchange {
  const f = decodePILA(frame);
  return { nodeId: f.nodeId, x25519Pub: f.x25519.slice(), ed25519Pub: f.ed25519.slice(), signature: f.signature.slice() };
}

const CHALLENGE_BUF = new Uint8Array(40);

/**
 * Parses and verifies a PILA frame (docs/protocol.md §4.7 steps 1, 3, 4).
 * `expectedPubKey` is the sender's Ed25519 key from the registry/cache: the frame's key must equal it
 * byte for byte ("pila_key_mismatch") and the signature is checked with it. Without it only
 * self-consistency is checked (signature valid under the key carried in the frame) — NOT proof of
 * identity; the daemon must pass the registry key to treat the session as authenticated.
 * Throws ProtoError: pila_short, bad_magic, bad_key_length, pila_key_mismatch, pila_bad_signature.
 */
export function verifyAuthKeyExchange(frame: Uint8Array, expectedPubKey?: Uint8Array): AuthKeyExchange {
  const p = parseAuthKeyExchange(frame);
  let key = p.ed25519Pub;
  if (expectedPubKey !== undefined) {
    needLen(expectedPubKey, 32, "Ed25519 public key");
    let d = 0;
    for (let i = 0; i < 32; i++) d |= expectedPubKey[i] ^ key[i];
    if (d !== 0) {
      throw new ProtoError("pila_key_mismatch", `PILA from node ${p.nodeId}: Ed25519 key differs from the registered key`, "the peer must use the identity it registered; refresh the cached key if it rotated (W11)");
    }
    key = expectedPubKey;
  }
  if (!verify(key, pilaChallenge(p.nodeId, p.x25519Pub, CHALLENGE_BUF), p.signature)) {
    throw new ProtoError("pila_bad_signature", `PILA from node ${p.nodeId}: bad signature`, "the signature must cover \"auth\" ‖ node ID ‖ X25519 key (no colon)");
  }
  return p;
}
