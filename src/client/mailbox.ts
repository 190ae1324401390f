// The node's mailbox on disk: the data-exchange service stores messages as JSON files in
// <dataDir>/inbox/ and files in <dataDir>/received/. The SDK reads them from the same machine.
import { readdir, readFile, rm, stat } from "node:fs/promises";
import { homedir } from "node:os";
import { join } from "node:path";
import { arm, type CallOptions, PilotError } from "./errors.ts";
import type { InboxMessage, ReceivedFile } from "./types.ts";

/** The daemon's default data directory (~/.pilot). */
export function defaultDataDir(): string {
  return join(process.env.HOME || homedir(), ".pilot");
}

async function names(dir: string): Promise<string[]> {
  try {
    return (await readdir(dir)).sort();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw new PilotError("internal", `read directory ${dir}: ${(e as Error).message}`);
  }
}

function rfc3339(d: Date): string {
  return d.toISOString().replace(/\.\d{3}Z$/, "Z");
}

export async function readInbox(dataDir: string): Promise<InboxMessage[]> {
  const dir = join(dataDir, "inbox");
  const out: InboxMessage[] = [];
  for (const f of await names(dir)) {
    if (!f.endsWith(".json")) continue;
    try {
      const v = JSON.parse(await readFile(join(dir, f), "utf8")) as Record<string, unknown>;
      if (!v || typeof v !== "object") continue;
      out.push({
        id: f,
        type: String(v.type ?? "").toLowerCase(),
        from: String(v.from ?? ""),
        data: String(v.data ?? ""),
        bytes: Number(v.bytes ?? 0),
        receivedAt: String(v.received_at ?? ""),
      });
    } catch {
      // a partially written or foreign file: skip it
    }
  }
  // File names are <TYPE>-<YYYYMMDD-HHMMSS.mmm>[-n].json: order by the time stamp, oldest first.
  const stamp = (id: string) => id.slice(id.indexOf("-") + 1);
  return out.sort((a, b) => (stamp(a.id) < stamp(b.id) ? -1 : stamp(a.id) > stamp(b.id) ? 1 : 0));
}

export async function readReceived(dataDir: string): Promise<ReceivedFile[]> {
  const dir = join(dataDir, "received");
  const out: ReceivedFile[] = [];
  for (const f of await names(dir)) {
    try {
      const st = await stat(join(dir, f));
      if (!st.isFile()) continue;
      out.push({ name: f, path: join(dir, f), bytes: st.size, modified: rfc3339(st.mtime) });
    } catch {}
  }
  return out;
}

/** Delete stored entries (all, or the given IDs / names). Returns how many were removed. */
export async function clearEntries(dataDir: string, sub: "inbox" | "received", only?: string[]): Promise<number> {
  const dir = join(dataDir, sub);
  let n = 0;
  for (const f of only ?? (await names(dir))) {
    if (f.includes("/") || f.includes("\\") || f === ".." || f === ".") continue;
    try {
      const st = await stat(join(dir, f));
      if (!st.isFile()) continue;
      await rm(join(dir, f));
      n++;
    } catch {}
  }
  return n;
}

/**
 * Wait for an inbox message whose ID is not in `seen` (default: the inbox at call time). Polls
 * the directory every `pollMs`. Resolves null when `timeoutMs` passes; rejects on abort.
 */
export async function waitForInbox(dataDir: string, opts: CallOptions & { seen?: Set<string>; pollMs?: number; from?: string } = {}): Promise<InboxMessage | null> {
  const seen = opts.seen ?? new Set((await readInbox(dataDir)).map((m) => m.id));
  const poll = opts.pollMs ?? 100;
  let failed: PilotError | null = null;
  let wake: (() => void) | null = null;
  const disarm = arm({ signal: opts.signal, timeoutMs: opts.timeoutMs }, "wait_for_message", (e) => {
    failed = e;
    wake?.();
  });
  try {
    for (;;) {
      for (const m of await readInbox(dataDir)) {
        if (seen.has(m.id)) continue;
        if (opts.from !== undefined && m.from !== opts.from) continue;
        return m;
      }
      if (failed) {
        if ((failed as PilotError).code === "timeout") return null;
        throw failed;
      }
      await new Promise<void>((r) => {
        const t = setTimeout(r, poll);
        wake = () => {
          clearTimeout(t);
          r();
        };
      });
      wake = null;
    }
  } finally {
    disarm();
  }
}
