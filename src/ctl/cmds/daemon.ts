// Daemon lifecycle (docs/protocol.md §13): start (background, pid + log file, readiness wait), stop, status.
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { Driver } from "../../client/driver.ts";
import { spawn } from "node:child_process";
import { toolCommand } from "../spawn.ts";
import {
  type Ctx, CtlError, CtlExit, cfgStr, DEFAULT_BEACON_CTL, DEFAULT_REGISTRY, flagBool, flagStr, formatUptime, getSocket,
  loadConfig, logFile, parseFlags, pidFile, pilotDir,
} from "../util.ts";

function readPid(): number {
  try {
    const n = Number(readFileSync(pidFile(), "utf8").trim());
    return Number.isInteger(n) && n > 0 ? n : 0;
  } catch {
    return 0;
  }
}
function alive(pid: number): boolean {
  if (pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}
async function probe(socket: string, timeoutMs = 2000): Promise<Record<string, unknown> | null> {
  try {
    const d = await Driver.connect(socket, { timeoutMs });
    try { return await d.info({ timeoutMs }); } catch { return null; } finally { d.close(); }
  } catch {
    return null;
  }
}
async function socketConnects(socket: string): Promise<boolean> {
  try { (await Driver.connect(socket, { timeoutMs: 2000 })).close(); return true; } catch { return false; }
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function daemonArgs(p: ReturnType<typeof parseFlags>, socket: string): string[] {
  const cfg = loadConfig();
  const registry = p.flags.get("registry") || cfgStr(cfg, "registry") || process.env.PILOT_REGISTRY || DEFAULT_REGISTRY;
  const beacon = p.flags.get("beacon") || cfgStr(cfg, "beacon") || DEFAULT_BEACON_CTL;
  const a = ["-registry", registry, "-beacon", beacon, "-listen", flagStr(p, "listen", ":0"), "-socket", socket,
    "-identity", p.flags.get("identity") || join(pilotDir(), "identity.key"), "-log-level", flagStr(p, "log-level", "info"), "-log-format", flagStr(p, "log-format", "text")];
  if (flagBool(p, "no-encrypt")) a.push("-encrypt=false");
  if (p.flags.get("owner")) a.push("-owner", p.flags.get("owner")!);
  const host = p.flags.get("hostname") || cfgStr(cfg, "hostname");
  if (host) a.push("-hostname", host);
  if (p.flags.get("config")) a.push("-config", p.flags.get("config")!);
  if (flagBool(p, "public")) a.push("-public");
  const wh = p.flags.get("webhook") || cfgStr(cfg, "webhook");
  if (wh) a.push("-webhook", wh);
  return a;
}

export async function start(ctx: Ctx, args: string[]): Promise<void> {
  const p = parseFlags(args);
  const pid0 = readPid();
  if (pid0 > 0) {
    if (alive(pid0)) throw new CtlError("already_exists", `daemon is already running (pid ${pid0})`, "stop it first with: pilotctl daemon stop");
    rmSync(pidFile(), { force: true });
  }
  const socket = p.flags.get("socket") || getSocket();
  if (existsSync(socket)) {
    if (await socketConnects(socket)) throw new CtlError("already_exists", `daemon is already running (socket ${socket} is active)`, "stop it first with: pilotctl daemon stop");
    rmSync(socket, { force: true });
  }
  const dargs = daemonArgs(p, socket);
  const tool = toolCommand("pilot-daemon");
  if (flagBool(p, "foreground")) {
    const child = spawn(tool.cmd[0], [...tool.cmd.slice(1), ...dargs], { stdio: "inherit", env: { ...process.env, ...tool.env } });
    const fwd = (sig: NodeJS.Signals) => child.kill(sig);
    process.on("SIGINT", fwd);
    process.on("SIGTERM", fwd);
    const code = await new Promise<number>((r) => child.on("exit", (c) => r(c ?? 0)));
    throw new CtlExit(code);
  }
  const log = logFile();
  let fd: number;
  try {
    mkdirSync(pilotDir(), { recursive: true, mode: 0o700 });
    fd = openSync(log, "a", 0o600);
  } catch (e) {
    throw new CtlError("internal", `open log file: ${(e as Error).message}`);
  }
  let child;
  try {
    child = spawn(tool.cmd[0], [...tool.cmd.slice(1), ...dargs], { stdio: ["ignore", fd, fd], detached: true, env: { ...process.env, ...tool.env } });
  } catch (e) {
    throw new CtlError("internal", `start daemon: ${(e as Error).message}`);
  } finally {
    closeSync(fd);
  }
  const pid = child.pid ?? 0;
  let exited: number | null = null;
  child.on("exit", (c) => { exited = c ?? 1; });
  child.on("error", () => { exited = 1; });
  child.unref();
  writeFileSync(pidFile(), String(pid), { mode: 0o600 });
  ctx.info(`starting daemon (pid ${pid})...`);
  const t0 = Date.now();
  let lastDot = t0;
  let info: Record<string, unknown> | null = null;
  while (Date.now() - t0 < 15000) {
    info = await probe(socket, 1000);
    if (info) break;
    // Fix (docs/differences.md): notice an early child exit instead of waiting 15 s.
    if (exited !== null) break;
    await sleep(200);
    if (Date.now() - lastDot >= 1000) { ctx.info("."); lastDot = Date.now(); }
  }
  ctx.info("\n");
  const absLog = resolve(log);
  if (!info) {
    let tail = "";
    try { tail = readFileSync(log, "utf8").trimEnd().split("\n").slice(-3).join(" | "); } catch {}
    if (exited !== null) {
      rmSync(pidFile(), { force: true });
      throw new CtlError("timeout", `daemon (pid ${pid}) exited with status ${exited} before becoming ready${tail ? ": " + tail : ""}`, `check logs: tail -f ${absLog}`);
    }
    throw new CtlError("timeout", `daemon started (pid ${pid}) but did not become ready within 15s`, `check logs: tail -f ${absLog}`);
  }
  const host = String(info.hostname ?? "");
  ctx.ok({ address: info.address, hostname: host, log_file: absLog, node_id: info.node_id, pid, socket },
    () => `Daemon running (pid ${pid})\n  Address:  ${info!.address}\n` + (host ? `  Hostname: ${host}\n` : "") + `  Socket:   ${socket}\n  Logs:     ${absLog}\n`);
}

export async function stop(ctx: Ctx): Promise<void> {
  const pid = readPid();
  const socket = getSocket();
  if (pid <= 0) {
    if (await socketConnects(socket)) throw new CtlError("not_running", "daemon socket is active but PID file is missing", `find and kill the process manually: lsof -U | grep ${socket}`);
    throw new CtlError("not_running", "daemon is not running");
  }
  if (!alive(pid)) {
    rmSync(pidFile(), { force: true });
    throw new CtlError("not_running", "daemon is not running (cleaned up stale state)");
  }
  try { process.kill(pid, "SIGTERM"); } catch (e) { throw new CtlError("internal", `signal daemon: ${(e as Error).message}`); }
  const t0 = Date.now();
  while (Date.now() - t0 < 10000) {
    if (!alive(pid)) {
      rmSync(pidFile(), { force: true });
      return ctx.ok({ pid }, () => `daemon stopped (pid ${pid})\n`);
    }
    await sleep(200);
  }
  try { process.kill(pid, "SIGKILL"); } catch {}
  rmSync(pidFile(), { force: true });
  ctx.ok({ forced: true, pid }, () => `daemon force-stopped (pid ${pid})\n`);
}

export async function status(ctx: Ctx, args: string[]): Promise<void> {
  const p = parseFlags(args);
  const socket = getSocket();
  if (flagBool(p, "check")) {
    // Bounded (a fix: docs/differences.md): a hung daemon is "not responsive".
    throw new CtlExit((await probe(socket, 5000)) ? 0 : 1);
  }
  const pid = readPid();
  const running = alive(pid);
  const base: Record<string, unknown> = { pid, pid_file: pidFile(), running, socket };
  let d: Driver;
  try { d = await Driver.connect(socket, { timeoutMs: 2000 }); } catch {
    if (!running && pid > 0) rmSync(pidFile(), { force: true });
    base.responsive = false;
    return ctx.ok(base, () => "Daemon: stopped\n  start with: pilotctl daemon start\n");
  }
  let info: Record<string, unknown>;
  try { info = await d.info({ timeoutMs: 5000 }); } catch {
    base.responsive = false;
    return ctx.ok(base);
  } finally { d.close(); }
  Object.assign(base, { responsive: true, running: true, node_id: info.node_id, address: info.address, hostname: info.hostname ?? "", uptime_secs: info.uptime_secs, peers: info.peers, connections: info.connections });
  ctx.ok(base, () => `Daemon: ${running ? "running" : "stopped"} (pid ${pid})\n  Node ID:     ${info.node_id}\n  Address:     ${info.address}\n` +
    (info.hostname ? `  Hostname:    ${info.hostname}\n` : "") + `  Uptime:      ${formatUptime(Number(info.uptime_secs ?? 0))}\n  Peers:       ${info.peers}\n  Connections: ${info.connections}\n`);
}

/** Hidden `_daemon-run`: run pilot-daemon in this process's place (foreground). */
export async function run(_ctx: Ctx, args: string[]): Promise<void> {
  const { run: daemonRun } = await import("../../daemon/main.ts");
  throw new CtlExit(await daemonRun(args.map((a) => (a.startsWith("--") ? a.slice(1) : a))));
}
