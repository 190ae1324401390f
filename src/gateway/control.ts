// pilotctl's side of the gateway (docs/protocol.md §13), loaded lazily by src/ctl. Every function returns
// the JSON payload of the matching `--json` output, or throws GatewayError(code, message, hint)
// with a pilotctl error code (docs/protocol.md §13.2).
//
// Deliberate differences from the reference (docs/differences.md/-4): `gateway start` runs the
// gateway as a background process and returns once its listeners are up; map/unmap/list act on
// that live gateway through its control socket; `stop` asks it to stop (SIGTERM as fallback) and
// every alias it added is removed (also those of a crashed gateway, on the next start/stop).
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, openSync, closeSync, rmSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { Driver } from "../client/driver.ts";
import { formatAddr, parseAddr } from "../proto/addr.ts";
import { SystemAliases } from "./alias.ts";
import type { ControlRequest } from "../proto/gateway-control.ts";
import { controlRequest, takeReply } from "./ctlsock.ts";
import { GatewayError } from "./errors.ts";
import { pidAlive, recoverAliases } from "./gateway.ts";
import { defaultDataDir, gatewayPaths, parsePorts, readPid } from "./main.ts";
import { MappingTable, parseIPv4 } from "./mapping.ts";
import { DEFAULT_SOCKET } from "../sys/constants.ts";

export { GatewayError } from "./errors.ts";

export interface GatewayCtlOptions {
  /** Daemon IPC socket (default /tmp/pilot.sock). */
  socket?: string;
  /** Directory for gateway.pid / gateway.sock / gateway-state.json / gateway.log (default ~/.pilot). */
  dataDir?: string;
  /** Override the command that runs `pilot-gateway` (argv prefix; tests). */
  command?: string[];
  /** Extra environment for the spawned gateway. */
  env?: Record<string, string>;
  /** How long `start` waits for readiness (default 20 s). */
  timeoutMs?: number;
}

export interface GatewayStartOptions extends GatewayCtlOptions {
  subnet?: string;
  /** Comma-separated text (as --ports) or numbers. Empty/absent = default ports. */
  ports?: string | number[];
  /** Pilot addresses to map; an entry may carry an explicit IP. */
  mappings?: (string | { addr: string; ip?: string })[];
  /** Extra pilot-gateway flags (e.g. ["-no-alias"]). */
  extraFlags?: string[];
}

export interface MappingOut {
  local_ip: string;
  pilot_addr: string;
}

export interface StartResult {
  pid: number;
  subnet: string;
  /** null when no address was given (docs/protocol.md §13 step 6). */
  mappings: MappingOut[] | null;
  /** local_ip → ports actually listening (extension). */
  listening: Record<string, number[]>;
}

function dirOf(o: GatewayCtlOptions): string {
  return o.dataDir || defaultDataDir();
}

/**
 * How to run `pilot-gateway`: a compiled binary uses a sibling `pilot-gateway` executable when
 * present, else itself with PILOT_TOOL=pilot-gateway; from source: bun src/main.ts pilot-gateway.
 */
export function gatewayCommand(): { argv: string[]; env: Record<string, string> } {
  const compiled = import.meta.url.includes("$bunfs") || import.meta.path?.includes("$bunfs");
  if (compiled) {
    const sib = join(dirname(process.execPath), process.platform === "win32" ? "pilot-gateway.exe" : "pilot-gateway");
    if (existsSync(sib) && resolve(sib) !== resolve(process.execPath)) return { argv: [sib], env: {} };
    return { argv: [process.execPath], env: { PILOT_TOOL: "pilot-gateway" } };
  }
  const main = resolve(import.meta.dir, "..", "main.ts");
  return { argv: [process.execPath, main, "pilot-gateway"], env: {} };
}

function notRunning(hint?: string): GatewayError {
  return new GatewayError("not_running", "gateway is not running", hint);
}

/** PID of the live gateway, or 0. */
export function gatewayPid(o: GatewayCtlOptions = {}): number {
  const pid = readPid(gatewayPaths(dirOf(o)).pid);
  return pid > 0 && pidAlive(pid) ? pid : 0;
}

/** `pilotctl gateway start`. Resolves once the gateway listens; the gateway keeps running. */
export async function gatewayStart(o: GatewayStartOptions = {}): Promise<StartResult> {
  const dataDir = dirOf(o);
  const paths = gatewayPaths(dataDir);
  const live = gatewayPid(o);
  if (live) throw new GatewayError("already_exists", `gateway is already running (pid ${live})`, "stop it first with: pilotctl gateway stop");
  const portsText = Array.isArray(o.ports) ? o.ports.join(",") : (o.ports ?? "");
  parsePorts(portsText); // invalid_argument, docs/protocol.md §13 step 2
  const subnet = o.subnet || "10.4.0.0/16";
  let table: MappingTable;
  try {
    table = new MappingTable(subnet);
  } catch (e) {
    throw new GatewayError("internal", `create gateway: ${(e as Error).message}`, (e as GatewayError).hint);
  }
  const argsOut: string[] = [];
  for (const m of o.mappings ?? []) {
    const addr = typeof m === "string" ? m : m.addr;
    const ip = typeof m === "string" ? undefined : m.ip;
    let a;
    try {
      a = parseAddr(addr);
    } catch (e) {
      throw new GatewayError("invalid_argument", `parse address ${addr}: ${(e as Error).message}`);
    }
    if (ip !== undefined && parseIPv4(ip) === null) throw new GatewayError("internal", `map ${addr}: invalid IP: ${ip}`);
    try {
      table.map(a, ip); // pre-check (subnet / duplicates / exhaustion) before spawning anything
    } catch (e) {
      throw new GatewayError("internal", `map ${addr}: ${(e as Error).message}`, (e as GatewayError).hint);
    }
    argsOut.push(formatAddr(a));
    if (ip !== undefined) argsOut.push(ip);
  }
  const socket = o.socket || process.env.PILOT_SOCKET || DEFAULT_SOCKET;
  try {
    const d = await Driver.connect(socket, { timeoutMs: 5_000 });
    d.close();
  } catch (e) {
    throw new GatewayError("internal", `start gateway: connect to daemon: ${(e as Error).message}`, "start the daemon with: pilotctl daemon start");
  }
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const cmd = o.command ? { argv: o.command, env: {} } : gatewayCommand();
  const flags = ["-socket", socket, "-subnet", subnet, "-data-dir", dataDir, "-notify-ready", ...(o.extraFlags ?? [])];
  if (portsText.trim() !== "") flags.push("-ports", portsText);
  const logFd = openSync(paths.log, "a", 0o600);
  let child;
  try {
    child = spawn(cmd.argv[0], [...cmd.argv.slice(1), ...flags, "run", ...argsOut], {
      detached: true,
      stdio: ["ignore", "pipe", logFd],
      env: { ...process.env, ...cmd.env, ...(o.env ?? {}) },
    });
  } finally {
    closeSync(logFd);
  }
  const timeoutMs = o.timeoutMs ?? 20_000;
  const ready = await new Promise<Record<string, unknown>>((resolveReady, reject) => {
    let buf = "";
    let settled = false;
    const settle = (fn: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(t);
      fn();
    };
    const t = setTimeout(() => settle(() => {
      try { if (child.pid) process.kill(child.pid, "SIGTERM"); } catch { /* gone */ }
      reject(new GatewayError("timeout", `gateway did not become ready within ${timeoutMs}ms`, `see ${paths.log}`));
    }), timeoutMs);
    child.on("error", (e) => settle(() => reject(new GatewayError("internal", `start gateway: ${e.message}`, `could not run ${basename(cmd.argv[0])}`))));
    child.on("exit", (code) => settle(() => reject(new GatewayError("internal", `gateway exited during start (code ${code})`, `see ${paths.log}`))));
    child.stdout!.setEncoding("utf8");
    child.stdout!.on("data", (c: string) => {
      buf += c;
      const r = takeReply(buf, "gateway: malformed readiness report", "gateway failed to start");
      if (!r) return;
      if (r.ok) settle(() => resolveReady(r.ok!));
      else settle(() => reject(r.malformed ? new GatewayError("internal", r.err!.message, `see ${paths.log}`) : r.err));
    });
  }).finally(() => {
    child.stdout?.destroy();
    child.removeAllListeners("exit");
    child.unref();
  });
  const ms = (ready.mappings as { local_ip: string; pilot_addr: string; listening: number[] }[]) ?? [];
  const listening: Record<string, number[]> = {};
  for (const m of ms) listening[m.local_ip] = m.listening;
  return {
    pid: Number(ready.pid),
    subnet: String(ready.subnet),
    mappings: ms.length ? ms.map((m) => ({ local_ip: m.local_ip, pilot_addr: m.pilot_addr })) : null,
    listening,
  };
}

/** `pilotctl gateway stop` → {"pid":N}. Falls back to SIGTERM (then SIGKILL + alias recovery). */
export async function gatewayStop(o: GatewayCtlOptions = {}): Promise<{ pid: number }> {
  const paths = gatewayPaths(dirOf(o));
  const pid = gatewayPid(o);
  if (!pid) {
    // A crashed gateway may have left aliases behind: clean them up quietly.
    await recoverAliases(paths.state, new SystemAliases(), () => {}).catch(() => []);
    rmSync(paths.pid, { force: true });
    throw notRunning();
  }
  try {
    await controlRequest(paths.control, { op: "stop" }, 15_000);
  } catch {
    try {
      process.kill(pid, "SIGTERM");
    } catch { /* already gone */ }
  }
  const deadline = Date.now() + 5_000;
  while (pidAlive(pid) && Date.now() < deadline) await Bun.sleep(25);
  if (pidAlive(pid)) {
    try {
      process.kill(pid, "SIGKILL");
    } catch { /* gone */ }
    while (pidAlive(pid) && Date.now() < deadline + 2_000) await Bun.sleep(25);
  }
  await recoverAliases(paths.state, new SystemAliases(), () => {}).catch(() => []);
  rmSync(paths.pid, { force: true });
  rmSync(paths.control, { force: true });
  return { pid };
}

async function request(o: GatewayCtlOptions, req: ControlRequest, hint: string): Promise<Record<string, unknown>> {
  const paths = gatewayPaths(dirOf(o));
  if (!gatewayPid(o)) throw notRunning(hint);
  try {
    return await controlRequest(paths.control, req);
  } catch (e) {
    if (e instanceof GatewayError && e.code === "not_running") throw notRunning(hint);
    throw e;
  }
}

/** `pilotctl gateway map <addr> [ip]` → {"local_ip","pilot_addr","listening"}. */
export async function gatewayMap(o: GatewayCtlOptions, addr: string, ip?: string): Promise<MappingOut & { listening: number[] }> {
  try {
    parseAddr(addr);
  } catch (e) {
    throw new GatewayError("invalid_argument", `parse address: ${(e as Error).message}`);
  }
  const r = await request(o, ip ? { op: "map", addr, ip } : { op: "map", addr }, "start with: pilotctl gateway start");
  return r.mapping as MappingOut & { listening: number[] };
}

/** `pilotctl gateway unmap <ip|addr>` → {"unmapped":ip}. not_found when nothing is mapped there. */
export async function gatewayUnmap(o: GatewayCtlOptions, target: string): Promise<{ unmapped: string }> {
  const r = await request(o, { op: "unmap", target }, "start with: pilotctl gateway start");
  return { unmapped: String(r.unmapped) };
}

/** `pilotctl gateway list` → {"mappings":[{"local_ip","pilot_addr"}],"total":n}. */
export async function gatewayList(o: GatewayCtlOptions = {}): Promise<{ mappings: MappingOut[]; total: number }> {
  const r = await request(o, { op: "list" }, "start with: pilotctl gateway start [--ports <list>] [<pilot-addr>...]");
  const ms = (r.mappings as MappingOut[]).map((m) => ({ local_ip: m.local_ip, pilot_addr: m.pilot_addr }));
  return { mappings: ms, total: ms.length };
}

/** Human renderings (docs/protocol.md §13). */
export function formatStartHuman(r: StartResult): string {
  return (r.mappings ?? []).map((m) => `mapped ${m.local_ip} → ${m.pilot_addr}\n`).join("") + "gateway running\n";
}
export function formatListHuman(r: { mappings: MappingOut[]; total: number }): string {
  if (r.total === 0) return "no mappings\n";
  return r.mappings.map((m) => `${m.local_ip} → ${m.pilot_addr}\n`).join("") + `total: ${r.total}\n`;
}
