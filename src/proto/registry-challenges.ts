// Signature challenge strings of the registry protocol, shared by the registry server, the
// registry client and the trust service (which signs `handshake:`/`respond:` challenges and
// verifies the `handshake:` one on port 444). Every challenge is UTF-8 text signed with pure
// Ed25519 by the node's identity key; node IDs are printed as unsigned decimals (Go's %d of a
// uint32), so a value is reduced to u32 before formatting.

const u32 = (n: number): string => String(n >>> 0);

/** Trust handshake (port 444 and registry `request_handshake`): `handshake:<sender>:<receiver>`. */
export const handshakeChallenge = (sender: number, receiver: number): string => `handshake:${u32(sender)}:${u32(receiver)}`;
/** `respond_handshake`: `respond:<node>:<peer>`. */
export const respondChallenge = (node: number, peer: number): string => `respond:${u32(node)}:${u32(peer)}`;
/** `rotate_key`, signed by the CURRENT key: `rotate:<node>`. */
export const rotateChallenge = (node: number): string => `rotate:${u32(node)}`;
/** `resolve:<requester_id>:<node_id>` */
export const resolveChallenge = (requester: number, node: number): string => `resolve:${u32(requester)}:${u32(node)}`;
/** `report_trust:<node_id>:<peer_id>` */
export const reportTrustChallenge = (node: number, peer: number): string => `report_trust:${u32(node)}:${u32(peer)}`;
/** `revoke_trust:<node_id>:<peer_id>` */
export const revokeTrustChallenge = (node: number, peer: number): string => `revoke_trust:${u32(node)}:${u32(peer)}`;
/** `set_visibility:<node_id>` */
export const setVisibilityChallenge = (node: number): string => `set_visibility:${u32(node)}`;
/** `deregister:<node_id>` */
export const deregisterChallenge = (node: number): string => `deregister:${u32(node)}`;
/** `heartbeat:<node_id>` */
export const heartbeatChallenge = (node: number): string => `heartbeat:${u32(node)}`;
/** `punch:<node_a>:<node_b>` (the requester is one of the two). */
export const punchChallenge = (a: number, b: number): string => `punch:${u32(a)}:${u32(b)}`;
/** `poll_handshakes:<node_id>` */
export const pollHandshakesChallenge = (node: number): string => `poll_handshakes:${u32(node)}`;
/** `set_hostname:<node_id>` */
export const setHostnameChallenge = (node: number): string => `set_hostname:${u32(node)}`;
/** `set_tags:<node_id>` */
export const setTagsChallenge = (node: number): string => `set_tags:${u32(node)}`;
/** `set_task_exec:<node_id>` */
export const setTaskExecChallenge = (node: number): string => `set_task_exec:${u32(node)}`;
/**
 * pilot-ts extension: `subscribe:<node_id>:<unix seconds>` (the timestamp is part of the request
 * and must be within ±120 s of the server's clock).
 */
export const subscribeChallenge = (node: number, unixS: number): string => `subscribe:${u32(node)}:${Math.trunc(unixS)}`;
/**
 * pilot-ts extension: `update_polo_score:<requester_id>:<node_id>:<delta>` — the reference sent
 * polo-score updates unauthenticated; a pilot-ts registry demands this signature (or the admin
 * token). `delta` is the integer actually applied (truncated toward zero).
 */
export const updatePoloChallenge = (requester: number, node: number, delta: number): string =>
  `update_polo_score:${u32(requester)}:${u32(node)}:${Math.trunc(delta)}`;
/**
 * Timestamped ("fresh") form of any challenge above, accepted by pilot-ts registries only: the
 * request carries `ts` (Unix milliseconds) and the signature covers `<challenge>:<ts>`.
 */
export const freshChallenge = (challenge: string, tsMs: number): string => `${challenge}:${Math.trunc(tsMs)}`;
