// AES-256-GCM for the tunnel's packet path (docs/protocol.md §4.3): seal into a caller's buffer and
// open into a fresh plaintext, one key per object.
//
// Two engines behind one interface:
// - "openssl": the system's libcrypto (OpenSSL 3 or 1.1) through bun:ffi, one EVP_CIPHER_CTX per
//   direction holding the expanded key; each packet only sets a new IV, so there is no cipher
//   object, no intermediate Buffer and no copy — the ciphertext and tag are written straight into
//   the datagram. Measured on the stream bench it removes most of the JS share of sealing
//   (createCipheriv per packet, update/final/getAuthTag Buffers, the copies into the frame).
// - "node": node:crypto's createCipheriv/createDecipheriv, used where libcrypto cannot be loaded
//   (macOS, where loading the system libcrypto unversioned aborts the process; Linux without
//   OpenSSL), when its one-time known-answer check fails, or when PILOT_CRYPTO=node.
// Both produce identical bytes (test/crypto-gcm.test.ts checks them against @noble/ciphers).
import { dlopen, FFIType, ptr, type Pointer } from "bun:ffi";
import { createCipheriv, createDecipheriv, createSecretKey, type KeyObject } from "node:crypto";
import { TAG_SIZE as GCM_TAG } from "../proto/tunnel.ts";

/** One AES-256-GCM key. IVs are 12 bytes; the 16-byte tag follows the ciphertext. */
export interface Gcm {
  readonly engine: "openssl" | "node";
  /**
   * Encrypts `src` into `dst` at `off` and writes the tag right after it (dst needs src.length + 16).
   * `src` may be the very bytes it is encrypted to (dst.subarray(off, off + src.length)): in place.
   */
  seal(iv: Uint8Array, src: Uint8Array, dst: Uint8Array, off: number): void;
  /** Decrypts ct‖tag (`box`, ≥ 16 bytes); the plaintext, or null when authentication fails. */
  open(iv: Uint8Array, box: Uint8Array): Uint8Array | null;
  /**
   * Decrypts ct‖tag in place: true and the plaintext in box[0, length − 16), or false with `box`
   * unchanged (so the caller can still try another key on the same bytes).
   */
  openInPlace(iv: Uint8Array, box: Uint8Array): boolean;
}

// ---------------------------------------------------------------------------------------------
// node:crypto engine

class NodeGcm implements Gcm {
  readonly engine = "node" as const;
  private readonly key: KeyObject;
  constructor(key: Uint8Array) {
    this.key = createSecretKey(key);
  }
  seal(iv: Uint8Array, src: Uint8Array, dst: Uint8Array, off: number): void {
    const ci = createCipheriv("aes-256-gcm", this.key, iv);
    const ct = ci.update(src);
    dst.set(ct, off);
    const fin = ci.final(); // empty for GCM
    if (fin.length) dst.set(fin, off + ct.length);
    dst.set(ci.getAuthTag(), off + src.length);
  }
  open(iv: Uint8Array, box: Uint8Array): Uint8Array | null {
    const n = box.length - GCM_TAG;
    if (n < 0) return null;
    try {
      const de = createDecipheriv("aes-256-gcm", this.key, iv);
      de.setAuthTag(box.subarray(n));
      let pt = de.update(box.subarray(0, n));
      const fin = de.final(); // throws on a tag mismatch
      if (fin.length) pt = Buffer.concat([pt, fin]);
      return pt;
    } catch {
      return null;
    }
  }
  openInPlace(iv: Uint8Array, box: Uint8Array): boolean {
    const pt = this.open(iv, box);
    if (!pt) return false;
    box.set(pt, 0);
    return true;
  }
}

// ---------------------------------------------------------------------------------------------
// libcrypto engine

type Lib = {
  EVP_CIPHER_CTX_new(): Pointer | null;
  EVP_CIPHER_CTX_free(ctx: Pointer | number): void;
  EVP_aes_256_gcm(): Pointer | null;
  EVP_EncryptInit_ex(ctx: Pointer | number, cipher: Pointer | null, eng: null, key: Pointer | number | null, iv: Pointer | number | null): number;
  EVP_DecryptInit_ex(ctx: Pointer | number, cipher: Pointer | null, eng: null, key: Pointer | number | null, iv: Pointer | number | null): number;
  EVP_EncryptUpdate(ctx: Pointer | number, out: number, outl: number, inp: number, inl: number): number;
  EVP_DecryptUpdate(ctx: Pointer | number, out: number, outl: number, inp: number, inl: number): number;
  EVP_EncryptFinal_ex(ctx: Pointer | number, out: number, outl: number): number;
  EVP_DecryptFinal_ex(ctx: Pointer | number, out: number, outl: number): number;
  EVP_CIPHER_CTX_ctrl(ctx: Pointer | number, type: number, arg: number, p: number): number;
};

const EVP_CTRL_GCM_GET_TAG = 0x10;
const EVP_CTRL_GCM_SET_TAG = 0x11;
const P = FFIType.ptr;
const I = FFIType.i32;

function loadLib(): Lib | null {
  if (process.platform !== "linux" || process.env.PILOT_CRYPTO === "node") return null;
  for (const name of ["libcrypto.so.3", "libcrypto.so.1.1"]) {
    try {
      const l = dlopen(name, {
        EVP_CIPHER_CTX_new: { args: [], returns: P },
        EVP_CIPHER_CTX_free: { args: [P], returns: FFIType.void },
        EVP_aes_256_gcm: { args: [], returns: P },
        EVP_EncryptInit_ex: { args: [P, P, P, P, P], returns: I },
        EVP_DecryptInit_ex: { args: [P, P, P, P, P], returns: I },
        EVP_EncryptUpdate: { args: [P, P, P, P, I], returns: I },
        EVP_DecryptUpdate: { args: [P, P, P, P, I], returns: I },
        EVP_EncryptFinal_ex: { args: [P, P, P], returns: I },
        EVP_DecryptFinal_ex: { args: [P, P, P], returns: I },
        EVP_CIPHER_CTX_ctrl: { args: [P, I, I, P], returns: I },
      });
      return l.symbols as unknown as Lib;
    } catch {
      /* next name */
    }
  }
  return null;
}

/** Native contexts of collected keys are freed here (a session dropped without close()). */
const finalizer = new FinalizationRegistry<{ lib: Lib; enc: number; dec: number }>((h) => {
  h.lib.EVP_CIPHER_CTX_free(h.enc);
  h.lib.EVP_CIPHER_CTX_free(h.dec);
});

class OpenSslGcm implements Gcm {
  readonly engine = "openssl" as const;
  private readonly enc: number;
  private readonly dec: number;
  /** Scratch: outl (i32) at 0, a final-output sink at 4, the IV at 16. Pointers are taken once. */
  private readonly scratch = new Uint8Array(32);
  private readonly outl: number;
  private readonly ivp: number;

  constructor(
    private readonly lib: Lib,
    cipher: Pointer,
    key: Uint8Array,
  ) {
    const enc = lib.EVP_CIPHER_CTX_new();
    const dec = lib.EVP_CIPHER_CTX_new();
    if (!enc || !dec) {
      if (enc) lib.EVP_CIPHER_CTX_free(enc);
      if (dec) lib.EVP_CIPHER_CTX_free(dec);
      throw new Error("EVP_CIPHER_CTX_new failed");
    }
    this.enc = Number(enc);
    this.dec = Number(dec);
    finalizer.register(this, { lib, enc: this.enc, dec: this.dec });
    const kp = ptr(key);
    if (lib.EVP_EncryptInit_ex(this.enc, cipher, null, kp, null) !== 1 || lib.EVP_DecryptInit_ex(this.dec, cipher, null, kp, null) !== 1) {
      throw new Error("EVP key setup failed");
    }
    const s = ptr(this.scratch);
    this.outl = s;
    this.ivp = s + 16;
  }

  private setIv(iv: Uint8Array): void {
    const s = this.scratch;
    for (let i = 0; i < 12; i++) s[16 + i] = iv[i];
  }

  seal(iv: Uint8Array, src: Uint8Array, dst: Uint8Array, off: number): void {
    const L = this.lib;
    const n = src.length;
    if (dst.length < off + n + GCM_TAG) throw new RangeError("gcm seal: destination too small");
    this.setIv(iv);
    const out = ptr(dst) + off;
    if (
      L.EVP_EncryptInit_ex(this.enc, null, null, null, this.ivp) !== 1 ||
      (n > 0 && L.EVP_EncryptUpdate(this.enc, out, this.outl, ptr(src), n) !== 1) ||
      L.EVP_EncryptFinal_ex(this.enc, out + n, this.outl) !== 1 ||
      L.EVP_CIPHER_CTX_ctrl(this.enc, EVP_CTRL_GCM_GET_TAG, GCM_TAG, out + n) !== 1
    ) {
      throw new Error("AES-GCM seal failed in libcrypto");
    }
  }

  open(iv: Uint8Array, box: Uint8Array): Uint8Array | null {
    const L = this.lib;
    const n = box.length - GCM_TAG;
    if (n < 0) return null;
    this.setIv(iv);
    // An empty plaintext still needs a valid output pointer: one spare byte then.
    const pt = Buffer.allocUnsafe(n || 1);
    const out = ptr(pt);
    const inp = ptr(box);
    if (L.EVP_DecryptInit_ex(this.dec, null, null, null, this.ivp) !== 1) return null;
    if (n > 0 && L.EVP_DecryptUpdate(this.dec, out, this.outl, inp, n) !== 1) return null;
    if (L.EVP_CIPHER_CTX_ctrl(this.dec, EVP_CTRL_GCM_SET_TAG, GCM_TAG, inp + n) !== 1) return null;
    if (L.EVP_DecryptFinal_ex(this.dec, out + n, this.outl) <= 0) return null; // tag mismatch
    return n ? pt : pt.subarray(0, 0);
  }

  openInPlace(iv: Uint8Array, box: Uint8Array): boolean {
    const L = this.lib;
    const n = box.length - GCM_TAG;
    if (n < 0) return false;
    this.setIv(iv);
    const p = ptr(box);
    if (L.EVP_DecryptInit_ex(this.dec, null, null, null, this.ivp) !== 1) return false;
    if (n > 0 && L.EVP_DecryptUpdate(this.dec, p, this.outl, p, n) !== 1) return false;
    if (L.EVP_CIPHER_CTX_ctrl(this.dec, EVP_CTRL_GCM_SET_TAG, GCM_TAG, p + n) === 1 && L.EVP_DecryptFinal_ex(this.dec, this.outl + 4, this.outl) > 0) return true;
    // Not authentic: put the ciphertext back. GCM's cipher is CTR mode, so running the same IV's
    // keystream over the bytes again restores them exactly (the tag bytes were never written).
    if (n > 0 && (L.EVP_EncryptInit_ex(this.enc, null, null, null, this.ivp) !== 1 || L.EVP_EncryptUpdate(this.enc, p, this.outl, p, n) !== 1)) {
      throw new Error("AES-GCM restore failed in libcrypto");
    }
    return false;
  }
}

// ---------------------------------------------------------------------------------------------
// Engine selection (once per process)

let native: { lib: Lib; cipher: Pointer } | null | undefined;

function nativeEngine(): { lib: Lib; cipher: Pointer } | null {
  if (native !== undefined) return native;
  native = null;
  const lib = loadLib();
  const cipher = lib?.EVP_aes_256_gcm();
  if (!lib || !cipher) return null;
  const cand = { lib, cipher };
  // Known-answer check against node:crypto before trusting the binding.
  try {
    const key = new Uint8Array(32).map((_, i) => i * 7 + 1);
    const iv = new Uint8Array(12).map((_, i) => 200 - i);
    const msg = new Uint8Array(100).map((_, i) => i ^ 0x5a);
    const a = new Uint8Array(116);
    const b = new Uint8Array(116);
    const g = new OpenSslGcm(lib, cipher, key);
    g.seal(iv, msg, a, 0);
    new NodeGcm(key).seal(iv, msg, b, 0);
    if (Buffer.compare(a, b) !== 0) return null;
    const back = g.open(iv, a);
    if (!back || Buffer.compare(back, msg) !== 0) return null;
    a[5] ^= 1;
    if (g.open(iv, a) !== null) return null;
  } catch {
    return null;
  }
  native = cand;
  return native;
}

/** Which engine newGcm() uses in this process. */
export function gcmEngine(): "openssl" | "node" {
  return nativeEngine() ? "openssl" : "node";
}

/** A 32-byte key's AES-256-GCM; `engine` forces one (tests). */
export function newGcm(key: Uint8Array, engine?: "openssl" | "node"): Gcm {
  if (key.length !== 32) throw new RangeError("AES-256-GCM key must be 32 bytes");
  const n = engine === "node" ? null : nativeEngine();
  if (engine === "openssl" && !n) throw new Error("libcrypto AES-GCM is not available here");
  return n ? new OpenSslGcm(n.lib, n.cipher, key) : new NodeGcm(key);
}
