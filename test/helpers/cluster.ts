// Real-process cluster for end-to-end tests and the demo: a rendezvous (registry + beacon on
// SQLite) and daemons, each a separate `bun src/main.ts <tool>` process on loopback, plus a
// pilotctl runner. Everything lives in a temp directory that `stop()` removes.
import { mkdtempSync, rmSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { Subprocess } from "bun";

export const REPO = resolve(import.meta.dir, "../..");
export const BUN = process.execPath;
export const MAIN = join(REPO, "src/main.ts");

export interface Proc {
  proc: Subprocess<"ignore", "pipe", "pipe">;
  log: string[];
  /** Resolves when stdout and stderr have ended and every line is in `log` (after the exit). */
  drained: Promise<void>;
  waitFor(re: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  kill(sig?: NodeJS.Signals | number): Promise<number>;
}

/**
 * Spawn a process and follow its stdout/stderr line by line: `log` keeps the lines (bounded),
 * `waitFor` resolves on the first line matching a pattern (or fails with the log tail when the
 * process exits or the time runs out). `verboseVar` names an env variable that streams the lines.
 */
export function spawnWatched(argv: string[], label: string, env: Record<string, string> = {}, verboseVar = "PILOT_TEST_VERBOSE"): Proc {
  const proc = Bun.spawn(argv, {
    cwd: REPO,
    env: { ...process.env, ...env },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  const log: string[] = [];
  let waiters: { re: RegExp; resolve: (m: RegExpMatchArray) => void }[] = [];
  const pump = async (stream: ReadableStream<Uint8Array>) => {
    const dec = new TextDecoder();
    let partial = "";
    for await (const chunk of stream) {
      partial += dec.decode(chunk, { stream: true });
      let i: number;
      while ((i = partial.indexOf("\n")) >= 0) {
        const line = partial.slice(0, i);
        partial = partial.slice(i + 1);
        if (log.length > 20000) log.splice(0, 10000);
        log.push(line);
        if (process.env[verboseVar]) process.stderr.write(`[${label}] ${line}\n`);
        waiters = waiters.filter((w) => {
          const m = line.match(w.re);
          if (m) w.resolve(m);
          return !m;
        });
      }
    }
  };
  const drained = Promise.all([pump(proc.stderr), pump(proc.stdout)]).then(
    () => {},
    () => {},
  );
  return {
    proc,
    log,
    drained,
    waitFor(re, timeoutMs = 20000) {
      for (const l of log) {
        const m = l.match(re);
        if (m) return Promise.resolve(m);
      }
      return new Promise((res, rej) => {
        const t = setTimeout(() => rej(new Error(`${label}: timed out waiting for ${re}\n--- log tail ---\n${log.slice(-40).join("\n")}`)), timeoutMs);
        waiters.push({
          re,
          resolve: (m) => {
            clearTimeout(t);
            res(m);
          },
        });
        void proc.exited.then((code) => {
          clearTimeout(t);
          rej(new Error(`${label} exited with ${code} while waiting for ${re}\n--- log tail ---\n${log.slice(-40).join("\n")}`));
        });
      });
    },
    async kill(sig = "SIGTERM") {
      if (proc.exitCode === null && !proc.killed) proc.kill(sig);
      const t = setTimeout(() => proc.kill("SIGKILL"), 5000);
      const code = await proc.exited;
      clearTimeout(t);
      return code;
    },
  };
}

export function spawnTool(tool: string, args: string[], env: Record<string, string> = {}, label = tool): Proc {
  // PILOT_BUN_ARGS (e.g. "--cpu-prof") is passed to bun for daemons when profiling.
  const extraBun = tool === "pilot-daemon" && process.env.PILOT_BUN_ARGS ? process.env.PILOT_BUN_ARGS.split(" ") : [];
  return spawnWatched([BUN, ...extraBun, MAIN, tool, ...args], label, env);
}

export interface DaemonHandle {
  name: string;
  socket: string;
  home: string;
  identity: string;
  proc: Proc;
  nodeId: number;
  address: string;
  args: string[];
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
  json: any;
}

export class Cluster {
  readonly dir: string;
  registry = "";
  beacon = "";
  rendezvous: Proc | null = null;
  daemons: DaemonHandle[] = [];

  constructor(prefix = "pilot-") {
    this.dir = mkdtempSync(join(tmpdir(), prefix));
  }

  async startRendezvous(extra: string[] = []): Promise<void> {
    const store = join(this.dir, "registry.db");
    this.rendezvous = spawnTool("rendezvous", ["-registry-addr", "127.0.0.1:0", "-beacon-addr", "127.0.0.1:0", "-store", store, ...extra], {}, "rendezvous");
    const r = await this.rendezvous.waitFor(/registry listening on (\S+)/);
    const b = await this.rendezvous.waitFor(/beacon listening on (\S+)/);
    this.registry = r[1].replace(/^\[?::\]?:/, "127.0.0.1:");
    this.beacon = b[1].replace(/^\[?::\]?:/, "127.0.0.1:");
  }

  async startDaemon(name: string, extra: string[] = []): Promise<DaemonHandle> {
    const home = join(this.dir, name);
    mkdirSync(join(home, ".pilot"), { recursive: true, mode: 0o700 });
    const socket = join(home, "pilot.sock");
    const identity = join(home, ".pilot", "identity.json");
    const args = [
      "-registry", this.registry,
      "-beacon", this.beacon,
      "-listen", "127.0.0.1:0",
      "-socket", socket,
      "-identity", identity,
      "-data-dir", join(home, ".pilot"),
      "-keepalive", "2s",
      ...extra,
    ];
    const proc = spawnTool("pilot-daemon", args, { HOME: home }, name);
    const m = await proc.waitFor(/daemon running"? node_id=(\d+) addr=(\S+)/);
    const h: DaemonHandle = { name, socket, home, identity, proc, nodeId: Number(m[1]), address: m[2], args };
    this.daemons.push(h);
    return h;
  }

  async restartDaemon(h: DaemonHandle): Promise<DaemonHandle> {
    await h.proc.kill("SIGTERM");
    const proc = spawnTool("pilot-daemon", h.args, { HOME: h.home }, h.name);
    const m = await proc.waitFor(/daemon running"? node_id=(\d+) addr=(\S+)/);
    h.proc = proc;
    h.nodeId = Number(m[1]);
    h.address = m[2];
    return h;
  }

  /** Run pilotctl against daemon `h` (socket + HOME set). `--json` is added when json=true. */
  async ctl(h: DaemonHandle | null, args: string[], opts: { json?: boolean; env?: Record<string, string>; stdin?: string } = {}): Promise<RunResult> {
    const full = opts.json === false ? args : ["--json", ...args];
    const env: Record<string, string> = { ...process.env as Record<string, string>, PILOT_REGISTRY: this.registry, ...opts.env };
    if (h) {
      env.PILOT_SOCKET = h.socket;
      env.HOME = h.home;
    }
    const p = Bun.spawn([BUN, MAIN, "pilotctl", ...full], {
      cwd: REPO,
      env,
      stdin: opts.stdin !== undefined ? new TextEncoder().encode(opts.stdin) : "ignore",
      stdout: "pipe",
      stderr: "pipe",
    });
    const [stdout, stderr, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
    let json: any = null;
    if (opts.json !== false) {
      try {
        json = JSON.parse(stdout.trim().split("\n").filter(Boolean).pop() ?? "null");
      } catch {
        json = null;
      }
    }
    return { code, stdout, stderr, json };
  }

  async stop(): Promise<void> {
    await Promise.all(this.daemons.map((d) => d.proc.kill("SIGTERM").catch(() => 0)));
    await this.rendezvous?.kill("SIGTERM").catch(() => 0);
    if (!process.env.PILOT_TEST_KEEP) rmSync(this.dir, { recursive: true, force: true, maxRetries: 5 });
  }
}
