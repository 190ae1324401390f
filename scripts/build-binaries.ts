#!/usr/bin/env bun
// Release build: one `bun build --compile` executable of src/main.ts per platform, packed as the
// reference's release archives plus a SHA-256 checksum file, and as one npm package per platform.
//
//   bun scripts/build-binaries.ts [--targets linux-x64,linux-arm64,darwin-x64,darwin-arm64]
//                                 [--current-only] [--outdir dist] [--no-minify] [--sourcemap]
//                                 [--no-bytecode] [--no-splitting] [--no-xz] [--xz-level 0-9] [--bench]
//
// Layout of dist/ after a full build:
//   pilot-linux-amd64.tar.gz  pilot-linux-arm64.tar.gz  pilot-darwin-amd64.tar.gz  pilot-darwin-arm64.tar.gz
//   pilot-linux-amd64.tar.xz  …  (the same tar, xz-compressed: ~25% smaller; install.sh prefers it)
//   checksums.txt
//   npm/pilot-ts-linux-x64/ npm/pilot-ts-linux-arm64/ npm/pilot-ts-darwin-x64/ npm/pilot-ts-darwin-arm64/
// Each npm/<package>/ is a ready-to-pack platform package (see scripts/release-npm.ts): package.json
// with `os`/`cpu`, README.md, LICENSE and the executable as bin/pilot. The main package (the repo
// root) lists them as optionalDependencies; its `bin` launchers (npm/launcher.cjs) start bin/pilot.
// Each archive is made like the reference's `tar -czf … -C dir .` (members `./pilotctl`, … at the
// root) and holds ONE executable under several names, stored as tar hard links so the download is
// one binary in size: `pilotctl` (the file), `pilot-daemon`, `pilot-gateway`, `rendezvous`, and the
// reference's release names `daemon` and `gateway` (the reference install.sh copies `daemon` →
// pilot-daemon and `gateway` → pilot-gateway, so it keeps working with these archives; src/main.ts
// accepts `daemon`/`gateway` as executable names too).
// checksums.txt is in `sha256sum` format ("<64 hex>  <file name>", two spaces, one line per
// archive, sorted by name) so `sha256sum -c --ignore-missing checksums.txt` verifies a download.
// (The reference publishes no checksum file; this is the common convention that install.sh reads.)
//
// Cross-compiling: Bun normally downloads the target runtime from GitHub. This script instead
// takes it from the npm registry (`npm pack @oven/bun-<os>-<arch>@<this bun's version>`), unpacks
// it into node_modules/.cache/pilot-bun-targets/ and passes it with --compile-executable-path.
// The host target uses the running Bun itself (process.execPath), so --current-only needs no
// network at all.
import { existsSync, linkSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";

export const ROOT = resolve(import.meta.dir, "..");

export interface Target {
  /** our target name, e.g. linux-x64 */
  name: string;
  /** uname-style names used in the asset (docs/protocol.md §13.6): linux|darwin, amd64|arm64 */
  os: "linux" | "darwin";
  arch: "amd64" | "arm64";
  /** bun --target value */
  bunTarget: string;
  /** npm package carrying that runtime */
  npmPackage: string;
}

export const TARGETS: Target[] = [
  { name: "linux-x64", os: "linux", arch: "amd64", bunTarget: "bun-linux-x64", npmPackage: "@oven/bun-linux-x64" },
  { name: "linux-arm64", os: "linux", arch: "arm64", bunTarget: "bun-linux-arm64", npmPackage: "@oven/bun-linux-aarch64" },
  { name: "darwin-x64", os: "darwin", arch: "amd64", bunTarget: "bun-darwin-x64", npmPackage: "@oven/bun-darwin-x64" },
  { name: "darwin-arm64", os: "darwin", arch: "arm64", bunTarget: "bun-darwin-arm64", npmPackage: "@oven/bun-darwin-aarch64" },
];

/** npm platform package of a target: os/cpu use Node's process.platform/process.arch names. */
export const npmPackageName = (t: Target): string => `pilot-ts-${t.name}`;
export const npmOs = (t: Target): string => t.os;
export const npmCpu = (t: Target): string => (t.arch === "amd64" ? "x64" : "arm64");

/** Names the one executable is stored under inside each archive; the first is the real file. */
export const MEMBER_NAMES = ["pilotctl", "pilot-daemon", "pilot-gateway", "rendezvous", "daemon", "gateway"] as const;

export const assetName = (t: Target): string => `pilot-${t.os}-${t.arch}.tar.gz`;
export const xzAssetName = (t: Target): string => `pilot-${t.os}-${t.arch}.tar.xz`;
export const CHECKSUM_FILE = "checksums.txt";

export function hostTarget(): Target {
  const os = process.platform === "darwin" ? "darwin" : process.platform === "linux" ? "linux" : null;
  const arch = process.arch === "x64" ? "amd64" : process.arch === "arm64" ? "arm64" : null;
  const t = TARGETS.find((x) => x.os === os && x.arch === arch);
  if (!t) throw new Error(`unsupported host platform ${process.platform}/${process.arch}`);
  return t;
}

export interface BuildOptions {
  targets: Target[];
  outdir: string;
  minify: boolean;
  sourcemap: boolean;
  /** precompiled JSC bytecode in the executable (default on: measured ~2x faster startup) */
  bytecode?: boolean;
  /** code splitting (default on): each tool's code is loaded only when that tool runs */
  splitting?: boolean;
  /** also write pilot-<os>-<arch>.tar.xz (default on) */
  xz?: boolean;
  /** xz preset 0-9 (default 9: smallest; lower is faster, for tests) */
  xzLevel?: number;
  log?: (line: string) => void;
}

export interface BuiltArchive {
  target: Target;
  archive: string;
  archiveBytes: number;
  binaryBytes: number;
  sha256: string;
  /** the .tar.xz beside the .tar.gz, when built */
  xzArchive?: string;
  xzBytes?: number;
  /** ready-to-pack npm platform package directory */
  npmDir: string;
}

async function sh(cmd: string[], opts: { cwd?: string } = {}): Promise<string> {
  const p = Bun.spawn(cmd, { cwd: opts.cwd ?? ROOT, stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  if (code !== 0) throw new Error(`${cmd.join(" ")} failed (exit ${code}):\n${err || out}`);
  return out;
}

/** Path to a Bun runtime executable for `t`, fetched from npm into a cache dir if needed. */
export async function runtimeFor(t: Target, log: (l: string) => void = () => {}): Promise<string> {
  const host = hostTarget();
  if (t.name === host.name) return process.execPath;
  const cache = join(ROOT, "node_modules", ".cache", "pilot-bun-targets");
  const dir = join(cache, `${t.npmPackage.replace("/", "-").replace("@", "")}-${Bun.version}`);
  const exe = join(dir, "package", "bin", "bun");
  if (existsSync(exe)) return exe;
  mkdirSync(cache, { recursive: true });
  log(`fetching ${t.npmPackage}@${Bun.version} from the npm registry`);
  const out = await sh(["npm", "pack", "--silent", `${t.npmPackage}@${Bun.version}`, "--pack-destination", cache], { cwd: cache });
  const tgz = join(cache, out.trim().split("\n").pop()!.trim());
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  await sh(["tar", "-xzf", tgz, "-C", dir]);
  rmSync(tgz, { force: true });
  if (!existsSync(exe)) throw new Error(`${t.npmPackage}: no package/bin/bun in the npm tarball`);
  return exe;
}

async function sha256File(path: string): Promise<string> {
  const h = new Bun.CryptoHasher("sha256");
  const stream = Bun.file(path).stream();
  for await (const chunk of stream) h.update(chunk);
  return h.digest("hex");
}

let gnuTar: boolean | null = null;
async function isGnuTar(): Promise<boolean> {
  if (gnuTar === null) gnuTar = (await sh(["tar", "--version"]).catch(() => "")).includes("GNU tar");
  return gnuTar;
}

export async function buildTarget(t: Target, o: BuildOptions): Promise<BuiltArchive> {
  const log = o.log ?? (() => {});
  const exe = await runtimeFor(t, log);
  const stage = join(o.outdir, `.stage-${t.os}-${t.arch}`);
  rmSync(stage, { recursive: true, force: true });
  mkdirSync(stage, { recursive: true });
  // Compile to the neutral name "pilot": the compiled program sees "/$bunfs/root/pilot" as
  // argv[1], which is not a tool name, so only the invoked name decides (see pickTool).
  const compiled = join(o.outdir, `.pilot-${t.os}-${t.arch}`, "pilot");
  rmSync(join(o.outdir, `.pilot-${t.os}-${t.arch}`), { recursive: true, force: true });
  const args = [
    process.execPath, "build", "--compile", `--target=${t.bunTarget}`, `--compile-executable-path=${exe}`,
    // The binaries must not pick up a bunfig.toml / .env from wherever they happen to run.
    "--no-compile-autoload-bunfig", "--no-compile-autoload-dotenv",
    ...(o.minify ? ["--minify"] : []),
    // Code splitting: the entry is a ~2 KB dispatcher and each tool (and each pilotctl command
    // group) is its own chunk inside the executable, loaded only when that tool runs; without it
    // every start evaluates the whole bundle. Bytecode: no parsing at start. Measured together
    // (Bun 1.4.5, linux-x64, `pilotctl version`, 25th percentile of 31 interleaved runs, bare
    // compiled "hello" = 4.8 ms): all three flags 4.8 ms; without --bytecode 6.3 ms; without
    // --minify 5.0 ms; without --splitting 14.4 ms. bench/ctl.ts tracks it.
    ...(o.splitting !== false ? ["--splitting"] : []),
    // ESM bytecode needs --compile (which this always is).
    ...(o.bytecode !== false ? ["--bytecode", "--format=esm"] : []),
    ...(o.sourcemap ? ["--sourcemap=inline"] : []),
    join(ROOT, "src", "main.ts"), "--outfile", compiled,
  ];
  await sh(args);
  const binaryBytes = statSync(compiled).size;
  // One file, several names (hard links): tar stores the extra names as link entries.
  const first = join(stage, MEMBER_NAMES[0]);
  await sh(["cp", compiled, first]);
  for (const n of MEMBER_NAMES.slice(1)) linkSync(first, join(stage, n));
  rmSync(join(o.outdir, `.pilot-${t.os}-${t.arch}`), { recursive: true, force: true });

  const archive = join(o.outdir, assetName(t));
  const xzArchive = join(o.outdir, xzAssetName(t));
  rmSync(archive, { force: true });
  rmSync(xzArchive, { force: true });
  const tarArgs = ["tar"];
  if (await isGnuTar()) {
    // Reproducible members: fixed order, owner and mtime (SOURCE_DATE_EPOCH if set).
    const mtime = process.env.SOURCE_DATE_EPOCH ?? "0";
    tarArgs.push("--sort=name", "--owner=0", "--group=0", "--numeric-owner", `--mtime=@${mtime}`);
  }
  // `-C dir .` like the reference's Makefile, so members are ./pilotctl etc.
  const tarFile = archive.replace(/\.gz$/, "");
  await sh([...tarArgs, "-cf", tarFile, "-C", stage, "."]);
  if (o.xz !== false) {
    // --x86/--arm64 (branch/call filter) before LZMA2 shrinks machine code; -9 keeps a 64 MiB
    // dictionary (65 MiB to decompress).
    const bcj = t.arch === "amd64" ? "--x86" : "--arm64";
    const level = Math.max(0, Math.min(9, o.xzLevel ?? 9));
    await sh(["xz", "-T1", "-k", "-f", bcj, `--lzma2=preset=${level}`, tarFile]);
  }
  await sh(["gzip", "-n", "-f", tarFile]);
  const npmDir = await writeNpmPackage(t, join(stage, MEMBER_NAMES[0]), o.outdir);
  rmSync(stage, { recursive: true, force: true });
  const archiveBytes = statSync(archive).size;
  const sha256 = await sha256File(archive);
  const xz = o.xz !== false ? { xzArchive, xzBytes: statSync(xzArchive).size } : {};
  return { target: t, archive, archiveBytes, binaryBytes, sha256, npmDir, ...xz };
}

/** The platform package directory dist/npm/<name>/ for `t`, around the compiled executable. */
async function writeNpmPackage(t: Target, exe: string, outdir: string): Promise<string> {
  const root = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as {
    version: string; license?: string; repository?: unknown; homepage?: string;
  };
  const name = npmPackageName(t);
  const dir = join(outdir, "npm", name);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(join(dir, "bin"), { recursive: true });
  linkSync(exe, join(dir, "bin", "pilot"));
  const pkg = {
    name,
    version: root.version,
    description: `The pilot-ts executable (pilotctl, pilot-daemon, pilot-gateway, rendezvous) for ${t.os}/${npmCpu(t)}`,
    license: root.license ?? "SEE LICENSE IN LICENSE",
    ...(root.repository ? { repository: root.repository } : {}),
    ...(root.homepage ? { homepage: root.homepage } : {}),
    os: [npmOs(t)],
    cpu: [npmCpu(t)],
    files: ["bin/pilot", "README.md", "LICENSE"],
    preferUnplugged: true,
  };
  writeFileSync(join(dir, "package.json"), JSON.stringify(pkg, null, 2) + "\n");
  const readme = readFileSync(join(ROOT, "npm", "platform-README.md"), "utf8")
    .replaceAll("{{name}}", name).replaceAll("{{platform}}", `${t.os}/${npmCpu(t)}`).replaceAll("{{version}}", root.version);
  writeFileSync(join(dir, "README.md"), readme);
  const lic = ["LICENSE", "LICENSE.md", "LICENSE.txt"].map((n) => join(ROOT, n)).find((p) => existsSync(p));
  writeFileSync(join(dir, "LICENSE"), lic ? readFileSync(lic) :
    `${name} ${root.version} is part of pilot-ts and is distributed under the license of the pilot-ts package` +
    `${root.license ? ` (${root.license})` : ""}.\n`);
  return dir;
}

/** (Re)write checksums.txt over every pilot-*.tar.gz / .tar.xz present in outdir. */
export async function writeChecksums(outdir: string): Promise<string> {
  const names = readdirSync(outdir).filter((n) => /^pilot-[a-z]+-[a-z0-9]+\.tar\.(gz|xz)$/.test(n)).sort();
  const lines: string[] = [];
  for (const n of names) lines.push(`${await sha256File(join(outdir, n))}  ${n}`);
  const path = join(outdir, CHECKSUM_FILE);
  writeFileSync(path, lines.join("\n") + (lines.length ? "\n" : ""));
  return path;
}

export async function build(o: BuildOptions): Promise<BuiltArchive[]> {
  mkdirSync(o.outdir, { recursive: true });
  const out: BuiltArchive[] = [];
  // Sequential: each compile is I/O heavy (≈100 MB written) and the machine is shared.
  for (const t of o.targets) {
    const t0 = performance.now();
    const b = await buildTarget(t, o);
    o.log?.(`${assetName(t).padEnd(28)} archive ${mib(b.archiveBytes)}` +
      `${b.xzBytes !== undefined ? `  .tar.xz ${mib(b.xzBytes)}` : ""}  binary ${mib(b.binaryBytes)}  ` +
      `(${((performance.now() - t0) / 1000).toFixed(1)}s)`);
    out.push(b);
  }
  await writeChecksums(o.outdir);
  return out;
}

const mib = (n: number) => `${(n / 1048576).toFixed(1)} MiB`;

/** Median wall time of `cmd` over n runs, in ms (used by --bench). */
async function timeRuns(cmd: string[], env: Record<string, string | undefined>, n: number): Promise<number> {
  const ts: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    const p = Bun.spawn(cmd, { env, stdout: "ignore", stderr: "ignore" });
    await p.exited;
    ts.push(performance.now() - t0);
  }
  ts.sort((a, b) => a - b);
  return ts[Math.floor(n / 2)]!;
}

export function parseArgs(argv: string[]): BuildOptions & { bench: boolean } {
  let targets: Target[] = TARGETS;
  let outdir = join(ROOT, "dist");
  let minify = true;
  let sourcemap = false;
  let bench = false;
  let bytecode = true;
  let xz = true;
  let xzLevel = 9;
  let splitting = true;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const val = (): string => {
      const eq = a.indexOf("=");
      if (eq >= 0) return a.slice(eq + 1);
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    if (a === "--current-only") targets = [hostTarget()];
    else if (a.startsWith("--targets")) {
      targets = val().split(",").filter(Boolean).map((n) => {
        const t = TARGETS.find((x) => x.name === n || `${x.os}-${x.arch}` === n);
        if (!t) throw new Error(`unknown target ${n} (known: ${TARGETS.map((x) => x.name).join(", ")})`);
        return t;
      });
    } else if (a.startsWith("--outdir")) outdir = resolve(val());
    else if (a === "--no-minify") minify = false;
    else if (a === "--sourcemap") sourcemap = true;
    else if (a === "--bench") bench = true;
    else if (a === "--no-bytecode") bytecode = false;
    else if (a === "--no-xz") xz = false;
    else if (a === "--no-splitting") splitting = false;
    else if (a.startsWith("--xz-level")) {
      xzLevel = Number(val());
      if (!Number.isInteger(xzLevel) || xzLevel < 0 || xzLevel > 9) throw new Error(`--xz-level must be 0-9`);
    }
    else throw new Error(`unknown option ${a}`);
  }
  return { targets, outdir, minify, sourcemap, bytecode, splitting, xz, xzLevel, bench };
}

if (import.meta.main) {
  try {
    const o = parseArgs(process.argv.slice(2));
    o.log = (l) => console.log(l);
    const built = await build(o);
    console.log(`checksums: ${join(o.outdir, CHECKSUM_FILE)}`);
    if (o.bench) {
      const host = built.find((b) => b.target.name === hostTarget().name);
      if (!host) throw new Error("--bench needs the host target in --targets");
      const dir = join(o.outdir, ".bench");
      rmSync(dir, { recursive: true, force: true });
      mkdirSync(dir, { recursive: true });
      await sh(["tar", "-xzf", host.archive, "-C", dir]);
      const env = { ...process.env, PILOT_TOOL: undefined };
      const n = 15;
      const compiled = await timeRuns([join(dir, "pilotctl"), "version"], env, n);
      const source = await timeRuns([process.execPath, join(ROOT, "src", "main.ts"), "pilotctl", "version"], env, n);
      console.log(`startup (median of ${n}, 'pilotctl version'): compiled ${compiled.toFixed(1)} ms, ` +
        `bun src/main.ts ${source.toFixed(1)} ms`);
      rmSync(dir, { recursive: true, force: true });
    }
  } catch (e) {
    console.error(`build-binaries: ${(e as Error).message}`);
    process.exit(1);
  }
}
