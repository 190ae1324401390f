// pilotctl shared helpers: errors, output envelopes, the reference's parseFlags rules (docs/protocol.md §13.1),
// Go-style number/duration/byte formatting, config.json and socket/registry resolution (docs/protocol.md §13.1, §13.4).
// Start-up matters here (every command loads this file): no node:fs / node:os / node:path and no
// process.stdout at import or on the common paths; see io.ts and readTextSync below.
import { goJson } from "../proto/gojson.ts";
import { type ErrorCode, PilotError } from "../client/errors.ts";
import { writeErr, writeOut } from "./io.ts";

import { DEFAULT_REGISTRY, DEFAULT_SOCKET } from "../sys/constants.ts";
export { DEFAULT_BEACON_CTL, DEFAULT_REGISTRY, DEFAULT_SOCKET } from "../sys/constants.ts";

/**
 * A reported error: becomes the JSON error envelope / `error:` lines, exit 1. It is the SDK's
 * PilotError (same codes), so errors from SDK calls pass through unchanged.
 */
export class CtlError extends PilotError {
  constructor(code: ErrorCode, message: string, hint?: string) {
    super(code, message, hint);
    this.name = "CtlError";
  }
}
/** Exit with a status and no further output (e.g. `daemon status --check`). */
export class CtlExit extends Error {
  constructor(readonly status: number) {
    super(`exit ${status}`);
  }
}

/** Wrap a daemon request error as `⟨prefix⟩: ⟨err⟩`, code connection_failed. */
export function daemonErr(prefix: string, e: unknown): CtlError {
  if (e instanceof CtlError) return e;
  return new CtlError("connection_failed", `${prefix}: ${(e as Error).message}`);
}

export const E_DAEMON = () => new CtlError("not_running", "daemon is not running", "start the daemon with: pilotctl daemon start");

export interface Ctx {
  json: boolean;
  /** Success output: envelope in JSON mode; `human()` (or pretty JSON) otherwise. */
  ok(data: unknown, human?: () => string | void): void;
  /** Progress/diagnostic line on stderr (human mode only). */
  info(s: string): void;
  out(s: string): void;
  err(s: string): void;
}

export function makeCtx(json: boolean): Ctx {
  return {
    json,
    ok(data, human) {
      if (json) return writeOut(goJson({ data, status: "ok" }) + "\n");
      if (human) {
        const s = human();
        if (typeof s === "string") writeOut(s);
      } else writeOut(prettyJson(data) + "\n");
    },
    info(s) {
      if (!json) writeErr(s);
    },
    out: writeOut,
    err: writeErr,
  };
}

export function writeError(json: boolean, e: { code: string; message: string; hint?: string }): void {
  if (json) {
    const o: Record<string, string> = { code: e.code, message: e.message, status: "error" };
    if (e.hint) o.hint = e.hint;
    writeErr(goJson(o) + "\n");
  } else {
    writeErr(`error: ${e.message}\n` + (e.hint ? `hint:  ${e.hint}\n` : ""));
  }
}

/** Go json.MarshalIndent(v, "", "  ") with sorted keys and Go escaping. */
export function prettyJson(v: unknown, ind = ""): string {
  if (v === null || v === undefined || typeof v !== "object") return goJson(v);
  const next = ind + "  ";
  if (Array.isArray(v)) {
    if (v.length === 0) return "[]";
    return "[\n" + v.map((x) => next + prettyJson(x, next)).join(",\n") + "\n" + ind + "]";
  }
  const o = v as Record<string, unknown>;
  const keys = Object.keys(o).filter((k) => o[k] !== undefined).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  if (keys.length === 0) return "{}";
  return "{\n" + keys.map((k) => next + goJson(k) + ": " + prettyJson(o[k], next)).join(",\n") + "\n" + ind + "}";
}

// ---------- parseFlags (docs/protocol.md §13.1) ----------
export interface Parsed {
  flags: Map<string, string>;
  pos: string[];
}
export function parseFlags(args: string[]): Parsed {
  const flags = new Map<string, string>();
  const pos: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a.startsWith("--")) {
      const body = a.slice(2);
      const eq = body.indexOf("=");
      if (eq >= 0) flags.set(body.slice(0, eq), body.slice(eq + 1));
      else if (i + 1 < args.length && !args[i + 1].startsWith("--")) flags.set(body, args[++i]);
      else flags.set(body, "true");
    } else pos.push(a);
  }
  return { flags, pos };
}
export function flagBool(p: Parsed, k: string): boolean {
  const v = p.flags.get(k);
  return v !== undefined && (v === "true" || v === "1" || v === "");
}
export function flagStr(p: Parsed, k: string, def = ""): string {
  return p.flags.get(k) ?? def;
}
export function flagInt(p: Parsed, k: string, def: number): number {
  const v = p.flags.get(k);
  if (v === undefined) return def;
  if (!/^[+-]?\d+$/.test(v)) throw new CtlError("invalid_argument", `invalid integer for --${k}: strconv.Atoi: parsing ${goQ(v)}: invalid syntax`);
  const n = Number(v);
  if (!Number.isSafeInteger(n)) throw new CtlError("invalid_argument", `invalid integer for --${k}: strconv.Atoi: parsing ${goQ(v)}: value out of range`);
  return n;
}
/** Duration flag in milliseconds: Go duration, else decimal seconds. */
export function flagDuration(p: Parsed, k: string, defMs: number): number {
  const v = p.flags.get(k);
  if (v === undefined) return defMs;
  const d = parseGoDuration(v);
  if (typeof d === "number") return d;
  if (/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(v)) return Number(v) * 1000;
  throw new CtlError("invalid_argument", `invalid duration for --${k}: ${d.err}`);
}

const UNITS: Record<string, number> = { ns: 1e-6, us: 1e-3, "µs": 1e-3, "μs": 1e-3, ms: 1, s: 1000, m: 60000, h: 3600000 };
/** Go time.ParseDuration → milliseconds, or {err} with Go's error text. */
export function parseGoDuration(s: string): number | { err: string } {
  const orig = s;
  const bad = { err: `time: invalid duration ${goQ(orig)}` };
  let neg = false;
  if (s[0] === "-" || s[0] === "+") {
    neg = s[0] === "-";
    s = s.slice(1);
  }
  if (s === "0") return 0;
  if (s === "") return bad;
  let total = 0;
  while (s.length) {
    const m = /^(\d*)(\.\d*)?/.exec(s)!;
    if (!m[0] || m[0] === ".") return bad;
    const num = Number((m[1] || "0") + (m[2] && m[2] !== "." ? m[2] : ""));
    s = s.slice(m[0].length);
    const u = /^[^\d.]+/.exec(s);
    if (!u) return { err: `time: missing unit in duration ${goQ(orig)}` };
    const f = UNITS[u[0]];
    if (f === undefined) return { err: `time: unknown unit ${goQ(u[0])} in duration ${goQ(orig)}` };
    total += num * f;
    s = s.slice(u[0].length);
  }
  return neg ? -total : total;
}

/** Go time.Duration.String() for a value in milliseconds. */
export function goDuration(ms: number): string {
  let ns = Math.round(ms * 1e6);
  if (ns === 0) return "0s";
  const neg = ns < 0;
  if (neg) ns = -ns;
  let out: string;
  if (ns < 1000) out = `${ns}ns`;
  else if (ns < 1e6) out = `${trimFrac(ns / 1e3)}µs`;
  else if (ns < 1e9) out = `${trimFrac(ns / 1e6)}ms`;
  else {
    const h = Math.floor(ns / 3.6e12);
    const m = Math.floor((ns % 3.6e12) / 6e10);
    const sec = (ns % 6e10) / 1e9;
    out = (h ? `${h}h` : "") + (h || m ? `${m}m` : "") + `${trimFrac(sec)}s`;
  }
  return (neg ? "-" : "") + out;
}
function trimFrac(x: number): string {
  return x.toFixed(9).replace(/\.?0+$/, "");
}

export function goQ(s: string): string {
  return JSON.stringify(s);
}

export function formatBytes(n: number): string {
  if (n >= 1024 ** 3) return `${(n / 1024 ** 3).toFixed(1)} GB`;
  if (n >= 1024 ** 2) return `${(n / 1024 ** 2).toFixed(1)} MB`;
  if (n >= 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${n} B`;
}
export function formatUptime(secs: number): string {
  const s = Math.floor(secs);
  const p = (x: number) => String(x).padStart(2, "0");
  return `${p(Math.floor(s / 3600))}:${p(Math.floor((s % 3600) / 60))}:${p(s % 60)}`;
}
export function localStamp(unixSecs: number): string {
  const d = new Date(unixSecs * 1000);
  const p = (x: number) => String(x).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}
/** RFC 3339 local time, seconds precision (Go time.Format(time.RFC3339)). */
export function rfc3339Local(d: Date): string {
  const p = (x: number) => String(x).padStart(2, "0");
  const off = -d.getTimezoneOffset();
  const tz = off === 0 ? "Z" : `${off > 0 ? "+" : "-"}${p(Math.floor(Math.abs(off) / 60))}:${p(Math.abs(off) % 60)}`;
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}${tz}`;
}
export const pad = (s: string | number, w: number) => String(s).padEnd(w);

// ---------- numbers (docs/protocol.md §13.1) ----------
function parseUint(s: string, max: number): { v: number } | { err: string } {
  if (!/^\d+$/.test(s)) return { err: `strconv.ParseUint: parsing ${goQ(s)}: invalid syntax` };
  const n = Number(s);
  if (n > max) return { err: `strconv.ParseUint: parsing ${goQ(s)}: value out of range` };
  return { v: n };
}
export function parseNodeId(s: string, style: "quoted" | "plain" | "conn" = "quoted"): number {
  const r = parseUint(s, 0xffffffff);
  if ("v" in r) return r.v;
  const msg = style === "quoted" ? `invalid node_id ${goQ(s)}: ${r.err}` : style === "plain" ? `invalid node_id: ${r.err}` : `invalid connection ID: ${r.err}`;
  throw new CtlError("invalid_argument", msg, "node IDs are unsigned 32-bit decimal numbers");
}
export function parsePort(s: string): number {
  const r = parseUint(s, 0xffff);
  if ("v" in r) return r.v;
  throw new CtlError("invalid_argument", `invalid port ${goQ(s)}: ${r.err}`, "ports are decimal numbers 0-65535");
}
export function tryUint32(s: string): number | null {
  const r = parseUint(s, 0xffffffff);
  return "v" in r ? r.v : null;
}

// ---------- config (docs/protocol.md §13.1, §13.4) ----------
/** ~/.pilot; HOME is what the reference's os.UserHomeDir reads on Linux and macOS. */
export function pilotDir(): string {
  return `${process.env.HOME || (import.meta.require("node:os") as typeof import("node:os")).homedir()}/.pilot`;
}
export const configPath = () => `${pilotDir()}/config.json`;
export const pidFile = () => `${pilotDir()}/pilot.pid`;
export const logFile = () => `${pilotDir()}/pilot.log`;

/**
 * Whole file as text, or null when it is missing, empty or unreadable. Bun.mmap instead of
 * node:fs because loading node:fs costs more than the rest of `pilotctl info`; the mapping is
 * copied out at once, and config.json is only ever replaced by rename, never truncated in place.
 */
export function readTextSync(path: string): string | null {
  try {
    return new TextDecoder().decode(Bun.mmap(path, { shared: false }));
  } catch {
    return null;
  }
}

export function loadConfig(): Record<string, unknown> {
  try {
    const v = JSON.parse(readTextSync(configPath()) ?? "");
    return v && typeof v === "object" && !Array.isArray(v) ? v : {};
  } catch {
    return {};
  }
}
/** Atomic, mode 0600 (a fix: docs/differences.md); same content format as the reference. */
export async function saveConfig(cfg: Record<string, unknown>): Promise<void> {
  const { atomicWriteFile } = await import("../sys/atomic-write.ts");
  try {
    atomicWriteFile(configPath(), prettyJson(cfg) + "\n", 0o600);
  } catch (e) {
    throw new CtlError("internal", `save config: ${(e as Error).message}`);
  }
}
function cfgStr(cfg: Record<string, unknown>, k: string): string {
  const v = cfg[k];
  return typeof v === "string" ? v : "";
}
// The environment wins, so the config file is read only when the variable is unset.
export function getSocket(cfg?: Record<string, unknown>): string {
  return process.env.PILOT_SOCKET || cfgStr(cfg ?? loadConfig(), "socket") || DEFAULT_SOCKET;
}
export function getRegistry(cfg?: Record<string, unknown>): string {
  return process.env.PILOT_REGISTRY || cfgStr(cfg ?? loadConfig(), "registry") || DEFAULT_REGISTRY;
}
export { cfgStr };
