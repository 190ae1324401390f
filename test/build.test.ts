// Release build (scripts/build-binaries.ts) and executable-name dispatch (src/main.ts pickTool).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { copyFileSync, linkSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pickTool } from "../src/main.ts";
import {
  assetName, build, CHECKSUM_FILE, hostTarget, MEMBER_NAMES, npmPackageName, parseArgs, TARGETS, xzAssetName, type BuiltArchive,
} from "../scripts/build-binaries.ts";

const BUN = process.execPath;
const work = mkdtempSync(join(tmpdir(), "pilot-build-test-"));
afterAll(() => rmSync(work, { recursive: true, force: true, maxRetries: 5 }));

function run(cmd: string[], opts: { env?: Record<string, string | undefined>; argv0?: string; cwd?: string } = {}) {
  const env = { ...process.env, PILOT_TOOL: undefined, ...opts.env };
  // Every invocation below must exit by itself (-h / bad input); the timeout only guards against a
  // tool that starts serving instead.
  const p = Bun.spawnSync(cmd, { env, cwd: opts.cwd, stdout: "pipe", stderr: "pipe", argv0: opts.argv0, timeout: 20_000 });
  return { code: p.exitCode, out: p.stdout.toString(), err: p.stderr.toString() };
}

describe("pickTool", () => {
  const src = ["/usr/bin/bun", "/work/main/src/main.ts"];
  test("argv0 basename decides (link or copy name, path or bare)", () => {
    expect(pickTool([...src, "info"], "/home/u/.pilot/bin/pilotctl", "/x/bun", undefined)).toEqual({ tool: "pilotctl", args: ["info"] });
    expect(pickTool(["bun", "/$bunfs/root/pilot", "-h"], "rendezvous", "/opt/pilot", undefined).tool).toBe("rendezvous");
    expect(pickTool(["bun", "/$bunfs/root/pilot"], "./pilot-gateway", "/opt/pilot", undefined).tool).toBe("pilot-gateway");
  }, 60_000);
  test("reference release names daemon/gateway are aliases for the executable only", () => {
    expect(pickTool(["bun", "/$bunfs/root/pilot"], "./daemon", "/t/daemon", undefined).tool).toBe("pilot-daemon");
    expect(pickTool(["bun", "/$bunfs/root/pilot"], "gateway", "/t/gateway", undefined).tool).toBe("pilot-gateway");
    // `bun src/main.ts daemon …` is not a tool selection (it would collide with `pilotctl daemon`).
    expect(pickTool([...src, "daemon", "start"], "bun", "/x/bun", undefined)).toEqual({ tool: null, args: ["daemon", "start"] });
  }, 60_000);
  test("execPath catches a copy started under an unrelated argv0", () => {
    expect(pickTool(["bun", "/$bunfs/root/pilot", "x"], "supervisor", "/srv/pilot-daemon", undefined)).toEqual({ tool: "pilot-daemon", args: ["x"] });
  }, 60_000);
  test("argv[1] catches a shebang script linked under a tool name (npm bin)", () => {
    expect(pickTool(["/x/bun", "/usr/local/bin/pilotctl", "info"], "bun", "/x/bun", undefined)).toEqual({ tool: "pilotctl", args: ["info"] });
  }, 60_000);
  test("first argument selects the tool when run from source", () => {
    expect(pickTool([...src, "rendezvous", "-registry-addr", ":9"], "bun", "/x/bun", undefined))
      .toEqual({ tool: "rendezvous", args: ["-registry-addr", ":9"] });
    expect(pickTool([...src], "bun", "/x/bun", undefined)).toEqual({ tool: null, args: [] });
    expect(pickTool([...src, "bogus"], "bun", "/x/bun", undefined).tool).toBeNull();
  }, 60_000);
  test("PILOT_TOOL wins; an invalid PILOT_TOOL is ignored", () => {
    expect(pickTool([...src, "a"], "pilotctl", "/x/bun", "rendezvous")).toEqual({ tool: "rendezvous", args: ["a"] });
    expect(pickTool([...src, "a"], "pilotctl", "/x/bun", "nope").tool).toBe("pilotctl");
  }, 60_000);
});

describe("compiled executable self-view (what pickTool relies on)", () => {
  let probe = "";
  beforeAll(() => {
    const dir = join(work, "probe");
    const srcFile = join(work, "probe.ts");
    Bun.write(srcFile, "console.log(JSON.stringify({argv: process.argv, argv0: process.argv0, execPath: process.execPath}));\n");
    const r = run([BUN, "build", "--compile", srcFile, "--outfile", join(dir, "pilot")]);
    expect(r.code).toBe(0);
    probe = join(dir, "pilot");
    symlinkSync(probe, join(dir, "sym-pilotctl"));
    copyFileSync(probe, join(dir, "copy-pilotctl"));
    Bun.spawnSync(["chmod", "755", join(dir, "copy-pilotctl")]);
    linkSync(probe, join(dir, "hard-pilotctl"));
  }, 60_000);
  const view = (cmd: string[], opts: { env?: Record<string, string>; argv0?: string; cwd?: string } = {}) => {
    const r = run(cmd, opts);
    expect(r.code).toBe(0);
    return JSON.parse(r.out) as { argv: string[]; argv0: string; execPath: string };
  };
  test("argv = [bun, /$bunfs/root/<outfile name>, ...args]", () => {
    const v = view([probe, "a", "b"]);
    expect(v.argv).toEqual(["bun", "/$bunfs/root/pilot", "a", "b"]);
    expect(v.execPath).toBe(probe);
  }, 60_000);
  test("symlink: argv0 is the link name, execPath is the target", () => {
    const dir = join(work, "probe");
    const v = view(["./sym-pilotctl", "x"], { cwd: dir });
    expect(v.argv0).toBe("./sym-pilotctl");
    expect(v.execPath).toBe(probe);
    expect(v.argv.slice(2)).toEqual(["x"]);
    // Found through PATH: argv0 is the bare name.
    const p = view(["sym-pilotctl"], { env: { PATH: `${dir}:${process.env.PATH}` } });
    expect(p.argv0).toBe("sym-pilotctl");
  }, 60_000);
  test("copy and hard link: argv0 and execPath are the copy's own name", () => {
    const dir = join(work, "probe");
    for (const n of ["copy-pilotctl", "hard-pilotctl"]) {
      const v = view([join(dir, n)]);
      expect(v.argv0).toBe(join(dir, n));
      expect(v.execPath).toBe(join(dir, n));
    }
  }, 60_000);
  test("argv0 set by the parent (exec -a) is passed through", () => {
    const v = view([probe], { argv0: "custom-name" });
    expect(v.argv0).toBe("custom-name");
  }, 60_000);
});

describe("build-binaries", () => {
  let built: BuiltArchive[] = [];
  const outdir = join(work, "dist");
  const x = join(work, "x");
  beforeAll(async () => {
    // xz preset 0: the real release uses 9 (smaller, much slower); the format is the same.
    built = await build({ ...parseArgs(["--current-only", "--outdir", outdir, "--xz-level", "0"]) });
    Bun.spawnSync(["mkdir", "-p", x]);
    const r = run(["tar", "-xzf", built[0]!.archive, "-C", x]);
    expect(r.code).toBe(0);
  }, 120_000);

  test("option parsing", () => {
    expect(parseArgs(["--current-only"]).targets).toEqual([hostTarget()]);
    expect(parseArgs([]).targets.map(assetName)).toEqual([
      "pilot-linux-amd64.tar.gz", "pilot-linux-arm64.tar.gz", "pilot-darwin-amd64.tar.gz", "pilot-darwin-arm64.tar.gz",
    ]);
    expect(parseArgs(["--targets", "linux-arm64,darwin-arm64"]).targets.map((t) => t.name)).toEqual(["linux-arm64", "darwin-arm64"]);
    expect(parseArgs(["--targets=linux-amd64"]).targets[0]!.name).toBe("linux-x64");
    expect(() => parseArgs(["--targets", "windows-x64"])).toThrow(/unknown target/);
    expect(() => parseArgs(["--frobnicate"])).toThrow(/unknown option/);
    expect(parseArgs([]).xz).toBe(true);
    expect(parseArgs([]).xzLevel).toBe(9);
    expect(parseArgs([]).splitting).toBe(true);
    expect(parseArgs(["--no-xz", "--no-splitting", "--xz-level=3"])).toMatchObject({ xz: false, splitting: false, xzLevel: 3 });
    expect(() => parseArgs(["--xz-level", "12"])).toThrow(/0-9/);
    expect(TARGETS.every((t) => t.npmPackage.startsWith("@oven/bun-"))).toBe(true);
  }, 60_000);

  test("archive: reference asset name, ./ members, one binary stored once (hard links)", () => {
    const b = built[0]!;
    expect(b.archive.endsWith(assetName(hostTarget()))).toBe(true);
    const list = run(["tar", "-tvzf", b.archive]).out.trim().split("\n");
    const members = list.map((l) => l.split(/\s+/)[5]).filter((n) => n !== "./").sort();
    expect(members).toEqual(MEMBER_NAMES.map((n) => `./${n}`).sort());
    const regular = list.filter((l) => l.startsWith("-"));
    const links = list.filter((l) => l.startsWith("h"));
    expect(regular.length).toBe(1);
    expect(links.length).toBe(MEMBER_NAMES.length - 1);
    // The compressed archive is smaller than the one binary it holds, not N times it.
    expect(b.archiveBytes).toBeLessThan(b.binaryBytes);
    const inode = statSync(join(x, "pilotctl")).ino;
    for (const n of MEMBER_NAMES) expect(statSync(join(x, n)).ino).toBe(inode);
    expect(statSync(join(x, "pilotctl")).mode & 0o111).toBe(0o111);
  }, 60_000);

  test(".tar.xz holds the same members as the .tar.gz, and is smaller", () => {
    const b = built[0]!;
    expect(b.xzArchive!.endsWith(xzAssetName(hostTarget()))).toBe(true);
    expect(b.xzBytes!).toBeLessThan(b.archiveBytes);
    const names = (cmd: string[]) => run(cmd).out.trim().split("\n").sort();
    expect(names(["tar", "-tJf", b.xzArchive!])).toEqual(names(["tar", "-tzf", b.archive]));
  }, 60_000);

  test("npm platform package directory: os/cpu, README, LICENSE, bin/pilot = the executable", () => {
    const b = built[0]!;
    expect(b.npmDir.endsWith(join("npm", npmPackageName(hostTarget())))).toBe(true);
    const pj = JSON.parse(readFileSync(join(b.npmDir, "package.json"), "utf8"));
    const root = JSON.parse(readFileSync(join(import.meta.dir, "..", "package.json"), "utf8"));
    expect(pj).toMatchObject({ name: `pilot-ts-${hostTarget().name}`, version: root.version, os: [hostTarget().os], files: ["bin/pilot", "README.md", "LICENSE"] });
    expect(pj.cpu).toEqual([process.arch]);
    expect(readFileSync(join(b.npmDir, "README.md"), "utf8")).toContain("npm install -g pilot-ts");
    expect(readFileSync(join(b.npmDir, "LICENSE"), "utf8").length).toBeGreaterThan(0);
    const exe = join(b.npmDir, "bin", "pilot");
    expect(statSync(exe).mode & 0o111).toBe(0o111);
    expect(readFileSync(exe).equals(readFileSync(join(x, "pilotctl")))).toBe(true);
    // Started under a tool name (as the npm launcher does), the one executable becomes that tool.
    expect(run([exe, "-h"], { env: { PILOT_DEBUG_DISPATCH: "1" }, argv0: "rendezvous" }).err).toContain("dispatch tool=rendezvous via=argv0");
  }, 60_000);

  test("checksums.txt is sha256sum format and verifies", async () => {
    const text = readFileSync(join(outdir, CHECKSUM_FILE), "utf8");
    expect(text).toMatch(/^([0-9a-f]{64}  pilot-[a-z]+-[a-z0-9]+\.tar\.(gz|xz)\n)+$/);
    const h = new Bun.CryptoHasher("sha256").update(await Bun.file(built[0]!.archive).arrayBuffer()).digest("hex");
    expect(text).toContain(`${h}  ${assetName(hostTarget())}\n`);
    expect(built[0]!.sha256).toBe(h);
    const r = run(["sha256sum", "-c", CHECKSUM_FILE], { cwd: outdir });
    expect(r.code).toBe(0);
  }, 60_000);

  test("each member name, a symlink and a renamed copy dispatch to the right tool", () => {
    const expected: Record<string, string> = {
      pilotctl: "pilotctl", "pilot-daemon": "pilot-daemon", "pilot-gateway": "pilot-gateway",
      rendezvous: "rendezvous", daemon: "pilot-daemon", gateway: "pilot-gateway",
    };
    for (const n of MEMBER_NAMES) {
      const r = run([join(x, n), "-h"], { env: { PILOT_DEBUG_DISPATCH: "1" } });
      expect(r.err).toContain(`pilot: dispatch tool=${expected[n]} via=argv0`);
    }
    symlinkSync(join(x, "pilotctl"), join(work, "rendezvous"));
    expect(run([join(work, "rendezvous"), "-h"], { env: { PILOT_DEBUG_DISPATCH: "1" } }).err).toContain("dispatch tool=rendezvous via=argv0");
    copyFileSync(join(x, "pilotctl"), join(work, "pilot-gateway"));
    Bun.spawnSync(["chmod", "755", join(work, "pilot-gateway")]);
    expect(run([join(work, "pilot-gateway"), "-h"], { env: { PILOT_DEBUG_DISPATCH: "1" } }).err).toContain("dispatch tool=pilot-gateway via=argv0");
    // Supervisor-style argv0 that is not a tool name: the copy's own path (execPath) decides.
    expect(run([join(work, "pilot-gateway"), "-h"], { env: { PILOT_DEBUG_DISPATCH: "1" }, argv0: "svc" }).err)
      .toContain("dispatch tool=pilot-gateway via=execPath");
    // The neutral compiled name selects nothing; the first argument then does.
    copyFileSync(join(x, "pilotctl"), join(work, "pilot"));
    Bun.spawnSync(["chmod", "755", join(work, "pilot")]);
    const none = run([join(work, "pilot")], { env: { PILOT_DEBUG_DISPATCH: "1" } });
    expect(none.err).toContain("dispatch tool=none");
    expect(none.code).toBe(2);
    expect(run([join(work, "pilot"), "rendezvous", "-h"], { env: { PILOT_DEBUG_DISPATCH: "1" } }).err).toContain("dispatch tool=rendezvous via=arg");
  }, 60_000);

  test("pilotctl with an unknown command exits non-zero with usage", () => {
    const r = run([join(x, "pilotctl"), "no-such-command-xyz"]);
    // docs/protocol.md §13.1: human mode prints `unknown command: <cmd>`, a blank line, the usage text; exit 2.
    expect(r.code).toBe(2);
    expect(r.err).toStartWith("unknown command: no-such-command-xyz\n\n");
    expect(r.err).toContain("Pilot Protocol CLI");
  }, 60_000);
});
