// Loopback aliases (docs/gateway-control.md): Linux `ip addr add <ip>/32 dev lo` / `ip addr del`, macOS
// `ifconfig lo0 alias <ip> 255.255.255.255` / `-alias` (an explicit /32 netmask, see docs/differences.md).
// Unlike the reference, failures are reported (typed GatewayError with a hint) instead of only
// logged, so `gateway start`/`map` fail loudly when not root (docs/differences.md).
import { spawn } from "node:child_process";
import { GatewayError } from "./errors.ts";
import { parseIPv4 } from "./mapping.ts";

export interface AliasResult {
  /** true when this call created the alias (so it must be removed later). */
  added: boolean;
}

/** Something that can add/remove loopback aliases (injectable for tests). */
export interface AliasManager {
  add(ip: string): Promise<AliasResult>;
  remove(ip: string): Promise<void>;
}

function run(cmd: string, args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    let out = "";
    let child;
    try {
      child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"] });
    } catch (e) {
      resolve({ code: -1, out: (e as Error).message });
      return;
    }
    child.stdout?.on("data", (b: Buffer) => (out += b.toString()));
    child.stderr?.on("data", (b: Buffer) => (out += b.toString()));
    child.on("error", (e: Error) => resolve({ code: -1, out: e.message }));
    child.on("close", (code: number | null) => resolve({ code: code ?? -1, out: out.trim() }));
  });
}

function isPermission(out: string): boolean {
  return /not permitted|permission denied|EPERM|must be root|EACCES/i.test(out);
}

const ROOT_HINT = "loopback aliases need root (or CAP_NET_ADMIN): run with sudo";

/**
 * On Linux the whole 127.0.0.0/8 block is already local (the `lo` route), so IPs in it need no
 * alias; this also lets the gateway run without root on a 127.x subnet.
 */
export function needsAlias(ip: string, platform: string = process.platform): boolean {
  const v = parseIPv4(ip);
  if (v === null) return true;
  if (platform === "linux" && v >>> 24 === 127) return false;
  return true;
}

export class SystemAliases implements AliasManager {
  constructor(private readonly platform: string = process.platform) {}

  async add(ip: string): Promise<AliasResult> {
    if (!needsAlias(ip, this.platform)) return { added: false };
    let r: { code: number; out: string };
    if (this.platform === "linux") r = await run("ip", ["addr", "add", `${ip}/32`, "dev", "lo"]);
    else if (this.platform === "darwin") r = await run("ifconfig", ["lo0", "alias", ip, "255.255.255.255"]);
    else throw new GatewayError("internal", `add loopback alias ${ip}: unsupported OS ${this.platform}`, "add the address to the loopback interface by hand");
    if (r.code === 0) return { added: true };
    if (/File exists|exists|already assigned/i.test(r.out)) return { added: false }; // somebody else's alias: use it, never delete it
    if (isPermission(r.out)) throw new GatewayError("internal", `add loopback alias ${ip}: permission denied (${r.out})`, ROOT_HINT);
    if (r.code === -1) throw new GatewayError("internal", `add loopback alias ${ip}: ${r.out}`, this.platform === "linux" ? "install iproute2 (the `ip` command)" : undefined);
    throw new GatewayError("internal", `add loopback alias ${ip}: ${r.out || `exit ${r.code}`}`);
  }

  async remove(ip: string): Promise<void> {
    if (!needsAlias(ip, this.platform)) return;
    let r: { code: number; out: string };
    if (this.platform === "linux") r = await run("ip", ["addr", "del", `${ip}/32`, "dev", "lo"]);
    else if (this.platform === "darwin") r = await run("ifconfig", ["lo0", "-alias", ip]);
    else return;
    if (r.code === 0) return;
    if (/Cannot assign|not found|No such|can't assign/i.test(r.out)) return; // already gone
    if (isPermission(r.out)) throw new GatewayError("internal", `remove loopback alias ${ip}: permission denied (${r.out})`, ROOT_HINT);
    throw new GatewayError("internal", `remove loopback alias ${ip}: ${r.out || `exit ${r.code}`}`);
  }
}

/** Aliases that do nothing (for tests on 127.x or when aliases are managed elsewhere). */
export class NoAliases implements AliasManager {
  async add(): Promise<AliasResult> {
    return { added: false };
  }
  async remove(): Promise<void> {}
}
