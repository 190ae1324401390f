// The gateway engine (docs/gateway-control.md): mapping table + loopback aliases + TCP listeners + bridges.
// Runs inside the `pilot-gateway` process; pilotctl reaches it through the control socket
// (control.ts / ctlsock.ts).
import { readFileSync, rmSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { Driver } from "../client/driver.ts";
import { formatAddr } from "../proto/addr.ts";
import type { Addr } from "../proto/types.ts";
import { type AliasManager, SystemAliases } from "./alias.ts";
import { asGatewayError, GatewayError } from "./errors.ts";
import { type Mapping, MappingTable } from "./mapping.ts";
import { dialPilot } from "./pilot.ts";
import { bridge, type BridgeOptions, type PilotStream } from "./proxy.ts";
import { type LogFn, makeLogger } from "../sys/log.ts";
import { atomicWriteFile } from "../sys/atomic-write.ts";

export const DEFAULT_PORTS = [80, 443, 1000, 1001, 1002, 7, 8080, 8443];
export const DEFAULT_SUBNET = "10.4.0.0/16";

export type { LogFn };

/** Records at info and above in the text format on stderr, for a gateway given no logger. */
let fallback: LogFn | null = null;
export const stderrLog: LogFn = (level, msg, kv) => (fallback ??= makeLogger().fn)(level, msg, kv);

export interface GatewayOptions {
  socket: string;
  subnet?: string;
  ports?: number[];
  aliases?: AliasManager;
  /** File recording the aliases this gateway added (crash recovery). Absent = not recorded. */
  statePath?: string;
  log?: LogFn;
  /** Pilot dialer (tests inject a fake). Default: one IPC driver per bridged connection. */
  dial?: (addr: Addr, port: number) => Promise<PilotStream>;
  dialTimeoutMs?: number;
  bridge?: BridgeOptions;
}

export interface MappingInfo {
  local_ip: string;
  pilot_addr: string;
  listening: number[];
}

interface Live {
  mapping: Mapping;
  servers: Map<number, Server>;
  sockets: Set<Socket>;
  aliasAdded: boolean;
}

interface StateFile {
  pid: number;
  aliases: string[];
}

export function pidAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

function readState(path: string): StateFile | null {
  try {
    const j = JSON.parse(readFileSync(path, "utf8")) as StateFile;
    if (!j || !Array.isArray(j.aliases)) return null;
    return { pid: Number(j.pid) || 0, aliases: j.aliases.filter((a) => typeof a === "string") };
  } catch {
    return null;
  }
}

function writeState(path: string, st: StateFile): void {
  atomicWriteFile(path, JSON.stringify(st) + "\n", 0o600);
}

/**
 * Crash recovery: remove the aliases recorded by a gateway that is no longer running, then delete
 * its state file. Returns the IPs removed. Throws already_exists when that gateway is still alive.
 */
export async function recoverAliases(statePath: string, aliases: AliasManager = new SystemAliases(), log: LogFn = stderrLog): Promise<string[]> {
  const st = readState(statePath);
  if (!st) {
    rmSync(statePath, { force: true });
    return [];
  }
  if (st.pid !== process.pid && pidAlive(st.pid)) {
    throw new GatewayError("already_exists", `gateway is already running (pid ${st.pid})`, "stop it first with: pilotctl gateway stop");
  }
  const removed: string[] = [];
  for (const ip of st.aliases) {
    try {
      await aliases.remove(ip);
      removed.push(ip);
      log("INFO", "removed stale loopback alias", { local_ip: ip, old_pid: st.pid });
    } catch (e) {
      log("WARN", "could not remove stale loopback alias", { local_ip: ip, error: (e as Error).message });
    }
  }
  rmSync(statePath, { force: true });
  return removed;
}

function listenError(ip: string, port: number, e: NodeJS.ErrnoException): string {
  switch (e.code) {
    case "EACCES":
      return `listen ${ip}:${port}: permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)`;
    case "EADDRINUSE":
      return `listen ${ip}:${port}: address already in use`;
    case "EADDRNOTAVAIL":
      return `listen ${ip}:${port}: address not available (loopback alias missing?)`;
    default:
      return `listen ${ip}:${port}: ${e.message}`;
  }
}

export class Gateway {
  readonly table: MappingTable;
  readonly ports: number[];
  private readonly aliases: AliasManager;
  private readonly log: LogFn;
  private live = new Map<string, Live>(); // local ip → live mapping
  private stopped = false;
  private started = false;
  private bridges = 0;
  private recorded = new Set<string>(); // aliases added and not (yet) removed

  constructor(private readonly opts: GatewayOptions) {
    try {
      this.table = new MappingTable(opts.subnet ?? DEFAULT_SUBNET);
    } catch (e) {
      throw asGatewayError(e, "create gateway: ");
    }
    this.ports = opts.ports && opts.ports.length ? [...new Set(opts.ports)] : DEFAULT_PORTS;
    this.aliases = opts.aliases ?? new SystemAliases();
    this.log = opts.log ?? stderrLog;
  }

  get subnet(): string {
    return this.table.subnet.cidr;
  }
  get activeBridges(): number {
    return this.bridges;
  }

  /** Check that the daemon answers (the reference keeps one driver; we dial one per bridge). */
  async start(): Promise<void> {
    if (!this.opts.dial) {
      try {
        const d = await Driver.connect(this.opts.socket, { timeoutMs: 5_000 });
        d.close();
      } catch (e) {
        throw new GatewayError("internal", `start gateway: connect to daemon: ${(e as Error).message}`, "start the daemon with: pilotctl daemon start");
      }
    }
    this.started = true;
    this.log("INFO", "gateway connected", { subnet: this.subnet });
  }

  private recordAliases(): void {
    if (!this.opts.statePath) return;
    const ips = [...this.recorded];
    if (ips.length === 0) {
      rmSync(this.opts.statePath, { force: true });
      return;
    }
    writeState(this.opts.statePath, { pid: process.pid, aliases: ips });
  }

  /** Map `addr` (optionally at `ip`); alias + listeners are up when this resolves. */
  async map(addr: Addr | string, ip?: string): Promise<MappingInfo> {
    if (this.stopped) throw new GatewayError("not_running", "gateway is stopped");
    const { mapping, created } = this.table.map(addr, ip);
    if (!created) return this.info(mapping.localIp)!;
    const lv: Live = { mapping, servers: new Map(), sockets: new Set(), aliasAdded: false };
    this.live.set(mapping.localIp, lv);
    try {
      const r = await this.aliases.add(mapping.localIp);
      lv.aliasAdded = r.added;
      if (r.added) {
        this.recorded.add(mapping.localIp);
        this.recordAliases();
      }
    } catch (e) {
      this.live.delete(mapping.localIp);
      this.table.unmap(mapping.localIp);
      throw e;
    }
    const errors: string[] = [];
    await Promise.all(this.ports.map((port) => this.listen(lv, port).catch((e: NodeJS.ErrnoException) => {
      const m = listenError(mapping.localIp, port, e);
      errors.push(m);
      this.log("WARN", "gateway listen failed", { error: m });
    })));
    if (lv.servers.size === 0) {
      // Nothing would work: undo and say why (the reference reports success, docs/differences.md).
      await this.teardown(lv);
      this.table.unmap(mapping.localIp);
      const priv = this.ports.some((p) => p < 1024);
      throw new GatewayError("internal", `no listener could be opened for ${mapping.localIp}: ${errors.join("; ")}`,
        priv && process.getuid?.() !== 0 ? "ports below 1024 need root: run with sudo, or pick ports >= 1024 with --ports" : "check the ports and the loopback alias");
    }
    this.log("INFO", "gateway mapped address", { local_ip: mapping.localIp, pilot_addr: formatAddr(mapping.addr) });
    return this.info(mapping.localIp)!;
  }

  private listen(lv: Live, port: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const srv = createServer({ allowHalfOpen: true, pauseOnConnect: false }, (s) => this.onConn(lv, port, s));
      const onErr = (e: Error) => reject(e);
      srv.once("error", onErr);
      srv.listen({ host: lv.mapping.localIp, port, exclusive: true }, () => {
        srv.off("error", onErr);
        srv.on("error", (e) => this.log("WARN", "gateway listener error", { error: e.message }));
        if (!this.live.has(lv.mapping.localIp) || this.stopped) {
          srv.close();
          reject(new Error("unmapped"));
          return;
        }
        lv.servers.set(port, srv);
        resolve();
      });
    });
  }

  private onConn(lv: Live, port: number, s: Socket): void {
    lv.sockets.add(s);
    this.bridges++;
    s.on("error", () => {});
    s.pause(); // hold data until the Pilot stream exists
    const dial = this.opts.dial ?? ((a: Addr, p: number) => dialPilot(this.opts.socket, a, p, this.opts.dialTimeoutMs));
    let closedEarly = false;
    s.once("close", () => (closedEarly = true));
    dial(lv.mapping.addr, port).then(
      (pilot) => {
        if (closedEarly || s.destroyed) {
          pilot.close();
          this.bridgeDone(lv, s);
          return;
        }
        s.resume();
        bridge(s, pilot, this.opts.bridge).then(() => this.bridgeDone(lv, s));
      },
      (e) => {
        this.log("WARN", "gateway dial failed", { pilot_addr: formatAddr(lv.mapping.addr), port, error: (e as Error).message });
        s.destroy();
        this.bridgeDone(lv, s);
      },
    );
  }

  private bridgeDone(lv: Live, s: Socket): void {
    if (lv.sockets.delete(s)) this.bridges--;
  }

  private async teardown(lv: Live): Promise<void> {
    for (const srv of lv.servers.values()) srv.close();
    lv.servers.clear();
    for (const s of lv.sockets) s.destroy();
    this.live.delete(lv.mapping.localIp);
    if (lv.aliasAdded) {
      try {
        await this.aliases.remove(lv.mapping.localIp);
        lv.aliasAdded = false;
        this.recorded.delete(lv.mapping.localIp);
        this.recordAliases();
      } catch (e) {
        // stays recorded so that the next start retries (crash-recovery path)
        this.log("WARN", "could not remove loopback alias", { local_ip: lv.mapping.localIp, error: (e as Error).message });
      }
    }
  }

  /** Unmap by local IP or Pilot address; closes its listeners and live bridges, removes its alias. */
  async unmap(target: string): Promise<{ unmapped: string; pilot_addr: string }> {
    const m = this.table.unmap(target);
    const lv = this.live.get(m.localIp);
    if (lv) await this.teardown(lv);
    this.log("INFO", "gateway unmapped address", { local_ip: m.localIp, pilot_addr: formatAddr(m.addr) });
    return { unmapped: m.localIp, pilot_addr: formatAddr(m.addr) };
  }

  info(ip: string): MappingInfo | null {
    const lv = this.live.get(ip);
    if (!lv) return null;
    return { local_ip: ip, pilot_addr: formatAddr(lv.mapping.addr), listening: [...lv.servers.keys()].sort((a, b) => a - b) };
  }

  list(): MappingInfo[] {
    return this.table.list().map((m) => this.info(m.localIp) ?? { local_ip: m.localIp, pilot_addr: formatAddr(m.addr), listening: [] });
  }

  /** Idempotent: close listeners and bridges, remove every alias this gateway added. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    for (const lv of [...this.live.values()]) {
      this.table.unmap(lv.mapping.localIp);
      await this.teardown(lv);
    }
    if (this.started) this.log("INFO", "gateway stopped");
  }
}
