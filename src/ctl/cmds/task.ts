// Task commands (cli.md §3.6). list/queue read ~/.pilot/tasks directly; the network-facing
// commands are not implemented yet and fail with a typed error.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { type Ctx, CtlError, flagStr, parseFlags, pilotDir } from "../util.ts";

type J = Record<string, unknown>;

function readTasks(cat: string): J[] {
  const dir = join(pilotDir(), "tasks", cat);
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

const notYet = (name: string) => async (): Promise<void> => {
  throw new CtlError("unavailable", `task ${name} is not implemented in this build yet`, "use pilotctl task list / task queue to inspect tasks");
};
export const submit = notYet("submit");
export const accept = notYet("accept");
export const decline = notYet("decline");
export const execute = notYet("execute");
export const sendResults = notYet("send-results");
