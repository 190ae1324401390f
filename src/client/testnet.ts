// createTestnet(): a private Pilot network for users' own tests. A rendezvous (registry + beacon
// on a temp SQLite file) and N daemons run as child processes on loopback, with mutual trust
// established between every pair. The daemons are Bun programs: under Node, the `bun` executable
// is taken from $PILOT_BUN or PATH.
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { PilotError } from "./errors.ts";
import { connect, type Pilot } from "./pilot.ts";

export interface TestnetOptions {
  /** Number of daemons (1-16). */
  nodes: number;
  /** Hostnames to claim (default node-1 ... node-N). */
  hostnames?: string[];
  /** Establish mutual trust between every pair (default true). */
  trust?: boolean;
  /** Keep the temp directory on close (for debugging). */
  keep?: boolean;
  /** Print the children's log lines to stderr. */
  verbose?: boolean;
  /** Milliseconds allowed for each process to start (default 30000). */
  startTimeoutMs?: number;
}

export interface TestnetNode {
  hostname: string;
  nodeId: number;
  address: string;
  /** IPC socket of this daemon */
  socket: string;
  /** data directory (inbox/, received/) */
  dataDir: string;
  /** A Pilot connected to this daemon (opened by createTestnet, closed by close()). */
  pilot: Pilot;
  /** Open another connection to this daemon. */
  connect(): Promise<Pilot>;
}

export interface Testnet {
  dir: string;
  registry: string;
  beacon: string;
  nodes: TestnetNode[];
  /** Stop all processes and remove the temp directory. */
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

interface Child {
  proc: ChildProcess;
  log: string[];
  waitFor(re: RegExp, ms: number): Promise<RegExpMatchArray>;
  stop(): Promise<void>;
}

function mainScript(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  for (const c of [resolve(here, "../main.ts"), resolve(here, "../../src/main.ts")]) if (existsSync(c)) return c;
  throw new PilotError("not_found", "createTestnet: src/main.ts not found next to the SDK", "install the full pilot-ts package (the daemon ships as TypeScript source)");
}

function bunExecutable(): string {
  if ((globalThis as { Bun?: unknown }).Bun) return process.execPath;
  return process.env.PILOT_BUN || "bun";
}

function startChild(args: string[], label: string, env: Record<string, string>, verbose: boolean): Child {
  const proc = spawn(bunExecutable(), [mainScript(), ...args], { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  const log: string[] = [];
  let waiters: { re: RegExp; res: (m: RegExpMatchArray) => void }[] = [];
  let exited = false;
  const exitFns: (() => void)[] = [];
  proc.on("exit", () => {
    exited = true;
    for (const f of exitFns.splice(0)) f();
  });
  proc.on("error", () => {
    exited = true;
    for (const f of exitFns.splice(0)) f();
  });
  const pump = (s: NodeJS.ReadableStream | null) => {
    let partial = "";
    s?.setEncoding("utf8");
    s?.on("data", (chunk: string) => {
      partial += chunk;
      let i: number;
      while ((i = partial.indexOf("\n")) >= 0) {
        const line = partial.slice(0, i);
        partial = partial.slice(i + 1);
        if (log.length > 2000) log.splice(0, 1000);
        log.push(line);
        if (verbose) process.stderr.write(`[${label}] ${line}\n`);
        waiters = waiters.filter((w) => {
          const m = line.match(w.re);
          if (m) w.res(m);
          return !m;
        });
      }
    });
  };
  pump(proc.stdout);
  pump(proc.stderr);
  const fail = (why: string) => new PilotError("internal", `createTestnet: ${label} ${why}\n${log.slice(-20).join("\n")}`);
  return {
    proc,
    log,
    waitFor(re, ms) {
      for (const l of log) {
        const m = l.match(re);
        if (m) return Promise.resolve(m);
      }
      return new Promise((res, rej) => {
        if (exited) return rej(fail("exited"));
        const t = setTimeout(() => rej(fail(`did not log ${re} within ${ms}ms`)), ms);
        waiters.push({ re, res: (m) => { clearTimeout(t); res(m); } });
        exitFns.push(() => { clearTimeout(t); rej(fail("exited")); });
      });
    },
    stop() {
      if (exited) return Promise.resolve();
      return new Promise<void>((res) => {
        const k = setTimeout(() => proc.kill("SIGKILL"), 5000);
        exitFns.push(() => { clearTimeout(k); res(); });
        proc.kill("SIGTERM");
      });
    },
  };
}

async function until<T>(what: string, fn: () => Promise<T | null | undefined | false>, ms: number): Promise<T> {
  const end = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) throw new PilotError("timeout", `createTestnet: ${what} did not happen within ${ms}ms${last ? `: ${(last as Error).message}` : ""}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Start a rendezvous and `nodes` daemons on loopback, with mutual trust between all of them. */
export async function createTestnet(opts: TestnetOptions): Promise<Testnet> {
  const n = opts.nodes;
  if (!Number.isInteger(n) || n < 1 || n > 16) throw new PilotError("invalid_argument", `createTestnet: nodes must be 1-16, got ${n}`);
  const ms = opts.startTimeoutMs ?? 30_000;
  const verbose = opts.verbose ?? !!process.env.PILOT_TEST_VERBOSE;
  const dir = mkdtempSync(join(tmpdir(), "pilot-testnet-"));
  const children: Child[] = [];
  const nodes: TestnetNode[] = [];
  const close = async () => {
    for (const nd of nodes) nd.pilot.close();
    await Promise.all(children.map((c) => c.stop()));
    if (!opts.keep) rmSync(dir, { recursive: true, force: true });
  };
  try {
    const rv = startChild(["rendezvous", "-registry-addr", "127.0.0.1:0", "-beacon-addr", "127.0.0.1:0", "-store", join(dir, "registry.db")], "rendezvous", {}, verbose);
    children.push(rv);
    const loop = (s: string) => s.replace(/^\[?::\]?:/, "127.0.0.1:").replace(/^0\.0\.0\.0:/, "127.0.0.1:");
    const registry = loop((await rv.waitFor(/registry listening on (\S+)/, ms))[1]);
    const beacon = loop((await rv.waitFor(/beacon listening on (\S+)/, ms))[1]);
    const starts = Array.from({ length: n }, async (_, i) => {
      const hostname = opts.hostnames?.[i] ?? `node-${i + 1}`;
      const home = join(dir, hostname);
      const dataDir = join(home, ".pilot");
      mkdirSync(dataDir, { recursive: true, mode: 0o700 });
      const socket = join(home, "pilot.sock");
      const args = [
        "pilot-daemon", "-registry", registry, "-beacon", beacon, "-listen", "127.0.0.1:0", "-socket", socket,
        "-identity", join(dataDir, "identity.json"), "-data-dir", dataDir, "-hostname", hostname, "-keepalive", "2s",
      ];
      const ch = startChild(args, hostname, { HOME: home }, verbose);
      children.push(ch);
      const m = await ch.waitFor(/daemon running"? node_id=(\d+) addr=(\S+)/, ms);
      const open = () => connect({ socket, dataDir });
      return { hostname, nodeId: Number(m[1]), address: m[2], socket, dataDir, pilot: await open(), connect: open };
    });
    nodes.push(...(await Promise.all(starts)));
    if (opts.trust !== false) {
      for (let i = 0; i < n; i++) {
        for (let j = i + 1; j < n; j++) {
          const a = nodes[i], b = nodes[j];
          await a.pilot.handshake(b.nodeId, "testnet");
          await until(`${b.hostname} sees the request of ${a.hostname}`, async () => (await b.pilot.pending()).some((p) => p.nodeId === a.nodeId), ms);
          await b.pilot.approve(a.nodeId);
          await until(`${a.hostname} trusts ${b.hostname}`, async () => (await a.pilot.trusted()).some((t) => t.nodeId === b.nodeId), ms);
          await until(`${b.hostname} trusts ${a.hostname}`, async () => (await b.pilot.trusted()).some((t) => t.nodeId === a.nodeId), ms);
        }
      }
    }
    return { dir, registry, beacon, nodes, close, [Symbol.asyncDispose]: close };
  } catch (e) {
    await close().catch(() => {});
    throw e;
  }
}
