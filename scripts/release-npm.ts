#!/usr/bin/env bun
// The npm release, dry: `npm pack` the main package (the repo root) and every platform package that
// scripts/build-binaries.ts left in <outdir>/npm/, then check each tarball's contents and size.
// Nothing is published.
//
//   bun scripts/release-npm.ts [--outdir dist] [--main-only]
//
// Package names: the main package `pilot-ts` (SDK + the four `bin` launchers) and one package per
// platform, `pilot-ts-linux-x64`, `pilot-ts-linux-arm64`, `pilot-ts-darwin-x64`,
// `pilot-ts-darwin-arm64`, each holding the compiled executable as bin/pilot, versioned together.
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { npmCpu, npmOs, npmPackageName, ROOT, TARGETS } from "./build-binaries.ts";

/** Upper bounds checked by the dry run (the npm registry accepts far larger tarballs). */
export const MAX_PLATFORM_TGZ = 64 * 1048576;
export const MAX_MAIN_TGZ = 4 * 1048576;

export interface Packed {
  name: string;
  version: string;
  /** absolute path of the .tgz */
  file: string;
  size: number;
  unpackedSize: number;
  /** sha512 SRI string, as the registry publishes it in dist.integrity */
  integrity: string;
  files: { path: string; size: number; mode: number }[];
}

interface PackJson {
  name: string; version: string; filename: string; size: number; unpackedSize: number; integrity: string;
  files: { path: string; size: number; mode: number }[];
}

/** `npm pack` one package directory into dest. */
export async function npmPack(dir: string, dest: string): Promise<Packed> {
  mkdirSync(dest, { recursive: true });
  const p = Bun.spawn(["npm", "pack", "--json", "--ignore-scripts", "--pack-destination", dest, dir], {
    cwd: dir, stdout: "pipe", stderr: "pipe",
    env: { ...process.env, npm_config_update_notifier: "false", npm_config_fund: "false" },
  });
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  if (code !== 0) throw new Error(`npm pack ${dir} failed (exit ${code}):\n${err || out}`);
  const j = (JSON.parse(out) as PackJson[])[0]!;
  return {
    name: j.name, version: j.version, file: join(dest, j.filename), size: j.size, unpackedSize: j.unpackedSize,
    integrity: j.integrity, files: j.files,
  };
}

/** Problems with a packed platform package (empty = fine). */
export function checkPlatform(p: Packed, version: string): string[] {
  const bad: string[] = [];
  const paths = p.files.map((f) => f.path).sort();
  const want = ["LICENSE", "README.md", "bin/pilot", "package.json"];
  if (JSON.stringify(paths) !== JSON.stringify(want)) bad.push(`${p.name}: files ${paths.join(", ")} (want ${want.join(", ")})`);
  const exe = p.files.find((f) => f.path === "bin/pilot");
  if (exe && (exe.mode & 0o111) === 0) bad.push(`${p.name}: bin/pilot is not executable (mode ${exe.mode.toString(8)})`);
  if (exe && exe.size < 1048576) bad.push(`${p.name}: bin/pilot is only ${exe.size} bytes`);
  if (p.version !== version) bad.push(`${p.name}: version ${p.version}, main package is ${version}`);
  if (p.size > MAX_PLATFORM_TGZ) bad.push(`${p.name}: tarball ${mib(p.size)} > ${mib(MAX_PLATFORM_TGZ)}`);
  if (!p.integrity.startsWith("sha512-")) bad.push(`${p.name}: integrity ${p.integrity} is not sha512`);
  return bad;
}

interface MainManifest {
  name: string; version: string; private?: boolean;
  bin?: Record<string, string>; optionalDependencies?: Record<string, string>;
}

/** Problems with the packed main package (empty = fine). */
export function checkMain(p: Packed, m: MainManifest): string[] {
  const bad: string[] = [];
  const paths = new Set(p.files.map((f) => f.path));
  const tools = ["pilotctl", "pilot-daemon", "pilot-gateway", "rendezvous"];
  for (const t of tools) {
    const b = m.bin?.[t];
    if (!b) bad.push(`${p.name}: no bin entry ${t}`);
    else if (!paths.has(b.replace(/^\.\//, ""))) bad.push(`${p.name}: bin ${t} → ${b} is not in the tarball (add npm/ to "files")`);
  }
  for (const f of ["npm/launcher.cjs", "src/main.ts", "package.json"]) if (!paths.has(f)) bad.push(`${p.name}: ${f} missing`);
  for (const f of paths) {
    if (/^(node_modules|dist|\.git)\//.test(f) || f.includes("/.cache/")) bad.push(`${p.name}: must not ship ${f}`);
  }
  for (const t of TARGETS) {
    const n = npmPackageName(t);
    if (m.optionalDependencies?.[n] !== m.version) {
      bad.push(`${p.name}: optionalDependencies.${n} is ${m.optionalDependencies?.[n] ?? "missing"}, want exactly ${m.version}`);
    }
  }
  if (p.size > MAX_MAIN_TGZ) bad.push(`${p.name}: tarball ${mib(p.size)} > ${mib(MAX_MAIN_TGZ)}`);
  return bad;
}

/** Pack the main package and every platform package built in outdir/npm; returns them and problems. */
export async function packAll(outdir: string, opts: { mainOnly?: boolean } = {}): Promise<{ packed: Packed[]; problems: string[]; warnings: string[] }> {
  const manifest = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as MainManifest;
  const dest = join(outdir, "npm-packed");
  const packed: Packed[] = [];
  const problems: string[] = [];
  const warnings: string[] = [];
  const main = await npmPack(ROOT, dest);
  packed.push(main);
  problems.push(...checkMain(main, manifest));
  if (manifest.private) warnings.push(`${manifest.name}: package.json has "private": true (npm publish would refuse it)`);
  const stray = main.files.map((f) => f.path).filter((f) => /^(test|bench)\//.test(f));
  if (stray.length) warnings.push(`${manifest.name}: ships ${stray.length} test/bench files (narrow "files")`);
  if (!opts.mainOnly) {
    for (const t of TARGETS) {
      const dir = join(outdir, "npm", npmPackageName(t));
      if (!existsSync(dir)) {
        problems.push(`${npmPackageName(t)}: not built (${dir} missing; run scripts/build-binaries.ts)`);
        continue;
      }
      const pj = JSON.parse(readFileSync(join(dir, "package.json"), "utf8")) as { os: string[]; cpu: string[] };
      if (pj.os[0] !== npmOs(t) || pj.cpu[0] !== npmCpu(t)) problems.push(`${npmPackageName(t)}: os/cpu ${pj.os}/${pj.cpu}`);
      const p = await npmPack(dir, dest);
      packed.push(p);
      problems.push(...checkPlatform(p, manifest.version));
    }
  }
  return { packed, problems, warnings };
}

const mib = (n: number) => `${(n / 1048576).toFixed(1)} MiB`;

if (import.meta.main) {
  let outdir = join(ROOT, "dist");
  let mainOnly = false;
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--outdir") outdir = resolve(argv[++i] ?? ".");
    else if (argv[i] === "--main-only") mainOnly = true;
    else {
      console.error(`release-npm: unknown option ${argv[i]}`);
      process.exit(2);
    }
  }
  try {
    const { packed, problems, warnings } = await packAll(outdir, { mainOnly });
    for (const p of packed) {
      console.log(`${`${p.name}@${p.version}`.padEnd(30)} ${mib(p.size).padStart(10)} packed  ` +
        `${mib(p.unpackedSize).padStart(10)} unpacked  ${String(p.files.length).padStart(4)} files  ${p.file}`);
    }
    for (const w of warnings) console.log(`warning: ${w}`);
    for (const e of problems) console.error(`error: ${e}`);
    console.log(problems.length ? `release dry run: ${problems.length} problem(s)` : "release dry run: OK (nothing published)");
    process.exit(problems.length ? 1 : 0);
  } catch (e) {
    console.error(`release-npm: ${(e as Error).message}`);
    process.exit(1);
  }
}
