// Startup cost of `pilotctl --json info` against a fake daemon (median wall time of real processes).
import { join, resolve } from "node:path";
import { startFakeDaemon } from "../test/ipc-fake-daemon.ts";

export default async function (r: { add: (name: string, value: number, unit: string, note?: string) => void }): Promise<void> {
  const fd = await startFakeDaemon();
  const main = join(resolve(import.meta.dir, ".."), "src/main.ts");
  const times: number[] = [];
  try {
    for (let i = 0; i < 11; i++) {
      const t0 = performance.now();
      const p = Bun.spawn([process.execPath, main, "pilotctl", "--json", "info"], { env: { ...process.env, PILOT_SOCKET: fd.path }, stdout: "pipe", stderr: "pipe" });
      await new Response(p.stdout).text();
      if ((await p.exited) !== 0) throw new Error("pilotctl info failed");
      times.push(performance.now() - t0);
    }
  } finally {
    await fd.close();
  }
  times.sort((a, b) => a - b);
  r.add("pilotctl --json info (median wall)", Math.round(times[5] * 10) / 10, "ms", "bun src/main.ts, fake daemon, 11 runs");
}
