// Shared helpers for test/proto-*.test.ts (seeded PRNG, hex).
import { expect } from "bun:test";
import { ProtoError } from "../src/proto/types.ts";

export function hex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("hex");
}
export function unhex(s: string): Uint8Array {
  return new Uint8Array(Buffer.from(s.replace(/\s+/g, ""), "hex"));
}

/** mulberry32: small deterministic PRNG. */
export { mulberry32 as prng } from "../src/sys/prng.ts";
export function randInt(r: () => number, maxExclusive: number): number {
  return Math.floor(r() * maxExclusive);
}
export function randBytes(r: () => number, n: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (r() * 256) | 0;
  return b;
}

/** Assert fn throws a ProtoError with the given code; returns it. */
export function expectProtoError(fn: () => unknown, code: string): ProtoError {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(ProtoError);
  expect((caught as ProtoError).code).toBe(code);
  return caught as ProtoError;
}
