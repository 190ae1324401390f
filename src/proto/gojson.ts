// "Go-sorted JSON" (docs/protocol.md §9 conventions, docs/protocol.md §8.1): compact JSON, object keys in ascending
// byte order at every level, and Go's HTML-safe escaping of <, >, & (and U+2028/U+2029).
// Readers never depend on this; writers use it so our bytes match the reference's.

// Start-up cost: every short pilotctl command ends here, and in a freshly started process each
// first call of a JavaScriptCore builtin that is itself written in JavaScript (Array.prototype.map,
// filter, sort with a comparator, RegExp.prototype.test, String.prototype.replace) compiles that
// builtin first: measured ≈0.1 ms each in the compiled executable, ≈0.4 ms for one small object.
// So the common path below uses only plain loops and natively implemented calls (JSON.stringify,
// Object.keys, charCodeAt, string concatenation). Long strings still take the regular expressions,
// which scan faster than a loop once compiled.

/** Go encoding/json string escaping (HTML-safe: <, >, & and U+2028/2029 escaped). */
export function goString(s: string): string {
  const j = JSON.stringify(s);
  if (j.length > 64) {
    if (!/[<>&\u2028\u2029]/.test(j)) return j;
    return j
      .replace(/</g, "\\u003c")
      .replace(/>/g, "\\u003e")
      .replace(/&/g, "\\u0026")
      .replace(/\u2028/g, "\\u2028")
      .replace(/\u2029/g, "\\u2029");
  }
  // Short strings (keys, most values): none of the characters Go escapes differently, usually.
  let i = 0;
  for (; i < j.length; i++) {
    const c = j.charCodeAt(i);
    if (c === 0x3c || c === 0x3e || c === 0x26 || c === 0x2028 || c === 0x2029) break;
  }
  if (i === j.length) return j;
  let out = j.slice(0, i);
  for (; i < j.length; i++) {
    const c = j.charCodeAt(i);
    if (c === 0x3c) out += "\\u003c";
    else if (c === 0x3e) out += "\\u003e";
    else if (c === 0x26) out += "\\u0026";
    else if (c === 0x2028) out += "\\u2028";
    else if (c === 0x2029) out += "\\u2029";
    else out += j[i];
  }
  return out;
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
  return utf8Compare(a, b);
}

// The functions that name the global `Buffer` stay off the common path: Bun creates that global
// on first reference, which a fresh process pays for in the first function that names it.
function utf8Compare(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8"));
}
function base64(v: Uint8Array): string {
  return Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString("base64");
}

/** Objects up to this many keys are sorted by insertion sort (no builtin); larger ones by Array.prototype.sort. */
const SMALL_SORT = 32;

/** The defined keys of `o` in Go's map-key order. */
function sortedKeys(o: Record<string, unknown>): string[] {
  const all = Object.keys(o);
  const keys: string[] = [];
  for (let i = 0; i < all.length; i++) if (o[all[i]!] !== undefined) keys.push(all[i]!);
  if (keys.length > SMALL_SORT) return keys.sort(byteCompare);
  for (let i = 1; i < keys.length; i++) {
    const k = keys[i]!;
    let j = i - 1;
    while (j >= 0 && byteCompare(keys[j]!, k) > 0) {
      keys[j + 1] = keys[j]!;
      j--;
    }
    keys[j + 1] = k;
  }
  return keys;
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
      if (Array.isArray(v)) {
        let s = "[";
        for (let i = 0; i < v.length; i++) s += (i ? "," : "") + goJson(v[i]);
        return s + "]";
      }
      if (v instanceof Uint8Array) return goString(base64(v));
      const o = v as Record<string, unknown>;
      const keys = sortedKeys(o);
      let s = "{";
      for (let i = 0; i < keys.length; i++) s += (i ? "," : "") + goString(keys[i]!) + ":" + goJson(o[keys[i]!]);
      return s + "}";
    }
    default:
      return "null";
  }
}

const enc = new TextEncoder();
export function goJsonBytes(v: unknown): Uint8Array {
  return enc.encode(goJson(v));
}
