// Address mapping table: Pilot Addr ⇄ local IPv4 address inside a private subnet (docs/gateway-control.md).
//
// Differences from the reference (docs/differences.md, all [local]):
// * allocation starts at the subnet's network address + 1 instead of "base with last byte forced
//   to 1", so subnets whose base does not end in .0 (e.g. 10.4.0.128/25) work (docs/differences.md). For the
//   default 10.4.0.0/16 this is the same first IP, 10.4.0.1.
// * the network and broadcast addresses of the subnet are never handed out (prefix ≤ 30).
// * the allocation pointer moves forward as in the reference (fresh IPs are preferred, so a stale
//   client is not silently connected to a different agent), but when it reaches the end of the
//   subnet it wraps around once and reuses freed IPs; "subnet exhausted" only when every usable IP
//   is mapped (docs/differences.md: the reference never reuses an unmapped IP).
// * IPv6 subnets are rejected with a clear error instead of being mishandled (docs/differences.md).
import { formatAddr, parseAddr } from "../proto/addr.ts";
import type { Addr } from "../proto/types.ts";
import { GatewayError } from "./errors.ts";

export interface Mapping {
  localIp: string;
  addr: Addr;
}

/** Parse a dotted-quad IPv4 address into a u32; null when it is not one. */
export function parseIPv4(s: string): number | null {
  const parts = s.split(".");
  if (parts.length !== 4) return null;
  let v = 0;
  for (const p of parts) {
    if (!/^\d{1,3}$/.test(p)) return null;
    // Go's net.ParseIP rejects leading zeros in IPv4 octets ("010"): do the same.
    if (p.length > 1 && p[0] === "0") return null;
    const n = Number(p);
    if (n > 255) return null;
    v = v * 256 + n;
  }
  return v >>> 0;
}

export function formatIPv4(v: number): string {
  return `${v >>> 24}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`;
}

export interface Subnet {
  cidr: string; // canonical text, e.g. 10.4.0.0/16
  base: number; // network address
  prefix: number;
  size: number; // number of addresses
}

/** Parse an IPv4 CIDR. Errors: GatewayError("internal", "parse subnet: invalid CIDR address: s"). */
export function parseSubnet(s: string): Subnet {
  const bad = () => new GatewayError("internal", `parse subnet: invalid CIDR address: ${s}`, "use an IPv4 CIDR such as 10.4.0.0/16");
  const slash = s.indexOf("/");
  if (slash < 0) throw bad();
  const ipText = s.slice(0, slash);
  const pText = s.slice(slash + 1);
  if (ipText.includes(":")) {
    throw new GatewayError("internal", `parse subnet: IPv6 subnets are not supported: ${s}`, "use an IPv4 CIDR such as 10.4.0.0/16");
  }
  const ip = parseIPv4(ipText);
  if (ip === null || !/^\d{1,2}$/.test(pText)) throw bad();
  const prefix = Number(pText);
  if (prefix > 32) throw bad();
  const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
  const base = (ip & mask) >>> 0;
  return { cidr: `${formatIPv4(base)}/${prefix}`, base, prefix, size: 2 ** (32 - prefix) };
}

export class MappingTable {
  readonly subnet: Subnet;
  private byIp = new Map<number, Addr>();
  private byAddr = new Map<string, number>(); // formatted addr → ip
  private first: number; // first usable offset
  private last: number; // last usable offset (inclusive)
  private next: number; // next offset to try

  constructor(subnet: string | Subnet) {
    this.subnet = typeof subnet === "string" ? parseSubnet(subnet) : subnet;
    const { size } = this.subnet;
    if (size >= 4) {
      this.first = 1;
      this.last = size - 2;
    } else {
      // /31 and /32: every address is a host address.
      this.first = 0;
      this.last = size - 1;
    }
    this.next = this.first;
  }

  get size(): number {
    return this.byIp.size;
  }

  contains(ip: number): boolean {
    return ip - this.subnet.base >= 0 && ip - this.subnet.base < this.subnet.size;
  }

  /**
   * Map `addr`; returns the existing mapping when it is already mapped (the requested IP is then
   * ignored, as in the reference) with `created: false`.
   */
  map(addr: Addr | string, ip?: string): { mapping: Mapping; created: boolean } {
    const a = typeof addr === "string" ? parseAddr(addr) : addr;
    const key = formatAddr(a);
    const have = this.byAddr.get(key);
    if (have !== undefined) return { mapping: { localIp: formatIPv4(have), addr: a }, created: false };
    let v: number;
    if (ip !== undefined && ip !== "") {
      const p = parseIPv4(ip);
      if (p === null) throw new GatewayError("internal", `invalid IP: ${ip}`, "give an IPv4 address inside the gateway subnet");
      if (!this.contains(p)) throw new GatewayError("internal", `IP ${ip} not in subnet ${this.subnet.cidr}`, `pick an address inside ${this.subnet.cidr}`);
      if (this.byIp.has(p)) throw new GatewayError("internal", `IP ${ip} already mapped`, "unmap it first or omit the IP to allocate one");
      v = p;
    } else {
      v = this.alloc();
    }
    this.byIp.set(v, a);
    this.byAddr.set(key, v);
    return { mapping: { localIp: formatIPv4(v), addr: a }, created: true };
  }

  private alloc(): number {
    const span = this.last - this.first + 1;
    if (span <= 0 || this.byIp.size >= span) throw new GatewayError("internal", "subnet exhausted", `unmap an address or use a larger subnet than ${this.subnet.cidr}`);
    for (let i = 0; i < span; i++) {
      const off = this.next;
      this.next = off >= this.last ? this.first : off + 1;
      const v = (this.subnet.base + off) >>> 0;
      if (!this.byIp.has(v)) return v;
    }
    throw new GatewayError("internal", "subnet exhausted", `unmap an address or use a larger subnet than ${this.subnet.cidr}`);
  }

  /** Remove by local IP or Pilot address text. Throws not_found. */
  unmap(target: string): Mapping {
    let ip = parseIPv4(target);
    if (ip === null) {
      try {
        const a = parseAddr(target);
        ip = this.byAddr.get(formatAddr(a)) ?? null;
      } catch {
        ip = null;
      }
    }
    const a = ip === null ? undefined : this.byIp.get(ip);
    if (ip === null || !a) throw new GatewayError("not_found", `no mapping for ${target}`, "list mappings with: pilotctl gateway list");
    this.byIp.delete(ip);
    this.byAddr.delete(formatAddr(a));
    return { localIp: formatIPv4(ip), addr: a };
  }

  lookupIp(ip: string): Addr | undefined {
    const v = parseIPv4(ip);
    return v === null ? undefined : this.byIp.get(v);
  }

  /** All mappings ordered by IP. */
  list(): Mapping[] {
    return [...this.byIp.entries()].sort((x, y) => x[0] - y[0]).map(([ip, addr]) => ({ localIp: formatIPv4(ip), addr }));
  }
}
