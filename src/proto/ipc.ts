// IPC message codecs for the daemon's Unix socket (docs/protocol.md §9.1). Pure: no I/O.
//
// encodeIpc(msg) produces a frame BODY (cmd byte + payload); wrap it with encodeFrame()
// (src/proto/framing.ts) or use encodeIpcFrame() which does both in a single allocation.
// decodeIpc(body) parses one frame body and throws ProtoError on malformed input.
//
// Error-text contract (used by the daemon's IPC server): when a REQUEST payload is too short or
// otherwise invalid, the thrown ProtoError's `message` is exactly the Error text the reference
// daemon replies with (docs/protocol.md §9.2), e.g. "bind: missing port", "unknown command: 0x2A",
// "handshake: unknown sub-command 0x09", "set_tags: invalid JSON: ...". So a server can do
// `catch (e) { if (e instanceof ProtoError) reply({cmd:"Error", code:1, message:e.message}) }`.
//
// Byte payloads (`data`) returned by decodeIpc are subarray VIEWS into the body (no copy).
import { readAddr, writeAddr } from "./addr.ts";
import { goJsonBytes } from "./gojson.ts";
import { MAX_FRAME } from "./framing.ts";
import { type Addr, ProtoError } from "./types.ts";

// ---- command bytes (docs/protocol.md §9.2) ----
export const CMD_BIND = 0x01;
export const CMD_BIND_OK = 0x02;
export const CMD_DIAL = 0x03;
export const CMD_DIAL_OK = 0x04;
export const CMD_ACCEPT = 0x05;
export const CMD_SEND = 0x06;
export const CMD_RECV = 0x07;
export const CMD_CLOSE = 0x08;
export const CMD_CLOSE_OK = 0x09;
export const CMD_ERROR = 0x0a;
export const CMD_SEND_TO = 0x0b;
export const CMD_RECV_FROM = 0x0c;
export const CMD_INFO = 0x0d;
export const CMD_INFO_OK = 0x0e;
export const CMD_HANDSHAKE = 0x0f;
export const CMD_HANDSHAKE_OK = 0x10;
export const CMD_RESOLVE_HOSTNAME = 0x11;
export const CMD_RESOLVE_HOSTNAME_OK = 0x12;
export const CMD_SET_HOSTNAME = 0x13;
export const CMD_SET_HOSTNAME_OK = 0x14;
export const CMD_SET_VISIBILITY = 0x15;
export const CMD_SET_VISIBILITY_OK = 0x16;
export const CMD_DEREGISTER = 0x17;
export const CMD_DEREGISTER_OK = 0x18;
export const CMD_SET_TAGS = 0x19;
export const CMD_SET_TAGS_OK = 0x1a;
export const CMD_SET_WEBHOOK = 0x1b;
export const CMD_SET_WEBHOOK_OK = 0x1c;
export const CMD_SET_TASK_EXEC = 0x1d;
export const CMD_SET_TASK_EXEC_OK = 0x1e;

// Handshake sub-commands (docs/protocol.md §9.2)
export const HS_REQUEST = 0x01;
export const HS_APPROVE = 0x02;
export const HS_REJECT = 0x03;
export const HS_PENDING = 0x04;
export const HS_TRUSTED = 0x05;
export const HS_REVOKE = 0x06;

/** Error code field value: always 1 ("generic") in the reference (docs/protocol.md §9.2). */
export const IPC_ERROR_GENERIC = 1;

/** Largest data a single Send may carry inside a 1 MiB frame (cmd + conn_id = 5 bytes). */
export const MAX_SEND_DATA = MAX_FRAME - 5;

export type JsonObject = Record<string, unknown>;

export type HandshakeSub =
  | { sub: "request"; nodeId: number; justification: string }
  | { sub: "approve"; nodeId: number }
  | { sub: "reject"; nodeId: number; reason: string }
  | { sub: "pending" }
  | { sub: "trusted" }
  | { sub: "revoke"; nodeId: number };

export type IpcMsg =
  | { cmd: "Bind"; port: number }
  | { cmd: "BindOK"; port: number }
  | { cmd: "Dial"; addr: Addr; port: number }
  | { cmd: "DialOK"; connId: number }
  | { cmd: "Accept"; localPort: number; connId: number; remote: Addr; remotePort: number }
  | { cmd: "Send"; connId: number; data: Uint8Array }
  | { cmd: "Recv"; connId: number; data: Uint8Array }
  | { cmd: "Close"; connId: number }
  | { cmd: "CloseOK"; connId: number }
  | { cmd: "Error"; code: number; message: string }
  | { cmd: "SendTo"; addr: Addr; port: number; data: Uint8Array }
  | { cmd: "RecvFrom"; src: Addr; srcPort: number; dstPort: number; data: Uint8Array }
  | { cmd: "Info" }
  | { cmd: "InfoOK"; json: JsonObject }
  | ({ cmd: "Handshake" } & HandshakeSub)
  | { cmd: "HandshakeOK"; json: JsonObject }
  | { cmd: "ResolveHostname"; hostname: string }
  | { cmd: "ResolveHostnameOK"; json: JsonObject }
  | { cmd: "SetHostname"; hostname: string }
  | { cmd: "SetHostnameOK"; json: JsonObject }
  | { cmd: "SetVisibility"; public: boolean }
  | { cmd: "SetVisibilityOK"; json: JsonObject }
  | { cmd: "Deregister" }
  | { cmd: "DeregisterOK"; json: JsonObject }
  | { cmd: "SetTags"; tags: string[] | null }
  | { cmd: "SetTagsOK"; json: JsonObject }
  | { cmd: "SetWebhook"; url: string }
  | { cmd: "SetWebhookOK"; json: JsonObject }
  | { cmd: "SetTaskExec"; enabled: boolean }
  | { cmd: "SetTaskExecOK"; json: JsonObject };

export type IpcCmdName = IpcMsg["cmd"];

/** Command name → byte. */
export const IPC_CMD: Readonly<Record<IpcCmdName, number>> = Object.freeze({
  Bind: CMD_BIND,
  BindOK: CMD_BIND_OK,
  Dial: CMD_DIAL,
  DialOK: CMD_DIAL_OK,
  Accept: CMD_ACCEPT,
  Send: CMD_SEND,
  Recv: CMD_RECV,
  Close: CMD_CLOSE,
  CloseOK: CMD_CLOSE_OK,
  Error: CMD_ERROR,
  SendTo: CMD_SEND_TO,
  RecvFrom: CMD_RECV_FROM,
  Info: CMD_INFO,
  InfoOK: CMD_INFO_OK,
  Handshake: CMD_HANDSHAKE,
  HandshakeOK: CMD_HANDSHAKE_OK,
  ResolveHostname: CMD_RESOLVE_HOSTNAME,
  ResolveHostnameOK: CMD_RESOLVE_HOSTNAME_OK,
  SetHostname: CMD_SET_HOSTNAME,
  SetHostnameOK: CMD_SET_HOSTNAME_OK,
  SetVisibility: CMD_SET_VISIBILITY,
  SetVisibilityOK: CMD_SET_VISIBILITY_OK,
  Deregister: CMD_DEREGISTER,
  DeregisterOK: CMD_DEREGISTER_OK,
  SetTags: CMD_SET_TAGS,
  SetTagsOK: CMD_SET_TAGS_OK,
  SetWebhook: CMD_SET_WEBHOOK,
  SetWebhookOK: CMD_SET_WEBHOOK_OK,
  SetTaskExec: CMD_SET_TASK_EXEC,
  SetTaskExecOK: CMD_SET_TASK_EXEC_OK,
});

/** Byte → command name (index = byte). */
export const IPC_CMD_NAME: readonly (IpcCmdName | undefined)[] = (() => {
  const a: (IpcCmdName | undefined)[] = new Array(256).fill(undefined);
  for (const [k, v] of Object.entries(IPC_CMD)) a[v] = k as IpcCmdName;
  return a;
})();

/** Reply byte expected for a request byte (docs/protocol.md §9.2); undefined for Send/SendTo/pushes. */
export function replyCmdFor(reqCmd: number): number | undefined {
  switch (reqCmd) {
    case CMD_SEND:
    case CMD_SEND_TO:
      return undefined;
    case CMD_BIND: case CMD_DIAL: case CMD_CLOSE: case CMD_INFO: case CMD_HANDSHAKE:
    case CMD_RESOLVE_HOSTNAME: case CMD_SET_HOSTNAME: case CMD_SET_VISIBILITY: case CMD_DEREGISTER:
    case CMD_SET_TAGS: case CMD_SET_WEBHOOK: case CMD_SET_TASK_EXEC:
      return reqCmd + 1;
    default:
      return undefined;
  }
}

/** Pushes (never a reply to a waiter in the reference driver): Accept, Recv, CloseOK, RecvFrom. */
export function isPushCmd(cmd: number): boolean {
  return cmd === CMD_ACCEPT || cmd === CMD_RECV || cmd === CMD_CLOSE_OK || cmd === CMD_RECV_FROM;
}

const te = new TextEncoder();
const td = new TextDecoder(); // non-fatal: invalid UTF-8 -> U+FFFD

function hex2(b: number): string {
  return (b & 0xff).toString(16).toUpperCase().padStart(2, "0");
}

function u16(v: number, what: string): number {
  if (!Number.isInteger(v) || v < 0 || v > 0xffff) {
    throw new ProtoError("ipc_invalid_field", `${what} out of range: ${v}`, "ports are integers 0-65535");
  }
  return v;
}
function u32(v: number, what: string): number {
  if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) {
    throw new ProtoError("ipc_invalid_field", `${what} out of range: ${v}`, "IDs are unsigned 32-bit integers");
  }
  return v;
}

function put16(b: Uint8Array, off: number, v: number): void {
  b[off] = v >>> 8;
  b[off + 1] = v;
}
function put32(b: Uint8Array, off: number, v: number): void {
  b[off] = v >>> 24;
  b[off + 1] = v >>> 16;
  b[off + 2] = v >>> 8;
  b[off + 3] = v;
}
function get16(b: Uint8Array, off: number): number {
  return (b[off] << 8) | b[off + 1];
}
function get32(b: Uint8Array, off: number): number {
  return ((b[off] << 24) | (b[off + 1] << 16) | (b[off + 2] << 8) | b[off + 3]) >>> 0;
}

function withBytes(cmd: number, head: number, tail: Uint8Array | undefined): Uint8Array {
  const out = new Uint8Array(1 + head + (tail ? tail.length : 0));
  out[0] = cmd;
  if (tail) out.set(tail, 1 + head);
  return out;
}

function jsonBody(cmd: number, json: unknown): Uint8Array {
  const j = goJsonBytes(json);
  const out = new Uint8Array(1 + j.length);
  out[0] = cmd;
  out.set(j, 1);
  return out;
}

/** Build the frame body for one message. */
function bodyOf(msg: IpcMsg): Uint8Array {
  switch (msg.cmd) {
    case "Bind":
    case "BindOK": {
      const b = new Uint8Array(3);
      b[0] = IPC_CMD[msg.cmd];
      put16(b, 1, u16(msg.port, "port"));
      return b;
    }
    case "Dial": {
      const b = new Uint8Array(9);
      b[0] = CMD_DIAL;
      writeAddr(b, 1, msg.addr);
      put16(b, 7, u16(msg.port, "port"));
      return b;
    }
    case "DialOK":
    case "Close":
    case "CloseOK": {
      const b = new Uint8Array(5);
      b[0] = IPC_CMD[msg.cmd];
      put32(b, 1, u32(msg.connId, "conn_id"));
      return b;
    }
    case "Accept": {
      const b = new Uint8Array(15);
      b[0] = CMD_ACCEPT;
      put16(b, 1, u16(msg.localPort, "local_port"));
      put32(b, 3, u32(msg.connId, "conn_id"));
      writeAddr(b, 7, msg.remote);
      put16(b, 13, u16(msg.remotePort, "remote_port"));
      return b;
    }
    case "Send":
    case "Recv": {
      const b = withBytes(IPC_CMD[msg.cmd], 4, msg.data);
      put32(b, 1, u32(msg.connId, "conn_id"));
      return b;
    }
    case "Error": {
      const m = te.encode(msg.message);
      const b = withBytes(CMD_ERROR, 2, m);
      put16(b, 1, u16(msg.code ?? IPC_ERROR_GENERIC, "error code"));
      return b;
    }
    case "SendTo": {
      const b = withBytes(CMD_SEND_TO, 8, msg.data);
      writeAddr(b, 1, msg.addr);
      put16(b, 7, u16(msg.port, "port"));
      return b;
    }
    case "RecvFrom": {
      const b = withBytes(CMD_RECV_FROM, 10, msg.data);
      writeAddr(b, 1, msg.src);
      put16(b, 7, u16(msg.srcPort, "src_port"));
      put16(b, 9, u16(msg.dstPort, "dst_port"));
      return b;
    }
    case "Info":
      return Uint8Array.of(CMD_INFO);
    case "Deregister":
      return Uint8Array.of(CMD_DEREGISTER);
    case "Handshake": {
      switch (msg.sub) {
        case "request":
        case "reject": {
          const text = te.encode(msg.sub === "request" ? msg.justification : msg.reason);
          const b = withBytes(CMD_HANDSHAKE, 5, text);
          b[1] = msg.sub === "request" ? HS_REQUEST : HS_REJECT;
          put32(b, 2, u32(msg.nodeId, "node_id"));
          return b;
        }
        case "approve":
        case "revoke": {
          const b = new Uint8Array(6);
          b[0] = CMD_HANDSHAKE;
          b[1] = msg.sub === "approve" ? HS_APPROVE : HS_REVOKE;
          put32(b, 2, u32(msg.nodeId, "node_id"));
          return b;
        }
        case "pending":
          return Uint8Array.of(CMD_HANDSHAKE, HS_PENDING);
        case "trusted":
          return Uint8Array.of(CMD_HANDSHAKE, HS_TRUSTED);
      }
      throw new ProtoError("ipc_invalid_field", `unknown handshake sub-command ${(msg as { sub: string }).sub}`, "use request/approve/reject/pending/trusted/revoke");
    }
    case "ResolveHostname":
    case "SetHostname":
      return withBytes(IPC_CMD[msg.cmd], 0, te.encode(msg.hostname));
    case "SetWebhook":
      return withBytes(CMD_SET_WEBHOOK, 0, te.encode(msg.url));
    case "SetVisibility":
      return Uint8Array.of(CMD_SET_VISIBILITY, msg.public ? 1 : 0);
    case "SetTaskExec":
      return Uint8Array.of(CMD_SET_TASK_EXEC, msg.enabled ? 1 : 0);
    case "SetTags":
      return jsonBody(CMD_SET_TAGS, msg.tags);
    case "InfoOK":
    case "HandshakeOK":
    case "ResolveHostnameOK":
    case "SetHostnameOK":
    case "SetVisibilityOK":
    case "DeregisterOK":
    case "SetTagsOK":
    case "SetWebhookOK":
    case "SetTaskExecOK":
      return jsonBody(IPC_CMD[msg.cmd], msg.json);
  }
  throw new ProtoError("ipc_unknown_command", `cannot encode unknown IPC message ${(msg as { cmd: string }).cmd}`, "use one of the IpcMsg variants");
}

/** Encode a message to a frame body (command byte + payload). */
export function encodeIpc(msg: IpcMsg): Uint8Array {
  return bodyOf(msg);
}

/**
 * The 9 bytes in front of a Send frame's data (u32 length, command, connection ID): a writer can
 * send them and then the caller's data as it is, without copying the data into a frame buffer.
 */
export function encodeSendHead(connId: number, dataLen: number, max: number = MAX_FRAME): Uint8Array {
  tooLarge(5 + dataLen, max);
  const out = new Uint8Array(9);
  put32(out, 0, 5 + dataLen);
  out[4] = CMD_SEND;
  put32(out, 5, u32(connId, "conn_id"));
  return out;
}

/**
 * Encode a message directly as a complete frame (u32 length + body) in one buffer. Throws
 * ProtoError("frame_too_large") if the body exceeds `max` (default 1 MiB).
 * Send/Recv/SendTo/RecvFrom (the data paths) are built without an intermediate body copy.
 */
export function encodeIpcFrame(msg: IpcMsg, max: number = MAX_FRAME): Uint8Array {
  let head = -1;
  let data: Uint8Array | undefined;
  if (msg.cmd === "Send" || msg.cmd === "Recv") { head = 5; data = msg.data; }
  else if (msg.cmd === "SendTo") { head = 9; data = msg.data; }
  else if (msg.cmd === "RecvFrom") { head = 11; data = msg.data; }
  if (data) {
    const n = head + data.length;
    tooLarge(n, max);
    const out = new Uint8Array(4 + n);
    put32(out, 0, n);
    out[4] = IPC_CMD[msg.cmd];
    if (msg.cmd === "Send" || msg.cmd === "Recv") put32(out, 5, u32(msg.connId, "conn_id"));
    else if (msg.cmd === "SendTo") { writeAddr(out, 5, msg.addr); put16(out, 11, u16(msg.port, "port")); }
    else if (msg.cmd === "RecvFrom") {
      writeAddr(out, 5, msg.src);
      put16(out, 11, u16(msg.srcPort, "src_port"));
      put16(out, 13, u16(msg.dstPort, "dst_port"));
    }
    out.set(data, 4 + head);
    return out;
  }
  const body = bodyOf(msg);
  tooLarge(body.length, max);
  const out = new Uint8Array(4 + body.length);
  put32(out, 0, body.length);
  out.set(body, 4);
  return out;
}

function tooLarge(n: number, max: number): void {
  if (n > max) {
    throw new ProtoError("frame_too_large", `ipc message too large: ${n} bytes (max ${max})`, "split the data into chunks below 1 MiB");
  }
}

function bad(message: string, code = "ipc_malformed"): ProtoError {
  return new ProtoError(code, message, "the IPC message is truncated or malformed; check the client/daemon versions");
}

function truncated(name: string, need: number, have: number): ProtoError {
  return new ProtoError("ipc_truncated", `${name}: payload needs ${need} bytes, got ${have}`, "the daemon sent a truncated message; check versions");
}

function parseJsonObject(name: string, p: Uint8Array): JsonObject {
  let v: unknown;
  try {
    v = JSON.parse(td.decode(p));
  } catch (e) {
    throw new ProtoError("ipc_invalid_json", `${name}: invalid JSON: ${(e as Error).message}`, "the reply body must be a JSON object");
  }
  if (v === null || typeof v !== "object" || Array.isArray(v)) {
    throw new ProtoError("ipc_invalid_json", `${name}: invalid JSON: expected an object`, "the reply body must be a JSON object");
  }
  return v as JsonObject;
}

/**
 * Decode one frame body. Request-side validation errors carry the reference daemon's Error text
 * as `message` (see the header comment); reply/push truncation yields code "ipc_truncated".
 */
export function decodeIpc(body: Uint8Array): IpcMsg {
  if (body.length === 0) throw bad("empty IPC message", "ipc_empty");
  const c = body[0];
  const p = body.subarray(1);
  const n = p.length;
  switch (c) {
    case CMD_BIND:
      if (n < 2) throw bad("bind: missing port");
      return { cmd: "Bind", port: get16(p, 0) };
    case CMD_BIND_OK:
      if (n < 2) throw truncated("BindOK", 2, n);
      return { cmd: "BindOK", port: get16(p, 0) };
    case CMD_DIAL:
      if (n < 8) throw bad("dial: missing address/port");
      return { cmd: "Dial", addr: readAddr(p, 0), port: get16(p, 6) };
    case CMD_DIAL_OK:
      if (n < 4) throw truncated("DialOK", 4, n);
      return { cmd: "DialOK", connId: get32(p, 0) };
    case CMD_ACCEPT:
      if (n < 14) throw truncated("Accept", 14, n);
      return { cmd: "Accept", localPort: get16(p, 0), connId: get32(p, 2), remote: readAddr(p, 6), remotePort: get16(p, 12) };
    case CMD_SEND:
      if (n < 4) throw bad("send: missing conn_id");
      return { cmd: "Send", connId: get32(p, 0), data: p.subarray(4) };
    case CMD_RECV:
      if (n < 4) throw truncated("Recv", 4, n);
      return { cmd: "Recv", connId: get32(p, 0), data: p.subarray(4) };
    case CMD_CLOSE:
      if (n < 4) throw bad("close: missing conn_id");
      return { cmd: "Close", connId: get32(p, 0) };
    case CMD_CLOSE_OK:
      if (n < 4) throw truncated("CloseOK", 4, n);
      return { cmd: "CloseOK", connId: get32(p, 0) };
    case CMD_ERROR:
      if (n < 2) throw truncated("Error", 2, n);
      return { cmd: "Error", code: get16(p, 0), message: td.decode(p.subarray(2)) };
    case CMD_SEND_TO:
      if (n < 8) throw bad("sendto: missing address/port");
      return { cmd: "SendTo", addr: readAddr(p, 0), port: get16(p, 6), data: p.subarray(8) };
    case CMD_RECV_FROM:
      if (n < 10) throw truncated("RecvFrom", 10, n);
      return { cmd: "RecvFrom", src: readAddr(p, 0), srcPort: get16(p, 6), dstPort: get16(p, 8), data: p.subarray(10) };
    case CMD_INFO:
      return { cmd: "Info" };
    case CMD_DEREGISTER:
      return { cmd: "Deregister" };
    case CMD_HANDSHAKE: {
      if (n < 1) throw bad("handshake: missing sub-command");
      const sub = p[0];
      const q = p.subarray(1);
      switch (sub) {
        case HS_REQUEST:
          if (q.length < 4) throw bad("handshake request: missing node_id");
          return { cmd: "Handshake", sub: "request", nodeId: get32(q, 0), justification: td.decode(q.subarray(4)) };
        case HS_APPROVE:
          if (q.length < 4) throw bad("handshake approve: missing node_id");
          return { cmd: "Handshake", sub: "approve", nodeId: get32(q, 0) };
        case HS_REJECT:
          if (q.length < 4) throw bad("handshake reject: missing node_id");
          return { cmd: "Handshake", sub: "reject", nodeId: get32(q, 0), reason: td.decode(q.subarray(4)) };
        case HS_PENDING:
          return { cmd: "Handshake", sub: "pending" };
        case HS_TRUSTED:
          return { cmd: "Handshake", sub: "trusted" };
        case HS_REVOKE:
          if (q.length < 4) throw bad("handshake revoke: missing node_id");
          return { cmd: "Handshake", sub: "revoke", nodeId: get32(q, 0) };
        default:
          throw bad(`handshake: unknown sub-command 0x${hex2(sub)}`, "ipc_unknown_command");
      }
    }
    case CMD_RESOLVE_HOSTNAME:
      if (n < 1) throw bad("resolve_hostname: missing hostname");
      return { cmd: "ResolveHostname", hostname: td.decode(p) };
    case CMD_SET_HOSTNAME:
      return { cmd: "SetHostname", hostname: td.decode(p) };
    case CMD_SET_VISIBILITY:
      if (n < 1) throw bad("set_visibility: missing value");
      return { cmd: "SetVisibility", public: p[0] === 1 };
    case CMD_SET_TASK_EXEC:
      if (n < 1) throw bad("set_task_exec: missing value");
      return { cmd: "SetTaskExec", enabled: p[0] === 1 };
    case CMD_SET_WEBHOOK:
      return { cmd: "SetWebhook", url: td.decode(p) };
    case CMD_SET_TAGS: {
      let v: unknown;
      try {
        v = JSON.parse(td.decode(p));
      } catch (e) {
        throw new ProtoError("ipc_invalid_json", `set_tags: invalid JSON: ${(e as Error).message}`, 'tags must be a JSON array of strings, e.g. ["web","api"]');
      }
      if (v !== null && (!Array.isArray(v) || v.some((t) => typeof t !== "string"))) {
        throw new ProtoError("ipc_invalid_json", "set_tags: invalid JSON: json: cannot unmarshal into Go value of type []string", 'tags must be a JSON array of strings, e.g. ["web","api"]');
      }
      return { cmd: "SetTags", tags: v as string[] | null };
    }
    case CMD_INFO_OK:
    case CMD_HANDSHAKE_OK:
    case CMD_RESOLVE_HOSTNAME_OK:
    case CMD_SET_HOSTNAME_OK:
    case CMD_SET_VISIBILITY_OK:
    case CMD_DEREGISTER_OK:
    case CMD_SET_TAGS_OK:
    case CMD_SET_WEBHOOK_OK:
    case CMD_SET_TASK_EXEC_OK: {
      const name = IPC_CMD_NAME[c]!;
      return { cmd: name, json: parseJsonObject(name, p) } as IpcMsg;
    }
    default:
      throw bad(`unknown command: 0x${hex2(c)}`, "ipc_unknown_command");
  }
}
