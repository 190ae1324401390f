// PILA tunnel authentication challenge (the registry's text challenges live in
// proto/registry-challenges.ts).

import { ProtoError } from "../proto/types.ts";

const AUTH = [0x61, 0x75, 0x74, 0x68]; // "auth" — NO colon (wire.md W2)

/**
 * PILA challenge (wire.md §3.5): "auth" ‖ node ID (u32 BE) ‖ X25519 public key (32) = 40 bytes.
 * Pass `out` (>= 40 bytes) to avoid an allocation.
 */
export function authChallenge(nodeId: number, x25519Pub: Uint8Array, out?: Uint8Array): Uint8Array {
  if (x25519Pub.length !== 32) {
    throw new ProtoError("bad_key_length", `X25519 public key must be 32 bytes, got ${x25519Pub.length}`, "pass the raw 32-byte X25519 public key");
  }
  const b = out ?? new Uint8Array(40);
  b[0] = AUTH[0];
  b[1] = AUTH[1];
  b[2] = AUTH[2];
  b[3] = AUTH[3];
  b[4] = (nodeId >>> 24) & 0xff;
  b[5] = (nodeId >>> 16) & 0xff;
  b[6] = (nodeId >>> 8) & 0xff;
  b[7] = nodeId & 0xff;
  b.set(x25519Pub, 8);
  return out ? b.subarray(0, 40) : b;
}
