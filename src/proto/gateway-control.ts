// The gateway's control channel (docs/gateway-control.md): a Unix socket speaking JSON lines, one
// request object per line, one reply object per line. The reference has no such channel; pilotctl
// uses it to reach a running pilot-gateway (map, unmap, list, status, stop). The same reply shape
// is the one line `pilot-gateway -notify-ready` prints when it is up (or failed).
//   {"op":"status"}                  → {"ok":true,"pid","subnet","ports","mappings","bridges"}
//   {"op":"list"}                    → {"ok":true,"mappings":[{"local_ip","pilot_addr","listening"}…]}
//   {"op":"map","addr":A,"ip":I?}    → {"ok":true,"mapping":{…}}
//   {"op":"unmap","target":IP|ADDR}  → {"ok":true,"unmapped":IP,"pilot_addr":A}
//   {"op":"stop"}                    → {"ok":true,"pid"}   (sent after cleanup; the process then exits)
// Errors: {"ok":false,"error":{"code","message","hint"?}}.
import { ProtoError } from "./types.ts";

/** Longest request or reply line accepted. */
export const MAX_CONTROL_LINE = 64 * 1024;

export type ControlRequest =
  | { op: "status" }
  | { op: "list" }
  | { op: "map"; addr: string; ip?: string }
  | { op: "unmap"; target: string }
  | { op: "stop" };

export interface ControlMapping {
  local_ip: string;
  pilot_addr: string;
  listening: number[];
}

export interface ControlErrorBody {
  code: string;
  message: string;
  hint?: string;
}

/** A reply: `ok` plus the fields of the operation, or the error. */
export type ControlReply = ({ ok: true } & Record<string, unknown>) | { ok: false; error: ControlErrorBody };

/** One request line (without the newline). Throws ProtoError for anything but a known request. */
export function decodeControlRequest(line: string): ControlRequest {
  if (line.length > MAX_CONTROL_LINE) throw new ProtoError("frame_too_large", `control: request line of ${line.length} bytes (max ${MAX_CONTROL_LINE})`);
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    throw new ProtoError("malformed_json", "control: malformed request");
  }
  if (!v || typeof v !== "object" || Array.isArray(v)) throw new ProtoError("malformed_json", "control: malformed request");
  const r = v as Record<string, unknown>;
  switch (r.op) {
    case "status":
    case "list":
    case "stop":
      return { op: r.op };
    case "map":
      if (typeof r.addr !== "string") throw new ProtoError("invalid_argument", "map: missing addr");
      if (r.ip !== undefined && typeof r.ip !== "string") throw new ProtoError("invalid_argument", "map: ip must be a string");
      return typeof r.ip === "string" && r.ip !== "" ? { op: "map", addr: r.addr, ip: r.ip } : { op: "map", addr: r.addr };
    case "unmap":
      if (typeof r.target !== "string") throw new ProtoError("invalid_argument", "unmap: missing target");
      return { op: "unmap", target: r.target };
    default:
      throw new ProtoError("invalid_argument", `unknown control op: ${String(r.op)}`);
  }
}

export function encodeControlRequest(req: ControlRequest): string {
  return JSON.stringify(req) + "\n";
}

export function encodeControlReply(r: ControlReply): string {
  return JSON.stringify(r) + "\n";
}

/**
 * The first complete reply line in `buf`, or null while none is buffered. A line that is not a
 * reply object throws ProtoError; an error reply is returned as `{ ok: false, error }`.
 */
export function takeControlReply(buf: string): ControlReply | null {
  const nl = buf.indexOf("\n");
  if (nl < 0) {
    if (buf.length > MAX_CONTROL_LINE) throw new ProtoError("frame_too_large", "control: reply line too long");
    return null;
  }
  let v: unknown;
  try {
    v = JSON.parse(buf.slice(0, nl));
  } catch {
    throw new ProtoError("malformed_json", "control: malformed reply");
  }
  if (!v || typeof v !== "object" || Array.isArray(v)) throw new ProtoError("malformed_json", "control: malformed reply");
  const r = v as Record<string, unknown>;
  if (r.ok === true) return r as ControlReply;
  const e = (r.error && typeof r.error === "object" ? r.error : {}) as Record<string, unknown>;
  const error: ControlErrorBody = {
    code: typeof e.code === "string" ? e.code : "internal",
    message: typeof e.message === "string" ? e.message : "",
  };
  if (typeof e.hint === "string") error.hint = e.hint;
  return { ok: false, error };
}
