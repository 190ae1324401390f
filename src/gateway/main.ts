// `pilot-gateway` (docs/protocol.md §13.4). Go-style flags before the subcommand:
//   pilot-gateway [flags] run [<pilot-addr> [<local-ip>]] ...
//   pilot-gateway [flags] map <pilot-addr> [<local-ip>]
// Extensions (all optional): -data-dir (default ~/.pilot: gateway.pid, gateway.sock,
// gateway-state.json live there), -control (control socket path, default <data-dir>/gateway.sock),
// -notify-ready (used by `pilotctl gateway start`: print exactly one JSON line on stdout, the
// readiness report or the fatal error, and nothing else), -linger (ms, half-close linger).
// Unlike the reference: `run` serves a control socket, so `map` (and pilotctl map/unmap/list) act
// on the live gateway; `map` without a running gateway fails (not_running) instead of creating a
// mapping that dies with the process.
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { FlagError, type FlagDef, parseFlags as parseGoFlags } from "../sys/flags.ts";
import { parseAddr } from "../proto/addr.ts";
import { SystemAliases, NoAliases } from "./alias.ts";
import { controlRequest, serveControl } from "./ctlsock.ts";
import { asGatewayError, GatewayError } from "./errors.ts";
import { DEFAULT_PORTS, DEFAULT_SUBNET, Gateway, type LogFn, pidAlive, recoverAliases, stderrLog } from "./gateway.ts";
import { makeLogger } from "../sys/log.ts";
import { DEFAULT_SOCKET } from "../sys/constants.ts";
import { parseIPv4 } from "./mapping.ts";

const USAGE = `gateway — Pilot Protocol IP bridge

Usage:
  gateway run [<pilot-addr> [<local-ip>]] ...   Start gateway with mappings
  gateway map <pilot-addr> [<local-ip>]          Add a mapping

Flags:
  -socket    Daemon socket path (default: ${DEFAULT_SOCKET})
  -subnet    Local IP subnet (default: 10.4.0.0/16)
  -ports     Comma-separated ports to proxy (default: 80,443,1000,1001,1002,7,8080,8443)
`;

export function defaultDataDir(): string {
  return join(process.env.HOME || homedir(), ".pilot");
}

/** Gateway file locations inside a data dir. */
export function gatewayPaths(dataDir: string): { pid: string; control: string; state: string; log: string } {
  return {
    pid: join(dataDir, "gateway.pid"),
    control: join(dataDir, "gateway.sock"),
    state: join(dataDir, "gateway-state.json"),
    log: join(dataDir, "gateway.log"),
  };
}

/** Parse a -ports/--ports list. Error text as docs/protocol.md §13 step 2. */
export function parsePorts(s: string): number[] {
  if (s.trim() === "") return [...DEFAULT_PORTS];
  const out: number[] = [];
  for (const raw of s.split(",")) {
    const p = raw.trim();
    if (!/^\d+$/.test(p)) throw new GatewayError("invalid_argument", `invalid port "${p}": strconv.ParseUint: parsing "${p}": invalid syntax`);
    const n = Number(p);
    if (n > 65535) throw new GatewayError("invalid_argument", `invalid port "${p}": strconv.ParseUint: parsing "${p}": value out of range`);
    out.push(n);
  }
  return out;
}

export function readPid(path: string): number {
  try {
    const n = Number.parseInt(readFileSync(path, "utf8").trim(), 10);
    return Number.isFinite(n) ? n : 0;
  } catch {
    return 0;
  }
}

const FLAGS = ["config", "socket", "subnet", "ports", "log-level", "log-format", "data-dir", "control", "linger"] as const;
const BOOL_FLAGS = ["notify-ready", "no-alias"] as const;

interface Parsed {
  flags: Record<string, string>;
  bools: Set<string>;
  rest: string[];
}

const DEFS: FlagDef[] = [
  ...FLAGS.map((name) => ({ name, type: "string" as const, default: "", usage: "" })),
  ...BOOL_FLAGS.map((name) => ({ name, type: "bool" as const, default: false, usage: "" })),
];

/**
 * Go `flag` style parsing (src/sys/flags.ts); `flags` holds only the string flags that were set.
 * Returns null for -h/-help.
 */
function parseFlags(args: string[]): Parsed | null {
  let r: ReturnType<typeof parseGoFlags>;
  try {
    r = parseGoFlags(args, DEFS);
  } catch (e) {
    if (e instanceof FlagError) {
      if (e.code === "help") return null;
      if (e.code === "config_invalid") throw new GatewayError("internal", e.message);
      throw new GatewayError("invalid_argument", e.message);
    }
    throw e;
  }
  const flags: Record<string, string> = {};
  const bools = new Set<string>();
  for (const d of DEFS) {
    const v = r.values[d.name];
    if (d.type === "bool") {
      if (v === true) bools.add(d.name);
    } else if (typeof v === "string" && v !== "") flags[d.name] = v;
  }
  return { flags, bools, rest: r.rest };
}

/** The process logger; replaced by one honouring -log-level / -log-format once flags are parsed. */
let log: LogFn = stderrLog;

function fatal(e: unknown, notify: boolean): number {
  const ge = asGatewayError(e);
  log("ERROR", ge.message, ge.hint ? { hint: ge.hint } : undefined);
  if (notify) process.stdout.write(JSON.stringify({ ok: false, error: ge.toJSON() }) + "\n");
  return 1;
}

export async function run(args: string[]): Promise<number> {
  let p: Parsed | null;
  try {
    p = parseFlags(args);
  } catch (e) {
    return fatal(e, false);
  }
  if (!p) {
    process.stderr.write(USAGE);
    return 0;
  }
  const notify = p.bools.has("notify-ready");
  log = makeLogger(p.flags["log-level"], p.flags["log-format"]).fn;
  const sub = p.rest[0];
  if (sub !== "run" && sub !== "map") {
    process.stderr.write(USAGE);
    return 1;
  }
  const dataDir = p.flags["data-dir"] || defaultDataDir();
  const paths = gatewayPaths(dataDir);
  const control = p.flags.control ?? paths.control;
  if (sub === "map") return cmdMap(p.rest.slice(1), control);

  let ports: number[];
  try {
    ports = parsePorts(p.flags.ports ?? "");
  } catch (e) {
    return fatal(e, notify);
  }
  // Collect (addr, ip?) pairs: an argument that parses as an IP belongs to the address before it.
  const pairs: { addr: string; ip?: string }[] = [];
  for (const a of p.rest.slice(1)) {
    if (parseIPv4(a) !== null && pairs.length > 0 && pairs[pairs.length - 1].ip === undefined) pairs[pairs.length - 1].ip = a;
    else {
      try {
        parseAddr(a);
      } catch (e) {
        return fatal(new GatewayError("invalid_argument", `parse address ${a}: ${(e as Error).message}`), notify);
      }
      pairs.push({ addr: a });
    }
  }
  const aliases = p.bools.has("no-alias") ? new NoAliases() : new SystemAliases();
  let gw: Gateway;
  try {
    gw = new Gateway({
      socket: p.flags.socket || DEFAULT_SOCKET,
      subnet: p.flags.subnet || DEFAULT_SUBNET,
      ports,
      aliases,
      statePath: paths.state,
      log,
      bridge: p.flags.linger ? { lingerMs: Number(p.flags.linger) || 10_000 } : undefined,
    });
  } catch (e) {
    return fatal(e, notify);
  }

  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const other = readPid(paths.pid);
  if (other > 0 && other !== process.pid && pidAlive(other)) {
    return fatal(new GatewayError("already_exists", `gateway is already running (pid ${other})`, "stop it first with: pilotctl gateway stop"), notify);
  }
  let ctl: { close(): void } | null = null;
  let stopping: Promise<void> | null = null;
  let release!: () => void;
  const finished = new Promise<void>((r) => (release = r));
  const stop = () => {
    if (!stopping) {
      stopping = (async () => {
        await gw.stop();
        ctl?.close();
        if (readPid(paths.pid) === process.pid) rmSync(paths.pid, { force: true });
      })().finally(() => release());
    }
    return stopping;
  };
  try {
    await recoverAliases(paths.state, aliases, log);
    await gw.start();
    ctl = await serveControl(gw, control, stop);
    writeFileSync(paths.pid, `${process.pid}\n`, { mode: 0o600 });
    const mapped = [];
    for (const { addr, ip } of pairs) {
      try {
        mapped.push(await gw.map(addr, ip));
      } catch (e) {
        throw asGatewayError(e, `map ${addr}: `);
      }
    }
    if (notify) {
      process.stdout.write(JSON.stringify({ ok: true, pid: process.pid, subnet: gw.subnet, ports: gw.ports, control, mappings: mapped }) + "\n");
    } else {
      for (const m of mapped) process.stdout.write(`mapped ${m.local_ip} → ${m.pilot_addr}\n`);
    }
    log("INFO", "gateway running");
  } catch (e) {
    await stop(); // clean up first, so that whoever reads the error sees nothing left running
    return fatal(e, notify);
  }
  const onSig = () => void stop();
  process.on("SIGINT", onSig);
  process.on("SIGTERM", onSig);
  process.on("SIGHUP", () => {}); // detached from pilotctl's terminal: keep running
  await finished;
  process.off("SIGINT", onSig);
  process.off("SIGTERM", onSig);
  return 0;
}

async function cmdMap(args: string[], control: string): Promise<number> {
  const addr = args[0];
  if (!addr) {
    process.stderr.write("usage: gateway map <pilot-addr> [<local-ip>]\n");
    return 1;
  }
  try {
    parseAddr(addr);
  } catch (e) {
    return fatal(new GatewayError("invalid_argument", `parse address: ${(e as Error).message}`), false);
  }
  if (!existsSync(control)) return fatal(new GatewayError("not_running", "gateway is not running", "start with: pilot-gateway run"), false);
  try {
    const r = await controlRequest(control, { op: "map", addr, ip: args[1] ?? "" });
    const m = r.mapping as { local_ip: string; pilot_addr: string };
    process.stdout.write(`${m.local_ip} → ${m.pilot_addr}\n`);
    return 0;
  } catch (e) {
    return fatal(e, false);
  }
}
