// CRC-32/ISO-HDLC (zlib / PNG / Ethernet CRC), docs/protocol.md §2.
// Reflected polynomial 0xEDB88320, init 0xFFFFFFFF, final XOR 0xFFFFFFFF; check("123456789") = 0xCBF43926.
//
// Two implementations live here:
//  * crc32Js: a pure-TypeScript slicing-by-8 implementation (portable, verified against the check value);
//  * Bun.hash.crc32 (native, zlib-compatible, chains with a previous value like zlib.crc32).
// `crc32`/`crc32Update` use the native one when it is present and verifies against the check value,
// except for very short inputs where the JS loop avoids the native call + subarray overhead
// (threshold chosen from bench/codec.ts measurements).
// Pure: no I/O.

const POLY = 0xedb88320;

/** 8 tables of 256 entries for slicing-by-8; table 0 is the classic byte-wise table. */
const T = new Int32Array(256 * 8);
for (let n = 0; n < 256; n++) {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ POLY : c >>> 1;
  T[n] = c;
}
for (let n = 0; n < 256; n++) {
  let c = T[n];
  for (let t = 1; t < 8; t++) {
    c = T[c & 0xff] ^ (c >>> 8);
    T[t * 256 + n] = c;
  }
}

/**
 * Pure-JS CRC-32 continuation: `prev` is a finished CRC of the preceding bytes (0 for none),
 * exactly like zlib's crc32(prev, buf). Returns an unsigned 32-bit value.
 */
export function crc32JsUpdate(prev: number, buf: Uint8Array, start = 0, end = buf.length): number {
  let c = ~prev | 0;
  let i = start;
  const end8 = end - ((end - start) & 7);
  while (i < end8) {
    const lo = c ^ (buf[i] | (buf[i + 1] << 8) | (buf[i + 2] << 16) | (buf[i + 3] << 24));
    c =
      T[1792 + (lo & 0xff)] ^
      T[1536 + ((lo >>> 8) & 0xff)] ^
      T[1280 + ((lo >>> 16) & 0xff)] ^
      T[1024 + (lo >>> 24)] ^
      T[768 + buf[i + 4]] ^
      T[512 + buf[i + 5]] ^
      T[256 + buf[i + 6]] ^
      T[buf[i + 7]];
    i += 8;
  }
  while (i < end) c = T[(c ^ buf[i++]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}

/** Pure-JS CRC-32 of buf[start..end). */
export function crc32Js(buf: Uint8Array, start = 0, end = buf.length): number {
  return crc32JsUpdate(0, buf, start, end);
}

type NativeCrc = (data: Uint8Array, seed?: number) => number;

function pickNative(): NativeCrc | null {
  const check = new TextEncoder().encode("123456789");
  const candidates: NativeCrc[] = [];
  const b = (globalThis as { Bun?: { hash?: { crc32?: NativeCrc } } }).Bun;
  if (b?.hash?.crc32) candidates.push(b.hash.crc32);
  for (const f of candidates) {
    try {
      // Verify the check value and zlib-style chaining before trusting it.
      if (f(check) >>> 0 !== 0xcbf43926) continue;
      if (f(check.subarray(4), f(check.subarray(0, 4))) >>> 0 !== 0xcbf43926) continue;
      if (f(new Uint8Array(0)) >>> 0 !== 0) continue;
      return f;
    } catch {
      /* not usable */
    }
  }
  return null;
}

const native = pickNative();

/** Inputs shorter than this go through the JS loop (native call overhead dominates below it). */
export let NATIVE_THRESHOLD = 128; // measured crossover on Bun 1.4.5: ~128 bytes

/** Same for whole-buffer calls (no subarray allocation); measured crossover ~32 bytes. */
export let WHOLE_THRESHOLD = 32;

/** Which implementation serves inputs of at least NATIVE_THRESHOLD bytes (for the bench report). */
export const CRC32_IMPL: "bun-native" | "js-slicing-by-8" = native ? "bun-native" : "js-slicing-by-8";

/** CRC-32 of buf[start..end) (unsigned 32-bit). crc32(ascii "123456789") === 0xCBF43926; empty → 0. */
export function crc32(buf: Uint8Array, start = 0, end = buf.length): number {
  return crc32Update(0, buf, start, end);
}

/** zlib-style continuation: crc32Update(crc32(a), b) === crc32(a ‖ b). */
export function crc32Update(prev: number, buf: Uint8Array, start = 0, end = buf.length): number {
  if (native !== null) {
    const n = end - start;
    // Whole-buffer calls need no subarray view, so native wins from smaller sizes on.
    if (start === 0 && end === buf.length) {
      if (n >= WHOLE_THRESHOLD) return native(buf, prev >>> 0) >>> 0;
    } else if (n >= NATIVE_THRESHOLD) {
      return native(buf.subarray(start, end), prev >>> 0) >>> 0;
    }
  }
  return crc32JsUpdate(prev, buf, start, end);
}

/** For benchmarks/tests only: override the native threshold. */
export function setNativeThreshold(n: number, whole = n): void {
  NATIVE_THRESHOLD = n;
  WHOLE_THRESHOLD = whole;
}
