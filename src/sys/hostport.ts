// The one "host:port" parser (the rules of Go's net.SplitHostPort, which the reference uses for
// every listen, dial and endpoint address).

export interface HostPort {
  /** Host without brackets; "" for ":port" (the wildcard when listening). */
  host: string;
  port: number;
}

/**
 * Split "host:port", "[v6]:port" or ":port". An IPv6 host must be bracketed ("too many colons"
 * otherwise); the port must be decimal digits in [0, 65535]. Returns null when malformed.
 */
export function parseHostPort(s: string): HostPort | null {
  const i = s.lastIndexOf(":");
  if (i < 0) return null;
  let host = s.slice(0, i);
  if (host.startsWith("[")) {
    if (!host.endsWith("]")) return null;
    host = host.slice(1, -1);
    if (host.includes("[") || host.includes("]")) return null;
  } else if (host.includes(":") || host.includes("[") || host.includes("]")) {
    return null;
  }
  const pt = s.slice(i + 1);
  if (!/^\d+$/.test(pt)) return null;
  const port = Number(pt);
  return port <= 65535 ? { host, port } : null;
}

/** "host:port", bracketing an IPv6 host. */
export function joinHostPort(host: string, port: number | string): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}
