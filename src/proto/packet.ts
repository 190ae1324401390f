// Packet codec, docs/protocol.md §2: 34-byte big-endian header + payload, CRC-32 over the header with
// bytes [30..34) zeroed followed by the declared payload. Pure: no I/O.
import { crc32Update, crc32JsUpdate } from "./crc32.ts";
import { readAddr, writeAddr } from "./addr.ts";
import { type Addr, HEADER_SIZE, MAX_PAYLOAD, type Packet, PROTOCOL_VERSION, ProtoError } from "./types.ts";

export type { Packet };

const ZERO4 = new Uint8Array(4);
const EMPTY = new Uint8Array(0);
const ZERO_ADDR: Addr = Object.freeze({ network: 0, node: 0 });

/** Build a Packet with defaults (version 1, no flags, zero addresses/ports/numbers, empty payload). */
export function makePacket(p: Partial<Packet>): Packet {
  return {
    version: p.version ?? PROTOCOL_VERSION,
    flags: p.flags ?? 0,
    protocol: p.protocol ?? 0,
    src: p.src ?? ZERO_ADDR,
    dst: p.dst ?? ZERO_ADDR,
    srcPort: p.srcPort ?? 0,
    dstPort: p.dstPort ?? 0,
    seq: p.seq ?? 0,
    ack: p.ack ?? 0,
    window: p.window ?? 0,
    payload: p.payload ?? EMPTY,
  };
}

/** Total encoded size of a packet (header + payload). */
export function packetSize(p: Packet): number {
  return HEADER_SIZE + p.payload.length;
}

function tooLarge(n: number): ProtoError {
  return new ProtoError("payload_too_large", `payload too large: ${n} bytes (max ${MAX_PAYLOAD})`, "split the data into several packets");
}

/**
 * Encode `p` into out[off..off+34+L) (zero-copy into a tunnel frame). Returns the number of bytes
 * written. Integer fields are truncated to their wire width (like Go's conversions).
 * Throws ProtoError "payload_too_large" (L > 65535) or "buffer_too_small".
 */
export function encodePacketInto(p: Packet, out: Uint8Array, off: number): number {
  const L = p.payload.length;
  if (L > MAX_PAYLOAD) throw tooLarge(L);
  const total = HEADER_SIZE + L;
  if (off < 0 || off + total > out.length) {
    throw new ProtoError("buffer_too_small", `need ${total} bytes at offset ${off}, buffer has ${out.length}`, "allocate packetSize(p) bytes");
  }
  out[off] = ((p.version & 0x0f) << 4) | (p.flags & 0x0f);
  out[off + 1] = p.protocol;
  out[off + 2] = L >>> 8;
  out[off + 3] = L;
  writeAddr(out, off + 4, p.src);
  writeAddr(out, off + 10, p.dst);
  out[off + 16] = p.srcPort >>> 8;
  out[off + 17] = p.srcPort;
  out[off + 18] = p.dstPort >>> 8;
  out[off + 19] = p.dstPort;
  const s = p.seq, a = p.ack;
  out[off + 20] = s >>> 24;
  out[off + 21] = s >>> 16;
  out[off + 22] = s >>> 8;
  out[off + 23] = s;
  out[off + 24] = a >>> 24;
  out[off + 25] = a >>> 16;
  out[off + 26] = a >>> 8;
  out[off + 27] = a;
  out[off + 28] = p.window >>> 8;
  out[off + 29] = p.window;
  out[off + 30] = 0;
  out[off + 31] = 0;
  out[off + 32] = 0;
  out[off + 33] = 0;
  if (L > 0) out.set(p.payload, off + HEADER_SIZE);
  const c = crc32Update(0, out, off, off + total);
  out[off + 30] = c >>> 24;
  out[off + 31] = c >>> 16;
  out[off + 32] = c >>> 8;
  out[off + 33] = c;
  return total;
}

/** Encode a packet into a new buffer of exactly 34 + L bytes. */
export function encodePacket(p: Packet): Uint8Array {
  const L = p.payload.length;
  if (L > MAX_PAYLOAD) throw tooLarge(L);
  const out = new Uint8Array(HEADER_SIZE + L);
  encodePacketInto(p, out, 0);
  return out;
}

/** CRC the receiver expects for the packet at buf[off..): header with zeroed checksum + L payload bytes. */
function computeChecksum(buf: Uint8Array, off: number, L: number): number {
  let c = crc32JsUpdate(0, buf, off, off + 30);
  c = crc32JsUpdate(c, ZERO4, 0, 4);
  if (L > 0) c = crc32Update(c, buf, off + HEADER_SIZE, off + HEADER_SIZE + L);
  return c;
}

/**
 * Decode one packet from buf[off..end) per docs/protocol.md §2: too short → "packet_too_short";
 * fewer than 34+L bytes → "packet_truncated"; CRC mismatch → "checksum_mismatch". Bytes after
 * 34+L are ignored (W16). The payload is a subarray VIEW of `buf` (no copy): copy it if the
 * buffer is reused. The version nibble is not checked (the reference does not either).
 */
export function decodePacket(buf: Uint8Array, off = 0, end = buf.length): Packet {
  if (end > buf.length) end = buf.length;
  const avail = end - off;
  if (off < 0 || avail < HEADER_SIZE) {
    throw new ProtoError("packet_too_short", `packet too short: ${avail < 0 ? 0 : avail} bytes (header is ${HEADER_SIZE})`, "the datagram does not hold a whole packet header");
  }
  const L = (buf[off + 2] << 8) | buf[off + 3];
  if (avail < HEADER_SIZE + L) {
    throw new ProtoError("packet_truncated", `packet truncated: header declares ${L} payload bytes, ${avail - HEADER_SIZE} present`, "the datagram was cut short");
  }
  const stored = ((buf[off + 30] << 24) | (buf[off + 31] << 16) | (buf[off + 32] << 8) | buf[off + 33]) >>> 0;
  const computed = computeChecksum(buf, off, L);
  if (stored !== computed) {
    throw new ProtoError(
      "checksum_mismatch",
      `checksum mismatch: stored 0x${stored.toString(16).padStart(8, "0")}, computed 0x${computed.toString(16).padStart(8, "0")}`,
      "the packet was corrupted in transit; drop it",
    );
  }
  const b0 = buf[off];
  return {
    version: b0 >>> 4,
    flags: b0 & 0x0f,
    protocol: buf[off + 1],
    src: readAddr(buf, off + 4),
    dst: readAddr(buf, off + 10),
    srcPort: (buf[off + 16] << 8) | buf[off + 17],
    dstPort: (buf[off + 18] << 8) | buf[off + 19],
    seq: ((buf[off + 20] << 24) | (buf[off + 21] << 16) | (buf[off + 22] << 8) | buf[off + 23]) >>> 0,
    ack: ((buf[off + 24] << 24) | (buf[off + 25] << 16) | (buf[off + 26] << 8) | buf[off + 27]) >>> 0,
    window: (buf[off + 28] << 8) | buf[off + 29],
    payload: buf.subarray(off + HEADER_SIZE, off + HEADER_SIZE + L),
  };
}

/** Stored checksum field of an encoded packet (no validation). */
export function packetChecksum(buf: Uint8Array, off = 0): number {
  return ((buf[off + 30] << 24) | (buf[off + 31] << 16) | (buf[off + 32] << 8) | buf[off + 33]) >>> 0;
}
