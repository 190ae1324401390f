import { describe, expect, test } from "bun:test";
import { pilaChallenge } from "../src/proto/tunnel.ts";
import { mkdtempSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ed25519 } from "@noble/curves/ed25519.js";
import { ProtoError } from "../src/proto/types.ts";
import {
  decodePublicKey, decodeSignature, decodePrivateKey, decodeBase64Std, encodePublicKey, encodeSignature,
  formatIdentityFile, generateIdentity, identityFromSeed, loadIdentity, loadOrCreateIdentity,
  parseIdentityFile, saveIdentity, sign, verify,
} from "../src/crypto/identity.ts";

const hex = (s: string) => new Uint8Array(Buffer.from(s.replace(/\s+/g, ""), "hex"));
const toHex = (b: Uint8Array) => Buffer.from(b).toString("hex");

const SEED = hex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60");
const PUB = hex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
const X_A = hex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
const SIG = "880af5e2ce0d44fc98432c2ff8c867567f42f442cd9e00c298199823844f1e7d54c5560c7c7480b2f90855b73178c665295538bd30e521f794c494e793e7610d";
const FILE_8_6 = `{
  "private_key": "nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2DXWpgBgrEKt9VL/tPJZAc6DuFy89qmIyWvAhpo9wdRGg==",
  "public_key": "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
}`;

function expectCode(f: () => unknown, code: string) {
  let err: unknown;
  try {
    f();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(ProtoError);
  expect((err as ProtoError).code).toBe(code);
  expect((err as ProtoError).hint?.length ?? 0).toBeGreaterThan(0);
}

function tmp(): string {
  return mkdtempSync(join(tmpdir(), "pilot-crypto-id-"));
}

describe("reference identity vectors", () => {
  test("seed -> public key, 64-byte private form", () => {
    const id = identityFromSeed(SEED);
    expect(toHex(id.publicKey)).toBe(toHex(PUB));
    expect(toHex(id.privateKey)).toBe(toHex(SEED) + toHex(PUB));
  });
  test("PILA challenge and signature", () => {
    const ch = pilaChallenge(1, X_A);
    expect(toHex(ch)).toBe("61757468000000018520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
    const sig = sign(identityFromSeed(SEED), ch);
    expect(toHex(sig)).toBe(SIG);
    expect(verify(PUB, ch, sig)).toBe(true);
    // independent oracle
    expect(ed25519.verify(sig, ch, PUB)).toBe(true);
  });
  test("identity file format byte for byte", () => {
    expect(formatIdentityFile(identityFromSeed(SEED))).toBe(FILE_8_6);
    const id = parseIdentityFile(FILE_8_6);
    expect(toHex(id.publicKey)).toBe(toHex(PUB));
  });
});

describe("sign/verify", () => {
  test("random identities agree with @noble/curves", () => {
    for (let i = 0; i < 10; i++) {
      const id = generateIdentity();
      expect(toHex(ed25519.getPublicKey(id.privateKey.subarray(0, 32)))).toBe(toHex(id.publicKey));
      const msg = `heartbeat:${i}`;
      const sig = sign(id, msg);
      expect(toHex(sig)).toBe(toHex(ed25519.sign(new TextEncoder().encode(msg), id.privateKey.subarray(0, 32))));
      expect(verify(id.publicKey, msg, sig)).toBe(true);
      expect(verify(id.publicKey, msg + "x", sig)).toBe(false);
      const bad = sig.slice();
      bad[i] ^= 1;
      expect(verify(id.publicKey, msg, bad)).toBe(false);
    }
  });
  test("verify never throws on bad lengths or junk", () => {
    const id = generateIdentity();
    const sig = sign(id, "x");
    expect(verify(id.publicKey.subarray(0, 31), "x", sig)).toBe(false);
    expect(verify(id.publicKey, "x", sig.subarray(0, 63))).toBe(false);
    expect(verify(new Uint8Array(0), "x", new Uint8Array(0))).toBe(false);
    expect(verify(new Uint8Array(32).fill(0xff), "x", sig)).toBe(false);
    expect(verify(null as unknown as Uint8Array, "x", sig)).toBe(false);
    expect(verify(id.publicKey, null as unknown as string, sig)).toBe(false);
  });
  test("malleated signature (S + L) is rejected like Go's ed25519.Verify", () => {
    const id = generateIdentity();
    const sig = sign(id, "x");
    let s = 0n;
    for (let i = 31; i >= 0; i--) s = (s << 8n) | BigInt(sig[32 + i]);
    let s2 = s + 2n ** 252n + 27742317777372353535851937790883648493n;
    const m = sig.slice();
    for (let i = 0; i < 32; i++) {
      m[32 + i] = Number(s2 & 255n);
      s2 >>= 8n;
    }
    expect(verify(id.publicKey, "x", sig)).toBe(true);
    expect(verify(id.publicKey, "x", m)).toBe(false);
  });
  test("sign with a malformed identity gives a typed error", () => {
    expectCode(() => sign({ publicKey: PUB, privateKey: SEED }, "x"), "bad_key_length");
    expectCode(() => identityFromSeed(new Uint8Array(31)), "bad_key_length");
  });
});

describe("encodings docs/protocol.md §5", () => {
  test("round trip", () => {
    expect(encodePublicKey(PUB)).toBe("11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=");
    expect(toHex(decodePublicKey("11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="))).toBe(toHex(PUB));
    const sig = hex(SIG);
    expect(toHex(decodeSignature(encodeSignature(sig)))).toBe(SIG);
    expect(encodeSignature(sig).length).toBe(88);
  });
  test("wrong lengths and bad base64 are typed errors", () => {
    expectCode(() => decodePublicKey("AAAA"), "bad_key_length");
    expectCode(() => decodePublicKey(""), "bad_key_length");
    expectCode(() => decodeSignature("11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="), "bad_signature_length");
    expectCode(() => decodePrivateKey("11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="), "bad_key_length");
    // unpadded, URL-safe, garbage: Go's StdEncoding rejects them, so do we
    expectCode(() => decodePublicKey("11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo"), "bad_base64");
    expectCode(() => decodePublicKey("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo="), "bad_base64");
    expectCode(() => decodePublicKey("11qYAYKxCrfVS/7TyWQHOg7hcvPapiMl rwIaaPcHURo="), "bad_base64");
    expectCode(() => decodePublicKey(42 as unknown as string), "bad_base64");
    expectCode(() => encodePublicKey(new Uint8Array(31)), "bad_key_length");
    expectCode(() => encodeSignature(new Uint8Array(65)), "bad_signature_length");
    // Go skips CR/LF inside base64
    expect(decodeBase64Std("AAEC\nAw==").length).toBe(4);
  });
});

describe("auth challenge", () => {
  test("pilaChallenge rejects wrong key length", () => {
    expectCode(() => pilaChallenge(1, new Uint8Array(31)), "invalid_key_length");
  });
});

describe("identity file on disk", () => {
  test("save/load round trip, mode 0600, dir 0700, atomic (no temp left)", () => {
    const d = tmp();
    try {
      const p = join(d, "sub", "deeper", "identity.json");
      const id = generateIdentity();
      saveIdentity(p, id);
      expect(statSync(p).mode & 0o777).toBe(0o600);
      expect(statSync(join(d, "sub", "deeper")).mode & 0o777).toBe(0o700);
      const text = readFileSync(p, "utf8");
      expect(text.endsWith("}")).toBe(true);
      expect(text).toBe(formatIdentityFile(id));
      const back = loadIdentity(p)!;
      expect(toHex(back.publicKey)).toBe(toHex(id.publicKey));
      expect(toHex(back.privateKey)).toBe(toHex(id.privateKey));
      // signing with the loaded identity verifies under the original public key
      expect(verify(id.publicKey, "heartbeat:1", sign(back, "heartbeat:1"))).toBe(true);
      // overwrite keeps 0600 and leaves no temp files
      saveIdentity(p, identityFromSeed(SEED));
      expect(readFileSync(p, "utf8")).toBe(FILE_8_6);
      expect(statSync(p).mode & 0o777).toBe(0o600);
      expect(readdirSync(join(d, "sub", "deeper"))).toEqual(["identity.json"]);
    } finally {
      rmSync(d, { recursive: true, force: true, maxRetries: 5 });
    }
  });
  test("missing -> null; loadOrCreate creates then reuses", () => {
    const d = tmp();
    try {
      const p = join(d, "id.json");
      expect(loadIdentity(p)).toBeNull();
      const a = loadOrCreateIdentity(p);
      expect(statSync(p).mode & 0o777).toBe(0o600);
      const b = loadOrCreateIdentity(p);
      expect(toHex(b.publicKey)).toBe(toHex(a.publicKey));
    } finally {
      rmSync(d, { recursive: true, force: true, maxRetries: 5 });
    }
  });
  test("corrupt files give identity_corrupt", () => {
    const d = tmp();
    try {
      const p = join(d, "id.json");
      const good = JSON.parse(FILE_8_6);
      const cases: string[] = [
        "{not json",
        "",
        "[]",
        "null",
        JSON.stringify({ private_key: good.private_key }),
        JSON.stringify({ ...good, public_key: "AAAA" }),
        JSON.stringify({ ...good, private_key: good.public_key }),
        JSON.stringify({ ...good, public_key: good.public_key.replace("=", "") }),
        JSON.stringify({ ...good, private_key: "!!!!" + good.private_key.slice(4) }),
        JSON.stringify({ ...good, private_key: 5 }),
        // public key valid but not the embedded half
        JSON.stringify({ ...good, public_key: encodePublicKey(generateIdentity().publicKey) }),
      ];
      // embedded half consistent with public_key but not derived from the seed (W17 stricter check)
      const other = generateIdentity();
      const mixed = new Uint8Array(64);
      mixed.set(SEED, 0);
      mixed.set(other.publicKey, 32);
      cases.push(JSON.stringify({ private_key: Buffer.from(mixed).toString("base64"), public_key: encodePublicKey(other.publicKey) }));
      for (const c of cases) {
        writeFileSync(p, c);
        expectCode(() => loadIdentity(p), "identity_corrupt");
        expectCode(() => loadOrCreateIdentity(p), "identity_corrupt");
      }
      // Go-style case-insensitive field names are accepted
      writeFileSync(p, JSON.stringify({ Private_Key: good.private_key, PUBLIC_KEY: good.public_key }));
      expect(toHex(loadIdentity(p)!.publicKey)).toBe(toHex(PUB));
    } finally {
      rmSync(d, { recursive: true, force: true, maxRetries: 5 });
    }
  });
  test("unreadable path gives identity_unreadable; unwritable gives identity_unwritable", () => {
    const d = tmp();
    try {
      const p = join(d, "is-a-dir");
      mkdirSync(p);
      expectCode(() => loadIdentity(p), "identity_unreadable");
      const blocker = join(d, "file");
      writeFileSync(blocker, "x");
      expectCode(() => saveIdentity(join(blocker, "id.json"), generateIdentity()), "identity_unwritable");
    } finally {
      rmSync(d, { recursive: true, force: true, maxRetries: 5 });
    }
  });
});
