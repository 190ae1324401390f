// Virtual addresses, docs/protocol.md §1: 6-byte binary form, `N:NNNN.HHHH.LLLL` text form, socket address
// text `<addr>:<port>`. Pure: no I/O.
//
// Accept/reject decisions follow the reference parser step by step (docs/protocol.md §1); error
// messages reproduce its wording (Go strconv errors and %q quoting) so a CLI echoing them matches.
import { type Addr, ProtoError } from "./types.ts";

export type { Addr };

export const BROADCAST_NODE = 0xffffffff;
export const ZERO_ADDR: Addr = Object.freeze({ network: 0, node: 0 });

const ADDR_HINT = "addresses look like N:NNNN.HHHH.LLLL, e.g. 0:0000.0000.0001 (the first hex group repeats the network ID)";
const SOCK_HINT = "socket addresses look like N:NNNN.HHHH.LLLL:PORT, e.g. 0:0000.0000.0001:1000";

/** Go's %q for the strings we echo (ASCII escapes as strconv.Quote would print them). */
export function goQuote(s: string): string {
  let out = '"';
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    switch (c) {
      case 0x22: out += '\\"'; break;
      case 0x5c: out += "\\\\"; break;
      case 0x07: out += "\\a"; break;
      case 0x08: out += "\\b"; break;
      case 0x0c: out += "\\f"; break;
      case 0x0a: out += "\\n"; break;
      case 0x0d: out += "\\r"; break;
      case 0x09: out += "\\t"; break;
      case 0x0b: out += "\\v"; break;
      default:
        if (c < 0x20 || c === 0x7f) out += "\\x" + c.toString(16).padStart(2, "0");
        else out += s[i];
    }
  }
  return out + '"';
}

function addrError(message: string): ProtoError {
  return new ProtoError("invalid_address", message, ADDR_HINT);
}

/** UTF-8 byte length of s[start..end) (Go's len() on the same text). */
function utf8Len(s: string, start: number, end: number): number {
  let n = 0;
  for (let i = start; i < end; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < end) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        n += 4;
        i++;
      } else n += 3;
    } else n += 3;
  }
  return n;
}

const SYNTAX = -1;
const RANGE = -2;

/**
 * strconv.ParseUint(s[start..end), 10, 16) semantics: ASCII digits only (leading zeros fine),
 * empty → syntax error, overflow → range error reported as soon as the value exceeds 16 bits
 * (Go checks overflow per digit, before later invalid characters).
 */
function parseDec16(s: string, start: number, end: number): number {
  if (start >= end) return SYNTAX;
  let v = 0;
  for (let i = start; i < end; i++) {
    const d = s.charCodeAt(i) - 48;
    if (d < 0 || d > 9) return SYNTAX;
    v = v * 10 + d;
    if (v > 0xffff) return RANGE;
  }
  return v;
}

/** Hex value of exactly 4 characters s[start..start+4), or -1 (digits 0-9 a-f A-F only). */
function parseHex4(s: string, start: number): number {
  let v = 0;
  for (let i = start; i < start + 4; i++) {
    const c = s.charCodeAt(i);
    let d: number;
    if (c >= 48 && c <= 57) d = c - 48;
    else if (c >= 65 && c <= 70) d = c - 55;
    else if (c >= 97 && c <= 102) d = c - 87;
    else return -1;
    v = (v << 4) | d;
  }
  return v;
}

function strconvError(part: string, kind: number): string {
  return `strconv.ParseUint: parsing ${goQuote(part)}: ${kind === RANGE ? "value out of range" : "invalid syntax"}`;
}

/** Parse `N:NNNN.HHHH.LLLL` (docs/protocol.md §1). Throws ProtoError("invalid_address"). */
export function parseAddr(s: string): Addr {
  // Step 1: split at the first colon.
  const colon = s.indexOf(":");
  if (colon < 0) throw addrError(`invalid address: ${goQuote(s)} (expected N:XXXX.YYYY.YYYY)`);
  // Step 2: decimal network ID, 16 bits.
  const network = parseDec16(s, 0, colon);
  if (network < 0) {
    const part = s.slice(0, colon);
    throw addrError(`invalid network ID: ${goQuote(part)}: ${strconvError(part, network)}`);
  }
  // Step 3: exactly three dot-separated groups in the remainder.
  const r0 = colon + 1;
  const d1 = s.indexOf(".", r0);
  const d2 = d1 < 0 ? -1 : s.indexOf(".", d1 + 1);
  if (d1 < 0 || d2 < 0 || s.indexOf(".", d2 + 1) >= 0) {
    throw addrError(`invalid address: ${goQuote(s.slice(r0))} (expected 3 dot-separated hex groups)`);
  }
  // Step 4: every group exactly 4 bytes long, all checked before any hex parsing.
  const g0 = r0, g1 = d1 + 1, g2 = d2 + 1;
  checkGroupLen(s, g0, d1);
  checkGroupLen(s, g1, d2);
  checkGroupLen(s, g2, s.length);
  // Step 5: group 1 as hex.
  const hexNet = parseHex4(s, g0);
  if (hexNet < 0 || d1 - g0 !== 4) throw hexError(s.slice(g0, d1));
  // Step 6: must equal the decimal network ID.
  if (hexNet !== network) {
    throw addrError(`network mismatch: decimal ${network} != hex 0x${hex4(hexNet)}`);
  }
  // Step 7: node = group2 << 16 | group3.
  const hi = d2 - g1 === 4 ? parseHex4(s, g1) : -1;
  if (hi < 0) throw hexError(s.slice(g1, d2));
  const lo = s.length - g2 === 4 ? parseHex4(s, g2) : -1;
  if (lo < 0) throw hexError(s.slice(g2));
  return { network, node: ((hi << 16) | lo) >>> 0 };
}

function checkGroupLen(s: string, a: number, b: number): void {
  // Fast path: 4 ASCII characters. Otherwise compare Go's byte length.
  if (b - a === 4 && s.charCodeAt(a) < 0x80 && s.charCodeAt(a + 1) < 0x80 && s.charCodeAt(a + 2) < 0x80 && s.charCodeAt(a + 3) < 0x80) return;
  if (utf8Len(s, a, b) !== 4) throw addrError(`invalid hex group: ${goQuote(s.slice(a, b))} (expected 4 digits)`);
}

function hexError(g: string): ProtoError {
  return addrError(`invalid hex group: ${goQuote(g)}: strconv.ParseUint: parsing ${goQuote(g)}: invalid syntax`);
}

const HEX = "0123456789ABCDEF";
function hex4(v: number): string {
  return HEX[(v >>> 12) & 15] + HEX[(v >>> 8) & 15] + HEX[(v >>> 4) & 15] + HEX[v & 15];
}

/** Format as `N:NNNN.HHHH.LLLL` (decimal network, uppercase hex). */
export function formatAddr(a: Addr): string {
  return `${a.network}:${hex4(a.network)}.${hex4(a.node >>> 16)}.${hex4(a.node & 0xffff)}`;
}

export function addrEquals(a: Addr, b: Addr): boolean {
  return a.network === b.network && a.node === b.node;
}

/** Unique number per address (network * 2^32 + node, < 2^48): usable as a Map key. */
export function addrKey(a: Addr): number {
  return a.network * 0x100000000 + a.node;
}

/** Inverse of addrKey. */
export function addrFromKey(k: number): Addr {
  return { network: Math.floor(k / 0x100000000), node: k % 0x100000000 };
}

/** True only when both network and node are 0 (docs/protocol.md §1). */
export function isZero(a: Addr): boolean {
  return a.network === 0 && a.node === 0;
}

/** True when node == 0xFFFFFFFF, on any network (docs/protocol.md §1). */
export function isBroadcast(a: Addr): boolean {
  return a.node === BROADCAST_NODE;
}

export function broadcastAddr(network: number): Addr {
  return { network, node: BROADCAST_NODE };
}

/** Write the 6-byte binary form at buf[off..off+6). Returns off + 6. */
export function writeAddr(buf: Uint8Array, off: number, a: Addr): number {
  const n = a.network, d = a.node;
  buf[off] = n >>> 8;
  buf[off + 1] = n;
  buf[off + 2] = d >>> 24;
  buf[off + 3] = d >>> 16;
  buf[off + 4] = d >>> 8;
  buf[off + 5] = d;
  return off + 6;
}

/** Read the 6-byte binary form at buf[off..off+6). Throws ProtoError("addr_truncated") if short. */
export function readAddr(buf: Uint8Array, off: number): Addr {
  if (off < 0 || off + 6 > buf.length) {
    throw new ProtoError("addr_truncated", `address needs 6 bytes at offset ${off}, buffer has ${buf.length}`, "the input is truncated");
  }
  return {
    network: (buf[off] << 8) | buf[off + 1],
    node: ((buf[off + 2] << 24) | (buf[off + 3] << 16) | (buf[off + 4] << 8) | buf[off + 5]) >>> 0,
  };
}

/** 6-byte binary form as a new buffer. */
export function marshalAddr(a: Addr): Uint8Array {
  const b = new Uint8Array(6);
  writeAddr(b, 0, a);
  return b;
}

/**
 * Parse `<address>:<port>` (docs/protocol.md §1): split at the LAST colon; address errors propagate
 * (code "invalid_address"); no colon → "invalid_socket_address"; bad port → "invalid_port".
 */
export function parseSocketAddr(s: string): { addr: Addr; port: number } {
  const colon = s.lastIndexOf(":");
  if (colon < 0) {
    throw new ProtoError("invalid_socket_address", `invalid socket address: ${goQuote(s)} (no port)`, SOCK_HINT);
  }
  const addr = parseAddr(s.slice(0, colon));
  const port = parseDec16(s, colon + 1, s.length);
  if (port < 0) {
    const p = s.slice(colon + 1);
    throw new ProtoError("invalid_port", `invalid port: ${goQuote(p)}: ${strconvError(p, port)}`, "ports are decimal numbers 0-65535");
  }
  return { addr, port };
}

export function formatSocketAddr(a: Addr, port: number): string {
  return `${formatAddr(a)}:${port}`;
}
