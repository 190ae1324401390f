// Network lab: network namespaces joined by veth pairs, a "public" L2 segment (198.18.0.0/24,
// RFC 2544 benchmarking range — never a real public address) on a bridge in a core namespace,
// and per-daemon "home" segments (198.19.N.0/24) behind NAT router namespaces using iptables:
//
//   fullcone    endpoint-independent mapping + filtering: MASQUERADE (port-preserving) plus a
//               static DNAT of the daemon's UDP port on the WAN side.
//   restricted  port-restricted cone: plain MASQUERADE; conntrack only lets replies in from the
//               exact remote endpoint the inside host sent to.
//   symmetric   endpoint-dependent mapping: MASQUERADE --random-fully (new random port per flow).
//
// Every router drops unsolicited WAN packets addressed to itself in filter/INPUT. That matters
// for hole punching: a packet that is dropped there never gets its conntrack entry confirmed, so
// an early inbound probe cannot occupy the tuple the inside host's own outgoing punch needs
// (without it Linux would remap the punch to another port and the NAT would look symmetric).
//
// Processes run inside namespaces via `ip netns exec <ns> bun src/main.ts ...`. Namespace names
// carry the creating pid, so a later run deletes those of dead runs; `destroy()` is idempotent.
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { spawnWatched, type Proc } from "../helpers/cluster.ts";

export const REPO = resolve(import.meta.dir, "../..");
export const BUN = process.execPath;
export const MAIN = join(REPO, "src/main.ts");
export const TUNNEL_PORT = 4000;
export const REGISTRY_PORT = 9000;
export const BEACON_PORT = 9001;
export const RDV_IP = "198.18.0.1";

export type NatKind = "fullcone" | "restricted" | "symmetric";

/** Why the lab cannot run here, or null when it can. Also picks the working iptables binary. */
export function labUnavailable(): string | null {
  if (process.platform !== "linux") return "not Linux";
  if (process.getuid?.() !== 0) return "not root (network namespaces and iptables need root)";
  const ip = spawnSync("ip", ["-V"], { encoding: "utf8" });
  if (ip.error) return "`ip` (iproute2) missing";
  if (!iptablesBinary()) return "no working iptables (apt-get install iptables)";
  return null;
}

let iptCache: string | null | undefined;
/** First of iptables / iptables-nft / iptables-legacy that can add a nat rule in a fresh netns. */
export function iptablesBinary(): string | null {
  if (iptCache !== undefined) return iptCache;
  iptCache = null;
  const ns = `plab-${process.pid}-probe`;
  if (spawnSync("ip", ["netns", "add", ns]).status !== 0) return null;
  try {
    for (const bin of ["iptables", "iptables-nft", "iptables-legacy"]) {
      const r = spawnSync("ip", ["netns", "exec", ns, bin, "-t", "nat", "-A", "POSTROUTING", "-o", "lo", "-j", "MASQUERADE", "--random-fully"], { encoding: "utf8" });
      if (!r.error && r.status === 0) {
        iptCache = bin;
        break;
      }
    }
  } finally {
    spawnSync("ip", ["netns", "del", ns]);
  }
  return iptCache;
}

function sh(args: string[], allowFail = false): string {
  const r = spawnSync(args[0], args.slice(1), { encoding: "utf8" });
  if (!allowFail && (r.error || r.status !== 0)) {
    throw new Error(`lab: \`${args.join(" ")}\` failed: ${r.error?.message ?? r.stderr.trim()}`);
  }
  return r.stdout ?? "";
}

/** Delete namespaces left behind by lab runs whose process is gone. */
export function reapStale(): void {
  const out = sh(["ip", "netns", "list"], true);
  for (const m of out.matchAll(/^(plab-(\d+)-\S+)/gm)) {
    const pid = Number(m[2]);
    let alive = false;
    try {
      process.kill(pid, 0);
      alive = true;
    } catch {
      alive = false;
    }
    if (!alive) {
      killNsProcs(m[1]);
      sh(["ip", "netns", "del", m[1]], true);
    }
  }
}

function killNsProcs(ns: string): void {
  for (const p of sh(["ip", "netns", "pids", ns], true).split(/\s+/).filter(Boolean)) {
    try {
      process.kill(Number(p), "SIGKILL");
    } catch {}
  }
}

// ------------------------------------------------------------------------------ processes

export type { Proc };

export function spawnIn(ns: string, argv: string[], label: string, env: Record<string, string> = {}): Proc {
  return spawnWatched(["ip", "netns", "exec", ns, ...argv], label, env, "PILOT_LAB_VERBOSE");
}

// ------------------------------------------------------------------------------ topology

export interface LabDaemon {
  name: string;
  ns: string;
  /** NAT router namespace ("" for public hosts) */
  router: string;
  /** IP of the daemon inside its namespace */
  ip: string;
  /** public IP its packets appear from (its own for public hosts, the router's WAN for NATed) */
  publicIp: string;
  nat: NatKind | "none";
  socket: string;
  home: string;
  args: string[];
  proc: Proc;
  nodeId: number;
  address: string;
}

export class Lab {
  readonly id = `plab-${process.pid}-${Math.random().toString(16).slice(2, 6)}`;
  readonly dir: string;
  readonly ipt: string;
  private namespaces: string[] = [];
  private procs: Proc[] = [];
  private core = "";
  private pubHost = 10;
  private natIdx = 0;
  private vethIdx = 0;
  rendezvous: Proc | null = null;
  rdvArgs: string[] = [];
  readonly rdvNs: string;
  daemons: LabDaemon[] = [];

  constructor() {
    reapStale();
    this.ipt = iptablesBinary() ?? "iptables";
    this.dir = mkdtempSync(join(tmpdir(), "pilot-lab-"));
    this.core = this.addNs("core");
    sh(["ip", "-n", this.core, "link", "add", "br0", "type", "bridge"]);
    sh(["ip", "-n", this.core, "link", "set", "br0", "up"]);
    this.rdvNs = this.addNs("rdv");
    this.attachPublic(this.rdvNs, RDV_IP);
  }

  get registry(): string {
    return `${RDV_IP}:${REGISTRY_PORT}`;
  }
  get beacon(): string {
    return `${RDV_IP}:${BEACON_PORT}`;
  }

  addNs(name: string): string {
    const ns = `${this.id}-${name}`;
    sh(["ip", "netns", "add", ns]);
    this.namespaces.push(ns);
    sh(["ip", "-n", ns, "link", "set", "lo", "up"]);
    return ns;
  }

  exec(ns: string, args: string[], allowFail = false): string {
    return sh(["ip", "netns", "exec", ns, ...args], allowFail);
  }

  /** veth from `ns` (named ifname there) to the public bridge, with address ip/24. */
  private attachPublic(ns: string, ip: string, ifname = "eth0"): void {
    const port = `p${this.vethIdx++}`;
    sh(["ip", "-n", this.core, "link", "add", port, "type", "veth", "peer", "name", ifname, "netns", ns]);
    sh(["ip", "-n", this.core, "link", "set", port, "master", "br0", "up"]);
    sh(["ip", "-n", ns, "addr", "add", `${ip}/24`, "dev", ifname]);
    sh(["ip", "-n", ns, "link", "set", ifname, "up"]);
  }

  /** A host directly on the public segment; returns [ns, ip]. */
  publicHost(name: string): [string, string] {
    const ns = this.addNs(name);
    const ip = `198.18.0.${this.pubHost++}`;
    this.attachPublic(ns, ip);
    return [ns, ip];
  }

  /** A home host behind a NAT router of the given kind; returns [homeNs, homeIp, routerNs, wanIp]. */
  natHost(name: string, kind: NatKind): [string, string, string, string] {
    const n = ++this.natIdx;
    const router = this.addNs(`${name}-nat`);
    const wan = `198.18.0.${100 + n}`;
    this.attachPublic(router, wan, "wan");
    const home = this.addNs(name);
    const lanIp = `198.19.${n}.1`;
    const homeIp = `198.19.${n}.2`;
    sh(["ip", "-n", router, "link", "add", "lan", "type", "veth", "peer", "name", "eth0", "netns", home]);
    sh(["ip", "-n", router, "addr", "add", `${lanIp}/24`, "dev", "lan"]);
    sh(["ip", "-n", router, "link", "set", "lan", "up"]);
    sh(["ip", "-n", home, "addr", "add", `${homeIp}/24`, "dev", "eth0"]);
    sh(["ip", "-n", home, "link", "set", "eth0", "up"]);
    sh(["ip", "-n", home, "route", "add", "default", "via", lanIp]);
    // /proc/sys/net is per network namespace; no dependency on procps' sysctl.
    this.exec(router, ["sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"]);
    const ipt = (...a: string[]) => this.exec(router, [this.ipt, ...a]);
    ipt("-A", "INPUT", "-i", "wan", "-j", "DROP");
    switch (kind) {
      case "restricted":
        ipt("-t", "nat", "-A", "POSTROUTING", "-o", "wan", "-j", "MASQUERADE");
        break;
      case "symmetric":
        ipt("-t", "nat", "-A", "POSTROUTING", "-o", "wan", "-j", "MASQUERADE", "--random-fully");
        break;
      case "fullcone":
        ipt("-t", "nat", "-A", "POSTROUTING", "-o", "wan", "-j", "MASQUERADE");
        ipt("-t", "nat", "-A", "PREROUTING", "-i", "wan", "-p", "udp", "--dport", String(TUNNEL_PORT), "-j", "DNAT", "--to-destination", `${homeIp}:${TUNNEL_PORT}`);
        break;
    }
    return [home, homeIp, router, wan];
  }

  /** Current conntrack-visible NAT table of a router (diagnostics). */
  natTable(routerNs: string): string {
    return this.exec(routerNs, ["conntrack", "-L", "-p", "udp"], true);
  }

  spawn(ns: string, argv: string[], label: string, env: Record<string, string> = {}): Proc {
    const p = spawnIn(ns, argv, label, env);
    this.procs.push(p);
    return p;
  }

  async startRendezvous(): Promise<void> {
    this.rdvArgs = ["-registry-addr", this.registry, "-beacon-addr", this.beacon, "-store", join(this.dir, "registry.db")];
    this.rendezvous = this.spawn(this.rdvNs, [BUN, MAIN, "rendezvous", ...this.rdvArgs], "rendezvous");
    await this.rendezvous.waitFor(/registry listening on/);
    await this.rendezvous.waitFor(/beacon listening on/);
  }

  async restartRendezvous(): Promise<void> {
    await this.rendezvous?.kill("SIGTERM");
    this.rendezvous = this.spawn(this.rdvNs, [BUN, MAIN, "rendezvous", ...this.rdvArgs], "rendezvous");
    await this.rendezvous.waitFor(/registry listening on/);
    await this.rendezvous.waitFor(/beacon listening on/);
  }

  /**
   * Start a daemon. nat "none" = on the public segment. `extra` is appended to the flags; the
   * tunnel socket is always bound to 0.0.0.0:4000 so STUN's temporary socket and the tunnel
   * socket share one NAT mapping (docs/protocol.md §7: with `:0` they would differ).
   */
  async startDaemon(name: string, nat: NatKind | "none", extra: string[] = []): Promise<LabDaemon> {
    let ns: string, ip: string, publicIp: string;
    let router = "";
    if (nat === "none") {
      [ns, ip] = this.publicHost(name);
      publicIp = ip;
    } else {
      const r = this.natHost(name, nat);
      [ns, ip] = r;
      publicIp = r[3];
      router = r[2];
    }
    const home = join(this.dir, name);
    mkdirSync(join(home, ".pilot"), { recursive: true, mode: 0o700 });
    const socket = join(home, "pilot.sock");
    const args = [
      "-registry", this.registry,
      "-beacon", this.beacon,
      "-listen", `0.0.0.0:${TUNNEL_PORT}`,
      "-socket", socket,
      "-identity", join(home, ".pilot", "identity.json"),
      "-data-dir", join(home, ".pilot"),
      "-keepalive", "2s",
      "-log-level", "debug",
      ...extra,
    ];
    const d: LabDaemon = { name, ns, router, ip, publicIp, nat, socket, home, args, proc: null as unknown as Proc, nodeId: 0, address: "" };
    await this.launch(d);
    this.daemons.push(d);
    return d;
  }

  private async launch(d: LabDaemon): Promise<void> {
    d.proc = this.spawn(d.ns, [BUN, MAIN, "pilot-daemon", ...d.args], d.name, { HOME: d.home });
    const m = await d.proc.waitFor(/daemon running"? node_id=(\d+) addr=(\S+)/, 30000);
    d.nodeId = Number(m[1]);
    d.address = m[2];
  }

  async restartDaemon(d: LabDaemon, sig: NodeJS.Signals = "SIGTERM"): Promise<void> {
    await d.proc.kill(sig);
    await this.launch(d);
  }

  /**
   * Put the user-space impairing pipe (impair.ts) between two public daemons: a host "imp" on the
   * public segment runs it, and each daemon's namespace DNATs (nat/OUTPUT) its UDP to the other's
   * tunnel port into its side of the pipe. `impair` are impair.ts flags (e.g. ["--loss","0.05"]).
   */
  async impairLink(a: LabDaemon, b: LabDaemon, impair: string[]): Promise<Proc> {
    if (a.nat !== "none" || b.nat !== "none") throw new Error("impairLink: both daemons must be public hosts");
    const [ns, ip] = this.publicHost(`imp${this.vethIdx}`);
    const p = this.spawn(ns, [BUN, join(import.meta.dir, "impair.ts"), "--a", `${ip}:5001=${a.ip}:${TUNNEL_PORT}`, "--b", `${ip}:5002=${b.ip}:${TUNNEL_PORT}`, ...impair], "impair");
    await p.waitFor(/impair listening/);
    const dnat = (from: LabDaemon, to: LabDaemon, port: number) =>
      this.exec(from.ns, [this.ipt, "-t", "nat", "-A", "OUTPUT", "-p", "udp", "-d", to.ip, "--dport", String(TUNNEL_PORT), "-j", "DNAT", "--to-destination", `${ip}:${port}`]);
    dnat(a, b, 5001);
    dnat(b, a, 5002);
    return p;
  }

  /** Packets the router dropped as unsolicited (filter/INPUT on the WAN side). */
  unsolicitedDrops(routerNs: string): number {
    const out = this.exec(routerNs, [this.ipt, "-L", "INPUT", "-v", "-x", "-n"], true);
    const m = out.match(/^\s*(\d+)\s+\d+\s+DROP/m);
    return m ? Number(m[1]) : 0;
  }

  async destroy(): Promise<void> {
    await Promise.all(this.procs.map((p) => p.kill("SIGTERM").catch(() => 0)));
    for (const ns of this.namespaces.reverse()) {
      killNsProcs(ns);
      sh(["ip", "netns", "del", ns], true);
    }
    this.namespaces = [];
    if (!process.env.PILOT_LAB_KEEP) rmSync(this.dir, { recursive: true, force: true, maxRetries: 5 });
  }
}
