// Registry request authentication: node signatures over the challenge strings, the timestamped
// ("fresh") signature extension with its replay cache, the per-connection pending endpoint that
// a signed request commits, and the operator's admin token.
//
// Signatures: the request field `signature` is standard base64 of a pure Ed25519 signature by the
// node's registered key over the challenge text. Reference daemons sign the plain challenge, which
// an eavesdropper can replay; a client may instead add `ts` (Unix ms) and sign
// `<challenge>:<ts>`: it must be within ±120 s and each such signature is accepted once. A node
// that has used the timestamped form once is marked strict, and plain signatures for it are
// refused from then on.
import { createHash, timingSafeEqual } from "node:crypto";
import { verify as edVerify } from "../crypto/identity.ts";
import { freshChallenge } from "../proto/registry.ts";
import type { NodeRec, Tx } from "./store.ts";
import { FRESH_WINDOW_S, b64decode, fail } from "./validate.ts";

/** Per-connection state the handlers need. */
export interface ConnCtx {
  ip: string; // remote IP text, IPv4-mapped reduced to dotted IPv4
  port: number;
  /**
   * Endpoint claimed by a re-register of a live node from another IP: applied only after a
   * request on this same connection carries a valid signature of that node.
   */
  pendingAddr: Map<number, string>;
  /** Set by subscribe: node IDs whose push events this connection receives. */
  subscribed: Set<number>;
  /** Set by a handler when the connection must be closed after the response is written. */
  closeAfter?: boolean;
  /** Set by a successful subscribe_replication: hub generation at snapshot export. */
  replGen?: number;
}

/** The signature fields of a signed request. */
export interface SigFields {
  signature: string;
  ts?: number;
}

const enc = new TextEncoder();
const digest = (s: string) => createHash("sha256").update(s).digest();

export class Auth {
  private freshSeen = new Map<string, number>(); // fresh-signature replay cache: sig -> expiry ms
  /** Requests whose fresh signature the optimistic read path already consumed (see verify()). */
  private consumed = new WeakSet<object>();
  private readonly admin: Buffer | null;
  /** Plain signatures already verified (reference daemons repeat the same bytes every minute). */
  readonly verified = new VerifiedSigs();

  constructor(private now: () => number, adminToken = "") {
    this.admin = adminToken ? digest(adminToken) : null;
  }

  /** Constant-time check of the operator's admin token (always false when none is configured). */
  adminOk(token: string): boolean {
    if (!this.admin || !token) return false;
    return timingSafeEqual(digest(token), this.admin);
  }

  /**
   * Signature check with no side effects: shape, freshness window, strict mode, Ed25519.
   * Returns whether the signature is of the timestamped (fresh) form.
   */
  checkSig(node: NodeRec, challenge: string, m: SigFields): boolean {
    const sigText = m.signature;
    if (!sigText) fail("signature_required", `signature required for ${challenge.split(":")[0]}`);
    const fresh = typeof m.ts === "number";
    const msgText = fresh ? freshChallenge(challenge, m.ts as number) : challenge;
    // A plain signature that verified before (same key, same text, same bytes) verifies again:
    // the check is a pure function of the three. Timestamped signatures are single-use and never
    // cached. A hit skips only the base64 decoding and the Ed25519 arithmetic, never the
    // freshness, strict-mode or replay rules below.
    const hit = !fresh && this.verified.has(sigText, node.publicKey, msgText);
    let sig: Uint8Array | null = null;
    if (!hit) {
      sig = b64decode(sigText);
      if (!sig || sig.length !== 64) fail("bad_signature", "signature is not 64 bytes of standard base64");
    }
    if (fresh) {
      // `ts` = Unix milliseconds (clients keep it strictly increasing so that two identical
      // requests in the same millisecond still get distinct, non-replayable signatures).
      if (Math.abs(this.now() - (m.ts as number)) > FRESH_WINDOW_S * 1000) fail("stale_signature", "signature timestamp outside ±120 s");
    } else if (node.strict) {
      fail("fresh_signature_required", "this node uses timestamped signatures; plain signatures are refused (replay protection)");
    }
    if (hit) return false;
    const pub = b64decode(node.publicKey);
    if (!pub || pub.length !== 32) fail("bad_signature", "node has no usable public key");
    if (!edVerify(pub!, enc.encode(msgText), sig!)) fail("bad_signature", "signature verification failed");
    if (!fresh) this.verified.add(sigText, node.publicKey, msgText);
    return fresh;
  }

  /** Fresh-signature replay check; records the signature as used (in memory, per process). */
  private useFresh(sigText: string): void {
    const now = this.now();
    if ((this.freshSeen.get(sigText) ?? 0) > now) fail("replayed_signature", "signature already used");
    this.freshSeen.set(sigText, now + 2 * FRESH_WINDOW_S * 1000);
    if (this.freshSeen.size > 100_000) for (const [k, exp] of this.freshSeen) if (exp <= now) this.freshSeen.delete(k);
  }

  /**
   * Full verification inside a write transaction: the signature, the fresh-signature replay
   * cache and strict flag, and the pending endpoint of this connection (committed with the node).
   */
  async verify(t: Tx, node: NodeRec, challenge: string, m: SigFields, ctx: ConnCtx): Promise<void> {
    const fresh = this.checkSig(node, challenge, m);
    let dirty = false;
    if (fresh) {
      // Consumed once per request: the optimistic read path may already have consumed this
      // request's signature before it found that a write is needed (e.g. poll_handshakes with a
      // non-empty inbox), and a PostgreSQL transaction may be rerun; the same request must not
      // then be refused as its own replay.
      if (!this.consumed.has(m)) { this.useFresh(m.signature); this.consumed.add(m); }
      if (!node.strict) { node.strict = true; dirty = true; }
    }
    const pend = ctx.pendingAddr.get(node.id);
    if (pend !== undefined) {
      ctx.pendingAddr.delete(node.id);
      t.undo(() => { if (!ctx.pendingAddr.has(node.id)) ctx.pendingAddr.set(node.id, pend); });
      node.realAddr = pend;
      node.lastSeen = this.now();
      dirty = true;
    }
    if (dirty) await t.putNode(node);
  }

  /**
   * verify() for the optimistic read path (no write lock held): performs exactly verify()'s
   * checks and throws the same errors, but if verify() would have written the node (first
   * timestamped signature → strict flag, or a pending endpoint on this connection) it returns
   * false WITHOUT any side effect (the fresh signature is not consumed), so the caller can rerun
   * the whole request under Store.tx, where verify() re-reads the node and re-decides. Returns
   * true when the request is verified and needs no write (the fresh signature, if any, is then
   * consumed here; that cache is process memory, not the store).
   */
  verifyNoWrite(node: NodeRec, challenge: string, m: SigFields, ctx: ConnCtx): boolean {
    const fresh = this.checkSig(node, challenge, m);
    if ((fresh && !node.strict) || ctx.pendingAddr.has(node.id)) return false;
    if (fresh) {
      this.useFresh(m.signature);
      this.consumed.add(m); // a locked retry of this same request must not count it twice
    }
    return true;
  }
}

/** Entries of the verified-signature cache (about 250 bytes each: ~32 MB at the bound). */
export const VERIFIED_MAX = 131_072;

/**
 * Bounded set of (signature, public key, signed text) triples that passed Ed25519 verification.
 * Keyed by the signature text; the key and text are compared in full on lookup. When full, the
 * oldest eighth is dropped (insertion order), so a working set larger than the bound degrades to
 * plain verification instead of growing memory.
 */
export class VerifiedSigs {
  private m = new Map<string, string>();
  constructor(private max = VERIFIED_MAX) {}
  get size(): number {
    return this.m.size;
  }
  has(sig: string, pub: string, msg: string): boolean {
    const v = this.m.get(sig);
    return v !== undefined && v.length === pub.length + 1 + msg.length && v === pub + "\n" + msg;
  }
  add(sig: string, pub: string, msg: string): void {
    if (this.m.size >= this.max) {
      let drop = this.max >> 3;
      for (const k of this.m.keys()) { this.m.delete(k); if (--drop <= 0) break; }
    }
    this.m.set(sig, pub + "\n" + msg);
  }
}
