// goJson / goString: Go's encoding/json bytes (sorted keys, HTML-safe escapes). The encoder avoids
// JavaScript-implemented builtins for start-up speed; these tests pin its output against fixed Go
// bytes and against a plain formulation with JSON.stringify, regular expressions and Array.sort.
import { describe, expect, test } from "bun:test";
import { goJson, goString } from "../src/proto/gojson.ts";

function utf8Compare(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8"));
}
function refString(s: string): string {
  return JSON.stringify(s).replace(/</g, "\\u003c").replace(/>/g, "\\u003e").replace(/&/g, "\\u0026")
    .replace(/\u2028/g, "\\u2028").replace(/\u2029/g, "\\u2029");
}
function refJson(v: unknown): string {
  if (v === null || v === undefined) return "null";
  if (typeof v === "string") return refString(v);
  if (typeof v === "number") return Number.isFinite(v) ? JSON.stringify(v) : "null";
  if (typeof v === "boolean") return String(v);
  if (Array.isArray(v)) return "[" + v.map(refJson).join(",") + "]";
  const o = v as Record<string, unknown>;
  const keys = Object.keys(o).filter((k) => o[k] !== undefined).sort(utf8Compare);
  return "{" + keys.map((k) => refString(k) + ":" + refJson(o[k])).join(",") + "}";
}

/** Deterministic pseudo-random source (xorshift32). */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 0x100000000;
  };
}
const ALPHABET = ["a", "b", "Z", "0", "_", "<", ">", "&", "\"", "\\", "\n", "\u0001", "\u2028", "\u2029", "é", "\uffff", "\u{1f600}", "\ud800", " "];
function randString(r: () => number, max: number): string {
  let s = "";
  const n = Math.floor(r() * max);
  for (let i = 0; i < n; i++) s += ALPHABET[Math.floor(r() * ALPHABET.length)];
  return s;
}
function randValue(r: () => number, depth: number): unknown {
  const k = Math.floor(r() * (depth > 2 ? 5 : 7));
  switch (k) {
    case 0: return randString(r, r() < 0.1 ? 200 : 12);
    case 1: return Math.floor(r() * 1e9) - 5e8;
    case 2: return r() < 0.5;
    case 3: return null;
    case 4: return r() * 1000;
    case 5: return Array.from({ length: Math.floor(r() * 5) }, () => randValue(r, depth + 1));
    default: {
      const o: Record<string, unknown> = {};
      const n = Math.floor(r() * (r() < 0.1 ? 60 : 10));
      for (let i = 0; i < n; i++) o[randString(r, 6)] = r() < 0.1 ? undefined : randValue(r, depth + 1);
      return o;
    }
  }
}

describe("goJson", () => {
  test("Go's bytes for escapes and key order", () => {
    expect(goString("a<b>&c\u2028\u2029")).toBe('"a\\u003cb\\u003e\\u0026c\\u2028\\u2029"');
    expect(goString("x".repeat(70) + "<&>")).toBe(`"${"x".repeat(70)}\\u003c\\u0026\\u003e"`);
    expect(goJson({ b: 1, a: [true, null, "s"], "\u{1f600}": 2, "\uffff": 3, A: undefined })).toBe('{"a":[true,null,"s"],"b":1,"\uffff":3,"\u{1f600}":2}');
    expect(goJson({})).toBe("{}");
    expect(goJson([])).toBe("[]");
    expect(goJson(new Uint8Array([1, 2, 3]))).toBe('"AQID"');
    expect(goJson(12n)).toBe("12");
    expect(goJson(NaN)).toBe("null");
  });

  test("matches the plain formulation on random values (short and long strings, small and large objects)", () => {
    const r = rng(0x5eed);
    for (let i = 0; i < 2000; i++) {
      const v = randValue(r, 0);
      expect(goJson(v)).toBe(refJson(v));
    }
  });
});
