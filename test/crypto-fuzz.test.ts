import { expect, test } from "bun:test";
import { ProtoError } from "../src/proto/types.ts";
import { generateIdentity, decodePublicKey, decodeSignature, parseIdentityFile, verify } from "../src/crypto/identity.ts";
import {
  TunnelSession, buildAuthKeyExchange, buildKeyExchange, generateX25519, parseAuthKeyExchange, parseKeyExchange,
  pilsNodeId, verifyAuthKeyExchange, x25519Shared,
} from "../src/crypto/tunnel.ts";

import { fuzzSeed } from "./helpers/fuzz.ts";

// Deterministic PRNG so failures reproduce: FUZZ_SEED overrides the default seed, and a failing
// test names the seed it started from.
const SEED = fuzzSeed(0x9e3779b9) || 1; // xorshift needs a non-zero state
let seed = SEED;
function withSeed(name: string, fn: () => void): () => void {
  return () => {
    seed = SEED;
    try {
      fn();
    } catch (e) {
      throw new Error(`${name} failed with FUZZ_SEED=${SEED} (replay with that variable): ${(e as Error).message}`, { cause: e });
    }
  };
}
function rnd(): number {
  seed ^= seed << 13;
  seed ^= seed >>> 17;
  seed ^= seed << 5;
  return seed >>> 0;
}
function bytes(n: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = rnd() & 255;
  return b;
}
const MAGICS = [[0x50, 0x49, 0x4c, 0x53], [0x50, 0x49, 0x4c, 0x4b], [0x50, 0x49, 0x4c, 0x41]];

function onlyTyped(f: () => unknown): void {
  try {
    f();
  } catch (e) {
    if (!(e instanceof ProtoError)) throw e;
    expect(typeof e.code).toBe("string");
  }
}

test("random and mutated frames never crash open/verify/parse", withSeed("tunnel frames", () => {
  const key = new Uint8Array(32).fill(7);
  const sender = new TunnelSession(key);
  const recv = new TunnelSession(key);
  const id = generateIdentity();
  const x = generateX25519();
  const validPils = sender.seal(bytes(60), 3);
  const validPila = buildAuthKeyExchange(id, 3, x.pub);
  const validPilk = buildKeyExchange(3, x.pub);
  let accepted = 0;
  for (let i = 0; i < 4000; i++) {
    let f: Uint8Array;
    const mode = i % 4;
    if (mode === 0) f = bytes(rnd() % 200);
    else if (mode === 1) {
      f = bytes(rnd() % 200);
      if (f.length >= 4) f.set(MAGICS[rnd() % 3]);
    } else {
      const base = [validPils, validPila, validPilk][rnd() % 3];
      f = base.slice(0, rnd() % (base.length + 8));
      const flips = 1 + (rnd() % 3);
      for (let k = 0; k < flips && f.length; k++) f[rnd() % f.length] ^= 1 << (rnd() % 8);
    }
    // open() must never throw at all
    const r = recv.open(f);
    if (r) {
      // only possible when the mutation touched nothing but the cleartext node ID (no AAD, docs/protocol.md §4.3)
      accepted++;
      expect(f.length).toBe(validPils.length);
      expect(Buffer.from(f.subarray(8)).equals(Buffer.from(validPils.subarray(8)))).toBe(true);
      expect(Buffer.from(f.subarray(0, 4)).equals(Buffer.from(validPils.subarray(0, 4)))).toBe(true);
    }
    expect(typeof pilsNodeId(f)).toBe("number");
    onlyTyped(() => verifyAuthKeyExchange(f));
    onlyTyped(() => verifyAuthKeyExchange(f, id.publicKey));
    onlyTyped(() => parseAuthKeyExchange(f));
    onlyTyped(() => parseKeyExchange(f));
    expect(typeof verify(f.subarray(0, 32), f, f.subarray(0, 64))).toBe("boolean");
    if (f.length >= 64) {
      onlyTyped(() => x25519Shared(f.subarray(0, 32), f.subarray(32, 64)));
    }
  }
  // at most one copy of the one valid frame can ever be accepted (replay protection)
  expect(accepted).toBeLessThanOrEqual(1);
  if (accepted === 0) expect(recv.open(validPils)).not.toBeNull();
  expect(recv.open(validPils)).toBeNull();
}));

test("random text never crashes key/signature/identity decoders", withSeed("key decoders", () => {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=-_ \n{}\":,[]";
  for (let i = 0; i < 3000; i++) {
    const n = rnd() % 100;
    let s = "";
    for (let k = 0; k < n; k++) s += alphabet[rnd() % alphabet.length];
    onlyTyped(() => decodePublicKey(s));
    onlyTyped(() => decodeSignature(s));
    onlyTyped(() => parseIdentityFile(s));
    onlyTyped(() => parseIdentityFile(JSON.stringify({ private_key: s, public_key: s })));
  }
}));
