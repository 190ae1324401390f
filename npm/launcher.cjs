// Launcher for the npm channel. The main package's `bin` entries (pilotctl, pilot-daemon,
// pilot-gateway, rendezvous) are tiny scripts that call run(<tool>). It finds the compiled
// executable in the platform package (pilot-ts-<os>-<cpu>, an optional dependency that npm
// installs only on the matching os/cpu) and starts it under the tool's name: the one executable
// picks the tool from its argv[0]. Node-compatible CommonJS with no dependencies, so it runs under
// whatever Node npm itself runs on.
"use strict";
const { spawn } = require("node:child_process");
const { accessSync, chmodSync, constants, existsSync } = require("node:fs");
const { dirname, join } = require("node:path");

const PLATFORMS = {
  "linux-x64": "pilot-ts-linux-x64",
  "linux-arm64": "pilot-ts-linux-arm64",
  "darwin-x64": "pilot-ts-darwin-x64",
  "darwin-arm64": "pilot-ts-darwin-arm64",
};

function fail(code, message, hint) {
  process.stderr.write(`pilot-ts: error [${code}]: ${message}\n  hint: ${hint}\n`);
  process.exit(1);
}

/** `bun` on PATH, or null. */
function findBun() {
  for (const d of (process.env.PATH || "").split(":")) {
    if (d && existsSync(join(d, "bun"))) return join(d, "bun");
  }
  return null;
}

/**
 * What to run: the platform executable ({ exe }), or, when there is none for this machine (a
 * source checkout, an unsupported platform) but Bun is installed, the TypeScript entry run by Bun
 * ({ exe: bun, pre: [src/main.ts, tool] }). PILOT_BINARY overrides (development).
 */
function locate(tool) {
  if (process.env.PILOT_BINARY) return { exe: process.env.PILOT_BINARY, pre: [] };
  const key = `${process.platform}-${process.arch}`;
  const pkg = PLATFORMS[key];
  let manifest = null;
  if (pkg) {
    try {
      manifest = require.resolve(`${pkg}/package.json`);
    } catch {
      manifest = null;
    }
  }
  if (!manifest) {
    const main = join(__dirname, "..", "src", "main.ts");
    const bun = existsSync(main) ? findBun() : null;
    if (bun) return { exe: bun, pre: [main, tool] };
    if (!pkg) {
      fail("unsupported_platform", `no pilot-ts executable for ${key}`,
        `supported: ${Object.keys(PLATFORMS).join(", ")}; elsewhere install Bun (https://bun.sh) to run from source`);
    }
    fail("platform_package_missing", `the package ${pkg} (the ${key} executable) is not installed`,
      "it is an optional dependency: reinstall without --no-optional / --omit=optional, e.g. `npm install -g pilot-ts`");
  }
  const exe = join(dirname(manifest), "bin", "pilot");
  try {
    accessSync(exe, constants.X_OK);
  } catch {
    // Some tarball extractors drop the executable bit; restore it once.
    try {
      chmodSync(exe, 0o755);
    } catch {
      fail("platform_binary_unusable", `${exe} is missing or not executable`, `reinstall ${pkg}`);
    }
  }
  return { exe, pre: [] };
}

const FORWARDED = ["SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR2", "SIGWINCH"];

function run(tool) {
  const { exe, pre } = locate(tool);
  const args = [...pre, ...process.argv.slice(2)];
  const argv0 = pre.length ? exe : tool;
  // Node >= 22.15 can replace this process outright: no extra process, signals and exit status
  // are the executable's own. PILOT_LAUNCHER_SPAWN=1 forces the child-process path (tests).
  if (typeof process.execve === "function" && !process.env.PILOT_LAUNCHER_SPAWN) {
    try {
      process.execve(exe, [argv0, ...args], process.env);
    } catch {
      // fall through to spawn
    }
  }
  const child = spawn(exe, args, { argv0, stdio: "inherit" });
  const forward = {};
  for (const sig of FORWARDED) {
    forward[sig] = () => {
      try {
        child.kill(sig);
      } catch {
        // the child is already gone
      }
    };
    process.on(sig, forward[sig]);
  }
  child.on("error", (e) => fail("exec_failed", `cannot start ${exe}: ${e.message}`, "reinstall pilot-ts"));
  child.on("exit", (code, signal) => {
    for (const sig of FORWARDED) process.removeListener(sig, forward[sig]);
    if (signal) {
      // Die of the same signal so the caller sees what the child saw.
      process.kill(process.pid, signal);
      return;
    }
    process.exit(code ?? 1);
  });
}

module.exports = { run, locate, PLATFORMS };
