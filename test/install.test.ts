// install.sh end to end: a real host-platform release archive built by scripts/build-binaries.ts,
// served over loopback HTTP, installed into a temporary HOME. Platform, uid and the service
// managers are faked with small scripts on PATH (uname, id, systemctl, launchctl), so the test
// never touches the real system: every path the installer writes is inside the test's temp dir.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import {
  chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { build, CHECKSUM_FILE, hostTarget, assetName } from "../scripts/build-binaries.ts";
import { type Proc, spawnWatched } from "./helpers/cluster.ts";

const ROOT = join(import.meta.dir, "..");
const INSTALL_SH = join(ROOT, "install.sh");
const work = mkdtempSync(join(tmpdir(), "pilot-install-test-"));
const shim = join(work, "shim");
const SYS_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const realUname = Bun.which("uname") ?? "/bin/uname";
const realId = Bun.which("id") ?? "/usr/bin/id";

let server: ReturnType<typeof Bun.serve>;
let base = "";
const requests: string[] = [];

function sh(cmd: string[], env?: Record<string, string>, cwd?: string) {
  const p = Bun.spawnSync(cmd, { env, cwd, stdout: "pipe", stderr: "pipe", timeout: 20_000 });
  return { code: p.exitCode, out: p.stdout.toString(), err: p.stderr.toString() };
}

function writeExe(path: string, body: string) {
  writeFileSync(path, body);
  chmodSync(path, 0o755);
}

/** path → sha256 (files), "dir" (directories), "-> target" (symlinks) for everything under dir. */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  if (!existsSync(dir)) return out;
  const walk = (d: string, rel: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name), r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isSymbolicLink()) out[r] = "-> " + sh(["readlink", p]).out.trim();
      else if (e.isDirectory()) { out[r] = "dir"; walk(p, r); }
      else out[r] = new Bun.CryptoHasher("sha256").update(readFileSync(p)).digest("hex");
    }
  };
  walk(dir, "");
  return out;
}

interface Box { home: string; links: string; units: string; sock: string; log: string }
function newBox(name: string): Box {
  const d = join(work, name);
  const b = { home: join(d, "home"), links: join(d, "links"), units: join(d, "units"), sock: join(d, "pilot.sock"), log: join(d, "svc.log") };
  for (const x of [b.home, b.links, b.units]) mkdirSync(x, { recursive: true });
  return b;
}

// Async on purpose: the HTTP server lives in this process, a spawnSync would block it.
async function runInstall(b: Box, opts: { args?: string[]; env?: Record<string, string>; url?: string } = {}) {
  const env: Record<string, string> = {
    HOME: b.home,
    PATH: `${shim}:${SYS_PATH}`,
    SHELL: "/bin/bash",
    PILOT_RELEASE_URL: opts.url ?? `${base}/dist`,
    PILOT_LINK_DIR: b.links,
    PILOT_SYSTEMD_DIR: b.units,
    PILOT_SOCKET: b.sock,
    SVC_LOG: b.log,
    FAKE_UID: "0",
    FAKE_USER: "root",
    ...opts.env,
  };
  for (const [k, v] of Object.entries(env)) if (v === "") delete env[k];
  const p = Bun.spawn(["sh", INSTALL_SH, ...(opts.args ?? [])], { env, stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { code, out, err };
}

const svcLog = (b: Box) => (existsSync(b.log) ? readFileSync(b.log, "utf8") : "");

beforeAll(async () => {
  // Fakes on PATH. Each falls through to the real tool when its FAKE_* variable is unset.
  mkdirSync(shim, { recursive: true });
  writeExe(join(shim, "uname"), `#!/bin/sh
case "$1" in
  -s) if [ -n "\${FAKE_UNAME_S:-}" ]; then echo "$FAKE_UNAME_S"; exit 0; fi ;;
  -m) if [ -n "\${FAKE_UNAME_M:-}" ]; then echo "$FAKE_UNAME_M"; exit 0; fi ;;
esac
exec ${realUname} "$@"
`);
  writeExe(join(shim, "id"), `#!/bin/sh
case "$1" in
  -u) if [ -n "\${FAKE_UID:-}" ]; then echo "$FAKE_UID"; exit 0; fi ;;
  -un) if [ -n "\${FAKE_USER:-}" ]; then echo "$FAKE_USER"; exit 0; fi ;;
esac
exec ${realId} "$@"
`);
  for (const tool of ["systemctl", "launchctl"]) {
    writeExe(join(shim, tool), `#!/bin/sh\necho "${tool} $*" >> "\${SVC_LOG:-/dev/null}"\nexit 0\n`);
  }

  // The real archive for this host, built once for the whole file.
  // No .tar.xz here (slow to make; the xz route is covered by the small fake release below).
  await build({ targets: [hostTarget()], outdir: join(work, "dist"), minify: true, sourcemap: false, xz: false });

  // The same archive with a checksums.txt that does not match.
  mkdirSync(join(work, "bad"));
  sh(["ln", join(work, "dist", assetName(hostTarget())), join(work, "bad", assetName(hostTarget()))]);
  writeFileSync(join(work, "bad", CHECKSUM_FILE), `${"0".repeat(64)}  ${assetName(hostTarget())}\n`);

  // A tiny fake darwin-arm64 release using the reference's member names (daemon, gateway).
  const fx = join(work, "fake-x");
  mkdirSync(fx);
  for (const n of ["pilotctl", "daemon", "gateway"]) {
    writeExe(join(fx, n), `#!/bin/sh\n[ "$1" = version ] && echo "fake-${n} 9.9.9"\nexit 0\n`);
  }
  for (const d of ["fake", "nochk"]) {
    mkdirSync(join(work, d));
    expect(sh(["tar", "-czf", join(work, d, "pilot-darwin-arm64.tar.gz"), "-C", fx, "."]).code).toBe(0);
  }
  // /fake also has the .tar.xz (install.sh prefers it when xz exists); /nochk only the .tar.gz.
  expect(sh(["sh", "-c", `tar -cf - -C ${fx} . | xz -0 > pilot-darwin-arm64.tar.xz`], undefined, join(work, "fake")).code).toBe(0);
  expect(sh(["sh", "-c", `sha256sum pilot-darwin-arm64.tar.gz pilot-darwin-arm64.tar.xz > ${CHECKSUM_FILE}`], undefined, join(work, "fake")).code).toBe(0);

  server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch(req) {
      const path = decodeURIComponent(new URL(req.url).pathname);
      requests.push(path);
      const file = join(work, path);
      if (!path.includes("..") && existsSync(file) && statSync(file).isFile()) return new Response(Bun.file(file));
      return new Response("not found", { status: 404 });
    },
  });
  base = `http://127.0.0.1:${server.port}`;
}, 120_000);

afterAll(() => {
  server?.stop(true);
  rmSync(work, { recursive: true, force: true, maxRetries: 5 });
});

describe("install.sh on Linux as root (system unit)", () => {
  const b = newBox("root");
  let before: { home: Record<string, string>; links: Record<string, string>; units: Record<string, string> };
  const bin = () => join(b.home, ".pilot", "bin");
  const env = { PILOT_REGISTRY: "127.0.0.1:9000", PILOT_HOSTNAME: "agent-7", PILOT_PUBLIC: "1" };

  test("fresh install", async () => {
    writeFileSync(join(b.home, ".bashrc"), "alias ll='ls -l'\n");
    before = { home: snapshot(b.home), links: snapshot(b.links), units: snapshot(b.units) };
    const r = await runInstall(b, { env });
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
    expect(r.out).toContain(`Downloading ${assetName(hostTarget())} from`);
    expect(r.out).toContain("Checksum OK");
    expect(r.out).toContain("Installed:");
    // "Get started" names the hostname the user asked for.
    expect(r.out).toContain("pilotctl daemon start --hostname agent-7\n");
    expect(r.out).not.toContain("my-agent");

    // Binaries: executable, one file under four names (hard links), nothing else in bin/.
    expect(readdirSync(bin()).sort()).toEqual(["pilot-daemon", "pilot-gateway", "pilotctl", "rendezvous"]);
    const ino = statSync(join(bin(), "pilotctl")).ino;
    for (const n of readdirSync(bin())) {
      const st = statSync(join(bin(), n));
      expect(st.mode & 0o777).toBe(0o755);
      expect(st.ino).toBe(ino);
    }
    expect(readdirSync(join(b.home, ".pilot")).filter((n) => n.startsWith(".bin"))).toEqual([]);
    // Symlinks in the link dir point at the installed binaries.
    for (const n of ["pilotctl", "pilot-daemon", "pilot-gateway", "rendezvous"]) {
      expect(sh(["readlink", join(b.links, n)]).out.trim()).toBe(join(bin(), n));
    }
  }, 60_000);

  test("each installed name dispatches to its tool", async () => {
    for (const [n, dir] of [["pilotctl", bin()], ["pilot-daemon", bin()], ["pilot-gateway", bin()], ["rendezvous", bin()], ["pilotctl", b.links]] as const) {
      const r = sh([join(dir, n), "-h"], { PATH: SYS_PATH, HOME: b.home, PILOT_DEBUG_DISPATCH: "1" });
      expect(r.err).toContain(`pilot: dispatch tool=${n} via=argv0`);
    }
    const unknown = sh([join(bin(), "pilotctl"), "no-such-command-xyz"], { PATH: SYS_PATH, HOME: b.home });
    // docs/protocol.md §13.1: human mode prints `unknown command: <cmd>`, a blank line, the usage text; exit 2.
    expect(unknown.code).toBe(2);
    expect(unknown.err).toStartWith("unknown command: no-such-command-xyz\n\n");
    expect(unknown.err).toContain("Pilot Protocol CLI");
    const rz = sh([join(bin(), "rendezvous"), "-h"], { PATH: SYS_PATH, HOME: b.home });
    // its flag list proves the dispatch reached the rendezvous tool (the exit status of -h is
    // the server's business and is not asserted here)
    expect(rz.err).toStartWith("Usage of rendezvous:\n");
    expect(rz.err).toContain("-registry-addr");
  }, 60_000);

  test("PATH line, config.json, systemd unit", async () => {
    const rc = readFileSync(join(b.home, ".bashrc"), "utf8");
    expect(rc).toBe(`alias ll='ls -l'\n\n# Pilot Protocol\nexport PATH="${bin()}:$PATH"\n`);

    const cfgPath = join(b.home, ".pilot", "config.json");
    expect(statSync(cfgPath).mode & 0o777).toBe(0o600);
    expect(JSON.parse(readFileSync(cfgPath, "utf8"))).toEqual({
      registry: "127.0.0.1:9000",
      beacon: "34.71.57.205:9001",
      socket: b.sock,
      encrypt: true,
      hostname: "agent-7",
      identity: join(b.home, ".pilot", "identity.json"),
    });

    const unitPath = join(b.units, "pilot-daemon.service");
    const unit = readFileSync(unitPath, "utf8");
    expect(unit).toBe(`[Unit]
Description=Pilot Protocol Daemon
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
User=root
Environment=HOME=${b.home}
ExecStart=${bin()}/pilot-daemon \\
  -registry 127.0.0.1:9000 \\
  -beacon 34.71.57.205:9001 \\
  -listen :4000 \\
  -socket ${b.sock} \\
  -identity ${b.home}/.pilot/identity.json \\
  -encrypt -hostname agent-7 -public
Restart=on-failure
RestartSec=5

[Install]
WantedBy=multi-user.target
`);
    if (Bun.which("systemd-analyze") && process.getuid?.() === 0) {
      // User=root exists only when we really are root; elsewhere the exact text check above stands.
      const v = sh(["systemd-analyze", "verify", unitPath], { PATH: SYS_PATH });
      expect(v.err).toBe("");
      expect(v.code).toBe(0);
    }
    expect(svcLog(b)).toBe("systemctl daemon-reload\nsystemctl enable --now pilot-daemon\n");
  }, 60_000);

  test("re-run upgrades in place and keeps identity, trust and config", async () => {
    const pilot = join(b.home, ".pilot");
    const identity = JSON.stringify({ private_key: "cGxhbnRlZA==", public_key: "cGs=" }, null, 2);
    const trust = '{\n  "trusted": null\n}\n';
    writeFileSync(join(pilot, "identity.json"), identity, { mode: 0o600 });
    writeFileSync(join(pilot, "trust.json"), trust);
    const cfg = readFileSync(join(pilot, "config.json"));
    const unit = readFileSync(join(b.units, "pilot-daemon.service"));
    const rc = readFileSync(join(b.home, ".bashrc"));
    const oldIno = statSync(join(pilot, "bin", "pilotctl")).ino;

    // A different hostname on upgrade does not rewrite the kept files.
    const r = await runInstall(b, { env: { ...env, PILOT_HOSTNAME: "other" } });
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
    expect(r.out).toContain("Existing install detected");
    expect(r.out).toContain("Config kept");
    expect(readFileSync(join(pilot, "identity.json"), "utf8")).toBe(identity);
    expect(readFileSync(join(pilot, "trust.json"), "utf8")).toBe(trust);
    expect(readFileSync(join(pilot, "config.json")).equals(cfg)).toBe(true);
    expect(readFileSync(join(b.units, "pilot-daemon.service")).equals(unit)).toBe(true);
    expect(readFileSync(join(b.home, ".bashrc")).equals(rc)).toBe(true);
    // Binaries were replaced (new inode), still four hard-linked names.
    expect(statSync(join(pilot, "bin", "pilotctl")).ino).not.toBe(oldIno);
    expect(statSync(join(pilot, "bin", "pilot-daemon")).ino).toBe(statSync(join(pilot, "bin", "pilotctl")).ino);
    // A running service (the fake says active) is restarted, not re-enabled.
    expect(svcLog(b).split("\n").slice(2).join("\n")).toBe(
      "systemctl daemon-reload\nsystemctl is-active --quiet pilot-daemon\nsystemctl restart pilot-daemon\n");
  }, 60_000);

  test("installed pilotctl talks to the installed pilot-daemon (and the installed rendezvous)", async () => {
    const bin = join(b.home, ".pilot", "bin");
    const run = join(work, "run-installed");
    mkdirSync(run, { recursive: true });
    const rv = Bun.spawn([join(bin, "rendezvous"), "-registry-addr", "127.0.0.1:0", "-beacon-addr", "127.0.0.1:0", "-store", join(run, "reg.db")], { stdout: "pipe", stderr: "pipe" });
    let daemon: Proc | null = null;
    try {
      const reader = rv.stdout.getReader();
      let text = "";
      while (!/beacon listening on \S+/.test(text)) {
        const { value, done } = await reader.read();
        if (done) break;
        text += new TextDecoder().decode(value);
      }
      const reg = /registry listening on (\S+)/.exec(text)![1];
      const bea = /beacon listening on (\S+)/.exec(text)![1];
      const sock = join(run, "d.sock");
      daemon = spawnWatched([join(bin, "pilot-daemon"), "-registry", reg, "-beacon", bea, "-listen", "127.0.0.1:0", "-socket", sock, "-identity", join(run, "identity.json"), "-data-dir", run], "installed-daemon");
      await daemon.waitFor(/daemon running/);
      const info = Bun.spawn([join(bin, "pilotctl"), "--json", "info"], { env: { ...process.env, PILOT_SOCKET: sock, HOME: b.home }, stdout: "pipe", stderr: "pipe" });
      const out = await new Response(info.stdout).text();
      expect(await info.exited).toBe(0);
      const j = JSON.parse(out);
      expect(j.status).toBe("ok");
      expect(j.data.node_id).toBe(1);
      expect(j.data.address).toBe("0:0000.0000.0001");
    } finally {
      await daemon?.kill();
      rv.kill();
      await rv.exited;
    }
  }, 60_000);

  test("uninstall leaves nothing behind", async () => {
    const r = await runInstall(b, { args: ["uninstall"], env });
    expect(r.code).toBe(0);
    expect(r.out).toContain("Pilot Protocol uninstalled.");
    expect(snapshot(b.home)).toEqual(before.home);
    expect(snapshot(b.links)).toEqual(before.links);
    expect(snapshot(b.units)).toEqual(before.units);
    expect(svcLog(b)).toContain("systemctl disable --now pilot-daemon\nsystemctl daemon-reload\n");
  }, 60_000);
});

describe("install.sh on Linux as a regular user (user unit)", () => {
  const b = newBox("user");
  const userEnv = { FAKE_UID: "1000", FAKE_USER: "alice", PILOT_SYSTEMD_DIR: "", PILOT_NO_SERVICE: "1" };

  test("user unit under ~/.config/systemd/user, no PATH line when already on PATH", async () => {
    const bin = join(b.home, ".pilot", "bin");
    const r = await runInstall(b, { env: { ...userEnv, PATH: `${shim}:${bin}:${SYS_PATH}` } });
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
    const unitPath = join(b.home, ".config", "systemd", "user", "pilot-daemon.service");
    const unit = readFileSync(unitPath, "utf8");
    expect(unit).not.toContain("User=");
    expect(unit).toContain("WantedBy=default.target\n");
    expect(unit).toContain(`ExecStart=${bin}/pilot-daemon \\\n`);
    expect(unit).not.toContain("-hostname");
    expect(r.out).toContain("systemctl --user daemon-reload && systemctl --user enable --now pilot-daemon");
    expect(r.out).toContain("loginctl enable-linger alice");
    // PILOT_NO_SERVICE: the unit is written but no service manager is called.
    expect(svcLog(b)).toBe("");
    expect(existsSync(join(b.home, ".bashrc"))).toBe(false);
    if (Bun.which("systemd-analyze")) {
      const v = sh(["systemd-analyze", "verify", unitPath], { PATH: SYS_PATH });
      expect(v.err).toBe("");
      expect(v.code).toBe(0);
    }
  }, 60_000);

  test("uninstall removes the unit and the directories it created", async () => {
    const r = await runInstall(b, { args: ["uninstall"], env: userEnv });
    expect(r.code).toBe(0);
    expect(snapshot(b.home)).toEqual({});
  }, 60_000);
});

describe("install.sh on macOS (fake uname) with a reference-style archive", () => {
  const b = newBox("mac");
  const macEnv = { FAKE_UNAME_S: "Darwin", FAKE_UNAME_M: "arm64", PILOT_HOSTNAME: "mac-agent", PILOT_LAUNCHD_DIR: "" };

  test("launchd agent and daemon/gateway renamed", async () => {
    const r = await runInstall(b, { url: `${base}/fake`, env: macEnv });
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
    expect(r.out).toContain("Downloading pilot-darwin-arm64.tar.xz from");
    expect(r.out).toContain("Checksum OK");
    expect(r.out).toContain("pilotctl daemon start --hostname mac-agent\n");
    const bin = join(b.home, ".pilot", "bin");
    expect(readdirSync(bin).sort()).toEqual(["pilot-daemon", "pilot-gateway", "pilotctl"]);
    expect(sh([join(bin, "pilot-daemon"), "version"]).out).toBe("fake-daemon 9.9.9\n");
    expect(sh([join(bin, "pilot-gateway"), "version"]).out).toBe("fake-gateway 9.9.9\n");
    const plistPath = join(b.home, "Library", "LaunchAgents", "com.vulturelabs.pilot-daemon.plist");
    const plist = readFileSync(plistPath, "utf8");
    expect(plist).toContain("<key>Label</key>\n  <string>com.vulturelabs.pilot-daemon</string>");
    const args = [...plist.split("<key>ProgramArguments</key>")[1]!.split("</array>")[0]!.matchAll(/<string>([^<]*)<\/string>/g)].map((m) => m[1]);
    expect(args).toEqual([
      `${bin}/pilot-daemon`, "-registry", "34.71.57.205:9000", "-beacon", "34.71.57.205:9001", "-listen", ":4000",
      "-socket", b.sock, "-identity", `${b.home}/.pilot/identity.json`, "-encrypt", "-hostname", "mac-agent",
    ]);
    expect(plist).toContain(`<key>StandardOutPath</key>\n  <string>${b.home}/.pilot/daemon.log</string>`);
    expect(plist).toContain("<key>SuccessfulExit</key>\n    <false/>");
    expect(svcLog(b)).toBe(`launchctl load -w ${plistPath}\n`);
    // The installed pilotctl answers `version`: the upgrade banner shows it.
    const again = await runInstall(b, { url: `${base}/fake`, env: macEnv });
    expect(again.code).toBe(0);
    expect(again.out).toContain("Existing install detected (fake-pilotctl 9.9.9)");
  }, 60_000);

  test("a failed upgrade leaves the previous install untouched", async () => {
    const before = snapshot(b.home);
    const r = await runInstall(b, { url: `${base}/nochk`, env: macEnv });
    expect(r.code).toBe(1);
    expect(r.err).toContain("Error: download failed: " + `${base}/nochk/checksums.txt`);
    expect(snapshot(b.home)).toEqual(before);
    // Explicit opt-out installs unverified.
    const ok = await runInstall(b, { url: `${base}/nochk`, env: { ...macEnv, PILOT_INSECURE_NO_CHECKSUM: "1" } });
    expect(ok.code).toBe(0);
    expect(ok.out).toContain("installing unverified");
    expect(ok.out).toContain("Downloading pilot-darwin-arm64.tar.gz from");
  }, 60_000);

  test("uninstall unloads and removes the agent", async () => {
    const r = await runInstall(b, { args: ["uninstall"], env: macEnv });
    expect(r.code).toBe(0);
    expect(r.out).toContain("Removed LaunchAgent");
    expect(svcLog(b)).toContain("launchctl unload ");
    expect(snapshot(b.home)).toEqual({ Library: "dir", "Library/LaunchAgents": "dir" });
  }, 60_000);
});

describe("install.sh failures install nothing", () => {
  const cases: [string, { url?: string; env?: Record<string, string> }, RegExp][] = [
    ["checksum mismatch", { url: `/bad` }, /^Error: checksum mismatch for pilot-\w+-\w+\.tar\.gz: expected 0{64}, got [0-9a-f]{64}/m],
    ["download failure", { url: `/missing` }, /^Error: download failed: http:\/\/127\.0\.0\.1:\d+\/missing\/pilot-/m],
    ["unsupported architecture", { env: { FAKE_UNAME_M: "mips" } }, /^Error: unsupported architecture: mips$/m],
    ["unsupported OS", { env: { FAKE_UNAME_S: "FreeBSD" } }, /^Error: unsupported OS: freebsd$/m],
    ["unsafe hostname", { env: { PILOT_HOSTNAME: "a b" } }, /^Error: PILOT_HOSTNAME contains characters/m],
  ];
  for (const [name, o, msg] of cases) {
    test(name, async () => {
      const b = newBox(`fail-${name.replace(/\W+/g, "-")}`);
      writeFileSync(join(b.home, ".profile"), "# mine\n");
      const before = snapshot(b.home);
      const nReq = requests.length;
      const r = await runInstall(b, { url: o.url ? base + o.url : undefined, env: { SHELL: "/bin/sh", ...o.env } });
      expect(r.code).toBe(1);
      expect(r.err).toMatch(msg);
      expect(snapshot(b.home)).toEqual(before);
      expect(snapshot(b.links)).toEqual({});
      expect(snapshot(b.units)).toEqual({});
      // Platform and input checks happen before any download.
      if (!o.url) expect(requests.length).toBe(nReq);
    });
  }

  test("unknown argument", async () => {
    const b = newBox("fail-arg");
    const r = await runInstall(b, { args: ["frobnicate"] });
    expect(r.code).toBe(1);
    expect(r.err).toContain("Error: unknown argument: frobnicate");
    expect(snapshot(b.home)).toEqual({});
  }, 60_000);
});

describe("install.sh lint", () => {
  test.if(!!Bun.which("shellcheck"))("shellcheck -s sh is clean", () => {
    const r = sh(["shellcheck", "-s", "sh", INSTALL_SH]);
    expect(r.out + r.err).toBe("");
    expect(r.code).toBe(0);
  }, 60_000);
  test("parses under dash/sh -n", async () => {
    expect(sh(["sh", "-n", INSTALL_SH]).code).toBe(0);
  }, 60_000);
});
