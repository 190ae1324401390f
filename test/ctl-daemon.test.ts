// pilotctl daemon lifecycle (start/stop/status [--check]) as a real background process, plus
// init/config/context and the gateway subcommands' clean failures (docs/protocol.md §13).
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { existsSync, mkdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { Cluster } from "./helpers/cluster.ts";
setDefaultTimeout(40000);

const cl = new Cluster("pilot-ctl-daemon-");
let home = "", sock = "";
beforeAll(async () => {
  await cl.startRendezvous();
  home = join(cl.dir, "home");
  mkdirSync(home, { recursive: true });
  sock = join(home, "d.sock");
}, 30000);
afterAll(async () => {
  // make sure a daemon left behind by a failed test is stopped (by its pid file, never by name)
  try {
    const pid = Number(readFileSync(join(home, ".pilot/pilot.pid"), "utf8"));
    if (pid > 0) process.kill(pid, "SIGTERM");
  } catch {}
  await cl.stop();
});

async function run(args: string[], json = true, env: Record<string, string> = {}) {
  const r = await cl.ctl(null, args, { json, env: { HOME: home, PILOT_SOCKET: sock, ...env } });
  let err: any = null;
  try { err = JSON.parse(r.stderr.trim().split("\n").pop() ?? ""); } catch {}
  return { ...r, err };
}

describe("bootstrap", () => {
  test("init / config / config --set / context", async () => {
    const i = await run(["init", "--registry", cl.registry, "--beacon", cl.beacon, "--hostname", "life-node"]);
    expect(i.code).toBe(0);
    const cfgPath = join(home, ".pilot/config.json");
    expect(i.stdout).toBe(`{"data":{"beacon":"${cl.beacon}","config_path":"${cfgPath}","hostname":"life-node","registry":"${cl.registry}","socket":"/tmp/pilot.sock"},"status":"ok"}\n`);
    expect(statSync(cfgPath).mode & 0o777).toBe(0o600);
    const s = await run(["config", "--set", "socket=" + sock], false);
    expect(s.stdout).toBe(`{\n  "key": "socket",\n  "value": "${sock}"\n}\n`);
    const bad = await run(["config", "--set", "novalue"]);
    expect(bad.err).toMatchObject({ code: "invalid_argument", message: "usage: pilotctl config --set key=value" });
    const c = (await run(["config"])).json.data;
    expect(c).toMatchObject({ registry: cl.registry, beacon: cl.beacon, hostname: "life-node", socket: sock, config_path: cfgPath, pid_file: join(home, ".pilot/pilot.pid"), log_file: join(home, ".pilot/pilot.log") });
    const ctx = await run(["context"]);
    expect(Object.keys(ctx.json.data.commands)).toHaveLength(49);
    expect(ctx.json.data.extension_commands["task submit"]).toBeDefined();
    const ctxH = await run(["context"], false);
    expect(JSON.parse(ctxH.stdout)).toEqual(ctx.json.data);
  });
});

describe("daemon lifecycle", () => {
  test("status when stopped; stop when not running", async () => {
    const st = await run(["daemon", "status"], false);
    expect(st.code).toBe(0);
    expect(st.stdout).toBe("Daemon: stopped\n  start with: pilotctl daemon start\n");
    const sj = await run(["daemon", "status"]);
    expect(sj.json.data).toEqual({ pid: 0, pid_file: join(home, ".pilot/pilot.pid"), responsive: false, running: false, socket: sock });
    expect((await run(["daemon", "status", "--check"])).code).toBe(1);
    const sp = await run(["daemon", "stop"]);
    expect(sp.err).toEqual({ code: "not_running", message: "daemon is not running", status: "error" });
  });
  test("start (background, log + pid file, waits until registered) → status → already running → stop", async () => {
    const st = await run(["daemon", "start", "--listen", "127.0.0.1:0", "--socket", sock], false);
    expect(st.code).toBe(0);
    expect(st.stderr).toMatch(/^starting daemon \(pid \d+\)\.*\n$/);
    const pid = Number(/pid (\d+)/.exec(st.stderr)![1]);
    const logPath = join(home, ".pilot/pilot.log");
    expect(st.stdout).toMatch(new RegExp(`^Daemon running \\(pid ${pid}\\)\n  Address:  0:0000\\.\\w{4}\\.\\w{4}\n  Hostname: life-node\n  Socket:   ${sock.replace(/[.]/g, "\\.")}\n  Logs:     ${logPath.replace(/[.]/g, "\\.")}\n$`));
    expect(readFileSync(join(home, ".pilot/pilot.pid"), "utf8")).toBe(String(pid));
    expect(existsSync(logPath)).toBe(true);
    expect(statSync(logPath).mode & 0o777).toBe(0o600);
    const info = (await run(["info"])).json.data;
    expect(info.hostname).toBe("life-node");
    expect(info.identity).toBe(true);
    expect(existsSync(join(home, ".pilot/identity.key"))).toBe(true);
    const s = await run(["daemon", "status"], false);
    expect(s.stdout).toContain(`Daemon: running (pid ${pid})\n  Node ID:     ${info.node_id}\n  Address:     ${info.address}\n  Hostname:    life-node\n  Uptime:      `);
    const sj = (await run(["daemon", "status"])).json.data;
    expect(sj).toMatchObject({ pid, running: true, responsive: true, node_id: info.node_id, address: info.address, hostname: "life-node" });
    const chk = await run(["daemon", "status", "--check"]);
    expect([chk.code, chk.stdout, chk.stderr]).toEqual([0, "", ""]);
    const again = await run(["daemon", "start", "--socket", sock]);
    expect(again.err).toEqual({ code: "already_exists", hint: "stop it first with: pilotctl daemon stop", message: `daemon is already running (pid ${pid})`, status: "error" });
    const sp = await run(["daemon", "stop"]);
    expect(sp.stdout).toBe(`{"data":{"pid":${pid}},"status":"ok"}\n`);
    expect(existsSync(join(home, ".pilot/pilot.pid"))).toBe(false);
    expect((await run(["daemon", "status", "--check"])).code).toBe(1);
    expect((await run(["info"])).err.code).toBe("not_running");
  });
  test("start failure (bad --config): child exit detected, log tail in the message, pid file removed", async () => {
    const r = await run(["daemon", "start", "--config", join(home, "missing.json"), "--listen", "127.0.0.1:0", "--socket", sock]);
    expect(r.code).toBe(1);
    expect(r.err.code).toBe("timeout");
    expect(r.err.hint).toBe(`check logs: tail -f ${join(home, ".pilot/pilot.log")}`);
    expect(r.stdout).toBe("");
    expect(r.stderr.split("\n").filter(Boolean)).toHaveLength(1); // JSON mode: no progress lines
    expect(r.err.message).toMatch(/^daemon \(pid \d+\) exited with status \d+ before becoming ready/);
    expect(existsSync(join(home, ".pilot/pilot.pid"))).toBe(false);
  });
});

describe("gateway subcommands without a running gateway fail cleanly", () => {
  test("list / stop / unmap / map", async () => {
    for (const args of [["gateway", "list"], ["gateway", "stop"], ["gateway", "unmap", "10.4.0.1"]]) {
      const r = await run(args);
      expect(r.code).toBe(1);
      expect(r.stdout).toBe("");
      expect(r.err.status).toBe("error");
      expect(r.err.code).toBe("not_running");
    }
    const m = await run(["gateway", "map", "bogus"]);
    expect(m.code).toBe(1);
    expect(m.err.code).toBe("invalid_argument");
    const u = await run(["gateway", "map"]);
    expect(u.code).toBe(1);
  });
});
