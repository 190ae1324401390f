// Startup cost of `pilotctl --json info` (median wall time of 11 real processes), against the fake
// daemon (pure CLI cost) and against a real daemon registered with a real rendezvous.
import { join, resolve } from "node:path";
import { startFakeDaemon } from "../test/ipc-fake-daemon.ts";
import { Cluster } from "../test/helpers/cluster.ts";

const main = join(resolve(import.meta.dir, ".."), "src/main.ts");

async function median(env: Record<string, string>): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < 11; i++) {
    const t0 = performance.now();
    const p = Bun.spawn([process.execPath, main, "pilotctl", "--json", "info"], { env: { ...process.env, ...env }, stdout: "pipe", stderr: "pipe" });
    await new Response(p.stdout).text();
    if ((await p.exited) !== 0) throw new Error("pilotctl info failed");
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  return Math.round(times[5] * 10) / 10;
}

export default async function (r: { add: (name: string, value: number, unit: string, note?: string) => void }): Promise<void> {
  const fd = await startFakeDaemon();
  try {
    r.add("pilotctl --json info (median wall)", await median({ PILOT_SOCKET: fd.path }), "ms", "bun src/main.ts, fake daemon, 11 runs");
  } finally {
    await fd.close();
  }
  const cl = new Cluster("pilot-bench-ctl-");
  try {
    await cl.startRendezvous();
    const d = await cl.startDaemon("a");
    r.add("pilotctl --json info, real daemon (median wall)", await median({ PILOT_SOCKET: d.socket, HOME: d.home }), "ms", "bun src/main.ts, real daemon, 11 runs");
  } finally {
    await cl.stop();
  }
}
