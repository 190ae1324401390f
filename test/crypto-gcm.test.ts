// The tunnel's AES-256-GCM engines (src/crypto/gcm.ts): libcrypto through bun:ffi and node:crypto
// must produce the same bytes as an independent implementation (@noble/ciphers), refuse every
// tampered box, and work at the offsets and sizes the packet path uses.
import { describe, expect, test } from "bun:test";
import { gcm as nobleGcm } from "@noble/ciphers/aes.js";
import { randomBytes } from "node:crypto";
import { gcmEngine, newGcm } from "../src/crypto/gcm.ts";

const engines = (["node", "openssl"] as const).filter((e) => e === "node" || gcmEngine() === "openssl");

test("libcrypto is used where the system has it (Linux with OpenSSL)", () => {
  if (process.platform === "linux" && process.env.PILOT_CRYPTO !== "node") {
    const fs = require("node:fs") as typeof import("node:fs");
    const has = ["/usr/lib/x86_64-linux-gnu/libcrypto.so.3", "/usr/lib/aarch64-linux-gnu/libcrypto.so.3", "/lib64/libcrypto.so.3", "/usr/lib/libcrypto.so.3"].some((p) => fs.existsSync(p));
    if (has) expect(gcmEngine()).toBe("openssl");
  }
  expect(["openssl", "node"]).toContain(gcmEngine());
});

describe.each(engines)("engine %s", (engine) => {
  test("matches @noble/ciphers for sizes 0..5000 at offsets, and opens its own output", () => {
    for (const size of [0, 1, 15, 16, 17, 100, 1024, 4096, 4116, 5000]) {
      const key = randomBytes(32);
      const iv = randomBytes(12);
      const msg = randomBytes(size);
      const g = newGcm(key, engine);
      expect(g.engine).toBe(engine);
      const off = size % 7;
      const dst = new Uint8Array(off + size + 16 + 3).fill(0xee);
      g.seal(iv, msg, dst, off);
      const want = nobleGcm(key, iv).encrypt(msg);
      expect(Buffer.from(dst.subarray(off, off + size + 16)).equals(Buffer.from(want))).toBe(true);
      expect(dst[off + size + 16]).toBe(0xee); // nothing written past the tag
      if (off) expect(dst[off - 1]).toBe(0xee);
      const back = g.open(iv, dst.subarray(off, off + size + 16));
      expect(back && Buffer.from(back).equals(msg)).toBe(true);
      expect(back!.length).toBe(size);
    }
  });

  test("reuses one key across many IVs (per-packet IV reset)", () => {
    const key = randomBytes(32);
    const g = newGcm(key, engine);
    const other = newGcm(key, engine);
    for (let i = 0; i < 200; i++) {
      const iv = randomBytes(12);
      const msg = randomBytes(4096 + (i % 3));
      const dst = new Uint8Array(msg.length + 16);
      g.seal(iv, msg, dst, 0);
      expect(Buffer.from(dst).equals(Buffer.from(nobleGcm(key, iv).encrypt(msg)))).toBe(true);
      expect(Buffer.from(other.open(iv, dst)!).equals(msg)).toBe(true);
    }
  });

  test("every single-bit flip, a wrong IV, a wrong key and a short box are refused", () => {
    const key = randomBytes(32);
    const iv = randomBytes(12);
    const msg = randomBytes(64);
    const g = newGcm(key, engine);
    const box = new Uint8Array(80);
    g.seal(iv, msg, box, 0);
    for (let bit = 0; bit < box.length * 8; bit++) {
      const t = Uint8Array.from(box);
      t[bit >> 3] ^= 1 << (bit & 7);
      expect(g.open(iv, t)).toBeNull();
    }
    const iv2 = Uint8Array.from(iv);
    iv2[0] ^= 1;
    expect(g.open(iv2, box)).toBeNull();
    expect(newGcm(randomBytes(32), engine).open(iv, box)).toBeNull();
    expect(g.open(iv, box.subarray(0, 15))).toBeNull();
    // …and the key still works afterwards (a failed open leaves no state behind).
    expect(Buffer.from(g.open(iv, box)!).equals(msg)).toBe(true);
  });

  test("refuses a destination that is too small instead of writing past it", () => {
    const g = newGcm(randomBytes(32), engine);
    expect(() => g.seal(randomBytes(12), randomBytes(100), new Uint8Array(115), 0)).toThrow();
  });
});

test("a key of the wrong length is refused", () => {
  expect(() => newGcm(new Uint8Array(16))).toThrow(/32 bytes/);
});

describe.each(engines)("in place, engine %s", (engine) => {
  test("opens inside the box; a refused box is left byte for byte as it was", () => {
    const key = randomBytes(32);
    const g = newGcm(key, engine);
    for (const size of [0, 1, 33, 4096]) {
      const iv = randomBytes(12);
      const msg = randomBytes(size);
      const box = new Uint8Array(size + 16);
      g.seal(iv, msg, box, 0);
      const orig = Uint8Array.from(box);
      // wrong key, wrong IV, flipped tag: refused and untouched
      expect(newGcm(randomBytes(32), engine).openInPlace(iv, box)).toBe(false);
      expect(Buffer.from(box).equals(orig)).toBe(true);
      const iv2 = Uint8Array.from(iv);
      iv2[11] ^= 0x80;
      expect(g.openInPlace(iv2, box)).toBe(false);
      expect(Buffer.from(box).equals(orig)).toBe(true);
      box[size + 3] ^= 4;
      expect(g.openInPlace(iv, box)).toBe(false);
      box[size + 3] ^= 4;
      expect(Buffer.from(box).equals(orig)).toBe(true);
      // the right key then opens it in place
      expect(g.openInPlace(iv, box)).toBe(true);
      expect(Buffer.from(box.subarray(0, size)).equals(msg)).toBe(true);
    }
  });
});
