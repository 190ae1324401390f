// Registry protocol messages: one schema for both ends (the registry server decodes requests with
// it, the registry client encodes requests and types replies with it).
//
// Transport: each message is one length-prefixed JSON object (proto/framing.ts). Requests carry a
// string `type`; a success reply has type `<type>_ok`, a failure is {"type":"error","error":text}
// plus, on a pilot-ts registry, a machine-readable `code`. Unknown fields are ignored.
//
// Request fields are converted like the reference's Go decoder does, so that reference clients
// get the same answers: numbers are IEEE doubles; a u32/u16 field that is missing, not a number,
// negative or too large reads as 0, otherwise it is truncated toward zero; a boolean is true only
// for JSON `true`; a non-string string reads as ""; a string list keeps only its string elements
// (non-array = empty); an integer field (`delta`, `polo_score`, timestamps) is kept only if it is
// a number (missing → undefined, which the handler refuses).
export * from "./registry-challenges.ts";

type Kind = "u32" | "u16" | "str" | "bool" | "strs" | "num";
interface KindType {
  u32: number;
  u16: number;
  str: string;
  bool: boolean;
  strs: string[];
  num: number | undefined;
}

/** Fields of every request that carries a node signature (plain, or timestamped with `ts`). */
const SIG = { signature: "str", ts: "num" } as const;

/** Request schema: field name → conversion, per request type. */
export const REQUEST_FIELDS = {
  register: { public_key: "str", listen_addr: "str", owner: "str", hostname: "str" },
  rotate_key: { node_id: "u32", new_public_key: "str", ...SIG },
  deregister: { node_id: "u32", ...SIG },
  heartbeat: { node_id: "u32", ...SIG },
  lookup: { node_id: "u32" },
  resolve: { node_id: "u32", requester_id: "u32", ...SIG },
  set_visibility: { node_id: "u32", public: "bool", ...SIG },
  set_hostname: { node_id: "u32", hostname: "str", ...SIG },
  resolve_hostname: { hostname: "str" },
  report_trust: { node_id: "u32", peer_id: "u32", ...SIG },
  revoke_trust: { node_id: "u32", peer_id: "u32", ...SIG },
  request_handshake: { from_node_id: "u32", to_node_id: "u32", justification: "str", ...SIG },
  poll_handshakes: { node_id: "u32", ...SIG },
  respond_handshake: { node_id: "u32", peer_id: "u32", accept: "bool", ...SIG },
  punch: { requester_id: "u32", node_a: "u32", node_b: "u32", ...SIG },
  list_networks: {},
  list_nodes: { network_id: "u16" },
  create_network: { node_id: "u32", name: "str", join_rule: "str", token: "str", admin_token: "str" },
  join_network: { node_id: "u32", network_id: "u16", token: "str", inviter_id: "u32", admin_token: "str" },
  leave_network: { node_id: "u32", network_id: "u16", admin_token: "str" },
  beacon_register: { beacon_id: "u32", addr: "str" },
  beacon_list: {},
  set_tags: { node_id: "u32", tags: "strs", ...SIG },
  set_task_exec: { node_id: "u32", enabled: "bool", ...SIG },
  // Polo-score writes: the admin token, or (update only) a signature of `requester_id` (0 = the
  // node itself) over updatePoloChallenge. Reference clients sent neither.
  update_polo_score: { node_id: "u32", delta: "num", requester_id: "u32", admin_token: "str", ...SIG },
  set_polo_score: { node_id: "u32", polo_score: "num", admin_token: "str" },
  get_polo_score: { node_id: "u32" },
  // Extension: push subscription; `timestamp` is Unix seconds (signed inside the challenge).
  subscribe: { node_id: "u32", timestamp: "num", signature: "str" },
  // Replication (primary → standby stream), authenticated by the shared replication token.
  subscribe_replication: { token: "str" },
} as const satisfies Record<string, Record<string, Kind>>;

type Spec = typeof REQUEST_FIELDS;
export type RequestType = keyof Spec;
/** A decoded request: every schema field present, converted. */
export type RequestOf<T extends RequestType> = { type: T } & { -readonly [K in keyof Spec[T]]: KindType[Spec[T][K] & Kind] };
/** A request as a client writes it: fields it does not need may be left out. */
export type OutgoingRequest<T extends RequestType> = { type: T } & { -readonly [K in keyof Spec[T]]?: KindType[Spec[T][K] & Kind] };
export type RegistryRequest = { [T in RequestType]: RequestOf<T> }[RequestType];
export type SignedRequest = Extract<RegistryRequest, { signature: string }>;

export const REQUEST_TYPES: ReadonlySet<string> = new Set(Object.keys(REQUEST_FIELDS));
export const isRequestType = (t: string): t is RequestType => Object.prototype.hasOwnProperty.call(REQUEST_FIELDS, t);

// ------------------------------------------------------------------ field conversion

export function u32(v: unknown): number {
  return typeof v === "number" && v >= 0 && v <= 4294967295 ? Math.trunc(v) : 0;
}
export function u16(v: unknown): number {
  return typeof v === "number" && v >= 0 && v <= 65535 ? Math.trunc(v) : 0;
}
export function str(v: unknown): string {
  return typeof v === "string" ? v : "";
}
export function bool(v: unknown): boolean {
  return v === true;
}
function strs(v: unknown): string[] {
  return Array.isArray(v) ? (v.filter((x) => typeof x === "string") as string[]) : [];
}
function num(v: unknown): number | undefined {
  return typeof v === "number" && Number.isFinite(v) ? v : undefined;
}
const CONVERT: { [K in Kind]: (v: unknown) => KindType[K] } = { u32, u16, str, bool, strs, num };

/**
 * Decode one request body (already parsed JSON). Returns the request type (`""` when missing or
 * not a string, or the unknown type text) and, for known types, the converted request. `null`
 * (which the reference decodes as an empty request) yields type "".
 */
export function decodeRequest(body: unknown): { type: string; req: RegistryRequest | null } {
  const o = body !== null && typeof body === "object" && !Array.isArray(body) ? (body as Record<string, unknown>) : {};
  const type = typeof o.type === "string" ? o.type : "";
  if (!isRequestType(type)) return { type, req: null };
  const out: Record<string, unknown> = { type };
  const spec = REQUEST_FIELDS[type] as Record<string, Kind>;
  for (const f in spec) out[f] = CONVERT[spec[f]](o[f]);
  return { type, req: out as RegistryRequest };
}

// ------------------------------------------------------------------ replies

/** Extension names a pilot-ts registry advertises in register_ok / subscribe_ok. */
export const EXT_PUSH = "push";
export const EXT_FRESH_SIGNATURES = "fresh_signatures";

export interface ErrorReply { type: "error"; error: string; code?: string }

export interface ReplyFields {
  register: { node_id: number; network_id: number; address: string; public_key: string; extensions?: string[]; hostname?: string; hostname_error?: string };
  rotate_key: { node_id: number; address: string; public_key: string };
  deregister: {};
  heartbeat: { time: number };
  lookup: {
    node_id: number; address: string; networks: number[]; public_key: string; public: boolean; polo_score: number;
    hostname?: string; tags?: string[]; task_exec?: boolean; real_addr?: string;
  };
  resolve: { node_id: number; real_addr: string };
  set_visibility: { node_id: number; visibility: "public" | "private" };
  set_hostname: { node_id: number; hostname: string };
  resolve_hostname: { node_id: number; address: string; public: boolean; hostname: string };
  report_trust: {};
  revoke_trust: {};
  request_handshake: { status: string };
  poll_handshakes: {
    requests: { from_node_id: number; justification: string; timestamp: number }[];
    responses: { from_node_id: number; accept: boolean; timestamp: number }[];
  };
  respond_handshake: { accept: boolean; peer_id: number };
  punch: { node_a: number; node_a_addr: string; node_b: number; node_b_addr: string };
  list_networks: { networks: { id: number; name: string; members: number; join_rule: string }[] };
  list_nodes: { nodes: { node_id: number; address: string; hostname?: string; task_exec?: boolean; real_addr?: string }[] };
  create_network: { network_id: number; name: string };
  join_network: { network_id: number; address: string };
  leave_network: { network_id: number };
  beacon_register: { beacon_id: number };
  beacon_list: { beacons: { id: number; addr: string }[] };
  set_tags: { node_id: number; tags: string[] | null };
  set_task_exec: { node_id: number; task_exec: boolean };
  update_polo_score: { node_id: number; address: string; polo_score: number };
  set_polo_score: { node_id: number; address: string; polo_score: number };
  get_polo_score: { node_id: number; address: string; polo_score: number };
  subscribe: { node_id: number; extensions: string[] };
  subscribe_replication: never;
}
export type OkType<T extends RequestType> = `${T}_ok`;
/** The success reply to a request of type T. */
export type ReplyOf<T extends RequestType> = { type: OkType<T> } & ReplyFields[T];
export type RegistryReply = { [T in RequestType]: ReplyOf<T> }[RequestType] | ErrorReply;

export const okType = <T extends RequestType>(t: T): OkType<T> => `${t}_ok` as OkType<T>;

/** Push event (extension), delivered to connections that sent `subscribe` for `node_id`. */
export interface PushEvent {
  node_id: number;
  event: "handshake_request" | "handshake_response";
  from_node_id: number;
  justification?: string; // handshake_request
  accept?: boolean; // handshake_response
  timestamp: number; // Unix seconds
}
export const PUSH_TYPE = "push";
/** The unsolicited frame carrying a push event; no reply has type "push". */
export type PushFrame = { type: typeof PUSH_TYPE } & PushEvent;

/** Replication frames (primary → standby). */
export const REPLICATION_SNAPSHOT = "replication_snapshot";
/** Keep-alive frame on a replication stream (every 15 s), ignored by the standby. */
export const REPLICATION_HEARTBEAT = "heartbeat";
/** The two refusal texts of subscribe_replication that reference standbys match verbatim. */
export const REPL_NOT_CONFIGURED = "replication not configured";
export const REPL_BAD_TOKEN = "invalid replication token";
export const REPL_SNAPSHOT_FAILED = "failed to generate snapshot";
/** Generic error body of the reference (and of `opaqueErrors`). */
export const OPAQUE_ERROR = "request failed";

/** Classify a decoded reply frame (client side). */
export function classifyReply(v: unknown): { kind: "push"; push: PushFrame } | { kind: "error"; err: ErrorReply } | { kind: "ok"; reply: Record<string, unknown> } | { kind: "bad" } {
  if (v === null || typeof v !== "object" || Array.isArray(v)) return { kind: "bad" };
  const o = v as Record<string, unknown>;
  if (typeof o.error === "string") return { kind: "error", err: { type: "error", error: o.error, code: typeof o.code === "string" ? o.code : undefined } };
  if (o.type === PUSH_TYPE) return { kind: "push", push: o as unknown as PushFrame };
  return { kind: "ok", reply: o };
}
