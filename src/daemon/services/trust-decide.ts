// Pure decisions of the trust handshake: which inbound messages are acceptable before any registry
// lookup, and what each message (direct or relayed through the registry) does to the local state.
// No I/O and no clock: the service supplies the facts and applies the outcome.
import { MAX_AGE_S, MAX_SKEW_S, type HandshakeMsg } from "../../proto/handshake.ts";

/** A trust operation failed; `code` is machine-readable. */
export class TrustError extends Error {
  constructor(readonly code: string, message: string) {
    super(message);
    this.name = "TrustError";
  }
}

/** Why an inbound message was not acted upon (or "ok"). */
export type Verdict =
  | "ok" | "decode" | "timeout" | "stale" | "future" | "replay" | "node_mismatch" | "bad_key"
  | "key_mismatch" | "bad_signature" | "no_registry" | "unsolicited" | "unknown_type";

const B64_RE = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Strict padded standard base64 → bytes, or null. */
export function strictBase64(s: string): Uint8Array | null {
  if (!B64_RE.test(s)) return null;
  return new Uint8Array(Buffer.from(s, "base64"));
}

/**
 * Checks that need neither the registry nor state: the timestamp is fresh (not older than
 * MAX_AGE_S, not more than MAX_SKEW_S ahead), the claimed sender is the node the stream came from
 * (`remoteNode`, tunnel-authenticated; null = unknown), and a non-empty key is exactly 32 bytes of
 * strict base64 with a 64-byte signature. Returns the refusal, or null to go on.
 */
export function precheck(m: HandshakeMsg, nowS: number, remoteNode: number | null): Verdict | null {
  if (nowS - m.timestamp > MAX_AGE_S) return "stale";
  if (m.timestamp - nowS > MAX_SKEW_S) return "future";
  if (remoteNode !== null && m.node_id !== remoteNode) return "node_mismatch";
  if (m.public_key !== "") {
    const key = strictBase64(m.public_key);
    if (!key || key.length !== 32) return "bad_key";
    const sig = strictBase64(m.signature);
    if (!sig || sig.length !== 64) return "bad_signature";
  }
  return null;
}

/**
 * Does the message's key match the registry's key for its node? Equal text, or equal bytes of
 * two valid keys. An empty key only matches a node the registry knows without a key.
 */
export function keyMatches(msgKey: string, registryKey: string): boolean {
  if (msgKey === registryKey) return true;
  if (msgKey === "" || registryKey === "") return false;
  const a = strictBase64(msgKey);
  const b = strictBase64(registryKey);
  return !!a && !!b && Buffer.compare(a, b) === 0;
}

/** What we know about a peer when one of its messages arrives. */
export interface PeerFacts {
  /** It is in our trusted list. */
  trusted: boolean;
  /** We asked it for trust and have no answer yet. */
  asked: boolean;
}

/**
 * An inbound request: "accept_again" (already trusted: just answer), "mutual" (we asked it too:
 * trust both ways), or "check_network" (look for a shared non-zero network, else keep it pending).
 */
export function requestAction(f: PeerFacts): "accept_again" | "mutual" | "check_network" {
  if (f.trusted) return "accept_again";
  if (f.asked) return "mutual";
  return "check_network";
}

/** The first non-zero network both nodes belong to, if any (auto-approval rule). */
export function sharedNetwork(mine: readonly number[] | null | undefined, theirs: readonly number[] | null | undefined): number | undefined {
  return (mine ?? []).find((n) => n !== 0 && (theirs ?? []).includes(n));
}

/**
 * An accept (direct, or relayed and so vouched for by the registry) creates trust only when we
 * asked that node; an accept from a node already trusted changes nothing; any other is unsolicited.
 */
export function acceptAction(f: PeerFacts): "trust" | "ignore" | "unsolicited" {
  if (f.asked) return "trust";
  return f.trusted ? "ignore" : "unsolicited";
}

/**
 * A request relayed by the registry: answer it again if trusted, trust both ways if we asked it
 * too, else keep it pending (the key is filled in from the registry later).
 */
export function relayedRequestAction(f: PeerFacts): "respond" | "mutual" | "pending" {
  if (f.trusted) return "respond";
  if (f.asked) return "mutual";
  return "pending";
}

/** A response relayed by the registry: an accept we asked for creates trust; a rejection ends our request. */
export function relayedResponseAction(accept: boolean, f: PeerFacts): "trust" | "forget_request" | "none" {
  if (accept) return f.trusted || !f.asked ? "none" : "trust";
  return f.asked ? "forget_request" : "none";
}
