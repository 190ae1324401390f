// Task submit, port 1003 (docs/protocol.md §10.5, §13, §13.5) — extension.
// One frame per inbound connection (u32 type, u32 length ≤ 2^24, JSON payload); a response frame
// only for SUBMIT. Files under <dataDir>/tasks/{received,submitted,results}/.
//
// Fixes (docs/differences.md): task IDs must match the UUID-like pattern and result file names are
// base-named (no path traversal); `from` of a received task is the stream's remote address, not
// the claimed from_addr; STATUS_UPDATE / SEND_RESULTS are only honoured from the node the task
// was submitted to.
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { formatAddr, parseAddr } from "../../proto/addr.ts";
import { PORT_TASKSUBMIT } from "../../proto/types.ts";
import type { StreamConn } from "../../transport/api.ts";
import { nowMs, type ServiceContext, type ServiceHandle } from "./context.ts";
import {
  decodeTaskMessage, encodeTaskFile, encodeTaskMessage, FrameReader, type TaskFile, type TaskMessage, TASK_ID_RE, TASK_SUBMIT,
} from "../../proto/tasks.ts";
import type { Frame } from "../../proto/dataexchange.ts";
import { splitReceivedName } from "./dx-storage.ts";
import { atomicWriteFile, errText } from "./util.ts";

export {
  encodeTaskFile, newTaskId, TASK_ID_RE, TASK_RESULT, TASK_SEND_RESULTS, TASK_STATUS_UPDATE, TASK_SUBMIT, type TaskFile,
} from "../../proto/tasks.ts";
const NEW_TIMEOUT_MS = 60_000;
const QUEUE_EXPIRY_MS = 3_600_000;

const utcIso = (ms: number) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");

/** Polo reward for a completed task (docs/protocol.md §10.5). */
export function poloReward(cpuMs: number, idleMs: number, stagedMs: number): number {
  const cpuMin = cpuMs / 60000;
  const idleS = idleMs / 1000;
  const stagedS = stagedMs / 1000;
  const eff = Math.max(0.4, 1 - Math.min(0.3, (0.3 * idleS) / 60) - Math.min(0.3, (0.3 * stagedS) / 600));
  return Math.max(1, Math.floor((1 + Math.log2(1 + cpuMin)) * eff + 0.5));
}

function readTask(path: string): TaskFile | null {
  try {
    const o = JSON.parse(readFileSync(path, "utf8"));
    return typeof o === "object" && o && typeof o.task_id === "string" ? (o as TaskFile) : null;
  } catch {
    return null;
  }
}

function writeTask(path: string, t: TaskFile) {
  atomicWriteFile(path, encodeTaskFile(t), 0o600);
}

export interface TaskHandle extends ServiceHandle {
  /** FIFO of accepted submissions (task IDs). */
  queue(): string[];
  /** Run the periodic checks now (tests). */
  sweep(): Promise<void>;
}

export function startTasks(ctx: ServiceContext, port = PORT_TASKSUBMIT): TaskHandle {
  const base = join(ctx.dataDir, "tasks");
  const dir = (d: string) => { const p = join(base, d); mkdirSync(p, { recursive: true, mode: 0o700 }); return p; };
  const queue: string[] = [];
  const conns = new Set<StreamConn>();

  const respond = (conn: StreamConn, task_id: string, status: number, message: string) => {
    try { conn.write(encodeTaskMessage({ kind: "submit_response", task_id, status, message })); } catch {}
  };

  const handle = async (conn: StreamConn, f: Frame) => {
    let req: TaskMessage;
    try {
      req = decodeTaskMessage(f);
    } catch {
      return;
    }
    const id = req.task_id;
    if (!TASK_ID_RE.test(id)) {
      ctx.log.warn("tasks: invalid task_id", { task_id: id.slice(0, 80) });
      if (f.type === TASK_SUBMIT) respond(conn, id, 400, "invalid task_id");
      return;
    }
    const remote = formatAddr(conn.remoteAddr);
    const now = nowMs(ctx);
    if (req.kind === "submit") {
      if (ctx.polo) {
        let mine: number, theirs: number;
        try {
          [theirs, mine] = await Promise.all([ctx.polo.get(conn.remoteAddr.node), ctx.polo.get(ctx.nodeId())]);
        } catch {
          return respond(conn, id, 400, "Failed to verify polo score");
        }
        if (theirs < mine) return respond(conn, id, 400, `Polo score too low: submitter=${theirs}, receiver=${mine}`);
      }
      writeTask(join(dir("received"), `${id}.json`), {
        task_id: id, task_description: req.task_description, created_at: utcIso(now),
        status: "NEW", status_justification: "A new task was created", from: remote, to: formatAddr(ctx.localAddr()),
      });
      queue.push(id);
      return respond(conn, id, 200, "Task received with status NEW");
    }
    const subPath = join(dir("submitted"), `${id}.json`);
    const sub = readTask(subPath);
    if (!sub) return;
    // Only the node the task went to may report on it.
    let to;
    try { to = parseAddr(sub.to); } catch { return; }
    if (to.node !== conn.remoteAddr.node) {
      ctx.log.warn("tasks: update from a node that is not the task's receiver", { task_id: id, from: remote });
      return;
    }
    if (req.kind === "status_update") {
      sub.status = req.status || sub.status;
      sub.status_justification = req.justification;
      writeTask(subPath, sub);
    } else if (req.kind === "send_results") {
      const results = dir("results");
      if (req.result_type === "file") {
        const { base: b } = splitReceivedName(req.filename ?? "");
        const safe = b.replace(/[\u0000-\u001f\u007f]/g, "").replace(/^\.+/, "") || "result.bin";
        writeFileSync(join(results, `${id}_${safe}`), Buffer.from(req.file_data ?? "", "base64"), { mode: 0o600 });
      } else {
        writeFileSync(join(results, `${id}_result.txt`), req.result_text ?? "", { mode: 0o600 });
      }
      sub.status = "COMPLETED";
      sub.completed_at = req.completed_at || utcIso(now);
      writeTask(subPath, sub);
      if (ctx.polo) {
        const reward = poloReward(req.time_cpu_ms ?? 0, req.time_idle_ms ?? 0, req.time_staged_ms ?? 0);
        ctx.polo.update(ctx.nodeId(), -1).catch(() => {});
        ctx.polo.update(conn.remoteAddr.node, reward).catch(() => {});
      }
    }
  };

  const l = ctx.listen(port, (conn) => {
    conns.add(conn);
    let got = false;
    const finish = () => { conns.delete(conn); try { conn.end(); } catch {} };
    const reader = new FrameReader((f) => {
      if (got) return; // exactly one frame per connection
      got = true;
      handle(conn, f)
        .catch((e) => ctx.log.warn("tasks: handling failed", { error: errText(e) }))
        .finally(() => setTimeout(finish, 100));
    });
    conn.onData = (c) => {
      if (got) return;
      try { reader.push(c); } catch { finish(); }
    };
    conn.onEnd = () => { if (!got) finish(); };
    conn.onClose = () => conns.delete(conn);
  });

  const sweep = async () => {
    const now = nowMs(ctx);
    let names: string[] = [];
    try { names = readdirSync(join(base, "received")).filter((n) => n.endsWith(".json")); } catch { return; }
    for (const n of names) {
      const p = join(base, "received", n);
      const t = readTask(p);
      if (t && t.status === "NEW" && now - Date.parse(t.created_at) > NEW_TIMEOUT_MS) {
        t.status = "CANCELLED";
        t.status_justification = "Task not accepted within 1 minute";
        writeTask(p, t);
        const i = queue.indexOf(t.task_id);
        if (i >= 0) queue.splice(i, 1);
      }
    }
    const head = queue[0];
    if (head) {
      const p = join(base, "received", `${head}.json`);
      const t = readTask(p);
      const since = t ? Date.parse(t.staged_at || t.accepted_at || t.created_at) : NaN;
      if (!t || ["CANCELLED", "DECLINED", "SUCCEEDED", "COMPLETED", "EXPIRED"].includes(t.status)) queue.shift();
      else if (t.status === "ACCEPTED" && now - since > QUEUE_EXPIRY_MS) {
        t.status = "EXPIRED";
        t.status_justification = "Task expired in queue";
        writeTask(p, t);
        queue.shift();
        ctx.polo?.update(ctx.nodeId(), -1).catch(() => {});
      }
    }
  };
  const t1 = setInterval(() => void sweep(), 10_000);
  (t1 as { unref?: () => void }).unref?.();

  return {
    queue: () => [...queue],
    sweep,
    stop() {
      clearInterval(t1);
      l.close();
      for (const c of conns) c.abort();
      conns.clear();
    },
  };
}
