import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { writeFileSync } from "node:fs";
import { catalog, commands } from "../src/ctl/commands.ts";
import { parserCommandNames, route } from "../src/ctl/main.ts";
import { parseFlags, goDuration, parseGoDuration, prettyJson, formatBytes } from "../src/ctl/util.ts";
import { type FakeDaemon, startFakeDaemon } from "./ipc-fake-daemon.ts";
import { runPilotctl, tempHome } from "./ctl-helpers.ts";

let fd: FakeDaemon;
beforeAll(async () => {
  fd = await startFakeDaemon({
    hostnames: { "other-agent": 3 }, refuse: [99],
    pending: [{ justification: "want to collaborate", node_id: 7, public_key: "abc=", received_at: 1736944496 }],
    trusted: [{ approved_at: 1736944500, mutual: false, network: 0, node_id: 7, public_key: "abc=" }],
  });
});
afterAll(async () => { await fd.close(); });
const ctl = (args: string[], o: Parameters<typeof runPilotctl>[1] = {}) => runPilotctl(args, { socket: fd.path, ...o });

describe("catalog and parser agree", () => {
  test("every context command exists in the parser and vice versa", async () => {
    const c = catalog() as { commands: Record<string, unknown>; extension_commands: Record<string, unknown> };
    const listed = [...Object.keys(c.commands), ...Object.keys(c.extension_commands)].sort();
    const parsed = parserCommandNames().filter((n) => !commands().find((d) => d.name === n)?.hidden).sort();
    expect(listed).toEqual(parsed);
    expect(Object.keys(c.commands).length).toBe(49);
    const r = await ctl(["--json", "context"]);
    expect(r.code).toBe(0);
    expect(Object.keys(r.json.data.commands).length).toBe(49);
    expect(r.json.data.commands["daemon stop"]).toEqual({ args: [], description: "Stop the running daemon", returns: "pid, forced (bool)" });
  });
});

describe("global behaviour", () => {
  test("no args: usage, exit 2", async () => {
    const r = await ctl(["--json"]);
    expect(r.code).toBe(2);
    expect(r.stderr.startsWith("pilotctl — Pilot Protocol CLI\n")).toBe(true);
    expect(r.stdout).toBe("");
  });
  test("unknown command: human exit 2, json exit 1", async () => {
    const h = await ctl(["frobnicate"]);
    expect(h.code).toBe(2);
    expect(h.stderr.startsWith("unknown command: frobnicate\n\n")).toBe(true);
    const j = await ctl(["frobnicate", "--json"]);
    expect(j.code).toBe(1);
    expect(j.stderr).toBe('{"code":"invalid_argument","hint":"run \'pilotctl context\' for the full command list","message":"unknown command: frobnicate","status":"error"}\n');
  });
  test("daemon not running", async () => {
    const missing = join(fd.dir, "missing.sock");
    const j = await runPilotctl(["--json", "info"], { socket: missing });
    expect(j.code).toBe(1);
    expect(j.stderr).toBe('{"code":"not_running","hint":"start the daemon with: pilotctl daemon start","message":"daemon is not running","status":"error"}\n');
    const h = await runPilotctl(["peers"], { socket: missing });
    expect(h.code).toBe(1);
    expect(h.stderr).toBe("error: daemon is not running\nhint:  start the daemon with: pilotctl daemon start\n");
  });
  test("a name from Object.prototype is an unknown command, not a group", async () => {
    const h = await ctl(["toString"]);
    expect(h.code).toBe(2);
    expect(h.stderr.startsWith("unknown command: toString\n\n")).toBe(true);
    const j = await ctl(["--json", "constructor", "x"]);
    expect(j.code).toBe(1);
    expect(j.json).toMatchObject({ code: "invalid_argument", message: "unknown command: constructor" });
  });
  test("unknown subcommand", async () => {
    const r = await ctl(["--json", "task", "zap"]);
    expect(r.json).toMatchObject({ code: "invalid_argument", message: "unknown task subcommand: zap", hint: "available: submit, accept, decline, execute, send-results, list, queue" });
  });
});

describe("daemon-backed commands (fake daemon)", () => {
  test("info json and human", async () => {
    const j = await ctl(["info", "--json"]);
    expect(j.code).toBe(0);
    expect(j.stdout.startsWith('{"data":{"address":"0:0000.0000.0005","authenticated_peers":1,')).toBe(true);
    expect(j.stdout.endsWith(',"status":"ok"}\n')).toBe(true);
    const h = await ctl(["info"]);
    expect(h.stdout).toContain("  Node ID:     5\n");
    expect(h.stdout).toContain("  Hostname:    my-agent\n");
    expect(h.stdout).toContain("  Uptime:      01:02:03\n");
    expect(h.stdout).toContain("  Encryption:  enabled (X25519 + AES-256-GCM), 1/1 peers encrypted, 1 authenticated\n");
    expect(h.stdout).toContain("  Identity:    persistent (Ed25519 q3V2abcdEFGH1234...)\n");
    expect(h.stdout).toContain("  Traffic:     1.2 MB sent / 5.0 KB recv\n");
  });
  test("peers, connections, pending, trust", async () => {
    const p = await ctl(["--json", "peers", "--search", "nomatch"]);
    expect(p.json.data).toEqual({ peers: null, total: 0 });
    const ph = await ctl(["peers"]);
    expect(ph.stdout).toContain("yes (AES-256-GCM)");
    const c = await ctl(["--json", "connections"]);
    expect(c.json.data.total).toBe(1);
    const ch = await ctl(["connections"]);
    expect(ch.stdout.startsWith("Active connections: 1\n\n")).toBe(true);
    expect(ch.stdout).toContain("      tx: 5 B (1 segs)  rx: 5 B (1 segs)  retx: 0  fast-retx: 0  sack: 0/0  dup-ack: 0\n");
    const pe = await ctl(["--json", "pending"]);
    expect(pe.json.data.pending[0].node_id).toBe(7);
    const peh = await ctl(["pending"]);
    expect(peh.stdout.split("\n")[0]).toBe(`${"NODE ID".padEnd(10)}  ${"JUSTIFICATION".padEnd(40)}  RECEIVED`);
    const t = await ctl(["trust"]);
    expect(t.stdout).toContain("7           no          -           ");
  });
  test("handshake / approve / untrust / disconnect", async () => {
    const h = await ctl(["handshake", "other-agent", "hi there"]);
    expect(h.code).toBe(0);
    expect(h.stdout).toBe("handshake request sent to node 3\n  next: node 3 must approve — or send a handshake back for auto-approval\n  check: pilotctl trust\n");
    expect((await ctl(["--json", "approve", "7"])).json.data).toEqual({ node_id: 7, status: "approved" });
    const bad = await ctl(["--json", "approve", "abc"]);
    expect(bad.json.message).toBe('invalid node_id "abc": strconv.ParseUint: parsing "abc": invalid syntax');
    const u = await ctl(["--json", "untrust", "8"]);
    expect(u.json).toMatchObject({ code: "connection_failed", message: "untrust: revoke: daemon: handshake revoke: node 8 was not trusted" });
    const d = await ctl(["--json", "disconnect", "42"]);
    expect(d.code).toBe(0);
    expect(d.json.data).toEqual({ conn_id: 42 });
  });
  test("find, set-hostname too long, tags", async () => {
    const f = await ctl(["find", "other-agent"]);
    expect(f.stdout).toBe("Hostname:  other-agent\nNode ID:   3\nAddress:   0:0000.0000.0003\nVisible:   private\n");
    const nf = await ctl(["--json", "find", "ghost"]);
    expect(nf.json.code).toBe("not_found");
    const long = await ctl(["--json", "set-hostname", "a".repeat(64)]);
    expect(long.code).toBe(1);
    // Validated locally now (docs/differences.md): invalid_argument, the daemon is not asked.
    expect(long.json.code).toBe("invalid_argument");
    expect(long.json.message).toStartWith(`invalid hostname "${"a".repeat(64)}": longer than 63 characters`);
    const t4 = await ctl(["--json", "set-tags", "a", "b", "c", "d"]);
    expect(t4.json.message).toBe("set-tags: maximum 3 tags allowed, got 4");
    const th = await ctl(["set-tags", "web", "#api"]);
    expect(th.stdout).toBe("tags set: #web #api\n");
  });
  test("invalid address / ports / count", async () => {
    const a = await ctl(["--json", "traceroute", "1:0000.0000.0001"]);
    expect(a.json.code).toBe("invalid_argument");
    expect(a.json.message).toBe("parse address: network mismatch: decimal 1 != hex 0x0000");
    const p1 = await ctl(["--json", "send", "0:0000.0000.0007", "99999", "--data", "x"]);
    expect(p1.json.message).toBe('invalid port "99999": strconv.ParseUint: parsing "99999": value out of range');
    const p2 = await ctl(["--json", "recv", "-1"]);
    expect(p2.json.message).toBe('invalid port "-1": strconv.ParseUint: parsing "-1": invalid syntax');
    const c0 = await ctl(["--json", "recv", "5000", "--count", "0"]);
    expect(c0.code).toBe(0);
    expect(c0.stdout).toBe('{"data":{"messages":null,"timeout":false},"status":"ok"}\n');
    const ci = await ctl(["--json", "ping", "7", "--count", "x"]);
    expect(ci.json.message).toBe('invalid integer for --count: strconv.Atoi: parsing "x": invalid syntax');
  });
  test("send echo + refused dial + timeout", async () => {
    const s = await ctl(["--json", "send", "0:0000.0000.0007", "7", "--data", "hello"]);
    expect(s.json.data).toEqual({ port: 7, response: "hello", sent: "hello", target: "0:0000.0000.0007" });
    const r = await ctl(["--json", "connect", "99", "7", "--message", "x"]);
    expect(r.json).toMatchObject({ code: "connection_failed", message: "cannot connect to 0:0000.0000.0063 port 7", hint: "check that 0:0000.0000.0063 is reachable: pilotctl ping 0:0000.0000.0063" });
    const t = await ctl(["--json", "recv", "5001", "--timeout", "50ms"]);
    expect(t.code).toBe(0);
    expect(t.json.data).toEqual({ messages: null, timeout: true });
  });
  test("send-file: missing file and success ack", async () => {
    const m = await ctl(["--json", "send-file", "7", join(fd.dir, "nope.txt")]);
    expect(m.json).toMatchObject({ code: "not_found", message: `file not found: ${join(fd.dir, "nope.txt")}` });
    const f = join(fd.dir, "a.txt");
    writeFileSync(f, "hi");
    const ok = await ctl(["--json", "send-file", "7", f]);
    expect(ok.json.data).toEqual({ ack: "ACK FILE 2 bytes", bytes: 2, destination: "0:0000.0000.0007", filename: "a.txt" });
  });
  test("broadcast is unavailable; config/init write files", async () => {
    const b = await ctl(["--json", "broadcast", "1", "x"]);
    expect(b.json).toEqual({ code: "unavailable", message: "broadcast is not available yet — custom networks are WIP", status: "error" });
    const home = tempHome();
    const i = await ctl(["--json", "init", "--registry", "127.0.0.1:9000"], { home });
    expect(i.json.data).toMatchObject({ registry: "127.0.0.1:9000", beacon: "127.0.0.1:9001", socket: "/tmp/pilot.sock" });
    const c = await ctl(["config"], { home });
    expect(c.stdout).toContain('  "registry": "127.0.0.1:9000",\n');
  });
  test("daemon status against a daemon not started by pilotctl", async () => {
    const s = await ctl(["--json", "daemon", "status"]);
    expect(s.json.data).toMatchObject({ responsive: true, running: true, node_id: 5, pid: 0 });
    const chk = await ctl(["daemon", "status", "--check"]);
    expect(chk.code).toBe(0);
    expect(chk.stdout + chk.stderr).toBe("");
    const down = await runPilotctl(["daemon", "status", "--check"], { socket: join(fd.dir, "x.sock") });
    expect(down.code).toBe(1);
  });
});

describe("util", () => {
  test("parseFlags rules", () => {
    const p = parseFlags(["a", "--clear", "foo", "--k=v=w", "--b", "--c", "-1"]);
    expect(p.pos).toEqual(["a"]);
    expect(p.flags.get("c")).toBe("-1");
    expect(p.flags.get("clear")).toBe("foo");
    expect(p.flags.get("k")).toBe("v=w");
    expect(p.flags.get("b")).toBe("true");
  });
  test("router: the command name, then the handler's own arguments (flags untouched)", () => {
    expect(route(["info"])?.def.name).toBe("info");
    const r = route(["daemon", "start", "--registry", "1.2.3.4:9000", "--public"])!;
    expect(r.def.name).toBe("daemon start");
    expect(r.rest).toEqual(["--registry", "1.2.3.4:9000", "--public"]);
    // flags before a subcommand name are not skipped (the reference does not skip them either)
    expect(route(["daemon", "--config", "x", "start"])).toBeNull();
    expect(route(["send", "0:0000.0000.0001", "7", "--data", "--timeout", "1s"])!.rest).toEqual(["0:0000.0000.0001", "7", "--data", "--timeout", "1s"]);
    expect(route(["toString"])).toBeNull();
    expect(route([])).toBeNull();
  });
  test("output writers: order kept across the fast and the fallback path, nothing lost into a slow pipe", async () => {
    const big = "x".repeat(1 << 20);
    const script = `import { writeOut, writeErr } from ${JSON.stringify(join(import.meta.dir, "..", "src/ctl/io.ts"))};
      writeOut("a\\n"); writeErr("e1\\n"); writeOut("%s %d\\n"); writeOut("");
      for (let i = 0; i < 4; i++) writeOut("${"x".repeat(16)}".repeat(65536) + "\\n");
      writeOut("b"); writeErr("e2"); writeOut("c\\n"); writeErr("e3\\n");`;
    // 4 MiB is far more than a pipe holds: the writer must wait for the reader, not drop or reorder.
    const p = Bun.spawn([process.execPath, "-e", script], { stdout: "pipe", stderr: "pipe" });
    const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
    expect(code).toBe(0);
    expect(out).toBe(`a\n%s %d\n${(big + "\n").repeat(4)}bc\n`);
    expect(err).toBe("e1\ne2e3\n");
  });
  test("durations and formatting", () => {
    expect(parseGoDuration("1h30m")).toBe(5400000);
    expect(parseGoDuration("5x")).toEqual({ err: 'time: unknown unit "x" in duration "5x"' });
    expect(goDuration(30000)).toBe("30s");
    expect(goDuration(120000)).toBe("2m0s");
    expect(goDuration(12.345678)).toBe("12.345678ms");
    expect(formatBytes(1048576)).toBe("1.0 MB");
    expect(prettyJson({ b: [], a: { c: 1 } })).toBe('{\n  "a": {\n    "c": 1\n  },\n  "b": []\n}');
  });
});
