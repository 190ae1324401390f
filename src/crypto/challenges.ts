// Signature challenge strings (wire.md §5.3, registry.md signed-request table).
// All are signed with pure Ed25519 by the node's identity key. Node IDs are printed in decimal
// (Go %d of a uint32), so we format them as unsigned decimals.

const u32 = (n: number): string => String(n >>> 0);

/** Trust handshake JSON on port 444: `handshake:<sender>:<receiver>`. */
export const handshakeChallenge = (sender: number, receiver: number): string =>
  `handshake:${u32(sender)}:${u32(receiver)}`;
/** Registry-relayed handshake answer: `respond:<node>:<peer>`. */
export const respondChallenge = (node: number, peer: number): string =>
  `respond:${u32(node)}:${u32(peer)}`;
/** Key rotation (signed by the CURRENT key): `rotate:<node>`. */
export const rotateChallenge = (node: number): string => `rotate:${u32(node)}`;
/** `resolve:<requester_id>:<node_id>` */
export const resolveChallenge = (requester: number, node: number): string =>
  `resolve:${u32(requester)}:${u32(node)}`;
/** `report_trust:<node_id>:<peer_id>` */
export const reportTrustChallenge = (node: number, peer: number): string =>
  `report_trust:${u32(node)}:${u32(peer)}`;
/** `revoke_trust:<node_id>:<peer_id>` */
export const revokeTrustChallenge = (node: number, peer: number): string =>
  `revoke_trust:${u32(node)}:${u32(peer)}`;
/** `set_visibility:<node_id>` */
export const setVisibilityChallenge = (node: number): string => `set_visibility:${u32(node)}`;
/** `deregister:<node_id>` */
export const deregisterChallenge = (node: number): string => `deregister:${u32(node)}`;
/** `heartbeat:<node_id>` */
export const heartbeatChallenge = (node: number): string => `heartbeat:${u32(node)}`;
/** `punch:<node_a>:<node_b>` */
export const punchChallenge = (a: number, b: number): string => `punch:${u32(a)}:${u32(b)}`;
/** `poll_handshakes:<node_id>` */
export const pollHandshakesChallenge = (node: number): string => `poll_handshakes:${u32(node)}`;
/** `set_hostname:<node_id>` */
export const setHostnameChallenge = (node: number): string => `set_hostname:${u32(node)}`;
/** `set_tags:<node_id>` */
export const setTagsChallenge = (node: number): string => `set_tags:${u32(node)}`;
/** `set_task_exec:<node_id>` */
export const setTaskExecChallenge = (node: number): string => `set_task_exec:${u32(node)}`;

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
