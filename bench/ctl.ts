// Start-up cost of the compiled tools, against the floor: a bare compiled Bun executable that only
// prints "hello", built with the same options (--compile --bytecode --minify) in the same run.
//   - `pilotctl version` and `pilotctl --json info` (against a running compiled daemon): medians of
//     interleaved runs (hello, version, info, hello, …), so machine load hits all three alike;
//   - `pilot-daemon` from exec to its "daemon registered" log line with a running rendezvous;
//   - `bun src/main.ts pilotctl --json info` for comparison (running from source).
// Ratios to the bare executable are reported as "x" figures (targets: version ≤ 1.2, info ≤ 1.5), and
// the bare figure is the raw limit `bun.compiled` that the runner divides the others by.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync, linkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { build, hostTarget } from "../scripts/build-binaries.ts";
import { spawnWatched } from "../test/helpers/cluster.ts";
import type { Reporter } from "./run.ts";

const ROOT = resolve(import.meta.dir, "..");
const RUNS = Number(process.env.PILOT_BENCH_CTL_RUNS ?? 21);

async function timeOnce(cmd: string[], env: Record<string, string | undefined>): Promise<number> {
  const t0 = performance.now();
  const p = Bun.spawn(cmd, { env, stdout: "pipe", stderr: "pipe" });
  await new Response(p.stdout).arrayBuffer();
  const code = await p.exited;
  const ms = performance.now() - t0;
  if (code !== 0) throw new Error(`${cmd.join(" ")} exited ${code}: ${await new Response(p.stderr).text()}`);
  return ms;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return Math.round(s[Math.floor(s.length / 2)]! * 10) / 10;
};

export default async function benchCtl(r: Reporter): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "pilot-bench-ctl-"));
  const procs: { kill(): Promise<number> }[] = [];
  try {
    // The release executable for this host, exactly as shipped, under its tool names.
    const [b] = await build({ targets: [hostTarget()], outdir: join(dir, "dist"), minify: true, sourcemap: false, xz: false });
    const bin = join(dir, "bin");
    mkdirSync(bin);
    for (const n of ["pilotctl", "pilot-daemon", "rendezvous"]) linkSync(join(b!.npmDir, "bin", "pilot"), join(bin, n));
    // The floor: a compiled Bun program that does nothing but print.
    writeFileSync(join(dir, "hello.ts"), 'console.log("hello");\n');
    const hello = join(dir, "hello");
    const c = Bun.spawnSync([process.execPath, "build", "--compile", "--bytecode", "--format=esm", "--minify",
      "--no-compile-autoload-bunfig", "--no-compile-autoload-dotenv", join(dir, "hello.ts"), "--outfile", hello], { stdout: "pipe", stderr: "pipe" });
    if (c.exitCode !== 0) throw new Error(`compiling hello: ${c.stderr.toString()}`);

    const env = { ...process.env, PILOT_TOOL: undefined, HOME: dir };
    const rv = spawnWatched([join(bin, "rendezvous"), "-registry-addr", "127.0.0.1:0", "-beacon-addr", "127.0.0.1:0",
      "-store", join(dir, "reg.db")], "rendezvous", { HOME: dir });
    procs.push(rv);
    const reg = (await rv.waitFor(/registry listening on (\S+)/))[1]!;
    const bea = (await rv.waitFor(/beacon listening on (\S+)/))[1]!;
    const daemonArgs = (i: number) => [join(bin, "pilot-daemon"), "-registry", reg, "-beacon", bea, "-listen", "127.0.0.1:0",
      "-socket", join(dir, `d${i}.sock`), "-identity", join(dir, `id${i}.json`), "-data-dir", join(dir, `data${i}`)];

    // pilot-daemon: exec → "daemon registered" (a new identity each run, as on first start).
    const daemonMs: number[] = [];
    for (let i = 0; i < 5; i++) {
      mkdirSync(join(dir, `data${i}`));
      const t0 = performance.now();
      const d = spawnWatched(daemonArgs(i), `daemon${i}`, { HOME: dir });
      await d.waitFor(/daemon registered/);
      daemonMs.push(performance.now() - t0);
      if (i < 4) await d.kill();
      else procs.push(d);
    }
    const sock = join(dir, "d4.sock");

    const t = { hello: [] as number[], version: [] as number[], info: [] as number[], source: [] as number[] };
    const infoEnv = { ...env, PILOT_SOCKET: sock };
    for (let i = 0; i < RUNS; i++) {
      t.hello.push(await timeOnce([hello], env));
      t.version.push(await timeOnce([join(bin, "pilotctl"), "version"], env));
      t.info.push(await timeOnce([join(bin, "pilotctl"), "--json", "info"], infoEnv));
      if (i % 3 === 0) t.source.push(await timeOnce([process.execPath, join(ROOT, "src", "main.ts"), "pilotctl", "--json", "info"], infoEnv));
    }
    const h = median(t.hello);
    const note = `compiled, median of ${RUNS} interleaved runs`;
    const vs = { vs: ["bun.compiled"] };
    r.add("bare compiled Bun hello (median wall)", h, "ms", note, { limit: "bun.compiled" });
    r.add("pilotctl version (median wall)", median(t.version), "ms", note, vs);
    r.add("pilotctl --json info, running daemon (median wall)", median(t.info), "ms", note, vs);
    r.add("pilotctl version ÷ bare hello", Math.round((median(t.version) / h) * 100) / 100, "x", "target ≤ 1.2");
    r.add("pilotctl --json info ÷ bare hello", Math.round((median(t.info) / h) * 100) / 100, "x", "target ≤ 1.5");
    r.add("bun src/main.ts pilotctl --json info (median wall)", median(t.source), "ms", `from source, ${t.source.length} runs`);
    r.add("pilot-daemon exec → registered (median)", median(daemonMs), "ms", "compiled, real rendezvous on loopback, new identity, 5 runs", vs);
  } finally {
    for (const p of procs.reverse()) await p.kill().catch(() => 0);
    rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.main) {
  await benchCtl({
    add: (name, value, unit, note) => console.log(`${name.padEnd(52)} ${String(value).padStart(8)} ${unit}  ${note ?? ""}`),
  });
}
