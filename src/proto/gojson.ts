// "Go-sorted JSON" (docs/protocol.md §9 conventions, docs/protocol.md §8.1): compact JSON, object keys in ascending
// byte order at every level, and Go's HTML-safe escaping of <, >, & (and U+2028/U+2029).
// Readers never depend on this; writers use it so our bytes match the reference's.

/** Go encoding/json string escaping (HTML-safe: <, >, & and U+2028/2029 escaped). */
export function goString(s: string): string {
  const j = JSON.stringify(s);
  // Fast path: most strings contain none of the characters Go escapes differently.
  if (!/[<>&\u2028\u2029]/.test(j)) return j;
  return j
    .replace(/</g, "\\u003c")
    .replace(/>/g, "\\u003e")
    .replace(/&/g, "\\u0026")
    .replace(/\u2028/g, "\\u2028")
    .replace(/\u2029/g, "\\u2029");
}

function byteCompare(a: string, b: string): number {
  // Keys are compared as UTF-8 byte strings, like Go's sort of map keys. UTF-16 code-unit order
  // equals UTF-8 byte order unless the first differing units involve a surrogate (a supplementary
  // character sorts after U+E000-U+FFFF in UTF-8, before it in UTF-16): only then encode.
  if (a === b) return 0;
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a.charCodeAt(i) === b.charCodeAt(i)) i++;
  if (i === n) return a.length - b.length;
  const x = a.charCodeAt(i), y = b.charCodeAt(i);
  if (x < 0xd800 && y < 0xd800) return x - y;
  const ea = Buffer.from(a, "utf8");
  const eb = Buffer.from(b, "utf8");
  return Buffer.compare(ea, eb);
}

export function goJson(v: unknown): string {
  if (v === null || v === undefined) return "null";
  switch (typeof v) {
    case "string":
      return goString(v);
    case "number":
      return Number.isFinite(v) ? JSON.stringify(v) : "null";
    case "bigint":
      return v.toString();
    case "boolean":
      return v ? "true" : "false";
    case "object": {
      if (Array.isArray(v)) return "[" + v.map((x) => goJson(x)).join(",") + "]";
      if (v instanceof Uint8Array) return goString(Buffer.from(v).toString("base64"));
      const o = v as Record<string, unknown>;
      const keys = Object.keys(o).filter((k) => o[k] !== undefined);
      keys.sort(byteCompare);
      return "{" + keys.map((k) => goString(k) + ":" + goJson(o[k])).join(",") + "}";
    }
    default:
      return "null";
  }
}

const enc = new TextEncoder();
export function goJsonBytes(v: unknown): Uint8Array {
  return enc.encode(goJson(v));
}
