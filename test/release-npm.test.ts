// The npm release channel end to end, on loopback only: the host's platform package and the main
// package are built and packed (scripts/build-binaries.ts, scripts/release-npm.ts), served by a
// loopback stand-in for the npm registry, then
//   - install.sh (default route: registry metadata → tarball → SHA-512 integrity) installs into a
//     temp HOME, and the installed pilotctl talks to the installed daemon and rendezvous;
//   - a tampered tarball (integrity mismatch) installs nothing;
//   - `npm install <main.tgz> <platform.tgz>` in a fresh project gives a working `npx pilotctl`.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { build, hostTarget, npmCpu, npmPackageName, TARGETS, type BuiltArchive } from "../scripts/build-binaries.ts";
import { checkMain, checkPlatform, npmPack, type Packed } from "../scripts/release-npm.ts";
import { FakeRegistry } from "./helpers/npm-registry.ts";
import { until } from "./helpers/until.ts";

const ROOT = join(import.meta.dir, "..");
const INSTALL_SH = join(ROOT, "install.sh");
const work = mkdtempSync(join(tmpdir(), "pilot-release-test-"));
const SYS_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const host = hostTarget();
const hostPkg = npmPackageName(host);
const version = (JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { version: string }).version;

let built: BuiltArchive;
let main: Packed;
let platform: Packed;
// The main package's own dependencies come from the registry npm is configured with.
const UPSTREAM = Bun.spawnSync(["npm", "config", "get", "registry"]).stdout.toString().trim() || "https://registry.npmjs.org/";
const good = new FakeRegistry(UPSTREAM);
const tampered = new FakeRegistry();

async function run(cmd: string[], opts: { env?: Record<string, string | undefined>; cwd?: string } = {}) {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries({ ...process.env, PILOT_TOOL: undefined, ...opts.env })) if (v !== undefined) env[k] = v;
  const p = Bun.spawn(cmd, { env, cwd: opts.cwd, stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { code, out, err };
}

function files(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true }).map(String).sort();
}

beforeAll(async () => {
  [built] = await build({ targets: [host], outdir: join(work, "dist"), minify: true, sourcemap: false, xz: false });
  const packed = join(work, "packed");
  platform = await npmPack(built!.npmDir, packed);
  main = await npmPack(ROOT, packed);
  for (const r of [good, tampered]) r.start();
  await good.addTarball(platform.file);
  await tampered.addTarball(platform.file, { tamper: true });
  // The other platforms are listed (as once published) but must never be downloaded here.
  for (const t of TARGETS.filter((x) => x.name !== host.name)) {
    good.add({
      name: npmPackageName(t), version, tarball: null,
      manifest: { name: npmPackageName(t), version, os: [t.os], cpu: [npmCpu(t)] },
    });
  }
  // The main package's runtime dependencies, packed from this checkout's node_modules.
  const seen = new Set<string>();
  const addDep = async (name: string) => {
    if (seen.has(name)) return;
    seen.add(name);
    const dir = join(ROOT, "node_modules", name);
    const p = await npmPack(dir, join(work, "deps"));
    await good.addTarball(p.file);
    const pj = JSON.parse(readFileSync(join(dir, "package.json"), "utf8")) as { dependencies?: Record<string, string> };
    for (const d of Object.keys(pj.dependencies ?? {})) await addDep(d);
  };
  const rootPj = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { dependencies?: Record<string, string> };
  for (const d of Object.keys(rootPj.dependencies ?? {})) await addDep(d);
}, 180_000);

afterAll(() => {
  good.stop();
  tampered.stop();
  rmSync(work, { recursive: true, force: true, maxRetries: 5 });
});

describe("packages", () => {
  test("platform package: os/cpu, README, LICENSE, executable bin/pilot; passes the release checks", () => {
    expect(platform.name).toBe(hostPkg);
    expect(platform.version).toBe(version);
    expect(platform.files.map((f) => f.path).sort()).toEqual(["LICENSE", "README.md", "bin/pilot", "package.json"]);
    expect(checkPlatform(platform, version)).toEqual([]);
    const pj = JSON.parse(readFileSync(join(built.npmDir, "package.json"), "utf8"));
    expect(pj.os).toEqual([host.os]);
    expect(pj.cpu).toEqual([npmCpu(host)]);
    console.log(`platform package ${platform.name}: ${(platform.size / 1048576).toFixed(1)} MiB packed, ` +
      `${(platform.unpackedSize / 1048576).toFixed(1)} MiB unpacked; main package ${(main.size / 1024).toFixed(0)} KiB`);
  });

  test("main package: bin launchers, optionalDependencies on all four platforms, passes the release checks", () => {
    const pj = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8"));
    expect(checkMain(main, pj)).toEqual([]);
    expect(Object.keys(pj.optionalDependencies).sort()).toEqual(TARGETS.map(npmPackageName).sort());
    // A broken manifest is reported, not packed silently.
    const broken = { ...pj, bin: { pilotctl: "npm/bin/nope.cjs" }, optionalDependencies: {} };
    const problems = checkMain(main, broken);
    expect(problems.some((p) => p.includes("bin pilotctl"))).toBe(true);
    expect(problems.some((p) => p.includes("no bin entry rendezvous"))).toBe(true);
    expect(problems.some((p) => p.includes(`optionalDependencies.${hostPkg}`))).toBe(true);
  });
});

describe("install.sh from the npm registry (default route)", () => {
  const home = join(work, "home");
  const units = join(work, "units");
  const env = (registry: FakeRegistry, extra: Record<string, string> = {}) => ({
    HOME: home, PATH: SYS_PATH, SHELL: "/bin/sh", PILOT_NPM_REGISTRY: registry.base, PILOT_LINK_DIR: "",
    PILOT_SYSTEMD_DIR: units, PILOT_NO_SERVICE: "1", PILOT_SOCKET: join(work, "inst.sock"), PILOT_HOSTNAME: "agent-npm",
    PILOT_RELEASE_URL: undefined, PILOT_VERSION: undefined, ...extra,
  });

  test("a tampered tarball (integrity mismatch) installs nothing", async () => {
    mkdirSync(home, { recursive: true });
    const r = await run(["sh", INSTALL_SH], { env: env(tampered) });
    expect(r.code).toBe(1);
    expect(r.err).toContain(`Error: integrity mismatch for ${hostPkg}@${version}`);
    expect(r.err).toContain("nothing was installed");
    expect(tampered.requests).toContain(`/${hostPkg}/latest`);
    expect(files(home)).toEqual([]);
    expect(files(units)).toEqual([]);
  }, 60_000);

  test("an unknown PILOT_VERSION is a clear error and installs nothing", async () => {
    const r = await run(["sh", INSTALL_SH], { env: env(good, { PILOT_VERSION: "9.9.9" }) });
    expect(r.code).toBe(1);
    expect(r.err).toContain(`no ${hostPkg}@9.9.9 on the registry`);
    expect(files(home)).toEqual([]);
  }, 60_000);

  test("installs the verified platform executable (PILOT_VERSION pins the version)", async () => {
    const r = await run(["sh", INSTALL_SH], { env: env(good, { PILOT_VERSION: version }) });
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
    expect(r.out).toContain(`Integrity OK (sha512, ${hostPkg}@${version})`);
    expect(r.out).toContain("pilotctl daemon start --hostname agent-npm\n");
    expect(good.requests).toContain(`/${hostPkg}/${version}`);
    expect(good.requests.filter((p) => p.startsWith("/-/tarballs/"))).toEqual([`/-/tarballs/${hostPkg}-${version}.tgz`]);
    const bin = join(home, ".pilot", "bin");
    expect(readdirSync(bin).sort()).toEqual(["pilot-daemon", "pilot-gateway", "pilotctl", "rendezvous"]);
    const v = await run([join(bin, "pilotctl"), "version"]);
    expect(v.code).toBe(0);
    expect(v.out).toContain(version);
    expect(readFileSync(join(units, "pilot-daemon.service"), "utf8")).toContain(`ExecStart=${bin}/pilot-daemon`);
  }, 60_000);

  test("the installed pilotctl talks to the installed pilot-daemon and rendezvous", async () => {
    const bin = join(home, ".pilot", "bin");
    const dir = join(work, "run");
    mkdirSync(dir, { recursive: true });
    const rv = Bun.spawn([join(bin, "rendezvous"), "-registry-addr", "127.0.0.1:0", "-beacon-addr", "127.0.0.1:0", "-store", join(dir, "reg.db")],
      { stdout: "pipe", stderr: "pipe" });
    let daemon: ReturnType<typeof Bun.spawn> | null = null;
    try {
      const reader = rv.stdout.getReader();
      let text = "";
      while (!/beacon listening on \S+/.test(text)) {
        const { value, done } = await reader.read();
        if (done) throw new Error(`rendezvous exited: ${text}`);
        text += new TextDecoder().decode(value);
      }
      const reg = /registry listening on (\S+)/.exec(text)![1]!;
      const bea = /beacon listening on (\S+)/.exec(text)![1]!;
      const sock = join(dir, "d.sock");
      daemon = Bun.spawn([join(bin, "pilot-daemon"), "-registry", reg, "-beacon", bea, "-listen", "127.0.0.1:0", "-socket", sock,
        "-identity", join(dir, "identity.json"), "-data-dir", dir], { stdout: "pipe", stderr: "pipe" });
      const info = await until(async () => {
        const r = await run([join(bin, "pilotctl"), "--json", "info"], { env: { PILOT_SOCKET: sock, HOME: home } });
        if (r.code !== 0) throw new Error(r.err || r.out);
        return JSON.parse(r.out);
      }, "pilotctl --json info answers", 20_000);
      expect(info.status).toBe("ok");
      expect(info.data.node_id).toBe(1);
    } finally {
      daemon?.kill();
      rv.kill();
      await daemon?.exited;
      await rv.exited;
    }
  }, 60_000);

  test("uninstall removes it", async () => {
    const r = await run(["sh", INSTALL_SH, "uninstall"], { env: env(good) });
    expect(r.code).toBe(0);
    expect(files(home)).toEqual([]);
  }, 60_000);
});

describe("npm install of the packed packages", () => {
  const proj = join(work, "proj");
  const npmEnv = () => ({
    npm_config_registry: good.base + "/", npm_config_cache: join(work, "npm-cache"), npm_config_audit: "false",
    npm_config_fund: "false", npm_config_update_notifier: "false", HOME: join(work, "npm-home"),
  });

  test("`npm install <main.tgz> <platform.tgz>` then `npx pilotctl version`", async () => {
    mkdirSync(proj, { recursive: true });
    mkdirSync(join(work, "npm-home"), { recursive: true });
    writeFileSync(join(proj, "package.json"), JSON.stringify({ name: "fresh", version: "1.0.0", private: true }));
    const i = await run(["npm", "install", main.file, platform.file], { cwd: proj, env: npmEnv() });
    expect(i.err + i.out).not.toContain("ERR");
    expect(i.code).toBe(0);
    expect(existsSync(join(proj, "node_modules", "pilot-ts", "npm", "launcher.cjs"))).toBe(true);
    expect(existsSync(join(proj, "node_modules", hostPkg, "bin", "pilot"))).toBe(true);
    // The other platforms' packages were skipped by os/cpu: never downloaded, never installed.
    expect(good.requests.filter((p) => p.startsWith("/-/tarballs/pilot-ts-"))).toEqual([`/-/tarballs/${hostPkg}-${version}.tgz`]);
    for (const t of TARGETS.filter((x) => x.name !== host.name)) expect(existsSync(join(proj, "node_modules", npmPackageName(t)))).toBe(false);
    const v = await run(["npx", "--no-install", "pilotctl", "version"], { cwd: proj, env: { ...npmEnv(), PATH: SYS_PATH } });
    expect(v.err).toBe("");
    expect(v.code).toBe(0);
    expect(v.out).toContain(version);
  }, 180_000);

  test("the launcher forwards arguments and the exit code, and runs every tool", async () => {
    const b = join(proj, "node_modules", ".bin");
    const bad = await run([join(b, "pilotctl"), "no-such-command-xyz"], { cwd: proj, env: { PATH: SYS_PATH } });
    expect(bad.code).toBe(2);
    expect(bad.err).toContain("no-such-command-xyz");
    for (const [bin, tool] of [["pilot-daemon", "pilot-daemon"], ["pilot-gateway", "pilot-gateway"], ["rendezvous", "rendezvous"]]) {
      const r = await run([join(b, bin!), "-h"], { cwd: proj, env: { PATH: SYS_PATH, PILOT_DEBUG_DISPATCH: "1" } });
      expect(r.err).toContain(`pilot: dispatch tool=${tool} via=argv0`);
    }
  }, 60_000);

  test("a signal to the launcher reaches the executable, and the launcher exits with it", async () => {
    const b = join(proj, "node_modules", ".bin");
    const p = Bun.spawn([join(b, "rendezvous"), "-registry-addr", "127.0.0.1:0", "-beacon-addr", "127.0.0.1:0", "-store", join(work, "sig.db")],
      { cwd: proj, env: { PATH: SYS_PATH, PILOT_LAUNCHER_SPAWN: "1" }, stdout: "pipe", stderr: "pipe" });
    const reader = p.stdout.getReader();
    let text = "";
    while (!/beacon listening on \S+/.test(text)) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`rendezvous exited: ${text}`);
      text += new TextDecoder().decode(value);
    }
    const port = Number(/registry listening on \S+:(\d+)/.exec(text)![1]);
    p.kill("SIGTERM");
    const code = await p.exited;
    // Either the child handled SIGTERM and exited normally, or the launcher re-raised the signal.
    expect(code === 0 || p.signalCode === "SIGTERM").toBe(true);
    // The executable itself is gone (not orphaned): its registry port refuses connections.
    await until(async () => {
      try {
        const s = await Bun.connect({ hostname: "127.0.0.1", port, socket: { data() {} } });
        s.end();
        return false;
      } catch {
        return true;
      }
    }, "the rendezvous port is closed", 10_000);
  }, 60_000);

  test("without the platform package: a clear error with a code and a hint", async () => {
    rmSync(join(proj, "node_modules", hostPkg), { recursive: true, force: true, maxRetries: 5 });
    const r = await run([join(proj, "node_modules", ".bin", "pilotctl"), "version"], { cwd: proj, env: { PATH: SYS_PATH } });
    expect(r.code).toBe(1);
    expect(r.err).toContain(`pilot-ts: error [platform_package_missing]: the package ${hostPkg}`);
    expect(r.err).toContain("hint:");
  }, 60_000);
});
