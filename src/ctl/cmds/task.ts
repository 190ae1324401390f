// Task commands (docs/protocol.md §13, §10.5). Files live under ~/.pilot/tasks/{received,submitted};
// network messages go to port 1003 of the peer, one frame per connection (u32 type, u32 length,
// JSON payload). The daemon's task service (src/daemon/services/tasks.ts) is the receiving side.
import { readdirSync, readFileSync } from "node:fs";
import { basename, extname, join } from "node:path";
import { formatAddr, parseAddr } from "../../proto/addr.ts";
import {
  decodeTaskMessage, encodeTaskFile, encodeTaskMessage, FrameReader, newTaskId, type SendResults, type TaskFile, type TaskMessage,
} from "../../proto/tasks.ts";
import { type Addr, PORT_TASKSUBMIT as PORT } from "../../proto/types.ts";
import type { Driver } from "../../client/driver.ts";
import { type Ctx, CtlError, flagStr, parseFlags, pilotDir } from "../util.ts";
import { connectDaemon, resolveTarget, usage } from "./shared.ts";
import { libraryLogger } from "../../sys/log.ts";
import { atomicWriteFile } from "../../sys/atomic-write.ts";

type J = Record<string, unknown>;
const tasksDir = (cat: string) => join(pilotDir(), "tasks", cat);
const utcIso = (ms: number) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");

function readTasks(cat: string): J[] {
  const dir = tasksDir(cat);
  let names: string[];
  try { names = readdirSync(dir).filter((n) => n.endsWith(".json")).sort(); } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw new CtlError("internal_error", `failed to read tasks directory: ${(e as Error).message}`);
  }
  const out: J[] = [];
  for (const n of names) {
    try { out.push(JSON.parse(readFileSync(join(dir, n), "utf8"))); } catch {}
  }
  return out;
}

function loadTask(id: string): TaskFile {
  // Task IDs are file names: refuse anything that could escape the directory.
  if (!/^[A-Za-z0-9-]+$/.test(id)) throw new CtlError("not_found", `task not found: ${id}`, "check pilotctl task list --type received");
  try {
    return JSON.parse(readFileSync(join(tasksDir("received"), `${id}.json`), "utf8")) as TaskFile;
  } catch {
    throw new CtlError("not_found", `task not found: ${id}`, "check pilotctl task list --type received");
  }
}

function saveTask(cat: string, t: TaskFile, errMsg = "failed to update task status"): void {
  try {
    atomicWriteFile(join(tasksDir(cat), `${t.task_id}.json`), encodeTaskFile(t), 0o600);
  } catch (e) {
    throw new CtlError("internal_error", `${errMsg}: ${(e as Error).message}`);
  }
}

/** Read the SUBMIT response frame (bounded). */
async function readResponse(c: Awaited<ReturnType<Driver["dial"]>>, timeoutMs: number): Promise<TaskMessage> {
  let got: TaskMessage | null = null;
  const rd = new FrameReader((f) => { got ??= decodeTaskMessage(f, true); });
  const end = Date.now() + timeoutMs;
  while (!got) {
    const r = await c.read({ timeoutMs: Math.max(0, end - Date.now()) });
    if (!r) throw new Error("EOF");
    rd.push(r);
  }
  return got;
}

/** Best-effort one-frame message to the submitter; false if the dial/write failed. */
async function notify(d: Driver, to: Addr, m: TaskMessage): Promise<boolean> {
  try {
    const c = await d.dial(to, PORT, { timeoutMs: 30000 });
    try { await c.write(encodeTaskMessage(m)); } finally { c.close(); }
    return true;
  } catch {
    return false;
  }
}

function fromAddr(t: TaskFile): Addr {
  try { return parseAddr(t.from); } catch (e) { throw new CtlError("invalid_argument", `invalid from address: ${(e as Error).message}`); }
}

export async function submit(ctx: Ctx, args: string[]): Promise<void> {
  const p = parseFlags(args);
  if (!p.pos.length) throw usage("pilotctl task submit <address|hostname> --task <description>");
  const d = await connectDaemon();
  try {
    const target = await resolveTarget(ctx, d, p.pos[0]);
    const desc = flagStr(p, "task");
    if (!desc) throw new CtlError("invalid_argument", "--task is required");
    const a = formatAddr(target);
    let own: string;
    try { own = String((await d.info({ timeoutMs: 10000 })).address); } catch (e) { throw new CtlError("connection_failed", `info: ${(e as Error).message}`); }
    let c;
    try { c = await d.dial(target, PORT); } catch {
      throw new CtlError("connection_failed", `cannot connect to ${a} (task submit port 1003)`, `check that ${a} is reachable: pilotctl ping ${a}`);
    }
    const id = newTaskId();
    let resp: TaskMessage;
    try {
      await c.write(encodeTaskMessage({ kind: "submit", task_id: id, task_description: desc, from_addr: own, to_addr: a }));
      // Bounded: the reference waits forever.
      resp = await readResponse(c, 30000);
    } catch (e) {
      throw new CtlError("connection_failed", `submit: ${(e as Error).message}`);
    } finally { c.close(); }
    const status = resp.kind === "submit_response" ? resp.status : 0;
    const accepted = status === 200;
    if (accepted) {
      saveTask("submitted", { task_id: id, task_description: desc, created_at: utcIso(Date.now()), status: "NEW", status_justification: "A new task was created", from: own, to: a }, "failed to save task");
    }
    ctx.ok({ accepted, message: resp.kind === "submit_response" ? resp.message : "", status, target: a, task: desc, task_id: id });
  } finally { d.close(); }
}

export async function accept(ctx: Ctx, args: string[]): Promise<void> {
  const p = parseFlags(args);
  const id = flagStr(p, "id");
  if (!id || id === "true") throw new CtlError("invalid_argument", "--id is required");
  const t = loadTask(id);
  if (t.status !== "NEW") throw new CtlError("invalid_state", `task ${id} is already ${t.status}`);
  const created = Date.parse(t.created_at);
  const now = Date.now();
  if (now - created > 60_000) throw new CtlError("expired", `task ${id} has expired (accept deadline was 1 minute after creation)`);
  t.status = "ACCEPTED";
  t.status_justification = "Task accepted";
  t.accepted_at = utcIso(now);
  t.staged_at = utcIso(now);
  t.time_idle_ms = Math.max(0, now - created);
  saveTask("received", t);
  const d = await connectDaemon();
  try {
    const ok = await notify(d, fromAddr(t), { kind: "status_update", task_id: id, status: "ACCEPTED", justification: "Task accepted" });
    ctx.ok({ message: ok ? "Task accepted" : "Task accepted (submitter notification failed)", status: "ACCEPTED", task_id: id });
  } finally { d.close(); }
}

export async function decline(ctx: Ctx, args: string[]): Promise<void> {
  const p = parseFlags(args);
  const id = flagStr(p, "id");
  if (!id || id === "true") throw new CtlError("invalid_argument", "--id is required");
  const why = flagStr(p, "justification");
  if (!why) throw new CtlError("invalid_argument", "--justification is required");
  const t = loadTask(id);
  if (t.status !== "NEW") throw new CtlError("invalid_state", `task ${id} is already ${t.status}`);
  t.status = "DECLINED";
  t.status_justification = why;
  saveTask("received", t);
  const d = await connectDaemon();
  try {
    const ok = await notify(d, fromAddr(t), { kind: "status_update", task_id: id, status: "DECLINED", justification: why });
    ctx.ok({ justification: why, message: ok ? "Task declined" : "Task declined (submitter notification failed)", status: "DECLINED", task_id: id });
  } finally { d.close(); }
}

export async function execute(ctx: Ctx): Promise<void> {
  const dir = tasksDir("received");
  let names: string[];
  try { names = readdirSync(dir).filter((n) => n.endsWith(".json")); } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") throw new CtlError("not_found", "no received tasks found");
    throw new CtlError("internal_error", `failed to read tasks directory: ${(e as Error).message}`);
  }
  // Fix (docs/differences.md): FIFO by acceptance time (then creation time), not random file-name order.
  const accepted: TaskFile[] = [];
  for (const n of names) {
    try { const t = JSON.parse(readFileSync(join(dir, n), "utf8")) as TaskFile; if (t.status === "ACCEPTED") accepted.push(t); } catch {}
  }
  if (!accepted.length) throw new CtlError("not_found", "no accepted tasks to execute");
  const key = (t: TaskFile) => Date.parse(t.accepted_at || t.created_at) || 0;
  accepted.sort((x, y) => key(x) - key(y) || (x.task_id < y.task_id ? -1 : 1));
  const t = accepted[0];
  const now = Date.now();
  t.status = "EXECUTING";
  t.status_justification = "Task execution started";
  t.execute_started_at = utcIso(now);
  if (t.staged_at) t.time_staged_ms = Math.max(0, now - Date.parse(t.staged_at));
  saveTask("received", t);
  const d = await connectDaemon();
  try {
    let from: Addr | null = null;
    try { from = parseAddr(t.from); } catch {}
    if (from) await notify(d, from, { kind: "status_update", task_id: t.task_id, status: "EXECUTING", justification: "Task execution started" });
    ctx.ok({ from: t.from, status: "EXECUTING", task_description: t.task_description, task_id: t.task_id });
  } finally { d.close(); }
}

const ALLOWED = new Set([".md", ".txt", ".rtf", ".docx", ".pdf", ".pptx", ".pth", ".pt", ".onnx", ".h5", ".pb", ".ckpt", ".safetensors", ".bin", ".csv", ".parquet", ".xlsx", ".xls", ".jpg", ".jpeg", ".png", ".svg", ".gif", ".webp"]);

export async function sendResults(ctx: Ctx, args: string[]): Promise<void> {
  const p = parseFlags(args);
  const id = flagStr(p, "id");
  if (!id || id === "true") throw new CtlError("invalid_argument", "--id is required");
  const text = flagStr(p, "results");
  const file = flagStr(p, "file");
  if (!text && !file) throw new CtlError("invalid_argument", "either --results or --file is required");
  const t = loadTask(id);
  if (t.status !== "EXECUTING" && t.status !== "ACCEPTED") throw new CtlError("invalid_state", `task ${id} cannot receive results (status: ${t.status})`);
  const now = Date.now();
  const msg: SendResults = { kind: "send_results", task_id: id, result_type: "text", completed_at: "" };
  let fileData: Uint8Array | null = null;
  if (file) {
    const ext = extname(file).toLowerCase();
    if (!ALLOWED.has(ext)) throw new CtlError("invalid_argument", `file type ${JSON.stringify(ext)} not allowed for results`);
    try { fileData = readFileSync(file); } catch (e) { throw new CtlError("internal_error", `failed to read file: ${(e as Error).message}`); }
    Object.assign(msg, { result_type: "file", filename: basename(file), file_data: Buffer.from(fileData).toString("base64") });
  } else Object.assign(msg, { result_type: "text", result_text: text });
  const started = Date.parse(t.execute_started_at || t.accepted_at || t.created_at) || now;
  t.time_cpu_ms = Math.max(0, now - started);
  t.completed_at = utcIso(now);
  msg.completed_at = t.completed_at;
  if (t.time_idle_ms) msg.time_idle_ms = t.time_idle_ms;
  if (t.time_staged_ms) msg.time_staged_ms = t.time_staged_ms;
  if (t.time_cpu_ms) msg.time_cpu_ms = t.time_cpu_ms;
  const d = await connectDaemon();
  try {
    const from = fromAddr(t);
    let c;
    try { c = await d.dial(from, PORT); } catch {
      throw new CtlError("connection_failed", `cannot connect to submitter ${t.from}`, `check that ${t.from} is reachable`);
    }
    try { await c.write(encodeTaskMessage(msg)); } catch (e) {
      throw new CtlError("connection_failed", `failed to send results: ${(e as Error).message}`);
    } finally { c.close(); }
    // Fix (docs/differences.md): the local copy becomes SUCCEEDED only after delivery; one frame per
    // connection (the receiver ignores a second one).
    t.status = "SUCCEEDED";
    t.status_justification = "Results sent successfully";
    try { saveTask("received", t); } catch (e) { libraryLogger().warn("could not save task", { task_id: id, error: (e as Error).message }); }
    const out: J = { sent_to: t.from, sent_type: file ? "file" : "text", status: "SUCCEEDED", task_id: id };
    if (file) Object.assign(out, { file_size: fileData!.length, filename: basename(file) });
    ctx.ok(out);
  } finally { d.close(); }
}

export async function list(ctx: Ctx, args: string[]): Promise<void> {
  const t = flagStr(parseFlags(args), "type");
  const tasks: J[] = [];
  for (const cat of ["received", "submitted"]) {
    if (t && t !== cat) continue;
    for (const f of readTasks(cat)) tasks.push({ category: cat, created_at: f.created_at, description: f.task_description, from: f.from, status: f.status, task_id: f.task_id, to: f.to });
  }
  ctx.ok({ tasks }, () => tasks.length ? tasks.map((x) => `[${x.category}] ${x.task_id} (${x.status}) - ${x.description}\n  From: ${x.from} → To: ${x.to}\n`).join("") : "No tasks found\n");
}

export async function queue(ctx: Ctx): Promise<void> {
  const q = readTasks("received").filter((f) => f.status === "ACCEPTED").map((f) => ({ created_at: f.created_at, description: f.task_description, from: f.from, task_id: f.task_id }));
  if (!q.length) return ctx.ok({ queue: [] }, () => "Queue is empty\n");
  ctx.ok({ count: q.length, queue: q }, () => `Queued tasks (${q.length}):\n` + q.map((x, i) => `  ${i + 1}. ${x.task_id}: ${x.description}\n     From: ${x.from}\n`).join(""));
}
