// The trust handshake message exchanged on port 444: one compact JSON object per stream, in the
// reference's struct field order, with Go's string escaping. The signature covers the ASCII
// challenge `handshake:<from node>:<to node>` (Ed25519, standard base64).
import { goString } from "./gojson.ts";
import { ProtoError } from "./types.ts";

export const HS_REQUEST = "handshake_request";
export const HS_ACCEPT = "handshake_accept";
export const HS_REJECT = "handshake_reject";
export const HS_REVOKE = "handshake_revoke";

/** Messages older than this (seconds, by their timestamp) are refused. */
export const MAX_AGE_S = 300;
/** Messages dated more than this far in the future (seconds) are refused. */
export const MAX_SKEW_S = 30;
/** A reference receiver reads one segment only: a message must fit in it. */
export const MAX_MESSAGE_BYTES = 4096;

/** The challenge a handshake message's signature covers (the same string the registry relay checks). */
export { handshakeChallenge } from "./registry-challenges.ts";

const lossy = new TextDecoder("utf-8", { fatal: false, ignoreBOM: true });

export interface HandshakeMsg {
  type: string;
  node_id: number;
  public_key: string;
  justification: string;
  signature: string;
  reason: string;
  timestamp: number;
}

/** Struct-order compact JSON, Go escaping, no trailing newline. */
export function encodeHandshakeMsg(m: HandshakeMsg): string {
  return (
    '{"type":' + goString(m.type) +
    ',"node_id":' + (m.node_id >>> 0) +
    ',"public_key":' + goString(m.public_key) +
    ',"justification":' + goString(m.justification) +
    ',"signature":' + goString(m.signature) +
    ',"reason":' + goString(m.reason) +
    ',"timestamp":' + Math.trunc(m.timestamp) + "}"
  );
}

const FIELDS = ["type", "node_id", "public_key", "justification", "signature", "reason", "timestamp"] as const;

function badMsg(message: string): ProtoError {
  return new ProtoError("bad_handshake_message", message, "a handshake message is one JSON object with type, node_id, public_key, justification, signature, reason, timestamp");
}

/**
 * Lenient decode like Go's encoding/json into the message struct: unknown keys ignored, missing or
 * null fields take zero values, key names matched case-insensitively (exact match wins); a wrong
 * type or a node_id outside u32 fails the whole message.
 */
export function decodeHandshakeMsg(data: Uint8Array | string): HandshakeMsg {
  const text = typeof data === "string" ? data : lossy.decode(data);
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw badMsg("handshake message is not valid JSON");
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw badMsg("handshake message is not a JSON object");
  const o = v as Record<string, unknown>;
  const m: HandshakeMsg = { type: "", node_id: 0, public_key: "", justification: "", signature: "", reason: "", timestamp: 0 };
  const lower = new Map<string, string>();
  for (const k of Object.keys(o)) {
    const lk = k.toLowerCase();
    if (!lower.has(lk)) lower.set(lk, k);
  }
  for (const f of FIELDS) {
    const key = f in o ? f : lower.get(f);
    if (key === undefined) continue;
    const val = o[key];
    if (val === null) continue;
    if (f === "node_id") {
      if (typeof val !== "number" || !Number.isInteger(val) || val < 0 || val > 0xffffffff) throw badMsg("node_id must be an integer 0..4294967295");
      m.node_id = val;
    } else if (f === "timestamp") {
      if (typeof val !== "number" || !Number.isInteger(val)) throw badMsg("timestamp must be an integer");
      m.timestamp = val;
    } else {
      if (typeof val !== "string") throw badMsg(`${f} must be a string`);
      m[f] = val;
    }
  }
  return m;
}
