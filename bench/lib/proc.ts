// Small helpers shared by bench/raw.ts and bench/system.ts.
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import type { Subprocess } from "bun";

export const BENCH_DIR = resolve(import.meta.dir, "..");
export const RAW_PEER = join(BENCH_DIR, "lib/raw-peer.ts");

/** A child process whose stdout is read line by line. */
export class LineProc {
  readonly proc: Subprocess<"ignore", "pipe", "pipe">;
  private lines: string[] = [];
  private waiters: ((l: string) => void)[] = [];
  private stderr = "";
  constructor(argv: string[]) {
    this.proc = Bun.spawn(argv, { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
    void this.pump();
    void new Response(this.proc.stderr).text().then((t) => (this.stderr = t));
  }
  private async pump(): Promise<void> {
    const dec = new TextDecoder();
    let part = "";
    for await (const ch of this.proc.stdout) {
      part += dec.decode(ch, { stream: true });
      let i: number;
      while ((i = part.indexOf("\n")) >= 0) {
        const l = part.slice(0, i);
        part = part.slice(i + 1);
        const w = this.waiters.shift();
        if (w) w(l);
        else this.lines.push(l);
      }
    }
  }
  /** Next stdout line (rejects after timeoutMs or when the process exits first). */
  line(timeoutMs = 20000): Promise<string> {
    const l = this.lines.shift();
    if (l !== undefined) return Promise.resolve(l);
    return new Promise((res, rej) => {
      const t = setTimeout(() => rej(new Error(`child timed out: ${this.stderr}`)), timeoutMs);
      const w = (x: string) => {
        clearTimeout(t);
        res(x);
      };
      this.waiters.push(w);
      void this.proc.exited.then(async (code) => {
        await Bun.sleep(50);
        if (this.waiters.includes(w)) {
          clearTimeout(t);
          rej(new Error(`child exited ${code} before printing: ${this.stderr}`));
        }
      });
    });
  }
  kill(): void {
    if (this.proc.exitCode === null) this.proc.kill();
  }
}

export function bunPeer(...args: string[]): LineProc {
  return new LineProc([process.execPath, RAW_PEER, ...args]);
}

/** Resident set size of a process in MiB (Linux /proc), NaN elsewhere. */
export function rssMiB(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+)\s+kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) / 1024 : NaN;
  } catch {
    return NaN;
  }
}

export function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
}

/** CPU time (user + system) a process has used so far, in seconds (Linux /proc; NaN elsewhere). */
export function cpuSeconds(pid: number): number {
  const t = cpuTimes(pid);
  return t.user + t.sys;
}

/** User and system (kernel) CPU seconds of a process so far (Linux /proc; NaN elsewhere). */
export function cpuTimes(pid: number): { user: number; sys: number } {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = s.slice(s.lastIndexOf(")") + 2).split(" "); // fields from #3 (state) on
    return { user: Number(f[11]) / 100, sys: Number(f[12]) / 100 }; // clock ticks (USER_HZ = 100)
  } catch {
    return { user: NaN, sys: NaN };
  }
}

/** Measures CPU use of processes over an interval: `stop()` returns per-process % of one core. */
export function cpuMeter(pids: number[]) {
  const t0 = performance.now();
  const c0 = pids.map(cpuTimes);
  let sysShare: number[] = [];
  return {
    stop: () => {
      const el = (performance.now() - t0) / 1000;
      const c1 = pids.map(cpuTimes);
      sysShare = c1.map((c, i) => c.sys - c0[i].sys);
      return c1.map((c, i) => (100 * (c.user + c.sys - c0[i].user - c0[i].sys)) / el);
    },
    /** After stop(): kernel CPU seconds per pid during the interval. */
    sys: () => sysShare,
  };
}

/** System-wide UDP receive-buffer drops so far (/proc/net/snmp RcvbufErrors; NaN elsewhere). */
export function udpRcvbufErrors(): number {
  try {
    const l = readFileSync("/proc/net/snmp", "utf8").split("\n").filter((x) => x.startsWith("Udp:"));
    const h = l[0].split(/\s+/);
    return Number(l[1].split(/\s+/)[h.indexOf("RcvbufErrors")]);
  } catch {
    return NaN;
  }
}

/** VmRSS split into anonymous memory (heap, buffers) and file-backed pages (the runtime's code), MiB. */
export function rssSplitMiB(pid: number): { anon: number; file: number } {
  try {
    const t = readFileSync(`/proc/${pid}/smaps_rollup`, "utf8");
    const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, "m").exec(t)?.[1] ?? NaN);
    const rss = kb("Rss");
    const anon = kb("Anonymous");
    return { anon: anon / 1024, file: (rss - anon) / 1024 };
  } catch {
    return { anon: NaN, file: NaN };
  }
}
