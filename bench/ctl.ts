// Start-up cost of the compiled tools, against two floors built with the same options
// (--compile --bytecode --minify) in the same run:
//   - `bun.compiled`: a bare compiled Bun executable that only prints "hello";
//   - `ipc.info`: a compiled program that only connects to the daemon's socket with Bun.connect,
//     sends one Info frame and prints the reply (the least any `info` client can do).
// Figures:
//   - `pilotctl version` and `pilotctl --json info` (against a running compiled daemon): medians of
//     interleaved runs (hello, version, info, raw info, hello, …), so machine load hits all alike;
//     the "÷ bare hello" figures are medians of the per-round ratios (targets: version ≤ 1.2,
//     info ≤ 1.5), which the shared machine's load disturbs less than a ratio of medians;
//   - `pilot-daemon` from exec to its first log line ("tunnel listening") and to its "daemon
//     registered" line, with a running rendezvous;
//   - the same two ratios in process CPU time (user + system), which load disturbs far less;
//   - `bun src/main.ts pilotctl --json info` for comparison (running from source).
import { linkSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { CMD_INFO, CMD_INFO_OK } from "../src/proto/ipc.ts";
import { build, hostTarget } from "../scripts/build-binaries.ts";
import { spawnWatched } from "../test/helpers/cluster.ts";
import type { Reporter } from "./run.ts";

const ROOT = resolve(import.meta.dir, "..");
const RUNS = Number(process.env.PILOT_BENCH_CTL_RUNS ?? 21);

/** Wall time of one run, and the CPU time (user + system) the process used, both in ms. */
async function timeOnce(cmd: string[], env: Record<string, string | undefined>): Promise<{ wall: number; cpu: number }> {
  const t0 = performance.now();
  const p = Bun.spawn(cmd, { env, stdout: "pipe", stderr: "pipe" });
  await new Response(p.stdout).arrayBuffer();
  const code = await p.exited;
  const wall = performance.now() - t0;
  if (code !== 0) throw new Error(`${cmd.join(" ")} exited ${code}: ${await new Response(p.stderr).text()}`);
  const u = p.resourceUsage()?.cpuTime;
  return { wall, cpu: u ? Number(u.user + u.system) / 1000 : NaN };
}

const median = (xs: number[], digits = 1) => {
  const s = [...xs].sort((a, b) => a - b);
  const f = 10 ** digits;
  return Math.round(s[Math.floor(s.length / 2)]! * f) / f;
};

// The `ipc.info` floor: one IPC frame (u32 big-endian length, then the command byte) each way.
const RAW_INFO = `
const want = (b) => (b.length >= 4 ? 4 + new DataView(b.buffer, b.byteOffset).getUint32(0) : -1);
let buf = new Uint8Array(0);
await new Promise((resolve, reject) => {
  Bun.connect({
    unix: process.env.PILOT_SOCKET,
    socket: {
      open(s) { s.write(new Uint8Array([0, 0, 0, 1, ${CMD_INFO}])); },
      data(s, b) {
        const n = new Uint8Array(buf.length + b.length); n.set(buf); n.set(b, buf.length); buf = n;
        const w = want(buf);
        if (w < 0 || buf.length < w) return;
        if (buf[4] !== ${CMD_INFO_OK}) return reject(new Error("reply is not InfoOK: " + buf[4]));
        console.log(new TextDecoder().decode(buf.subarray(5, w)));
        s.end();
        resolve();
      },
      error(_s, e) { reject(e); },
      connectError(_s, e) { reject(e); },
    },
  }).catch(reject);
});
`;

function compile(dir: string, name: string, source: string): string {
  writeFileSync(join(dir, `${name}.ts`), source);
  const out = join(dir, name);
  const c = Bun.spawnSync([process.execPath, "build", "--compile", "--bytecode", "--format=esm", "--minify",
    "--no-compile-autoload-bunfig", "--no-compile-autoload-dotenv", join(dir, `${name}.ts`), "--outfile", out], { stdout: "pipe", stderr: "pipe" });
  if (c.exitCode !== 0) throw new Error(`compiling ${name}: ${c.stderr.toString()}`);
  return out;
}

export default async function benchCtl(r: Reporter): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "pilot-bench-ctl-"));
  const procs: { kill(): Promise<number> }[] = [];
  try {
    // The release executable for this host, exactly as shipped, under its tool names.
    const [b] = await build({ targets: [hostTarget()], outdir: join(dir, "dist"), minify: true, sourcemap: false, xz: false });
    const bin = join(dir, "bin");
    mkdirSync(bin);
    for (const n of ["pilotctl", "pilot-daemon", "rendezvous"]) linkSync(join(b!.npmDir, "bin", "pilot"), join(bin, n));
    const hello = compile(dir, "hello", 'console.log("hello");\n');
    const rawInfo = compile(dir, "rawinfo", RAW_INFO);

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
    const firstLineMs: number[] = [];
    for (let i = 0; i < 5; i++) {
      mkdirSync(join(dir, `data${i}`));
      const t0 = performance.now();
      const d = spawnWatched(daemonArgs(i), `daemon${i}`, { HOME: dir });
      await d.waitFor(/tunnel listening/);
      firstLineMs.push(performance.now() - t0);
      await d.waitFor(/daemon registered/);
      daemonMs.push(performance.now() - t0);
      if (i < 4) await d.kill();
      else procs.push(d);
    }
    const sock = join(dir, "d4.sock");

    type Run = { wall: number; cpu: number };
    const t = { hello: [] as Run[], version: [] as Run[], info: [] as Run[], raw: [] as Run[], source: [] as Run[] };
    const infoEnv = { ...env, PILOT_SOCKET: sock };
    for (let i = 0; i < RUNS; i++) {
      t.hello.push(await timeOnce([hello], env));
      t.version.push(await timeOnce([join(bin, "pilotctl"), "version"], env));
      t.info.push(await timeOnce([join(bin, "pilotctl"), "--json", "info"], infoEnv));
      t.raw.push(await timeOnce([rawInfo], infoEnv));
      if (i % 3 === 0) t.source.push(await timeOnce([process.execPath, join(ROOT, "src", "main.ts"), "pilotctl", "--json", "info"], infoEnv));
    }
    const wall = (xs: Run[]) => xs.map((x) => x.wall);
    const paired = (xs: Run[], base: Run[], k: keyof Run = "wall") => median(xs.map((x, i) => x[k] / base[i]![k]), 2);
    const cpu = (xs: Run[]) => median(xs.map((x) => x.cpu), 2);
    const note = `compiled, median of ${RUNS} interleaved runs`;
    const vs = { vs: ["bun.compiled"] };
    r.add("bare compiled Bun hello (median wall)", median(wall(t.hello)), "ms", note, { limit: "bun.compiled" });
    r.add("raw IPC Info client, compiled (median wall)", median(wall(t.raw)), "ms", `${note}; Bun.connect + one frame each way`, { limit: "ipc.info", vs: ["bun.compiled"] });
    r.add("pilotctl version (median wall)", median(wall(t.version)), "ms", note, vs);
    r.add("pilotctl --json info, running daemon (median wall)", median(wall(t.info)), "ms", note, { vs: ["bun.compiled", "ipc.info"] });
    r.add("pilotctl version ÷ bare hello", paired(t.version, t.hello), "x", "wall, median of per-round ratios; target ≤ 1.2");
    r.add("pilotctl --json info ÷ bare hello", paired(t.info, t.hello), "x", "wall, median of per-round ratios; target ≤ 1.5");
    r.add("raw IPC Info client ÷ bare hello", paired(t.raw, t.hello), "x", "wall, median of per-round ratios: the floor for any info client");
    // CPU time (user + system) barely depends on how busy the machine is, unlike wall time.
    const cpuNote = `process CPU time; hello ${cpu(t.hello)} ms, version ${cpu(t.version)} ms, info ${cpu(t.info)} ms, raw info ${cpu(t.raw)} ms (medians)`;
    r.add("pilotctl version CPU ÷ bare hello CPU", paired(t.version, t.hello, "cpu"), "x", cpuNote);
    r.add("pilotctl --json info CPU ÷ bare hello CPU", paired(t.info, t.hello, "cpu"), "x", cpuNote);
    r.add("bun src/main.ts pilotctl --json info (median wall)", median(wall(t.source)), "ms", `from source, ${t.source.length} runs`);
    r.add("pilot-daemon exec → first log line (median)", median(firstLineMs), "ms", "compiled, \"tunnel listening\", 5 runs", vs);
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
