// Reusable helper: run pilotctl as a real process (bun src/main.ts pilotctl ...).
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

const ROOT = resolve(import.meta.dir, "..");
export const BUN = process.execPath;

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
  /** Parsed JSON of the last stdout line (success) or stderr line (error), if any. */
  json: any;
}

export function tempHome(): string {
  return mkdtempSync(join(tmpdir(), "pilot-home-"));
}

export async function runPilotctl(args: string[], opts: { socket?: string; home?: string; env?: Record<string, string>; stdin?: string } = {}): Promise<RunResult> {
  const env: Record<string, string> = { ...(process.env as Record<string, string>), HOME: opts.home ?? tempHome(), ...(opts.env ?? {}) };
  if (opts.socket !== undefined) env.PILOT_SOCKET = opts.socket;
  delete env.PILOT_TOOL;
  const p = Bun.spawn([BUN, join(ROOT, "src/main.ts"), "pilotctl", ...args], {
    env, stdin: opts.stdin !== undefined ? new TextEncoder().encode(opts.stdin) : "ignore", stdout: "pipe", stderr: "pipe",
  });
  const [stdout, stderr, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  let json: any;
  const src = (stdout.trim() ? stdout : stderr).trim().split("\n").pop() ?? "";
  try { json = JSON.parse(src); } catch {}
  return { code, stdout, stderr, json };
}
