// Throwaway PostgreSQL for the PostgreSQL-store tests and the registry bench.
//
// PILOT_TEST_PG_URL (a superuser or CREATEDB role) is used when set. Otherwise a private server
// is initialised in a temp directory from the newest /usr/lib/postgresql/*/bin (installed by
// .ci/run from Debian packages), listening on 127.0.0.1 only, with fsync and synchronous_commit
// off (PILOT_TEST_PG_DURABLE=1 keeps PostgreSQL's durable defaults: benchmarks). When running as
// root the server runs as the `postgres` user through setpriv (which execs, so the PID we hold is
// the postmaster itself and our signals reach it). Callers pair getPg() with releasePg(); the
// server is stopped (fast shutdown, data directory removed) when the last user releases it, and
// from a process-exit hook as a fallback (scripts; `bun test` does not run exit hooks reliably).
//
// Every caller gets its own fresh database from freshDb(), so runs never see each other's state.
import { chmodSync, chownSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { spawn } from "node:child_process";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SQL } from "bun";

export interface Pg {
  /** URL of the maintenance database (used to create the fresh ones). */
  adminUrl: string;
  /** CREATE DATABASE with a unique name; returns its URL. */
  freshDb(prefix?: string): Promise<string>;
}

let shared: Promise<Pg | string> | null = null;
let users = 0;
let stopLocal: (() => Promise<void>) | null = null;
let counter = 0;

/** The shared server (started on first use), or a string saying why PostgreSQL is unavailable. */
export function getPg(): Promise<Pg | string> {
  users++;
  shared ??= open().catch((e) => `PostgreSQL unavailable: ${(e as Error).message}`);
  return shared;
}

/** Drop one getPg() reference; the last one stops a server started here. */
export async function releasePg(): Promise<void> {
  if (users === 0 || --users > 0) return;
  const stop = stopLocal;
  shared = null;
  stopLocal = null;
  await stop?.();
}

function withDbName(url: string, db: string): string {
  const u = new URL(url);
  u.pathname = "/" + db;
  return u.toString();
}

async function open(): Promise<Pg> {
  const env = process.env.PILOT_TEST_PG_URL;
  const adminUrl = env || (await startLocal());
  if (env) {
    const s = new SQL(env);
    try { await s`SELECT 1`; } catch (e) { throw new Error(`PILOT_TEST_PG_URL: ${(e as Error).message}`); } finally { await s.close(); }
  }
  return {
    adminUrl,
    async freshDb(prefix = "pilot_t") {
      const name = `${prefix}_${process.pid}_${++counter}_${Date.now() % 1e6}`;
      const admin = new SQL(adminUrl);
      try {
        await admin.unsafe(`CREATE DATABASE ${name}`);
      } finally {
        await admin.close();
      }
      return withDbName(adminUrl, name);
    },
  };
}

async function startLocal(): Promise<string> {
  const base = "/usr/lib/postgresql";
  if (!existsSync(base)) throw new Error("no installation under /usr/lib/postgresql and PILOT_TEST_PG_URL not set");
  const ver = readdirSync(base).filter((v) => existsSync(join(base, v, "bin", "postgres"))).sort((a, b) => Number(a) - Number(b)).pop();
  if (!ver) throw new Error("no postgres binary under /usr/lib/postgresql/*/bin");
  const bin = join(base, ver, "bin");
  const durable = !!process.env.PILOT_TEST_PG_DURABLE;
  const dir = mkdtempSync(join(tmpdir(), "pilot-pg-"));
  chmodSync(dir, 0o755);
  const data = join(dir, "data");
  let wrap = (cmd: string[]) => cmd;
  if (process.getuid?.() === 0) {
    // initdb/postgres refuse to run as root.
    const uid = Number(Bun.spawnSync(["id", "-u", "postgres"]).stdout.toString().trim());
    const gid = Number(Bun.spawnSync(["id", "-g", "postgres"]).stdout.toString().trim());
    if (!uid) { rmSync(dir, { recursive: true, force: true, maxRetries: 5 }); throw new Error("running as root and there is no `postgres` user"); }
    chownSync(dir, uid, gid);
    wrap = (cmd) => ["setpriv", `--reuid=${uid}`, `--regid=${gid}`, "--init-groups", "--", ...cmd];
  }
  const init = Bun.spawnSync(wrap([join(bin, "initdb"), "-D", data, "-A", "trust", "-U", "pilot", "--no-sync", "-E", "UTF8"]), { stdout: "pipe", stderr: "pipe" });
  if (init.exitCode !== 0) { rmSync(dir, { recursive: true, force: true, maxRetries: 5 }); throw new Error("initdb failed: " + init.stderr.toString().trim()); }
  let lastErr = "";
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = 20000 + Math.floor(Math.random() * 20000);
    const proc = Bun.spawn(wrap([join(bin, "postgres"), "-D", data, "-p", String(port), "-k", dir,
      "-c", "listen_addresses=127.0.0.1", ...(durable ? [] : ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]),
      "-c", "max_connections=200"]), { stdout: "ignore", stderr: Bun.file(join(dir, "log")) });
    proc.unref(); // never keeps the process alive: stopped from the exit hook
    const url = `postgres://pilot@127.0.0.1:${port}/postgres`;
    let exited = false;
    proc.exited.then(() => (exited = true));
    for (let i = 0; i < 150 && !exited; i++) {
      await Bun.sleep(100);
      try {
        const s = new SQL(url);
        await s`SELECT 1`;
        await s.close();
        const onExit = () => {
          try { proc.kill("SIGINT"); } catch {} // fast shutdown: disconnects clients, exits promptly
          // Remove the data directory once the postmaster is gone (detached: we are exiting).
          try {
            spawn("sh", ["-c", `for i in $(seq 100); do kill -0 ${proc.pid} 2>/dev/null || break; sleep 0.1; done; rm -rf '${dir}'`],
              { detached: true, stdio: "ignore" }).unref();
          } catch {}
        };
        process.on("exit", onExit);
        stopLocal = async () => {
          process.off("exit", onExit);
          proc.kill("SIGINT");
          const t = setTimeout(() => proc.kill("SIGKILL"), 10_000);
          await proc.exited;
          clearTimeout(t);
          rmSync(dir, { recursive: true, force: true, maxRetries: 5 });
        };
        return url;
      } catch {}
    }
    if (!exited) proc.kill("SIGKILL");
    await proc.exited;
    try { lastErr = readFileSync(join(dir, "log"), "utf8"); } catch {}
  }
  rmSync(dir, { recursive: true, force: true, maxRetries: 5 });
  throw new Error("postgres did not come up: " + lastErr.trim().split("\n").slice(-3).join(" | "));
}
