// Stream transfers through real daemons, shared by bench/system.ts and bench/stream.ts:
// app → Unix socket → daemon → UDP tunnel → daemon → Unix socket → app, the bench process being
// both applications (IPC driver, src/ctl/driver.ts).
import type { Driver, DriverConn } from "../../src/client/driver.ts";
import { parseAddr } from "../../src/proto/addr.ts";
import type { DaemonHandle } from "../../test/helpers/cluster.ts";
import { cpuMeter, rssMiB, udpRcvbufErrors } from "./proc.ts";

export const MiB = 1 << 20;
export const MB = 1e6;

export function withTimeout<T>(p: Promise<T>, ms: number, what: () => string): Promise<T> {
  let t: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    p.finally(() => clearTimeout(t)),
    new Promise<never>((_, rej) => (t = setTimeout(() => rej(new Error(`timed out: ${what()}`)), ms))),
  ]);
}

/** Samples the RSS of some processes every 50 ms; `stop()` returns the maximum per process (MiB). */
export function rssSampler(pids: number[]) {
  const max = pids.map(() => 0);
  const t = setInterval(() => pids.forEach((p, i) => (max[i] = Math.max(max[i], rssMiB(p) || 0))), 50);
  return { stop: () => (clearInterval(t), max) };
}

let nextPort = 2000;
/** A fresh virtual port for a listener. */
export function freshPort(): number {
  return nextPort++;
}

export interface StreamRun {
  mbps: number;
  /** max VmRSS per pid during the transfer (MiB) */
  rss: number[];
  /** % of one core per pid (the bench process appended last) */
  cpu: number[];
  /** kernel CPU seconds per pid (same order as cpu) */
  sys: number[];
  /** seconds from the first write to the last byte */
  secs: number;
  drops: number;
}

/**
 * `n` parallel streams from `src` to `dst` (an IPC listener on a fresh port), `bytes` in total,
 * written in 1 MiB driver writes. Returns MB/s from the first write to the last byte received.
 * `pids` are sampled for RSS and CPU (the bench process is added to the CPU figures last).
 */
export async function streams(src: Driver, dst: Driver, to: DaemonHandle, n: number, bytes: number, pids: number[]): Promise<StreamRun> {
  const port = freshPort();
  const l = await dst.listen(port);
  const per = Math.floor(bytes / n);
  const dials = Array.from({ length: n }, () => src.dial(parseAddr(to.address), port, { timeoutMs: 30000 }));
  const servers: DriverConn[] = [];
  for (let i = 0; i < n; i++) servers.push(await l.accept({ timeoutMs: 30000 }));
  const clients = await Promise.all(dials);
  let got = 0;
  const done = Promise.all(
    servers.map(
      (s) =>
        new Promise<void>((res) => {
          let mine = 0;
          s.onData = (c) => {
            mine += c.length;
            got += c.length;
            if (mine >= per) res();
          };
        }),
    ),
  );
  const block = new Uint8Array(MiB).fill(0xa5);
  const sampler = rssSampler(pids);
  const cpu = cpuMeter([...pids, process.pid]);
  const drops0 = udpRcvbufErrors();
  const t0 = performance.now();
  const writers = clients.map(async (c) => {
    for (let s = 0; s < per; s += block.length) await c.write(s + block.length <= per ? block : block.subarray(0, per - s));
  });
  await withTimeout(Promise.all([done, ...writers]), 90000 + bytes / 100000, () => `stream transfer stalled at ${got} of ${per * n} bytes`);
  const ms = performance.now() - t0;
  const rss = sampler.stop();
  const cpuPct = cpu.stop();
  for (const c of clients) c.close();
  for (const s of servers) s.close();
  l.close();
  return { mbps: (per * n) / MB / (ms / 1000), rss, cpu: cpuPct, sys: cpu.sys(), secs: ms / 1000, drops: udpRcvbufErrors() - drops0 };
}

/** ms of CPU per MB delivered for pid index `i` of a run. */
export const cpuCost = (x: StreamRun, i: number): number => (x.cpu[i] * 10) / x.mbps;
/** Share of pid `i`'s CPU that was kernel time (system calls, and on loopback the receive path). */
export const sysShare = (runs: StreamRun[], i: number): number => {
  const sys = runs.reduce((a, x) => a + x.sys[i], 0);
  const all = runs.reduce((a, x) => a + (x.cpu[i] / 100) * x.secs, 0);
  return all > 0 ? sys / all : NaN;
};
