// Task-submit protocol (port 1003, an extension of the reference): message schemas shared by the
// daemon's task service and `pilotctl task`, and the task file format both write.
//
// Framing is the data-exchange frame (`u32 type, u32 length ≤ 16 MiB, payload`); the payload is a
// JSON object in the reference's struct field order. One frame per connection; only SUBMIT gets a
// response, which reuses type 1.
import { encodeFrame, type Frame } from "./dataexchange.ts";
import { goString } from "./gojson.ts";
import { ProtoError } from "./types.ts";

export { FrameReader, MAX_FRAME_PAYLOAD } from "./dataexchange.ts";

export const TASK_SUBMIT = 1;
/** Legacy, never sent by the daemon. */
export const TASK_RESULT = 2;
export const TASK_STATUS_UPDATE = 3;
export const TASK_SEND_RESULTS = 4;
/** Task IDs: 8-4-4-4-12 lower-case hex (they are file names: nothing else is accepted). */
export const TASK_ID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export function newTaskId(): string {
  const b = crypto.getRandomValues(new Uint8Array(16));
  const h = Buffer.from(b).toString("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

export interface SubmitRequest { kind: "submit"; task_id: string; task_description: string; from_addr: string; to_addr: string }
export interface SubmitResponse { kind: "submit_response"; task_id: string; status: number; message: string }
export interface StatusUpdate { kind: "status_update"; task_id: string; status: string; justification: string }
export interface SendResults {
  kind: "send_results";
  task_id: string;
  result_type: "text" | "file";
  result_text?: string;
  filename?: string;
  /** base64 */
  file_data?: string;
  completed_at: string;
  time_idle_ms?: number;
  time_staged_ms?: number;
  time_cpu_ms?: number;
}
export type TaskMessage = SubmitRequest | SubmitResponse | StatusUpdate | SendResults;

/** Struct-order JSON of [key, value] pairs; `undefined`, "" and 0 of optional keys are omitted. */
function structJson(pairs: [string, string | number | undefined, boolean?][]): string {
  const parts: string[] = [];
  for (const [k, v, optional] of pairs) {
    if (optional && (v === undefined || v === "" || v === 0)) continue;
    parts.push(`${goString(k)}:${typeof v === "number" ? String(Math.trunc(v)) : goString(v ?? "")}`);
  }
  return "{" + parts.join(",") + "}";
}

const te = new TextEncoder();
const td = new TextDecoder("utf-8", { fatal: false, ignoreBOM: true });

export function taskMessageType(m: TaskMessage): number {
  switch (m.kind) {
    case "submit": case "submit_response": return TASK_SUBMIT;
    case "status_update": return TASK_STATUS_UPDATE;
    case "send_results": return TASK_SEND_RESULTS;
  }
}

/** JSON payload of a message (reference struct order). */
export function taskMessageJson(m: TaskMessage): string {
  switch (m.kind) {
    case "submit":
      return structJson([["task_id", m.task_id], ["task_description", m.task_description], ["from_addr", m.from_addr], ["to_addr", m.to_addr]]);
    case "submit_response":
      return structJson([["task_id", m.task_id], ["status", m.status], ["message", m.message]]);
    case "status_update":
      return structJson([["task_id", m.task_id], ["status", m.status], ["justification", m.justification]]);
    case "send_results":
      return structJson([
        ["task_id", m.task_id], ["result_type", m.result_type], ["result_text", m.result_text, true], ["filename", m.filename, true],
        ["file_data", m.file_data, true], ["completed_at", m.completed_at], ["time_idle_ms", m.time_idle_ms, true],
        ["time_staged_ms", m.time_staged_ms, true], ["time_cpu_ms", m.time_cpu_ms, true],
      ]);
  }
}

export function encodeTaskMessage(m: TaskMessage): Uint8Array {
  return encodeFrame(taskMessageType(m), te.encode(taskMessageJson(m)));
}

const str = (v: unknown) => (typeof v === "string" ? v : "");
const num = (v: unknown) => (typeof v === "number" && Number.isFinite(v) ? v : 0);

/**
 * Decode a frame. `response` tells a SUBMIT response from a SUBMIT request (same type). Missing or
 * mistyped fields become ""/0 (lenient, like the reference's decoder); the task ID is returned
 * as sent — check it with TASK_ID_RE before using it in a path.
 */
export function decodeTaskMessage(f: Frame, response = false): TaskMessage {
  let o: Record<string, unknown>;
  try {
    const v = JSON.parse(td.decode(f.payload));
    if (typeof v !== "object" || v === null || Array.isArray(v)) throw new Error("not an object");
    o = v as Record<string, unknown>;
  } catch {
    throw new ProtoError("bad_task_message", "task message is not a JSON object", "task frames carry one JSON object");
  }
  const task_id = str(o.task_id);
  switch (f.type) {
    case TASK_SUBMIT:
      if (response) return { kind: "submit_response", task_id, status: num(o.status), message: str(o.message) };
      return { kind: "submit", task_id, task_description: str(o.task_description), from_addr: str(o.from_addr), to_addr: str(o.to_addr) };
    case TASK_STATUS_UPDATE:
      return { kind: "status_update", task_id, status: str(o.status), justification: str(o.justification) };
    case TASK_SEND_RESULTS:
      return {
        kind: "send_results", task_id, result_type: o.result_type === "file" ? "file" : "text",
        result_text: str(o.result_text), filename: str(o.filename), file_data: str(o.file_data),
        completed_at: str(o.completed_at), time_idle_ms: num(o.time_idle_ms), time_staged_ms: num(o.time_staged_ms), time_cpu_ms: num(o.time_cpu_ms),
      };
    default:
      throw new ProtoError("unknown_task_type", `unknown task message type ${f.type}`, "types are 1 SUBMIT, 3 STATUS_UPDATE, 4 SEND_RESULTS");
  }
}

// ---------------------------------------------------------------------------------------------
// Task files (~/.pilot/tasks/{received,submitted}/<task_id>.json), written by both the daemon and
// pilotctl.

export interface TaskFile {
  task_id: string;
  task_description: string;
  created_at: string;
  status: string;
  status_justification: string;
  from: string;
  to: string;
  accepted_at?: string;
  staged_at?: string;
  execute_started_at?: string;
  completed_at?: string;
  time_idle_ms?: number;
  time_staged_ms?: number;
  time_cpu_ms?: number;
}

const ORDER = ["task_id", "task_description", "created_at", "status", "status_justification", "from", "to",
  "accepted_at", "staged_at", "execute_started_at", "completed_at", "time_idle_ms", "time_staged_ms", "time_cpu_ms"] as const;
const OPTIONAL = new Set(["accepted_at", "staged_at", "execute_started_at", "completed_at", "time_idle_ms", "time_staged_ms", "time_cpu_ms"]);

/** 2-space indented, struct field order, optional fields only when set. */
export function encodeTaskFile(t: TaskFile): string {
  const lines: string[] = [];
  for (const k of ORDER) {
    const v = (t as unknown as Record<string, unknown>)[k];
    if (OPTIONAL.has(k) && (v === undefined || v === "" || v === 0)) continue;
    lines.push(`  "${k}": ${typeof v === "number" ? String(Math.trunc(v)) : goString(String(v ?? ""))}`);
  }
  return "{\n" + lines.join(",\n") + "\n}";
}
