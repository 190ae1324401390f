// Black-box pilotctl against a real rendezvous + three real daemons on loopback (docs/protocol.md §13.1-§4).
// Every command is run as a real `pilotctl` process, in human and --json mode, and its stdout,
// stderr and exit code are checked.
import { until as untilShared } from "./helpers/until.ts";
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
setDefaultTimeout(40000);
import { createHash, randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Driver } from "../src/client/driver.ts";
import { parseAddr } from "../src/proto/addr.ts";
import { Cluster, type DaemonHandle } from "./helpers/cluster.ts";

const cl = new Cluster("pilot-ctl-e2e-");
let A: DaemonHandle, B: DaemonHandle, C: DaemonHandle;

interface R { code: number; stdout: string; stderr: string; json: any; err: any }
/** JSON mode by default; `err` = parsed error envelope from stderr. */
async function ctl(h: DaemonHandle | null, args: string[], o: { json?: boolean; env?: Record<string, string>; stdin?: string } = {}): Promise<R> {
  const r = await cl.ctl(h, args, { json: o.json ?? true, env: o.env, stdin: o.stdin });
  let err: any = null;
  const last = r.stderr.trim().split("\n").pop() ?? "";
  if (last.startsWith("{")) { try { err = JSON.parse(last); } catch {} }
  return { ...r, err };
}
const human = (h: DaemonHandle | null, args: string[], o: { env?: Record<string, string>; stdin?: string } = {}) => ctl(h, args, { ...o, json: false });

const until = <T>(fn: () => Promise<T | null | undefined | false>, what: string, ms = 15000) => untilShared(fn, what, ms, 150);
const okEnv = (r: R) => { if (r.code !== 0) throw new Error(`exit ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`); return r.json.data; };
/** Established connections at `h` from `from` to local port `port` that have received data. */
async function fedConns(h: DaemonHandle, from: DaemonHandle, port: number): Promise<number> {
  const list = okEnv(await ctl(h, ["info"])).conn_list as any[];
  return list.filter((c) => c.local_port === port && c.remote_addr === from.address && c.state === "ESTABLISHED" && c.bytes_recv > 0).length;
}

beforeAll(async () => {
  await cl.startRendezvous();
  [A, B, C] = await Promise.all([cl.startDaemon("a"), cl.startDaemon("b"), cl.startDaemon("c")]);
  // Trust A<->B through the CLI (handshake → pending → approve).
  const hs = await ctl(A, ["handshake", String(B.nodeId), "ctl e2e"]);
  expect(hs.stdout).toBe(`{"data":{"node_id":${B.nodeId},"status":"sent"},"status":"ok"}\n`);
  await until(async () => (okEnv(await ctl(B, ["pending"])).pending as any[]).some((p) => p.node_id === A.nodeId), "pending at B");
  const ap = await human(B, ["approve", String(A.nodeId)]);
  expect(ap.stdout).toBe(`trust established with node ${A.nodeId}\n  try: pilotctl ping ${A.nodeId}\n`);
  await until(async () => (okEnv(await ctl(A, ["trust"])).trusted as any[]).some((p) => p.node_id === B.nodeId), "A trusts B");
}, 60000);

afterAll(async () => { await cl.stop(); });

describe("errors common to all commands", () => {
  test("daemon not running: json envelope + human lines, exit 1", async () => {
    const env = { PILOT_SOCKET: join(cl.dir, "nope.sock") };
    for (const cmd of [["info"], ["peers"], ["ping", "0:0000.0000.0001"], ["send-message", "1", "--data", "x"], ["set-public"], ["trust"]]) {
      const j = await ctl(null, cmd, { env });
      expect(j.code).toBe(1);
      expect(j.stdout).toBe("");
      expect(j.stderr).toBe('{"code":"not_running","hint":"start the daemon with: pilotctl daemon start","message":"daemon is not running","status":"error"}\n');
    }
    const h = await human(null, ["connections"], { env });
    expect(h.code).toBe(1);
    expect(h.stderr).toBe("error: daemon is not running\nhint:  start the daemon with: pilotctl daemon start\n");
  });
  test("invalid address / port out of range / bad numbers", async () => {
    const tr = await ctl(A, ["traceroute", "1:0000.0000.0001"]);
    expect(tr.code).toBe(1);
    expect(tr.err).toMatchObject({ code: "invalid_argument", status: "error" });
    expect(tr.err.message).toStartWith("parse address: network mismatch");
    for (const [port, why] of [["99999", "value out of range"], ["-1", "invalid syntax"]]) {
      const r = await ctl(A, ["send", B.address, port, "--data", "x"]);
      expect(r.code).toBe(1);
      expect(r.err.code).toBe("invalid_argument");
      expect(r.err.message).toBe(`invalid port "${port}": strconv.ParseUint: parsing "${port}": ${why}`);
      const rv = await ctl(A, ["recv", port]);
      expect(rv.err.message).toBe(`invalid port "${port}": strconv.ParseUint: parsing "${port}": ${why}`);
    }
    const ap = await ctl(A, ["approve", "abc"]);
    expect(ap.err).toMatchObject({ code: "invalid_argument", message: 'invalid node_id "abc": strconv.ParseUint: parsing "abc": invalid syntax' });
    const dc = await ctl(A, ["disconnect", "x"]);
    expect(dc.err.message).toBe('invalid connection ID: strconv.ParseUint: parsing "x": invalid syntax');
    const cnt = await ctl(A, ["ping", B.address, "--count", "zz"]);
    expect(cnt.err.message).toBe('invalid integer for --count: strconv.Atoi: parsing "zz": invalid syntax');
    const du = await ctl(A, ["recv", "5000", "--timeout", "5x"]);
    expect(du.err.message).toBe('invalid duration for --timeout: time: unknown unit "x" in duration "5x"');
    const bs = await ctl(A, ["bench", B.address, "abc"]);
    expect(bs.err.message).toBe('invalid size: strconv.ParseFloat: parsing "abc": invalid syntax');
  });
  test("unknown hostname: not_found (invalid_argument for send-file), find has a hint", async () => {
    const p = await ctl(A, ["ping", "no-such-host"]);
    expect(p.code).toBe(1);
    expect(p.err).toEqual({ code: "not_found", message: 'cannot resolve "no-such-host" — is the hostname correct and is there mutual trust? (see: pilotctl handshake)', status: "error" });
    const sf = await ctl(A, ["send-file", "no-such-host", "/etc/hostname"]);
    expect(sf.err.code).toBe("invalid_argument");
    const f = await human(A, ["find", "no-such-host"]);
    expect(f.code).toBe(1);
    expect(f.stderr).toBe('error: cannot find "no-such-host" — hostname not found or no mutual trust\nhint:  establish trust first: pilotctl handshake no-such-host "reason"\n');
  });
  test("broadcast is unavailable; unknown/missing subcommands", async () => {
    const b = await ctl(A, ["broadcast", "1", "hi"]);
    expect(b.code).toBe(1);
    expect(b.stderr).toBe('{"code":"unavailable","message":"broadcast is not available yet — custom networks are WIP","status":"error"}\n');
    const d = await ctl(A, ["daemon"]);
    expect(d.err).toEqual({ code: "invalid_argument", hint: "available: pilotctl daemon start | stop | status", message: "missing subcommand", status: "error" });
  });
});

describe("node settings", () => {
  test("info: human lines scripts grep, exact JSON keys", async () => {
    const h = await human(A, ["info"]);
    expect(h.code).toBe(0);
    expect(h.stdout).toStartWith("Pilot Protocol Daemon\n");
    const get = (label: string) => h.stdout.split("\n").find((l) => l.trim().startsWith(label))!.trim().split(/\s+/);
    expect(get("Node ID:")[2]).toBe(String(A.nodeId));
    expect(get("Address:")[1]).toBe(A.address);
    expect(h.stdout).toMatch(/Encryption:.*enabled/);
    expect(h.stdout).toContain("  Identity:    persistent (Ed25519 ");
    const j = await ctl(A, ["info"]);
    expect(j.stdout).toStartWith('{"data":{"address":"' + A.address + '","authenticated_peers":');
    expect(j.stdout).toEndWith(',"status":"ok"}\n');
    for (const k of ["address", "authenticated_peers", "bytes_recv", "bytes_sent", "conn_list", "connections", "encrypt", "encrypted_peers", "hostname", "identity", "node_id", "owner", "peer_list", "peers", "pkts_recv", "pkts_sent", "ports", "public_key", "uptime_secs"]) expect(j.json.data).toHaveProperty(k);
    expect(j.json.data.ports).toBe(5);
  });
  test("set-hostname / find / info Hostname: / clear-hostname; too long and invalid hostnames", async () => {
    const s = await human(B, ["set-hostname", "ctl-bee"]);
    expect(s.stdout).toBe("hostname set: ctl-bee\n");
    expect(JSON.parse(readFileSync(join(B.home, ".pilot/config.json"), "utf8")).hostname).toBe("ctl-bee");
    const i = await human(B, ["info"]);
    expect(i.stdout).toContain("  Hostname:    ctl-bee\n");
    const f = await human(A, ["find", "ctl-bee"]);
    expect(f.stdout).toBe(`Hostname:  ctl-bee\nNode ID:   ${B.nodeId}\nAddress:   ${B.address}\nVisible:   private\n`);
    const fj = await ctl(A, ["find", "ctl-bee"]);
    expect(fj.stdout).toBe(`{"data":{"address":"${B.address}","hostname":"ctl-bee","node_id":${B.nodeId},"public":false},"status":"ok"}\n`);
    // Hostname target resolution with the stderr note in human mode only.
    const ph = await human(A, ["ping", "ctl-bee", "--count", "1"]);
    expect(ph.stderr).toBe(`resolved "ctl-bee" → ${B.address}\n`);
    expect(ph.stdout).toMatch(new RegExp(`^PING ${B.address}\nseq=0 bytes=6 time=\\S+\n$`));
    const pj = await ctl(A, ["ping", "ctl-bee", "--count", "1"]);
    expect(pj.stderr).toBe("");
    expect(pj.json.data.results[0]).toMatchObject({ bytes: 6, seq: 0 });
    const long = await ctl(B, ["set-hostname", "x".repeat(70)]);
    expect(long.code).toBe(1);
    expect(long.err.code).toBe("invalid_argument");
    const bad = await ctl(B, ["set-hostname", "Bad_Name"]);
    expect(bad.err.code).toBe("invalid_argument");
    const taken = await ctl(C, ["set-hostname", "ctl-bee"]);
    expect(taken.code).toBe(1);
    expect(taken.err.code).toBe("connection_failed");
    const sj = await ctl(C, ["set-hostname", "ctl-sea"]);
    expect(sj.stdout).toBe(`{"data":{"hostname":"ctl-sea","node_id":${C.nodeId}},"status":"ok"}\n`);
    const c = await ctl(C, ["clear-hostname"]);
    expect(c.stdout).toBe('{"data":{"hostname":""},"status":"ok"}\n');
    expect(existsSync(join(C.home, ".pilot/config.json")) && JSON.parse(readFileSync(join(C.home, ".pilot/config.json"), "utf8")).hostname).toBeFalsy();
    expect((await human(C, ["clear-hostname"])).stdout).toBe("hostname cleared\n");
  });
  test("set-public / set-private / lookup / set-tags / clear-tags / enable-tasks / disable-tasks", async () => {
    const pub = await ctl(C, ["set-public"]);
    expect(pub.stdout).toBe(`{"data":{"node_id":${C.nodeId},"type":"set_visibility_ok","visibility":"public"},"status":"ok"}\n`);
    const lk = await human(A, ["lookup", String(C.nodeId)]);
    expect(lk.stdout).toContain('"public": true');
    expect(lk.stdout).toContain('"type": "lookup_ok"');
    const priv = await human(C, ["set-private"]);
    expect(priv.stdout).toContain('"visibility": "private"');
    const t = await human(C, ["set-tags", "web-server", "#api"]);
    expect(t.stdout).toBe("tags set: #web-server #api\n");
    const tj = await ctl(C, ["set-tags", "gpu"]);
    expect(tj.stdout).toBe(`{"data":{"node_id":${C.nodeId},"tags":["gpu"]},"status":"ok"}\n`);
    const four = await ctl(C, ["set-tags", "a", "b", "c", "d"]);
    expect(four.err).toMatchObject({ code: "invalid_argument", message: "set-tags: maximum 3 tags allowed, got 4" });
    const badTag = await ctl(C, ["set-tags", "Bad Tag"]);
    expect(badTag.code).toBe(1);
    expect(badTag.err.code).toBe("invalid_argument");
    expect((await ctl(A, ["lookup", String(C.nodeId)])).json.data.tags).toEqual(["gpu"]);
    expect((await ctl(C, ["clear-tags"])).stdout).toBe('{"data":{"tags":[]},"status":"ok"}\n');
    expect((await human(C, ["clear-tags"])).stdout).toBe("tags cleared\n");
    const en = await ctl(C, ["enable-tasks"]);
    expect(en.stdout).toBe(`{"data":{"node_id":${C.nodeId},"task_exec":true,"type":"set_task_exec_ok"},"status":"ok"}\n`);
    expect((await ctl(A, ["lookup", String(C.nodeId)])).json.data.task_exec).toBe(true);
    const dis = await human(C, ["disable-tasks"]);
    expect(dis.stdout).toContain('"task_exec": false');
    const lkBad = await ctl(A, ["lookup", "999999"]);
    expect(lkBad.code).toBe(1);
    expect(lkBad.err.message).toStartWith("lookup: registry: ");
    const noReg = await ctl(A, ["lookup", "1"], { env: { PILOT_REGISTRY: "127.0.0.1:1" } });
    expect(noReg.err).toEqual({ code: "connection_failed", hint: "check that the registry is running at 127.0.0.1:1, or set PILOT_REGISTRY", message: "cannot reach registry at 127.0.0.1:1", status: "error" });
  });
  test("set-webhook / clear-webhook with a real HTTP receiver", async () => {
    const got: any[] = [];
    const srv = Bun.serve({ hostname: "127.0.0.1", port: 0, async fetch(req) { got.push(await req.json()); return new Response("ok"); } });
    try {
      const url = `http://127.0.0.1:${srv.port}/hook`;
      const bad = await ctl(C, ["set-webhook", "ftp://x"]);
      expect(bad.err).toMatchObject({ code: "invalid_argument", message: "webhook URL must start with http:// or https://" });
      const s = await human(C, ["set-webhook", url]);
      expect(s.stdout).toBe(`webhook set: ${url}\napplied to running daemon\n`);
      expect(JSON.parse(readFileSync(join(C.home, ".pilot/config.json"), "utf8")).webhook).toBe(url);
      // Cause events at C: publish on its own broker (pubsub.subscribed / pubsub.published).
      await ctl(C, ["set-hostname", "ctl-hook"]);
      okEnv(await ctl(C, ["publish", C.address, "hooks", "--data", "x"]));
      await until(async () => got.some((e) => e.event === "pubsub.published"), "webhook delivery");
      expect(got.find((e) => e.event === "pubsub.published")).toMatchObject({ node_id: C.nodeId, data: { size: 1, topic: "hooks" } });
      await ctl(A, ["handshake", String(C.nodeId), "hook"]);
      const c = await ctl(C, ["clear-webhook"]);
      expect(c.stdout).toBe('{"data":{"applied":true,"webhook":""},"status":"ok"}\n');
      expect(JSON.parse(readFileSync(join(C.home, ".pilot/config.json"), "utf8")).webhook).toBeUndefined();
      // Not running: still saved, not applied.
      const off = await ctl(null, ["set-webhook", url], { env: { HOME: join(cl.dir, "nohome"), PILOT_SOCKET: join(cl.dir, "nope.sock") } });
      expect(off.stdout).toBe(`{"data":{"applied":false,"webhook":"${url}"},"status":"ok"}\n`);
    } finally { srv.stop(true); }
  });
});

describe("trust", () => {
  test("pending / reject / trust tables / untrust", async () => {
    // A asked C in the webhook test; C has a pending request from A.
    await until(async () => (okEnv(await ctl(C, ["pending"])).pending as any[]).some((p) => p.node_id === A.nodeId), "pending at C");
    const ph = await human(C, ["pending"]);
    expect(ph.stdout).toStartWith("NODE ID     JUSTIFICATION                             RECEIVED\n");
    expect(ph.stdout).toContain(`${String(A.nodeId).padEnd(10)}  hook`);
    const rj = await human(C, ["reject", String(A.nodeId), "no thanks"]);
    expect(rj.stdout).toBe(`handshake from node ${A.nodeId} rejected\n`);
    expect(okEnv(await ctl(C, ["pending"])).pending).toEqual([]);
    expect((await human(C, ["pending"])).stdout).toBe("no pending handshake requests\n  requests appear here when another node sends: pilotctl handshake <your-node-id>\n");
    expect((await human(C, ["trust"])).stdout).toBe('no trusted peers\n  establish trust: pilotctl handshake <node_id|hostname> "reason"\n');
    const th = await human(A, ["trust"]);
    expect(th.stdout).toStartWith("NODE ID     MUTUAL      NETWORK     APPROVED AT\n");
    const tj = okEnv(await ctl(A, ["trust"]));
    expect(Object.keys(tj.trusted[0]).sort()).toEqual(["approved_at", "mutual", "network", "node_id", "public_key"]);
    // handshake by address and by hostname (human notes on stderr)
    const byAddr = await human(C, ["handshake", A.address]);
    expect(byAddr.stderr).toBe(`parsed address ${A.address} → node ${A.nodeId}\n`);
    expect(byAddr.stdout).toBe(`handshake request sent to node ${A.nodeId}\n  next: node ${A.nodeId} must approve — or send a handshake back for auto-approval\n  check: pilotctl trust\n`);
    const byName = await human(A, ["handshake", "ctl-hook"]);
    expect(byName.stderr).toBe(`resolved ctl-hook → node ${C.nodeId}\n`);
    // untrust of a node that is not trusted
    const un = await ctl(C, ["untrust", "4000000"]);
    expect(un.code).toBe(1);
    expect(un.err.code).toBe("connection_failed");
    expect(un.err.message).toStartWith("untrust: ");
    const unBad = await ctl(C, ["untrust", "x"]);
    expect(unBad.err.message).toBe('invalid node_id: strconv.ParseUint: parsing "x": invalid syntax');
  });
});

describe("streams", () => {
  test("recv on B, send / connect from A; response and no-response paths", async () => {
    const rv = cl.ctl(B, ["recv", "5000", "--count", "2", "--timeout", "20s"], { json: true });
    // wait until the port is bound (a send before that gets refused)
    await until(async () => { const r = await ctl(A, ["send", B.address, "5000", "--data", "hello", "--timeout", "5s"]); return r.code === 0 ? r : null; }, "send to bound port");
    const c2 = await human(A, ["connect", B.address, "5000", "--message", "second"]);
    expect(c2.code).toBe(0);
    expect(c2.stderr).toBe("sent 6 bytes (no response)\n");
    const r = await rv;
    expect(r.code).toBe(0);
    expect(r.stderr).toBe("");
    expect(r.json).toEqual({ data: { messages: [{ bytes: 5, data: "hello", port: 5000, seq: 0 }, { bytes: 6, data: "second", port: 5000, seq: 1 }], timeout: false }, status: "ok" });
  });
  test("connect/send to echo port (7) get the response; pipe mode", async () => {
    const s = await ctl(A, ["send", B.address, "7", "--data", "ping"]);
    expect(s.stdout).toBe(`{"data":{"port":7,"response":"ping","sent":"ping","target":"${B.address}"},"status":"ok"}\n`);
    const h = await human(A, ["connect", String(B.nodeId), "7", "--message", "yo"]);
    expect(h.stdout).toBe("yo\n");
    const pipe = await human(A, ["connect", B.address, "7"], { stdin: "line1\nline2\n" });
    expect(pipe.stdout).toBe("line1\nline2\n");
    const empty = await ctl(A, ["connect", B.address, "7"], { stdin: "" });
    expect(empty.err).toMatchObject({ code: "invalid_argument", message: "no data on stdin — use --message or pipe data" });
    const nod = await ctl(A, ["send", B.address, "7"]);
    expect(nod.err.message).toBe("--data is required");
  });
  test("recv timeouts and count 0; progress only in human mode", async () => {
    const t = await ctl(A, ["recv", "5001", "--timeout", "300ms"]);
    expect(t.stdout).toBe('{"data":{"messages":null,"timeout":true},"status":"ok"}\n');
    expect(t.stderr).toBe("");
    const th = await human(A, ["recv", "5001", "--timeout", "300ms"]);
    expect(th.code).toBe(0);
    expect(th.stderr).toBe("timeout\n");
    const z = await ctl(A, ["recv", "5002", "--count", "0"]);
    expect(z.stdout).toBe('{"data":{"messages":null,"timeout":false},"status":"ok"}\n');
    const bound = await ctl(A, ["recv", "7", "--timeout", "1s"]);
    expect(bound.code).toBe(1);
    expect(bound.err.code).toBe("connection_failed");
    expect(bound.err.message).toStartWith("listen: ");
  });
  test("send timeout: no response within the --timeout", async () => {
    // B binds 5003, reads the request and holds the connection open without answering
    const d = await Driver.connect(B.socket);
    try {
      const l = await d.listen(5003);
      const held = l.accept({ timeoutMs: 20000 }).then(async (c) => ({ c, req: await c.read({ timeoutMs: 20000 }) }));
      const r = await ctl(A, ["send", B.address, "5003", "--data", "x", "--timeout", "300ms"]);
      expect(r.code).toBe(1);
      expect(r.err).toMatchObject({ code: "timeout", message: "no response within 300ms", hint: `increase with --timeout, or check peer: pilotctl ping ${B.address}` });
      const { c, req } = await held;
      expect(new TextDecoder().decode(req!)).toBe("x");
      c.close();
    } finally {
      d.close();
    }
  });
  test("dial failure to an untrusted private node: E-DIAL", async () => {
    const r = await ctl(C, ["send", B.address, "7", "--data", "x", "--timeout", "5s"]);
    expect(r.code).toBe(1);
    expect(r.err).toMatchObject({ code: "connection_failed", message: `cannot connect to ${B.address} port 7`, hint: `check that ${B.address} is reachable: pilotctl ping ${B.address}` });
  }, 40000);
});

describe("data exchange", () => {
  test("send-file > 1 MiB: SHA-256 verified in the receiver's ~/.pilot/received; received lists and clears", async () => {
    const data = randomBytes(1_500_000);
    const f = join(cl.dir, "big.bin");
    writeFileSync(f, data);
    const h = await human(A, ["send-file", B.address, f]);
    expect(h.code).toBe(0);
    const out = JSON.parse(h.stdout);
    expect(out).toEqual({ ack: "ACK FILE 1500000 bytes", bytes: 1500000, destination: B.address, filename: "big.bin" });
    expect(h.stdout).toContain('\n  "ack": "ACK FILE 1500000 bytes",\n');
    expect(h.stderr).toBe(`sending big.bin (1.4 MB) to ${B.address}...\n`);
    const hj = await ctl(A, ["send-file", String(B.nodeId), f]);
    expect(hj.stderr).toBe("");
    expect(hj.json.data.ack).toBe("ACK FILE 1500000 bytes");
    const dir = join(B.home, ".pilot/received");
    const names = readdirSync(dir).sort();
    expect(names.length).toBe(2);
    for (const n of names) expect(createHash("sha256").update(readFileSync(join(dir, n))).digest("hex")).toBe(createHash("sha256").update(data).digest("hex"));
    const j = okEnv(await ctl(B, ["received"]));
    expect(j.total).toBe(2);
    expect(j.dir).toBe(dir);
    expect(j.files[0]).toMatchObject({ bytes: 1500000, name: names[0], path: join(dir, names[0]) });
    const rh = await human(B, ["received"]);
    expect(rh.stdout).toStartWith(`Received files (${dir}):\n\n  NAME`);
    expect(rh.stdout).toEndWith("\ntotal: 2\n");
    const missing = await ctl(A, ["send-file", B.address, join(cl.dir, "nope.txt")]);
    expect(missing.err).toMatchObject({ code: "not_found", message: `file not found: ${join(cl.dir, "nope.txt")}` });
    expect((await ctl(B, ["received", "--clear"])).stdout).toBe('{"data":{"cleared":2},"status":"ok"}\n');
    expect(okEnv(await ctl(B, ["received"])).files).toBeNull();
    expect((await human(C, ["received"])).stdout).toBe("no received files\n  files appear here when someone sends: pilotctl send-file <your-hostname> <file>\n");
  });
  test("send-message text/json + inbox (+ --clear); bad --type", async () => {
    const m = await ctl(A, ["send-message", B.address, "--data", "hello inbox"]);
    expect(m.stdout).toBe(`{"data":{"ack":"ACK TEXT 11 bytes","bytes":11,"target":"${B.address}","type":"text"},"status":"ok"}\n`);
    const mj = await ctl(A, ["send-message", String(B.nodeId), "--data", '{"a":1}', "--type", "json"]);
    expect(mj.json.data.ack).toBe("ACK JSON 7 bytes");
    const bad = await ctl(A, ["send-message", B.address, "--data", "x", "--type", "TEXT"]);
    expect(bad.err).toMatchObject({ code: "invalid_argument", message: 'unknown type "TEXT" (use text, json, or binary)' });
    const ib = okEnv(await ctl(B, ["inbox"]));
    expect(ib.total).toBe(2);
    expect(ib.messages.map((x: any) => x.type).sort()).toEqual(["JSON", "TEXT"]);
    expect(ib.messages.find((x: any) => x.type === "TEXT")).toMatchObject({ bytes: 11, data: "hello inbox", from: A.address });
    const ih = await human(B, ["inbox"]);
    expect(ih.stdout).toStartWith("Inbox (2 messages):\n\n");
    expect(ih.stdout).toContain(`from ${A.address} type=TEXT\n    hello inbox\n`);
    expect((await human(B, ["inbox", "--clear"])).stdout).toBe("cleared 2 message(s)\n");
    const noDir = await ctl(C, ["inbox", "--clear"]);
    // C never received a message: its daemon creates the inbox directory on the first one
    expect(noDir.code).toBe(1);
    expect(noDir.err).toMatchObject({ code: "not_found", message: "inbox is empty" });
  });
  test("subscribe / publish, including the * wildcard; NDJSON without --count, nothing on stderr in json", async () => {
    const base = await fedConns(B, A, 1002);
    const sub = cl.ctl(A, ["subscribe", B.address, "*", "--count", "2", "--timeout", "20s"], { json: true });
    const subH = cl.ctl(A, ["subscribe", B.address, "status", "--count", "1", "--timeout", "20s"], { json: false });
    const nd = cl.ctl(A, ["subscribe", B.address, "status", "--timeout", "6s"], { json: true });
    // the broker at B has the three subscriptions (each connection's first event) before we publish
    await until(async () => (await fedConns(B, A, 1002)) >= base + 3, "three subscriptions at B");
    const p1 = await ctl(A, ["publish", B.address, "status", "--data", "online"]);
    expect(p1.stdout).toBe(`{"data":{"bytes":6,"target":"${B.address}","topic":"status"},"status":"ok"}\n`);
    const p2 = await human(C, ["publish", B.address, "x", "--data", "y"]); // untrusted → dial failure
    expect(p2.code).toBe(1);
    expect(p2.stderr).toBe(`error: cannot connect to ${B.address} (event stream port 1002)\nhint:  check that ${B.address} is reachable: pilotctl ping ${B.address}\n`);
    const p3 = await ctl(A, ["publish", B.address, "other", "--data", "two"]);
    expect(p3.code).toBe(0);
    const s = await sub;
    expect(s.stderr).toBe("");
    expect(s.json).toEqual({ data: { events: [{ bytes: 6, data: "online", topic: "status" }, { bytes: 3, data: "two", topic: "other" }], timeout: false }, status: "ok" });
    const h = await subH;
    expect(h.stderr).toBe(`subscribed to "status" on ${B.address} — waiting for events...\n`);
    expect(h.stdout).toBe("[status] online\n");
    const n = await nd;
    expect(n.code).toBe(0);
    expect(n.stderr).toBe("");
    expect(n.stdout).toBe('{"bytes":6,"data":"online","topic":"status"}\n');
    const to = await ctl(A, ["subscribe", B.address, "quiet", "--count", "1", "--timeout", "300ms"]);
    expect(to.stdout).toBe('{"data":{"events":null,"timeout":true},"status":"ok"}\n');
  }, 40000);
  test("listen receives datagrams (NDJSON / counted envelope / human)", async () => {
    let done = 0;
    const l = cl.ctl(B, ["listen", "6000", "--count", "1", "--timeout", "15s"], { json: true }).finally(() => done++);
    const lh = cl.ctl(B, ["listen", "6000", "--count", "1", "--timeout", "15s"], { json: false }).finally(() => done++);
    const d = await Driver.connect(A.socket);
    try {
      // A listener cannot tell when it is connected in --json mode: send rounds until both got one
      // (each takes the first datagram for its port and exits).
      await until(async () => {
        await d.sendTo(parseAddr(B.address), 6001, "other port");
        await d.sendTo(parseAddr(B.address), 6000, "dgram!");
        return done === 2;
      }, "both listeners received a datagram");
      const r = await l;
      expect(r.code).toBe(0);
      expect(r.json.data.timeout).toBe(false);
      expect(r.json.data.messages).toHaveLength(1);
      expect(r.json.data.messages[0]).toMatchObject({ bytes: 6, data: "dgram!", src_addr: A.address });
      const h = await lh;
      expect(h.stderr).toBe("listening on port 6000 — waiting for datagrams...\n");
      expect(h.stdout).toMatch(new RegExp(`^\\[${A.address}:\\d+\\] dgram!\n$`));
    } finally { d.close(); }
    const t = await ctl(B, ["listen", "6000", "--count", "1", "--timeout", "200ms"]);
    expect(t.stdout).toBe('{"data":{"messages":null,"timeout":true},"status":"ok"}\n');
  });
});

describe("diagnostics", () => {
  test("ping / traceroute / bench (MB/s) / peers / connections / disconnect", async () => {
    const p = okEnv(await ctl(A, ["ping", B.address, "--count", "2"]));
    expect(p.target).toBe(B.address);
    expect(p.timeout).toBe(false);
    expect(p.results.map((x: any) => [x.seq, x.bytes])).toEqual([[0, 6], [1, 6]]);
    const z = await ctl(A, ["ping", B.address, "--count", "0"]);
    expect(z.stdout).toBe(`{"data":{"results":null,"target":"${B.address}","timeout":false},"status":"ok"}\n`);
    const tr = await human(A, ["traceroute", B.address]);
    expect(tr.stdout).toMatch(new RegExp(`^TRACEROUTE ${B.address}\n  1  ${B.address}  setup=\\S+\n(     rtt=\\S+ bytes=7\n){3}\nsetup includes: tunnel negotiation \\+ SYN/ACK handshake\nrtt is: data round-trip over established connection\n$`));
    const trj = okEnv(await ctl(A, ["traceroute", B.address]));
    expect(trj.rtt_samples).toHaveLength(3);
    expect(Object.keys(trj).sort()).toEqual(["rtt_samples", "setup_ms", "target"]);
    const bh = await human(A, ["bench", B.address, "0.5"]);
    expect(bh.code).toBe(0);
    expect(bh.stdout).toMatch(new RegExp(`^BENCH ${B.address} — sending 512\\.0 KB via echo port\n  Sent:     512\\.0 KB in \\S+ \\([\\d.]+ MB/s\\)\n  Echoed:   512\\.0 KB in \\S+ \\([\\d.]+ MB/s round-trip\\)\n$`));
    const bjr = await ctl(A, ["bench", B.address, "0.25"]);
    expect(bjr.stderr).toBe("");
    const bj = okEnv(bjr);
    expect(bj).toMatchObject({ recv_bytes: 262144, sent_bytes: 262144, target: B.address });
    expect(typeof bj.total_mbps).toBe("number");
    const pe = okEnv(await ctl(A, ["peers"]));
    expect(pe.total).toBeGreaterThanOrEqual(1);
    expect(pe.peers.some((x: any) => x.node_id === B.nodeId && x.encrypted === true && x.authenticated === true)).toBe(true);
    const ps = await ctl(A, ["peers", "--search", "zzzz"]);
    expect(ps.stdout).toBe('{"data":{"peers":null,"total":0},"status":"ok"}\n');
    expect((await human(A, ["peers", "--search", "zzzz"])).stdout).toBe('no peers matching "zzzz"\n');
    const ph = await human(A, ["peers"]);
    expect(ph.stdout).toStartWith("NODE ID     ENDPOINT                        ENCRYPTED             AUTH\n");
    // a held connection shows in connections, then disconnect closes it
    const d = await Driver.connect(A.socket);
    try {
      const conn = await d.dial(parseAddr(B.address), 7);
      const cj = okEnv(await ctl(A, ["connections"]));
      const rec = cj.connections.find((x: any) => x.id === conn.id);
      expect(rec).toMatchObject({ remote_addr: B.address, remote_port: 7, state: "ESTABLISHED" });
      const chh = await human(A, ["connections"]);
      // The total may differ between the two calls (TIME_WAIT entries are reaped in between).
      expect(chh.stdout).toMatch(/^Active connections: \d+\n\nID    LOCAL   REMOTE ADDR /);
      expect(chh.stdout).toMatch(new RegExp(`\\n${conn.id} +\\d+ +${B.address.replace(/\./g, "\\.")}`));
      const dc = await ctl(A, ["disconnect", String(conn.id)]);
      expect(dc.stdout).toBe(`{"data":{"conn_id":${conn.id}},"status":"ok"}\n`);
    } finally { d.close(); }
  }, 40000);
});

describe("tasks over port 1003", () => {
  test("submit → accept → queue → execute → send-results; decline; error paths", async () => {
    const s = await ctl(A, ["task", "submit", B.address, "--task", "summarize <paper>"]);
    const sd = okEnv(s);
    expect(sd).toMatchObject({ accepted: true, message: "Task received with status NEW", status: 200, target: B.address, task: "summarize <paper>" });
    expect(s.stdout).toContain("summarize \\u003cpaper\\u003e");
    const id = sd.task_id as string;
    expect(JSON.parse(readFileSync(join(A.home, ".pilot/tasks/submitted", `${id}.json`), "utf8")).status).toBe("NEW");
    const lst = okEnv(await ctl(B, ["task", "list", "--type", "received"]));
    expect(lst.tasks).toEqual([expect.objectContaining({ category: "received", task_id: id, status: "NEW", from: A.address, to: B.address })]);
    expect((await human(B, ["task", "list"])).stdout).toContain(`[received] ${id} (NEW) - summarize <paper>\n  From: ${A.address} → To: ${B.address}\n`);
    expect((await ctl(B, ["task", "accept"])).err).toMatchObject({ code: "invalid_argument", message: "--id is required" });
    expect((await ctl(B, ["task", "accept", "--id", "00000000-0000-0000-0000-000000000000"])).err).toMatchObject({ code: "not_found", hint: "check pilotctl task list --type received" });
    expect((await ctl(B, ["task", "execute"])).err).toMatchObject({ code: "not_found", message: "no accepted tasks to execute" });
    const ac = await ctl(B, ["task", "accept", "--id", id]);
    expect(ac.stdout).toBe(`{"data":{"message":"Task accepted","status":"ACCEPTED","task_id":"${id}"},"status":"ok"}\n`);
    await until(async () => JSON.parse(readFileSync(join(A.home, ".pilot/tasks/submitted", `${id}.json`), "utf8")).status === "ACCEPTED", "submitter sees ACCEPTED");
    expect((await ctl(B, ["task", "accept", "--id", id])).err).toMatchObject({ code: "invalid_state", message: `task ${id} is already ACCEPTED` });
    const q = okEnv(await ctl(B, ["task", "queue"]));
    expect(q).toMatchObject({ count: 1, queue: [expect.objectContaining({ task_id: id, from: A.address })] });
    expect((await human(B, ["task", "queue"])).stdout).toBe(`Queued tasks (1):\n  1. ${id}: summarize <paper>\n     From: ${A.address}\n`);
    const ex = await ctl(B, ["task", "execute"]);
    expect(ex.stdout).toBe(`{"data":{"from":"${A.address}","status":"EXECUTING","task_description":"summarize \\u003cpaper\\u003e","task_id":"${id}"},"status":"ok"}\n`);
    expect((await human(B, ["task", "queue"])).stdout).toBe("Queue is empty\n");
    const badExt = await ctl(B, ["task", "send-results", "--id", id, "--file", "/etc/passwd"]);
    expect(badExt.err).toMatchObject({ code: "invalid_argument", message: 'file type "" not allowed for results' });
    const sr = await ctl(B, ["task", "send-results", "--id", id, "--results", "done: 42"]);
    expect(sr.stdout).toBe(`{"data":{"sent_to":"${A.address}","sent_type":"text","status":"SUCCEEDED","task_id":"${id}"},"status":"ok"}\n`);
    const resFile = join(A.home, ".pilot/tasks/results", `${id}_result.txt`);
    await until(async () => existsSync(resFile), "result file at submitter");
    expect(readFileSync(resFile, "utf8")).toBe("done: 42");
    await until(async () => JSON.parse(readFileSync(join(A.home, ".pilot/tasks/submitted", `${id}.json`), "utf8")).status === "COMPLETED", "submitter COMPLETED");
    expect((await ctl(B, ["task", "send-results", "--id", id, "--results", "again"])).err).toMatchObject({ code: "invalid_state", message: `task ${id} cannot receive results (status: SUCCEEDED)` });
    // Polo: A paid 1 and B earned a reward, so A's next submission to B is refused (exit 0, accepted:false).
    const rej = okEnv(await ctl(A, ["task", "submit", B.address, "--task", "refused"]));
    expect(rej).toMatchObject({ accepted: false, status: 400 });
    expect(rej.message).toMatch(/^Polo score too low: submitter=-?\d+, receiver=\d+$/);
    // decline path + file results, B → A this time
    const id2 = okEnv(await ctl(B, ["task", "submit", String(A.nodeId), "--task", "second"])).task_id;
    expect((await ctl(A, ["task", "decline", "--id", id2])).err).toMatchObject({ code: "invalid_argument", message: "--justification is required" });
    const dc = await ctl(A, ["task", "decline", "--id", id2, "--justification", "busy now"]);
    expect(dc.stderr).toBe("");
    expect(dc.stdout).toBe(`{"data":{"justification":"busy now","message":"Task declined","status":"DECLINED","task_id":"${id2}"},"status":"ok"}\n`);
    await until(async () => JSON.parse(readFileSync(join(B.home, ".pilot/tasks/submitted", `${id2}.json`), "utf8")).status === "DECLINED", "submitter DECLINED");
    expect((await ctl(A, ["task", "accept", "--id", id2])).err).toMatchObject({ code: "invalid_state", message: `task ${id2} is already DECLINED` });
    const s3 = okEnv(await ctl(B, ["task", "submit", A.address, "--task", "third"]));
    expect(s3.accepted).toBe(true);
    const id3 = s3.task_id;
    okEnv(await ctl(A, ["task", "accept", "--id", id3]));
    const rf = join(cl.dir, "report.md");
    writeFileSync(rf, "# report\n");
    const fr = okEnv(await ctl(A, ["task", "send-results", "--id", id3, "--file", rf]));
    expect(fr).toEqual({ file_size: 9, filename: "report.md", sent_to: B.address, sent_type: "file", status: "SUCCEEDED", task_id: id3 });
    await until(async () => existsSync(join(B.home, ".pilot/tasks/results", `${id3}_report.md`)), "file result at submitter");
    expect(readFileSync(join(B.home, ".pilot/tasks/results", `${id3}_report.md`), "utf8")).toBe("# report\n");
    const noTask = await ctl(A, ["task", "submit", B.address]);
    expect(noTask.err).toMatchObject({ code: "invalid_argument", message: "--task is required" });
    const unre = await ctl(C, ["task", "submit", B.address, "--task", "x"]);
    expect(unre.err).toMatchObject({ code: "connection_failed", message: `cannot connect to ${B.address} (task submit port 1003)` });
  }, 60000);
});

describe("registry commands with a local identity", () => {
  test("register / lookup / rotate-key in a fresh home; deregister via daemon", async () => {
    const home = join(cl.dir, "reg-home");
    mkdirSync(home, { recursive: true });
    const env = { HOME: home, PILOT_SOCKET: join(cl.dir, "nope.sock") };
    const r = await ctl(null, ["register", "127.0.0.1:4000"], { env });
    const rd = okEnv(r);
    expect(rd.type).toBe("register_ok");
    expect(typeof rd.node_id).toBe("number");
    expect(existsSync(join(home, ".pilot/identity.key"))).toBe(true);
    const again = okEnv(await ctl(null, ["register"], { env }));
    expect(again.node_id).toBe(rd.node_id);
    const lk = okEnv(await ctl(null, ["lookup", String(rd.node_id)], { env }));
    const oldKey = lk.public_key;
    const rk = await human(null, ["rotate-key", String(rd.node_id), "ops@example.com"], { env });
    expect(rk.code).toBe(0);
    const rkj = JSON.parse(rk.stdout);
    expect(rkj).toMatchObject({ node_id: rd.node_id, type: "rotate_key_ok" });
    expect(rkj.public_key).not.toBe(oldKey);
    expect(okEnv(await ctl(null, ["lookup", String(rd.node_id)], { env })).public_key).toBe(rkj.public_key);
    expect(JSON.parse(readFileSync(join(home, ".pilot/identity.key"), "utf8")).public_key).toBe(rkj.public_key);
    // wrong node: signature by our key does not match
    const wrong = await ctl(null, ["rotate-key", String(A.nodeId), "x"], { env });
    expect(wrong.code).toBe(1);
    expect(wrong.err.code).toBe("connection_failed");
    expect((await ctl(null, ["rotate-key", "1"], { env })).err.message).toBe("usage: pilotctl rotate-key <node_id> <owner>");
  });
});

describe("deregister (last: C leaves the registry)", () => {
  test("deregister", async () => {
    const r = await human(C, ["deregister"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('"type": "deregister_ok"');
  });
});
