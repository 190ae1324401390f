// Ed25519 identity (docs/protocol.md §5): generation, file format, signing, key/signature encodings.
//
// Signing/verification use node:crypto (BoringSSL; pure Ed25519, RFC 8032, deterministic),
// see keyobj.ts for why. Errors are ProtoError with a machine-readable code and a hint.
import { randomBytes, sign as nodeSign, verify as nodeVerify, type KeyObject } from "node:crypto";
import { readFileSync } from "node:fs";
import { ProtoError } from "../proto/types.ts";
import { ed25519PrivateKeyObject, ed25519PublicKeyObject, rawPublicOf } from "./keyobj.ts";
import { atomicWriteFile } from "../sys/atomic-write.ts";


export const PUBLIC_KEY_SIZE = 32;
export const PRIVATE_KEY_SIZE = 64; // Go/NaCl form: seed ‖ public key
export const SEED_SIZE = 32;
export const SIGNATURE_SIZE = 64;

/** Long-term Ed25519 identity. `privateKey` is the 64-byte Go form (seed ‖ public), as stored in the file. */
export interface Identity {
  publicKey: Uint8Array;
  privateKey: Uint8Array;
}

// Signing KeyObjects are cached per identity object (import costs more than a signature).
const SIGNERS = new WeakMap<Identity, KeyObject>();

function signer(id: Identity): KeyObject {
  let k = SIGNERS.get(id);
  if (!k) {
    if (!(id.privateKey instanceof Uint8Array) || id.privateKey.length !== PRIVATE_KEY_SIZE) {
      throw new ProtoError("bad_key_length", `Ed25519 private key must be ${PRIVATE_KEY_SIZE} bytes (seed ‖ public)`, "load the identity with loadIdentity() or identityFromSeed()");
    }
    k = ed25519PrivateKeyObject(id.privateKey.subarray(0, SEED_SIZE));
    SIGNERS.set(id, k);
  }
  return k;
}

/** Builds an identity from a 32-byte seed (derives the public key). */
export function identityFromSeed(seed: Uint8Array): Identity {
  if (!(seed instanceof Uint8Array) || seed.length !== SEED_SIZE) {
    throw new ProtoError("bad_key_length", `Ed25519 seed must be ${SEED_SIZE} bytes, got ${seed?.length}`, "pass the 32-byte seed (first half of the 64-byte private key)");
  }
  const ko = ed25519PrivateKeyObject(seed);
  const publicKey = rawPublicOf(ko);
  const privateKey = new Uint8Array(PRIVATE_KEY_SIZE);
  privateKey.set(seed, 0);
  privateKey.set(publicKey, SEED_SIZE);
  const id: Identity = { publicKey, privateKey };
  SIGNERS.set(id, ko);
  return id;
}

/** Fresh random identity (CSPRNG seed). */
export function generateIdentity(): Identity {
  return identityFromSeed(new Uint8Array(randomBytes(SEED_SIZE)));
}

const enc = new TextEncoder();
const asBytes = (msg: Uint8Array | string): Uint8Array => (typeof msg === "string" ? enc.encode(msg) : msg);

/** Pure Ed25519 signature (64 bytes) over `msg` (strings are UTF-8 encoded). */
export function sign(id: Identity, msg: Uint8Array | string): Uint8Array {
  const sig = nodeSign(null, asBytes(msg), signer(id));
  return new Uint8Array(sig.buffer, sig.byteOffset, sig.byteLength);
}

/** Verifies a pure Ed25519 signature. Never throws: wrong lengths or invalid keys give false. */
export function verify(pub: Uint8Array, msg: Uint8Array | string, sig: Uint8Array): boolean {
  if (!(pub instanceof Uint8Array) || pub.length !== PUBLIC_KEY_SIZE) return false;
  if (!(sig instanceof Uint8Array) || sig.length !== SIGNATURE_SIZE) return false;
  if (typeof msg !== "string" && !(msg instanceof Uint8Array)) return false;
  const ko = ed25519PublicKeyObject(pub);
  if (!ko) return false;
  try {
    return nodeVerify(null, asBytes(msg), ko, sig);
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------------------------
// Encodings (docs/protocol.md §5): standard base64 alphabet WITH padding.

const B64_RE = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/**
 * Strict standard base64 decode, matching Go's base64.StdEncoding.DecodeString: padding required,
 * no URL-safe alphabet, no spaces; like Go, CR and LF are skipped. Throws ProtoError("bad_base64").
 * (Buffer.from(s, "base64") is lenient and would accept inputs the reference rejects.)
 */
export function decodeBase64Std(text: string, what = "value"): Uint8Array {
  if (typeof text !== "string") {
    throw new ProtoError("bad_base64", `${what}: expected a base64 string`, "encode binary values as standard base64 with padding");
  }
  const s = text.includes("\r") || text.includes("\n") ? text.replace(/[\r\n]/g, "") : text;
  if (!B64_RE.test(s)) {
    throw new ProtoError("bad_base64", `${what}: illegal base64 data`, "use standard base64 (A-Z a-z 0-9 + /) with = padding");
  }
  const b = Buffer.from(s, "base64");
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

export function encodeBase64Std(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("base64");
}

function decodeFixed(text: string, size: number, what: string, code: string): Uint8Array {
  const b = decodeBase64Std(text, what);
  if (b.length !== size) {
    throw new ProtoError(code, `${what}: expected ${size} bytes, got ${b.length}`, `${what} must be standard base64 of exactly ${size} bytes`);
  }
  return b;
}

function checkLen(b: Uint8Array, size: number, what: string, code: string): void {
  if (!(b instanceof Uint8Array) || b.length !== size) {
    throw new ProtoError(code, `${what}: expected ${size} bytes, got ${(b as Uint8Array | undefined)?.length}`, `pass the raw ${size}-byte ${what}`);
  }
}

export function encodePublicKey(pub: Uint8Array): string {
  checkLen(pub, PUBLIC_KEY_SIZE, "public key", "bad_key_length");
  return encodeBase64Std(pub);
}
export function decodePublicKey(text: string): Uint8Array {
  return decodeFixed(text, PUBLIC_KEY_SIZE, "public key", "bad_key_length");
}
export function encodePrivateKey(priv: Uint8Array): string {
  checkLen(priv, PRIVATE_KEY_SIZE, "private key", "bad_key_length");
  return encodeBase64Std(priv);
}
export function decodePrivateKey(text: string): Uint8Array {
  return decodeFixed(text, PRIVATE_KEY_SIZE, "private key", "bad_key_length");
}
export function encodeSignature(sig: Uint8Array): string {
  checkLen(sig, SIGNATURE_SIZE, "signature", "bad_signature_length");
  return encodeBase64Std(sig);
}
export function decodeSignature(text: string): Uint8Array {
  return decodeFixed(text, SIGNATURE_SIZE, "signature", "bad_signature_length");
}

// ---------------------------------------------------------------------------------------------
// Identity file (docs/protocol.md §5).

/** Serialises exactly as the reference: 2-space indented JSON, private_key then public_key, no trailing newline. */
export function formatIdentityFile(id: Identity): string {
  return JSON.stringify({ private_key: encodePrivateKey(id.privateKey), public_key: encodePublicKey(id.publicKey) }, null, 2);
}

const bytesEqual = (a: Uint8Array, b: Uint8Array): boolean => {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i] ^ b[i];
  return d === 0;
};

/** Parses identity file contents. Throws ProtoError("identity_corrupt") on any defect. */
export function parseIdentityFile(text: string, path = "identity file"): Identity {
  const corrupt = (why: string): never => {
    throw new ProtoError("identity_corrupt", `${path}: identity file corrupted: ${why}`, `fix or delete ${path} (a new identity is generated when it is missing; registered peers will then see a new key)`);
  };
  let obj: unknown;
  try {
    obj = JSON.parse(text);
  } catch (e) {
    return corrupt(`invalid JSON (${(e as Error).message})`);
  }
  if (typeof obj !== "object" || obj === null || Array.isArray(obj)) return corrupt("not a JSON object");
  // Go's encoding/json matches field names case-insensitively (W17 (docs/protocol.md §12)); do the same so any
  // file the reference loads, we load. An exact-case key wins over a case-folded one.
  let privText: unknown;
  let pubText: unknown;
  for (const [k, v] of Object.entries(obj as Record<string, unknown>)) {
    const lk = k.toLowerCase();
    if (lk === "private_key" && (privText === undefined || k === "private_key")) privText = v;
    if (lk === "public_key" && (pubText === undefined || k === "public_key")) pubText = v;
  }
  // Go decodes a missing field as "" which then fails the length check.
  if (privText === undefined || privText === null) privText = "";
  if (pubText === undefined || pubText === null) pubText = "";
  if (typeof privText !== "string" || typeof pubText !== "string") return corrupt("private_key and public_key must be strings");
  let priv: Uint8Array;
  let pub: Uint8Array;
  try {
    priv = decodePrivateKey(privText);
    pub = decodePublicKey(pubText);
  } catch (e) {
    return corrupt((e as Error).message);
  }
  // Reference check: stored public key == embedded second half of the private key.
  if (!bytesEqual(pub, priv.subarray(SEED_SIZE))) return corrupt("public key does not match private key");
  // Stricter than the reference (W17): re-derive from the seed. A file failing this would make the
  // reference emit signatures nobody can verify, so rejecting it loses no working configuration.
  const derived = identityFromSeed(priv.slice(0, SEED_SIZE));
  if (!bytesEqual(derived.publicKey, pub)) return corrupt("public key is not derived from the private seed");
  return derived;
}

/**
 * Loads an identity file. Returns null when the file does not exist ("no identity").
 * Throws ProtoError "identity_unreadable" (I/O error other than ENOENT) or "identity_corrupt".
 */
export function loadIdentity(path: string): Identity | null {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return null;
    throw new ProtoError("identity_unreadable", `${path}: cannot read identity file: ${(e as Error).message}`, `check that ${path} is a regular file readable by this user`);
  }
  return parseIdentityFile(text, path);
}

/**
 * Writes the identity atomically: parent dirs created with 0700, temp file with mode 0600 in the
 * same directory, fsync, rename over `path`. Throws ProtoError("identity_unwritable").
 */
export function saveIdentity(path: string, id: Identity): void {
  const data = formatIdentityFile(id);
  try {
    atomicWriteFile(path, data, 0o600);
  } catch (e) {
    throw new ProtoError("identity_unwritable", `${path}: cannot save identity: ${(e as Error).message}`, `check that the directory of ${path} is writable by this user`);
  }
}

/** Loads the identity at `path`, or generates and saves a new one if the file is missing. */
export function loadOrCreateIdentity(path: string): Identity {
  const id = loadIdentity(path);
  if (id) return id;
  const fresh = generateIdentity();
  saveIdentity(path, fresh);
  return fresh;
}
