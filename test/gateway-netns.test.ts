// Gateway end to end, as root, inside a network namespace created by the test (so the 10.4.x.y
// loopback aliases exist only there). Skipped where namespaces are unavailable (not root, no `ip`).
//  1. fake daemon: aliases added/removed by map/unmap/stop, bytes through 10.4.0.1, crash recovery.
//  2. real stack: rendezvous + two daemons, trust, examples/http-server.ts behind daemon B, gateway
//     on daemon A: curl small body, 10 MiB body (SHA-256), 50 concurrent requests, map/unmap/list.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { Driver } from "../src/client/driver.ts";
import { gatewayList, gatewayMap, gatewayPid, gatewayStart, gatewayStop, gatewayUnmap } from "../src/gateway/control.ts";
import { pidAlive } from "../src/gateway/gateway.ts";
import { patternBody } from "../examples/http-server.ts";
import { startFakeDaemon, type FakeDaemon } from "./ipc-fake-daemon.ts";

const ROOT = resolve(import.meta.dir, "..");
const BUN = process.execPath;
const NS = `pgw-${randomBytes(4).toString("hex")}`;

function nsAvailable(): string | null {
  if (process.platform !== "linux") return "not Linux";
  if (process.getuid?.() !== 0) return "not root";
  // Namespaces left by an earlier crashed run of this file.
  const old = spawnSync("ip", ["netns", "list"], { encoding: "utf8" });
  for (const m of (old.stdout ?? "").matchAll(/^(pgw-[0-9a-f]{8})\b/gm)) spawnSync("ip", ["netns", "del", m[1]]);
  const probe = spawnSync("ip", ["netns", "add", NS], { encoding: "utf8" });
  if (probe.error) return "`ip` (iproute2) missing";
  if (probe.status !== 0) return `ip netns add failed: ${probe.stderr.trim()}`;
  spawnSync("ip", ["netns", "exec", NS, "ip", "link", "set", "lo", "up"]);
  return null;
}
const why = nsAvailable();
if (why) console.warn(`gateway-netns: skipped (${why}): network namespaces unavailable`);

// Asynchronous on purpose: the fake daemon lives in this process and must keep answering.
function nsExec(args: string[], timeout = 60_000): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const c = spawn("ip", ["netns", "exec", NS, ...args], { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "", stderr = "";
    c.stdout!.on("data", (b: Buffer) => (stdout += b.toString()));
    c.stderr!.on("data", (b: Buffer) => (stderr += b.toString()));
    const t = setTimeout(() => c.kill("SIGKILL"), timeout);
    c.on("close", (status) => {
      clearTimeout(t);
      resolve({ status, stdout, stderr });
    });
  });
}
async function loAddrs(): Promise<string[]> {
  return [...(await nsExec(["ip", "-4", "-o", "addr", "show", "dev", "lo"])).stdout.matchAll(/inet (\d+\.\d+\.\d+\.\d+)\/32/g)].map((m) => m[1]).sort();
}
const gwCommand = ["ip", "netns", "exec", NS, BUN, join(ROOT, "src/main.ts"), "pilot-gateway"];

/** TCP round trip from inside the namespace. */
async function nsRoundTrip(ip: string, port: number, send: string): Promise<string> {
  const js = `const s=require("node:net").connect({host:${JSON.stringify(ip)},port:${port}});let o="";s.on("connect",()=>s.write(${JSON.stringify(send)}));s.on("data",c=>{o+=c;s.destroy();console.log(o)});s.on("error",e=>{console.log("ERR "+e.code);process.exit(0)});`;
  return (await nsExec([BUN, "-e", js])).stdout.trim();
}

afterAll(() => {
  if (!why) spawnSync("ip", ["netns", "del", NS]);
});

describe.skipIf(why !== null)("gateway in a network namespace (fake daemon)", () => {
  let fd: FakeDaemon;
  let dataDir: string;
  beforeAll(async () => {
    fd = await startFakeDaemon();
    dataDir = mkdtempSync(join(tmpdir(), "pgw-ns-"));
  });
  afterAll(async () => {
    const pid = gatewayPid({ dataDir });
    if (pid) process.kill(pid, "SIGKILL");
    await fd.close();
    rmSync(dataDir, { recursive: true, force: true, maxRetries: 5 });
  });

  test("aliases follow map/unmap/stop; bytes flow through 10.4.0.1:80", async () => {
    const o = { dataDir, socket: fd.path, command: gwCommand };
    expect(await loAddrs()).toEqual([]);
    const r = await gatewayStart({ ...o, ports: [80, 3000], mappings: ["0:0000.0000.0004"] });
    expect(r.mappings).toEqual([{ local_ip: "10.4.0.1", pilot_addr: "0:0000.0000.0004" }]);
    expect(r.listening["10.4.0.1"]).toEqual([80, 3000]);
    expect(await loAddrs()).toEqual(["10.4.0.1"]);
    expect(await nsRoundTrip("10.4.0.1", 80, "ping")).toBe("pong");
    expect((await gatewayMap(o, "0:0000.0000.0005")).local_ip).toBe("10.4.0.2");
    expect(await loAddrs()).toEqual(["10.4.0.1", "10.4.0.2"]);
    expect(await nsRoundTrip("10.4.0.2", 3000, "ping")).toBe("pong");
    expect((await gatewayList(o)).total).toBe(2);
    expect(await gatewayUnmap(o, "10.4.0.1")).toEqual({ unmapped: "10.4.0.1" });
    expect(await loAddrs()).toEqual(["10.4.0.2"]);
    expect(await nsRoundTrip("10.4.0.1", 80, "ping")).toMatch(/^ERR /);
    expect(await gatewayStop(o)).toEqual({ pid: r.pid });
    expect(await loAddrs()).toEqual([]);
    expect(existsSync(join(dataDir, "gateway-state.json"))).toBe(false);
  }, 60_000);

  test("a SIGKILLed gateway's aliases are removed by the next start", async () => {
    const o = { dataDir, socket: fd.path, command: gwCommand };
    const r = await gatewayStart({ ...o, ports: [3000], mappings: ["0:0000.0000.0004", "0:0000.0000.0005"] });
    expect(await loAddrs()).toEqual(["10.4.0.1", "10.4.0.2"]);
    const st = JSON.parse(readFileSync(join(dataDir, "gateway-state.json"), "utf8")) as { aliases: string[] };
    expect(st.aliases.sort()).toEqual(["10.4.0.1", "10.4.0.2"]);
    process.kill(r.pid, "SIGKILL");
    for (let i = 0; i < 200 && pidAlive(r.pid); i++) await Bun.sleep(10);
    expect(await loAddrs()).toEqual(["10.4.0.1", "10.4.0.2"]); // left behind by the crash
    const r2 = await gatewayStart({ ...o, ports: [3000] });
    expect(await loAddrs()).toEqual([]);
    await gatewayStop(o);
    expect(pidAlive(r2.pid)).toBe(false);
  }, 60_000);
});

// ---------------------------------------------------------------------------------------------
// Real stack.

interface Proc {
  child: ChildProcess;
  out: string;
}
const procs: Proc[] = [];

function start(args: string[], env: Record<string, string> = {}): Proc {
  const child = spawn(args[0], args.slice(1), { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...env } });
  const p: Proc = { child, out: "" };
  child.stdout!.on("data", (b: Buffer) => (p.out += b.toString()));
  child.stderr!.on("data", (b: Buffer) => (p.out += b.toString()));
  procs.push(p);
  return p;
}

async function waitFor<T>(what: string, fn: () => T | null | undefined | Promise<T | null | undefined>, ms = 20_000, p?: Proc): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (p && p.child.exitCode !== null) throw new Error(`${what}: process exited (${p.child.exitCode}): ${p.out.slice(-2000)}`);
    if (Date.now() > end) throw new Error(`timed out: ${what}${p ? `: ${p.out.slice(-2000)}` : ""}`);
    await Bun.sleep(50);
  }
}

describe.skipIf(why !== null)("gateway end to end (rendezvous + two daemons + http-server)", () => {
  let tmp: string;
  let sockA: string;
  let addrB: string;
  let dataDir: string;
  const HTTP_PORT = 3000;

  beforeAll(async () => {
    tmp = mkdtempSync(join(tmpdir(), "pgw-e2e-"));
    dataDir = join(tmp, "home");
    const rv = start([BUN, "src/main.ts", "rendezvous", "-registry-addr", "127.0.0.1:0", "-beacon-addr", "127.0.0.1:0", "-store", join(tmp, "reg.db")]);
    const reg = await waitFor("rendezvous registry address", () => /registry listening on (\S+:\d+)/.exec(rv.out)?.[1], 20_000, rv);
    const bc = await waitFor("rendezvous beacon address", () => /beacon listening on (\S+:\d+)/.exec(rv.out)?.[1], 20_000, rv);
    const daemon = (n: string) => {
      const sock = join(tmp, `${n}.sock`);
      const p = start([BUN, "src/main.ts", "pilot-daemon", "-registry", reg, "-beacon", bc, "-socket", sock, "-listen", "127.0.0.1:0",
        "-identity", join(tmp, n, "identity.json"), "-data-dir", join(tmp, n)]);
      return { sock, p };
    };
    const a = daemon("a");
    const b = daemon("b");
    sockA = a.sock;
    const info = async (s: string, p: Proc) => {
      await waitFor(`daemon socket ${s}`, () => existsSync(s), 20_000, p);
      return waitFor(`daemon ${s} registered`, async () => {
        const d = await Driver.connect(s);
        try {
          const j = await d.info({ timeoutMs: 5_000 });
          return j.node_id ? (j as { node_id: number; address: string }) : null;
        } finally {
          d.close();
        }
      }, 20_000, p);
    };
    const ia = await info(a.sock, a.p);
    const ib = await info(b.sock, b.p);
    addrB = ib.address;
    // Trust: A requests, B approves (docs/protocol.md §9.2).
    const da = await Driver.connect(a.sock);
    const db = await Driver.connect(b.sock);
    try {
      await da.handshake(ib.node_id, "gateway e2e", { timeoutMs: 20_000 });
      await waitFor("pending request on B", async () => {
        const p = (await db.pending({ timeoutMs: 5_000 })).pending as { node_id: number }[] | null;
        return p?.some((x) => x.node_id === ia.node_id) ? true : null;
      });
      await db.approve(ia.node_id, { timeoutMs: 20_000 });
      await waitFor("trust on A", async () => {
        const t = (await da.trusted({ timeoutMs: 5_000 })).trusted as { node_id: number }[] | null;
        return t?.some((x) => x.node_id === ib.node_id) ? true : null;
      });
    } finally {
      da.close();
      db.close();
    }
    const http = start([BUN, "examples/http-server.ts", "-socket", b.sock, String(HTTP_PORT)]);
    await waitFor("http-server bound", () => http.out.includes(`listening on pilot port ${HTTP_PORT}`), 20_000, http);
  }, 120_000);

  afterAll(async () => {
    if (dataDir) {
      const pid = gatewayPid({ dataDir });
      if (pid) {
        await gatewayStop({ dataDir }).catch(() => {});
      }
    }
    // Wait for the daemons to exit before removing their data directories: a daemon still
    // writing during shutdown would make the removal fail with ENOTEMPTY.
    await Promise.all(procs.splice(0).map((p) => new Promise<void>((res) => {
      if (p.child.exitCode !== null || p.child.signalCode !== null) return res();
      const t = setTimeout(() => { p.child.kill("SIGKILL"); }, 5_000);
      p.child.once("exit", () => { clearTimeout(t); res(); });
      p.child.kill("SIGTERM");
    })));
    if (tmp) rmSync(tmp, { recursive: true, force: true, maxRetries: 5 });
  });

  test("curl through the gateway: status JSON, 10 MiB body, 50 concurrent requests; live map/unmap/list", async () => {
    const o = { dataDir, socket: sockA, command: gwCommand };
    const r = await gatewayStart({ ...o, ports: [HTTP_PORT], mappings: [addrB] });
    expect(r.mappings).toEqual([{ local_ip: "10.4.0.1", pilot_addr: addrB }]);

    const small = await nsExec(["curl", "-sS", "--max-time", "30", `http://10.4.0.1:${HTTP_PORT}/`]);
    expect(small.stderr).toBe("");
    expect(JSON.parse(small.stdout)).toEqual({ status: "ok", protocol: "pilot", port: HTTP_PORT });
    const status = await nsExec(["curl", "-sS", "--max-time", "30", `http://10.4.0.1:${HTTP_PORT}/status`]);
    expect(JSON.parse(status.stdout).status).toBe("ok");

    const N = 10 << 20;
    const file = join(tmp, "big.bin");
    const big = await nsExec(["curl", "-sS", "--max-time", "120", "-o", file, `http://10.4.0.1:${HTTP_PORT}/bytes/${N}`], 150_000);
    expect(big.stderr).toBe("");
    const got = readFileSync(file);
    expect(got.length).toBe(N);
    expect(createHash("sha256").update(got).digest("hex")).toBe(createHash("sha256").update(patternBody(N)).digest("hex"));

    // 50 concurrent requests from inside the namespace.
    const js = `const u=${JSON.stringify(`http://10.4.0.1:${HTTP_PORT}/bytes/`)};` +
      `Promise.all(Array.from({length:50},(_,i)=>fetch(u+(1000+i)).then(async r=>[r.status,(await r.arrayBuffer()).byteLength,1000+i])))` +
      `.then(a=>console.log(JSON.stringify(a)),e=>{console.log(JSON.stringify({error:String(e)}))})`;
    const conc = await nsExec([BUN, "-e", js], 120_000);
    const rows = JSON.parse(conc.stdout) as [number, number, number][];
    expect(rows.length).toBe(50);
    for (const [st, len, want] of rows) {
      expect(st).toBe(200);
      expect(len).toBe(want);
    }

    // Live control: a second mapping of the same agent is the same IP; explicit IP for a new entry.
    expect((await gatewayMap(o, addrB)).local_ip).toBe("10.4.0.1");
    expect(await gatewayList(o)).toEqual({ mappings: [{ local_ip: "10.4.0.1", pilot_addr: addrB }], total: 1 });
    expect(await gatewayUnmap(o, addrB)).toEqual({ unmapped: "10.4.0.1" });
    expect(await loAddrs()).toEqual([]);
    expect((await nsExec(["curl", "-sS", "--max-time", "5", `http://10.4.0.1:${HTTP_PORT}/`])).stdout).toBe("");
    expect((await gatewayMap(o, addrB, "10.4.9.9")).local_ip).toBe("10.4.9.9");
    expect(JSON.parse((await nsExec(["curl", "-sS", "--max-time", "30", `http://10.4.9.9:${HTTP_PORT}/status`])).stdout).port).toBe(HTTP_PORT);
    expect(await loAddrs()).toEqual(["10.4.9.9"]);

    await gatewayStop(o);
    expect(await loAddrs()).toEqual([]);
  }, 300_000);
});
