// Registry value rules shared by the request handlers and the snapshot importer: typed errors,
// limits, key/hostname/tag/address validation and the text forms the registry writes.

export class RegError extends Error {
  constructor(readonly code: string, message: string) {
    super(message);
    this.name = "RegError";
  }
}
export const fail = (code: string, msg: string): never => {
  throw new RegError(code, msg);
};

/** A node not heard from for this long is reaped (and counts as offline). */
export const STALE_MS = 3 * 60_000;
export const BEACON_TTL_MS = 60_000;
/** Pending handshake requests per target node. */
export const MAX_INBOX = 100;
/** Pending handshake responses per requesting node (the reference had no bound). */
export const MAX_RESP_INBOX = 1000;
export const MAX_JUSTIFICATION = 4096;
/** Window (seconds) for timestamped signatures and the subscribe timestamp. */
export const FRESH_WINDOW_S = 120;
/**
 * Polo scores are kept within ±(2^53−1). The reference stores a Go int and converts the JSON
 * float with int(), which is undefined beyond int64 range; past 2^53 a JS number no longer holds
 * an exact integer, and PostgreSQL's BIGINT column would reject ±1e308 where SQLite silently
 * stored a REAL — clamping gives the same answer on both stores and exact integers on the wire.
 */
export const POLO_MAX = Number.MAX_SAFE_INTEGER;
export const clampPolo = (v: number) => (v > POLO_MAX ? POLO_MAX : v < -POLO_MAX ? -POLO_MAX : v);
/**
 * U+0000 cannot be stored in a PostgreSQL text column (SQLite can), so owners and justifications
 * carrying it are refused with a typed error on every store instead of failing only on PostgreSQL.
 */
export const hasNul = (s: string) => s.includes("\u0000");

export function normIp(ip: string): string {
  if (ip.startsWith("::ffff:") && ip.includes(".")) return ip.slice(7);
  return ip;
}

const B64_RE = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
/** Strict standard base64 with padding; returns null if invalid. */
export function b64decode(s: string): Uint8Array | null {
  if (!B64_RE.test(s)) return null;
  return new Uint8Array(Buffer.from(s, "base64"));
}
export const b64 = (b: Uint8Array) => Buffer.from(b).toString("base64");

/** Canonical text of a 32-byte public key given as standard base64, or null. */
export function canonicalKey(text: string): string | null {
  const kb = b64decode(text);
  return kb && kb.length === 32 ? b64(kb) : null;
}

/** Virtual address text `<net>:<NNNN>.<HHHH>.<LLLL>`. */
export function addrText(net: number, node: number): string {
  const h = (x: number) => x.toString(16).toUpperCase().padStart(4, "0");
  return `${net}:${h(net)}.${h(node >>> 16)}.${h(node & 0xffff)}`;
}

const HOST_RE = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
const RESERVED = new Set(["localhost", "backbone", "broadcast"]);
/** null if valid (the empty hostname clears it), else the reason. */
export function validateHostname(h: string): string | null {
  if (h === "") return null;
  if (h.length > 63) return `hostname too long (${h.length} > 63)`;
  if (!HOST_RE.test(h)) return `hostname ${JSON.stringify(h)} must be lower-case letters, digits and hyphens, starting and ending alphanumeric`;
  if (RESERVED.has(h)) return `hostname ${JSON.stringify(h)} is reserved`;
  return null;
}

const TAG_RE = /^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$/;
export const MAX_TAGS = 10;
/** Tags with an optional leading '#' removed, validated (at most 10, each 1-32 chars). */
export function normalizeTags(raw: string[]): string[] {
  const tags = raw.map((x) => (x.startsWith("#") ? x.slice(1) : x));
  if (tags.length > MAX_TAGS) fail("too_many_tags", `at most ${MAX_TAGS} tags`);
  for (const tg of tags) if (!tg || tg.length > 32 || !TAG_RE.test(tg)) fail("invalid_tag", `invalid tag ${JSON.stringify(tg)}`);
  return tags;
}

/**
 * Stored endpoint = TCP source IP + the port of `listen_addr` (the host part a client claims is
 * never trusted). An empty or unsplittable listen_addr gives the TCP source port.
 */
export function sanitizeListenAddr(listen: string, ip: string, port: number): string {
  const host = ip.includes(":") ? `[${ip}]` : ip;
  if (listen === "") return `${host}:${port}`;
  const i = listen.lastIndexOf(":");
  if (i < 0) return `${host}:${port}`;
  const h = listen.slice(0, i);
  if (h.startsWith("[") !== h.endsWith("]")) return `${host}:${port}`;
  if (!h.startsWith("[") && h.includes(":")) return `${host}:${port}`; // "too many colons"
  return `${host}:${listen.slice(i + 1)}`;
}
/** Host part of a stored "host:port" / "[v6]:port" endpoint. */
export function hostOf(addr: string): string {
  const i = addr.lastIndexOf(":");
  const h = i < 0 ? addr : addr.slice(0, i);
  return h.startsWith("[") ? h.slice(1, -1) : h;
}
