// Small helpers shared by the services: local-time formats the reference writes to disk, atomic
// file writes, Go-style JSON string escaping for struct-order documents.

const p2 = (n: number) => (n < 10 ? "0" + n : "" + n);
const p3 = (n: number) => (n < 10 ? "00" + n : n < 100 ? "0" + n : "" + n);

/** Go time.RFC3339 of a local time, seconds precision: `2025-01-15T14:30:12+01:00`, `Z` at UTC offset 0. */
export function rfc3339Local(ms: number): string {
  const d = new Date(ms);
  const off = -d.getTimezoneOffset(); // minutes east of UTC
  let zone = "Z";
  if (off !== 0) {
    const a = Math.abs(off);
    zone = (off > 0 ? "+" : "-") + p2(Math.floor(a / 60)) + ":" + p2(a % 60);
  }
  return (
    d.getFullYear() + "-" + p2(d.getMonth() + 1) + "-" + p2(d.getDate()) + "T" +
    p2(d.getHours()) + ":" + p2(d.getMinutes()) + ":" + p2(d.getSeconds()) + zone
  );
}

/** Parse RFC 3339 (as written by rfc3339Local or Go); NaN when unparsable. */
export function parseRfc3339(s: unknown): number {
  if (typeof s !== "string" || !/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/.test(s)) return NaN;
  return Date.parse(s);
}

/** Unix seconds of Go's zero time, reported for unparsable stored times (docs/protocol.md §9.2). */
export const GO_ZERO_UNIX = -62135596800;

/** `YYYYMMDD-HHMMSS.mmm` in local time (docs/protocol.md §10.3). */
export function fileStamp(ms: number): string {
  const d = new Date(ms);
  return (
    d.getFullYear() + p2(d.getMonth() + 1) + p2(d.getDate()) + "-" +
    p2(d.getHours()) + p2(d.getMinutes()) + p2(d.getSeconds()) + "." + p3(d.getMilliseconds())
  );
}

export { goString } from "../../proto/gojson.ts";

export { atomicWriteFile } from "../../sys/atomic-write.ts";

export const utf8 = new TextEncoder();
/** Lossy decoder: invalid UTF-8 becomes U+FFFD, like Go's string→JSON conversion. */
export const utf8Lossy = new TextDecoder("utf-8", { fatal: false, ignoreBOM: true });

export function errText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
