// UDP tunnel frame codecs, docs/protocol.md §3 (PILT, PILS header, PILK, PILA, PILP) and the datagram
// demultiplexer of docs/protocol.md §3. Pure: no I/O, no crypto (sealing/opening PILS and signing/verifying PILA
// belong to src/crypto; this file only lays out and parses the bytes).
import { decodePacket, encodePacketInto } from "./packet.ts";
import { HEADER_SIZE, MAX_PAYLOAD, type Packet, ProtoError } from "./types.ts";

export const MAGIC_PILT = 0x50494c54; // "PILT"
export const MAGIC_PILS = 0x50494c53; // "PILS"
export const MAGIC_PILK = 0x50494c4b; // "PILK"
export const MAGIC_PILA = 0x50494c41; // "PILA"
export const MAGIC_PILP = 0x50494c50; // "PILP"

export const MAGIC_SIZE = 4;
/** Smallest PILT frame the receiver decodes: magic + packet header (docs/protocol.md §3). */
export const PILT_MIN = MAGIC_SIZE + HEADER_SIZE; // 38
export const PILT_OVERHEAD = MAGIC_SIZE;
export const NONCE_SIZE = 12;
export const TAG_SIZE = 16;
/** PILS header: magic + node ID + nonce; the ciphertext starts here (docs/protocol.md §3). */
export const PILS_HEADER_SIZE = MAGIC_SIZE + 4 + NONCE_SIZE; // 20
/** Minimum PILS frame: header + an empty ciphertext's tag (4 + 4 + 12 + 16, docs/protocol.md §3). */
export const PILS_MIN = PILS_HEADER_SIZE + TAG_SIZE; // 36
/** Bytes a PILS frame adds on top of the marshaled packet. */
export const PILS_OVERHEAD = PILS_HEADER_SIZE + TAG_SIZE; // 36
export const KEY_SIZE = 32;
export const SIG_SIZE = 64;
export const PILK_SIZE = MAGIC_SIZE + 4 + KEY_SIZE; // 40
export const PILA_SIZE = MAGIC_SIZE + 4 + KEY_SIZE + KEY_SIZE + SIG_SIZE; // 136
export const PILP_SIZE = MAGIC_SIZE;
/** PILA challenge length: "auth" ‖ node ID ‖ X25519 key. */
export const PILA_CHALLENGE_SIZE = 4 + 4 + KEY_SIZE; // 40
/** Reference receive buffer: largest packet + PILT overhead (docs/protocol.md §2). */
export const MAX_DATAGRAM = MAX_PAYLOAD + HEADER_SIZE + MAGIC_SIZE;

export type DatagramKind = "empty" | "beacon" | "PILT" | "PILS" | "PILK" | "PILA" | "PILP" | "short" | "unknown";

function u32(b: Uint8Array, o: number): number {
  return ((b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3]) >>> 0;
}
function putU32(b: Uint8Array, o: number, v: number): void {
  b[o] = v >>> 24;
  b[o + 1] = v >>> 16;
  b[o + 2] = v >>> 8;
  b[o + 3] = v;
}

/**
 * Demultiplex one received UDP datagram (docs/protocol.md §3): empty → "empty"; first byte < 0x10 →
 * "beacon" (docs/protocol.md §7.1, decoded by beacon.ts); fewer than 4 bytes → "short"; then the magic.
 * Length minimums of each frame are checked by its decoder, not here.
 */
export function classifyDatagram(buf: Uint8Array): DatagramKind {
  if (buf.length === 0) return "empty";
  if (buf[0] < 0x10) return "beacon";
  if (buf.length < 4) return "short";
  switch (u32(buf, 0)) {
    case MAGIC_PILT: return "PILT";
    case MAGIC_PILS: return "PILS";
    case MAGIC_PILK: return "PILK";
    case MAGIC_PILA: return "PILA";
    case MAGIC_PILP: return "PILP";
    default: return "unknown";
  }
}

const NAMES: Record<number, string> = {
  [MAGIC_PILT]: "PILT", [MAGIC_PILS]: "PILS", [MAGIC_PILK]: "PILK", [MAGIC_PILA]: "PILA", [MAGIC_PILP]: "PILP",
};

function checkFrame(buf: Uint8Array, magic: number, min: number): void {
  const name = NAMES[magic];
  if (buf.length < 4 || u32(buf, 0) !== magic) {
    throw new ProtoError("wrong_magic", `not a ${name} frame`, `the datagram does not start with "${name}"; use classifyDatagram first`);
  }
  if (buf.length < min) {
    throw new ProtoError("frame_too_short", `${name} frame too short: ${buf.length} bytes (min ${min})`, "the datagram was truncated; drop it");
  }
}

function checkKey(k: Uint8Array, size: number, what: string): void {
  if (k.length !== size) {
    throw new ProtoError("invalid_key_length", `${what} must be ${size} bytes, got ${k.length}`, `pass the raw ${size}-byte value`);
  }
}

// ---------------------------------------------------------------- PILT (docs/protocol.md §3)

/** Frame an already marshaled packet: "PILT" ‖ packet (copies once). */
export function encodePILT(packetBytes: Uint8Array): Uint8Array {
  const out = new Uint8Array(MAGIC_SIZE + packetBytes.length);
  putU32(out, 0, MAGIC_PILT);
  out.set(packetBytes, MAGIC_SIZE);
  return out;
}

/** Encode a Packet straight into a new PILT frame (one allocation). */
export function encodePacketPILT(p: Packet): Uint8Array {
  if (p.payload.length > MAX_PAYLOAD) {
    throw new ProtoError("payload_too_large", `payload too large: ${p.payload.length} bytes (max ${MAX_PAYLOAD})`, "split the data into several packets");
  }
  const out = new Uint8Array(MAGIC_SIZE + HEADER_SIZE + p.payload.length);
  putU32(out, 0, MAGIC_PILT);
  encodePacketInto(p, out, MAGIC_SIZE);
  return out;
}

/** Encode a Packet as a PILT frame into out[off..); returns the frame length. */
export function encodePILTInto(p: Packet, out: Uint8Array, off: number): number {
  if (off < 0 || off + MAGIC_SIZE > out.length) {
    throw new ProtoError("buffer_too_small", `need at least ${MAGIC_SIZE} bytes at offset ${off}`, "allocate a larger buffer");
  }
  const n = encodePacketInto(p, out, off + MAGIC_SIZE);
  putU32(out, off, MAGIC_PILT);
  return MAGIC_SIZE + n;
}

/**
 * Decode a PILT frame: wrong magic → "wrong_magic"; < 38 bytes → "frame_too_short" (the reference
 * ignores these silently); then the packet rules of docs/protocol.md §2 (packet_truncated, checksum_mismatch).
 * Payload is a view into `buf`.
 */
export function decodePILT(buf: Uint8Array): Packet {
  checkFrame(buf, MAGIC_PILT, PILT_MIN);
  return decodePacket(buf, MAGIC_SIZE, buf.length);
}

// ---------------------------------------------------------------- PILS (docs/protocol.md §3)

export interface PILSView {
  /** Sender's node ID (cleartext, selects the session key). */
  nodeId: number;
  /** 12-byte GCM nonce (view): 4-byte prefix ‖ 8-byte BE counter. */
  nonce: Uint8Array;
  /** Nonce prefix as u32. */
  prefix: number;
  /** Counter high/low 32-bit halves (u64 = hi * 2^32 + lo; kept as two numbers to stay exact without BigInt). */
  counterHi: number;
  counterLo: number;
  /** Ciphertext including the trailing 16-byte tag (view, runs to the end of the datagram). */
  ciphertext: Uint8Array;
}

/** Parse the PILS header (no decryption). < 36 bytes → "frame_too_short". */
export function parsePILS(buf: Uint8Array): PILSView {
  checkFrame(buf, MAGIC_PILS, PILS_MIN);
  return {
    nodeId: u32(buf, 4),
    nonce: buf.subarray(8, 20),
    prefix: u32(buf, 8),
    counterHi: u32(buf, 12),
    counterLo: u32(buf, 16),
    ciphertext: buf.subarray(PILS_HEADER_SIZE),
  };
}

/** Counter of a 12-byte nonce as a BigInt (exact u64). */
export function nonceCounter(nonce: Uint8Array): bigint {
  return (BigInt(u32(nonce, 4)) << 32n) | BigInt(u32(nonce, 8));
}

/**
 * Write a 12-byte nonce (prefix u32 ‖ counter u64 BE) at out[off..off+12).
 * `counter` may be a number (exact below 2^53) or a bigint (full u64).
 */
export function writeNonce(out: Uint8Array, off: number, prefix: number, counter: number | bigint): void {
  putU32(out, off, prefix);
  let hi: number, lo: number;
  if (typeof counter === "bigint") {
    hi = Number((counter >> 32n) & 0xffffffffn);
    lo = Number(counter & 0xffffffffn);
  } else {
    hi = Math.floor(counter / 0x100000000);
    lo = counter >>> 0;
  }
  putU32(out, off + 4, hi);
  putU32(out, off + 8, lo);
}

/**
 * Write the 20-byte PILS header ("PILS" ‖ nodeId ‖ nonce) at out[off..off+20). The caller then
 * places ciphertext‖tag at off+20. Returns off + 20.
 */
export function writePILSHeader(out: Uint8Array, off: number, nodeId: number, nonce: Uint8Array): number {
  checkKey(nonce, NONCE_SIZE, "nonce");
  putU32(out, off, MAGIC_PILS);
  putU32(out, off + 4, nodeId);
  out.set(nonce, off + 8);
  return off + PILS_HEADER_SIZE;
}

/** Assemble a PILS frame from its parts (one allocation, one copy of the ciphertext). */
export function encodePILS(nodeId: number, nonce: Uint8Array, ciphertextWithTag: Uint8Array): Uint8Array {
  if (ciphertextWithTag.length < TAG_SIZE) {
    throw new ProtoError("ciphertext_too_short", `ciphertext must include the ${TAG_SIZE}-byte tag`, "append the GCM tag");
  }
  const out = new Uint8Array(PILS_HEADER_SIZE + ciphertextWithTag.length);
  writePILSHeader(out, 0, nodeId, nonce);
  out.set(ciphertextWithTag, PILS_HEADER_SIZE);
  return out;
}

// ---------------------------------------------------------------- PILK (docs/protocol.md §3)

export interface PILKFrame {
  nodeId: number;
  /** Sender's X25519 public key (32 bytes; a view when decoded). */
  x25519: Uint8Array;
}

export function encodePILK(nodeId: number, x25519: Uint8Array): Uint8Array {
  checkKey(x25519, KEY_SIZE, "X25519 public key");
  const out = new Uint8Array(PILK_SIZE);
  putU32(out, 0, MAGIC_PILK);
  putU32(out, 4, nodeId);
  out.set(x25519, 8);
  return out;
}

/** Decode a PILK frame: < 40 bytes → "frame_too_short"; extra bytes ignored (docs/protocol.md §3). */
export function decodePILK(buf: Uint8Array): PILKFrame {
  checkFrame(buf, MAGIC_PILK, PILK_SIZE);
  return { nodeId: u32(buf, 4), x25519: buf.subarray(8, 40) };
}

// ---------------------------------------------------------------- PILA (docs/protocol.md §3)

export interface PILAFrame {
  nodeId: number;
  /** Sender's X25519 public key (32 bytes). */
  x25519: Uint8Array;
  /** Sender's Ed25519 public key (raw 32 bytes). */
  ed25519: Uint8Array;
  /** Pure Ed25519 signature (64 bytes) over pilaChallenge(nodeId, x25519). */
  signature: Uint8Array;
}

/**
 * The 40 bytes a PILA signature covers: ASCII "auth" (61 75 74 68, NO colon — the reference's
 * source comment saying "auth:" is wrong, W2) ‖ node ID (u32 BE) ‖ X25519 public key.
 */
export function pilaChallenge(nodeId: number, x25519: Uint8Array, into?: Uint8Array): Uint8Array {
  checkKey(x25519, KEY_SIZE, "X25519 public key");
  // `into` (at least 40 bytes) avoids an allocation on the key-exchange path.
  const out = into ? into.subarray(0, PILA_CHALLENGE_SIZE) : new Uint8Array(PILA_CHALLENGE_SIZE);
  out[0] = 0x61;
  out[1] = 0x75;
  out[2] = 0x74;
  out[3] = 0x68;
  putU32(out, 4, nodeId);
  out.set(x25519, 8);
  return out;
}

/** Layout: "PILA" ‖ nodeId ‖ x25519 (32) ‖ ed25519 (32) ‖ signature (64) = 136 bytes. */
export function encodePILA(f: PILAFrame): Uint8Array {
  checkKey(f.x25519, KEY_SIZE, "X25519 public key");
  checkKey(f.ed25519, KEY_SIZE, "Ed25519 public key");
  checkKey(f.signature, SIG_SIZE, "Ed25519 signature");
  const out = new Uint8Array(PILA_SIZE);
  putU32(out, 0, MAGIC_PILA);
  putU32(out, 4, f.nodeId);
  out.set(f.x25519, 8);
  out.set(f.ed25519, 40);
  out.set(f.signature, 72);
  return out;
}

/** Decode a PILA frame: < 136 bytes → "frame_too_short"; extra bytes ignored (docs/protocol.md §3). Fields are views. */
export function decodePILA(buf: Uint8Array): PILAFrame {
  checkFrame(buf, MAGIC_PILA, PILA_SIZE);
  return {
    nodeId: u32(buf, 4),
    x25519: buf.subarray(8, 40),
    ed25519: buf.subarray(40, 72),
    signature: buf.subarray(72, 136),
  };
}

// ---------------------------------------------------------------- PILP (docs/protocol.md §3)

/** The 4-byte NAT punch frame. */
export function encodePILP(): Uint8Array {
  const out = new Uint8Array(PILP_SIZE);
  putU32(out, 0, MAGIC_PILP);
  return out;
}

/**
 * Validate a PILP frame. It is exactly the magic; trailing bytes are tolerated (the reference
 * dispatches on the magic alone and ignores PILP content).
 */
export function decodePILP(buf: Uint8Array): void {
  checkFrame(buf, MAGIC_PILP, PILP_SIZE);
}
