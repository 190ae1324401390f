// Beacon UDP message codecs (docs/protocol.md §7.1). Pure functions, no I/O.
// All integers big-endian. Decoders throw ProtoError only (never anything else), so a caller can
// drop malformed datagrams silently as the reference does.
import { ProtoError } from "./types.ts";

export const BEACON_DISCOVER = 0x01;
export const BEACON_DISCOVER_REPLY = 0x02;
export const BEACON_PUNCH_REQUEST = 0x03;
export const BEACON_PUNCH_COMMAND = 0x04;
export const BEACON_RELAY = 0x05;
export const BEACON_RELAY_DELIVER = 0x06;
export const BEACON_SYNC = 0x07;

/** A UDP endpoint. `ip` is dotted IPv4 or canonical (RFC 5952) IPv6 text, without zone/brackets. */
export interface Endpoint {
  ip: string;
  port: number;
}

export type BeaconMsg =
  | { type: typeof BEACON_DISCOVER; nodeId: number }
  | { type: typeof BEACON_DISCOVER_REPLY; ep: Endpoint }
  | { type: typeof BEACON_PUNCH_REQUEST; requester: number; target: number }
  | { type: typeof BEACON_PUNCH_COMMAND; ep: Endpoint }
  | { type: typeof BEACON_RELAY; sender: number; dest: number; payload: Uint8Array }
  | { type: typeof BEACON_RELAY_DELIVER; sender: number; payload: Uint8Array }
  | { type: typeof BEACON_SYNC; beaconId: number; nodeIds: number[] };

// ---------------------------------------------------------------- IP text <-> bytes

function bad(code: string, msg: string, hint: string): never {
  throw new ProtoError(code, msg, hint);
}

function parseV4(s: string, out: Uint8Array, off: number): boolean {
  const parts = s.split(".");
  if (parts.length !== 4) return false;
  for (let i = 0; i < 4; i++) {
    const p = parts[i];
    if (!/^\d{1,3}$/.test(p)) return false;
    const n = Number(p);
    if (n > 255) return false;
    out[off + i] = n;
  }
  return true;
}

/**
 * Parse an IP address text into 4 or 16 bytes. IPv4-mapped IPv6 (`::ffff:a.b.c.d`) yields the
 * 4-byte form (docs/protocol.md §7.1: such addresses are encoded with ip_len 4). Brackets and a zone
 * suffix (`%eth0`) are tolerated and dropped.
 */
export function parseIp(text: string): Uint8Array {
  let s = text.trim();
  if (s.startsWith("[") && s.endsWith("]")) s = s.slice(1, -1);
  const pct = s.indexOf("%");
  if (pct >= 0) s = s.slice(0, pct);
  const v4 = new Uint8Array(4);
  if (parseV4(s, v4, 0)) return v4;
  if (!s.includes(":")) bad("bad_ip", `invalid IP address ${JSON.stringify(text)}`, "use dotted IPv4 or RFC 4291 IPv6 text");
  const out = new Uint8Array(16);
  // Split on "::" (at most one).
  const dbl = s.indexOf("::");
  if (dbl >= 0 && s.indexOf("::", dbl + 1) >= 0) bad("bad_ip", `invalid IPv6 address ${JSON.stringify(text)}`, "at most one '::' is allowed");
  const head = dbl >= 0 ? s.slice(0, dbl) : s;
  const tail = dbl >= 0 ? s.slice(dbl + 2) : "";
  const parseGroups = (part: string): number[] | null => {
    if (part === "") return [];
    const gs = part.split(":");
    const res: number[] = [];
    for (let i = 0; i < gs.length; i++) {
      const g = gs[i];
      if (i === gs.length - 1 && g.includes(".")) {
        const b = new Uint8Array(4);
        if (!parseV4(g, b, 0)) return null;
        res.push((b[0] << 8) | b[1], (b[2] << 8) | b[3]);
        continue;
      }
      if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return null;
      res.push(parseInt(g, 16));
    }
    return res;
  };
  const h = parseGroups(head);
  const t = parseGroups(tail);
  if (!h || !t) bad("bad_ip", `invalid IPv6 address ${JSON.stringify(text)}`, "use RFC 4291 IPv6 text");
  const total = h.length + t.length;
  if (dbl >= 0 ? total > 7 : total !== 8) bad("bad_ip", `invalid IPv6 address ${JSON.stringify(text)}`, "an IPv6 address has 8 groups");
  const groups = [...h, ...new Array(8 - total).fill(0), ...t];
  for (let i = 0; i < 8; i++) {
    out[2 * i] = groups[i] >> 8;
    out[2 * i + 1] = groups[i] & 0xff;
  }
  // IPv4-mapped -> 4-byte form.
  let mapped = out[10] === 0xff && out[11] === 0xff;
  for (let i = 0; i < 10 && mapped; i++) if (out[i] !== 0) mapped = false;
  if (mapped) return out.slice(12);
  return out;
}

/** Format 4 or 16 bytes as IP text (IPv6 in RFC 5952 canonical form, lower-case). */
export function formatIp(b: Uint8Array): string {
  if (b.length === 4) return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`;
  if (b.length !== 16) bad("bad_ip", `IP must be 4 or 16 bytes, got ${b.length}`, "internal: pass a 4- or 16-byte address");
  const g: number[] = [];
  for (let i = 0; i < 8; i++) g.push((b[2 * i] << 8) | b[2 * i + 1]);
  // Longest run (>= 2) of zero groups, first one wins.
  let bestS = -1, bestL = 0;
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestL && j - i >= 2) { bestS = i; bestL = j - i; }
    i = j;
  }
  const hex = (x: number) => x.toString(16);
  if (bestS < 0) return g.map(hex).join(":");
  return g.slice(0, bestS).map(hex).join(":") + "::" + g.slice(bestS + bestL).map(hex).join(":");
}

/** "host:port" text for an endpoint (IPv6 bracketed), as the registry stores real addresses. */
export function formatHostPort(ep: Endpoint): string {
  return ep.ip.includes(":") ? `[${ep.ip}]:${ep.port}` : `${ep.ip}:${ep.port}`;
}

// ---------------------------------------------------------------- EP (docs/protocol.md §7.1)

/** Encoded EP size for an IP (4-byte form for IPv4 and IPv4-mapped). */
export function epSize(ip: Uint8Array): number {
  return 1 + ip.length + 2;
}

function checkPort(port: number): void {
  if (!Number.isInteger(port) || port < 0 || port > 65535) bad("bad_port", `invalid port ${port}`, "ports are 0-65535");
}

/** Write EP(ip, port) at `off`; returns the new offset. */
export function writeEp(out: Uint8Array, off: number, ip: Uint8Array, port: number): number {
  checkPort(port);
  out[off] = ip.length;
  out.set(ip, off + 1);
  const p = off + 1 + ip.length;
  out[p] = port >> 8;
  out[p + 1] = port & 0xff;
  return p + 2;
}

export function encodeEp(ep: Endpoint): Uint8Array {
  const ip = parseIp(ep.ip);
  const out = new Uint8Array(epSize(ip));
  writeEp(out, 0, ip, ep.port);
  return out;
}

/** Decode an EP at `off`. Trailing bytes are ignored (docs/protocol.md §7.1). */
export function decodeEp(buf: Uint8Array, off = 0): Endpoint {
  if (buf.length < off + 1) bad("ep_truncated", "endpoint truncated: missing ip_len", "an EP is ip_len(1) + ip + port(2)");
  const n = buf[off];
  if (n !== 4 && n !== 16) bad("ep_bad_len", `endpoint ip_len must be 4 or 16, got ${n}`, "ignore this message");
  if (buf.length < off + 1 + n + 2) bad("ep_truncated", `endpoint truncated: need ${1 + n + 2} bytes`, "ignore this message");
  const ip = formatIp(buf.subarray(off + 1, off + 1 + n));
  const port = (buf[off + 1 + n] << 8) | buf[off + 2 + n];
  return { ip, port };
}

// ---------------------------------------------------------------- messages

function u32(out: Uint8Array, off: number, v: number): void {
  if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) bad("bad_node_id", `invalid u32 ${v}`, "node IDs are 0..4294967295");
  out[off] = v >>> 24;
  out[off + 1] = (v >>> 16) & 0xff;
  out[off + 2] = (v >>> 8) & 0xff;
  out[off + 3] = v & 0xff;
}

function rd32(b: Uint8Array, off: number): number {
  return ((b[off] << 24) >>> 0) + (b[off + 1] << 16) + (b[off + 2] << 8) + b[off + 3];
}

export function encodeDiscover(nodeId: number): Uint8Array {
  const out = new Uint8Array(5);
  out[0] = BEACON_DISCOVER;
  u32(out, 1, nodeId);
  return out;
}

function epMsg(type: number, ep: Endpoint): Uint8Array {
  const ip = parseIp(ep.ip);
  const out = new Uint8Array(1 + epSize(ip));
  out[0] = type;
  writeEp(out, 1, ip, ep.port);
  return out;
}

export function encodeDiscoverReply(ep: Endpoint): Uint8Array {
  return epMsg(BEACON_DISCOVER_REPLY, ep);
}

export function encodePunchRequest(requester: number, target: number): Uint8Array {
  const out = new Uint8Array(9);
  out[0] = BEACON_PUNCH_REQUEST;
  u32(out, 1, requester);
  u32(out, 5, target);
  return out;
}

export function encodePunchCommand(ep: Endpoint): Uint8Array {
  return epMsg(BEACON_PUNCH_COMMAND, ep);
}

export function encodeRelay(sender: number, dest: number, payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(9 + payload.length);
  out[0] = BEACON_RELAY;
  u32(out, 1, sender);
  u32(out, 5, dest);
  out.set(payload, 9);
  return out;
}

export function encodeRelayDeliver(sender: number, payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(5 + payload.length);
  out[0] = BEACON_RELAY_DELIVER;
  u32(out, 1, sender);
  out.set(payload, 5);
  return out;
}

/** Turn a Relay datagram into the RelayDeliver for its destination, copying the payload once. */
export function relayToDeliver(relay: Uint8Array): Uint8Array {
  if (relay.length < 9 || relay[0] !== BEACON_RELAY) bad("relay_truncated", "not a Relay message", "need 0x05 + 8 bytes");
  const out = new Uint8Array(relay.length - 4);
  out[0] = BEACON_RELAY_DELIVER;
  out.set(relay.subarray(1, 5), 1);
  out.set(relay.subarray(9), 5);
  return out;
}

export function encodeSync(beaconId: number, nodeIds: readonly number[]): Uint8Array {
  if (nodeIds.length > 0xffff) bad("sync_too_many", `too many IDs for one Sync: ${nodeIds.length}`, "at most 65535 IDs per Sync");
  const out = new Uint8Array(7 + 4 * nodeIds.length);
  out[0] = BEACON_SYNC;
  u32(out, 1, beaconId);
  out[5] = nodeIds.length >> 8;
  out[6] = nodeIds.length & 0xff;
  for (let i = 0; i < nodeIds.length; i++) u32(out, 7 + 4 * i, nodeIds[i]);
  return out;
}

/**
 * Decode one beacon datagram. Applies the reference's minimum-length rules (docs/protocol.md §7.2); extra bytes
 * after fixed fields are ignored where the reference ignores them. Throws ProtoError on anything
 * malformed (empty, unknown type, truncated, bad EP).
 */
export function decodeBeacon(buf: Uint8Array): BeaconMsg {
  if (buf.length === 0) bad("beacon_empty", "empty datagram", "ignore it");
  const t = buf[0];
  const need = (n: number, what: string) => {
    if (buf.length < n) bad("beacon_truncated", `${what} too short: ${buf.length} bytes (need ${n})`, "ignore the datagram");
  };
  switch (t) {
    case BEACON_DISCOVER:
      need(5, "Discover");
      return { type: BEACON_DISCOVER, nodeId: rd32(buf, 1) };
    case BEACON_DISCOVER_REPLY:
      return { type: BEACON_DISCOVER_REPLY, ep: decodeEp(buf, 1) };
    case BEACON_PUNCH_REQUEST:
      need(9, "PunchRequest");
      return { type: BEACON_PUNCH_REQUEST, requester: rd32(buf, 1), target: rd32(buf, 5) };
    case BEACON_PUNCH_COMMAND:
      return { type: BEACON_PUNCH_COMMAND, ep: decodeEp(buf, 1) };
    case BEACON_RELAY:
      need(9, "Relay");
      return { type: BEACON_RELAY, sender: rd32(buf, 1), dest: rd32(buf, 5), payload: buf.subarray(9) };
    case BEACON_RELAY_DELIVER:
      // Daemons ignore a RelayDeliver without payload byte (docs/protocol.md §7.4); we decode >= 5 and let them decide.
      need(5, "RelayDeliver");
      return { type: BEACON_RELAY_DELIVER, sender: rd32(buf, 1), payload: buf.subarray(5) };
    case BEACON_SYNC: {
      need(7, "Sync");
      const n = (buf[5] << 8) | buf[6];
      need(7 + 4 * n, "Sync");
      const ids: number[] = new Array(n);
      for (let i = 0; i < n; i++) ids[i] = rd32(buf, 7 + 4 * i);
      return { type: BEACON_SYNC, beaconId: rd32(buf, 1), nodeIds: ids };
    }
    default:
      bad("beacon_unknown_type", `unknown beacon message type 0x${t.toString(16).padStart(2, "0")}`, "ignore the datagram");
  }
}
