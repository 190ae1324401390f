// The pilotctl-facing control API against a real background `pilot-gateway` process (spawned from
// source) and the fake daemon. Uses a 127.x subnet so no root / alias is needed on Linux.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { connect, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gatewayList, gatewayMap, gatewayPid, gatewayStart, gatewayStop, gatewayUnmap, type GatewayError } from "../src/gateway/control.ts";
import { pidAlive } from "../src/gateway/gateway.ts";
import { type FakeDaemon, startFakeDaemon } from "./ipc-fake-daemon.ts";

const A4 = "0:0000.0000.0004";
const A5 = "0:0000.0000.0005";

let fd: FakeDaemon;
let dataDir: string;
let port: number;

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", () => r()));
  const p = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return p;
}

function roundTrip(host: string, p: number, send: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect({ host, port: p });
    let out = "";
    s.on("error", reject);
    s.on("connect", () => s.write(send));
    s.on("data", (c) => {
      out += c.toString();
      s.destroy();
      resolve(out);
    });
  });
}

async function rejects(p: Promise<unknown>): Promise<GatewayError> {
  try {
    await p;
  } catch (e) {
    return e as GatewayError;
  }
  throw new Error("expected a rejection");
}

beforeAll(async () => {
  fd = await startFakeDaemon();
  dataDir = mkdtempSync(join(tmpdir(), "pgw-ctl-"));
  port = await freePort();
});
afterAll(async () => {
  const pid = gatewayPid({ dataDir });
  if (pid) process.kill(pid, "SIGKILL");
  await fd.close();
  rmSync(dataDir, { recursive: true, force: true, maxRetries: 5 });
});

describe("gateway control (background process)", () => {
  test("errors before anything runs", async () => {
    const o = { dataDir, socket: fd.path };
    let e = await rejects(gatewayList(o));
    expect([e.code, e.message, e.hint]).toEqual(["not_running", "gateway is not running", "start with: pilotctl gateway start [--ports <list>] [<pilot-addr>...]"]);
    e = await rejects(gatewayStop(o));
    expect([e.code, e.message]).toEqual(["not_running", "gateway is not running"]);
    e = await rejects(gatewayMap(o, "bogus"));
    expect(e.code).toBe("invalid_argument");
    e = await rejects(gatewayStart({ ...o, ports: "80,x" }));
    expect([e.code, e.message]).toEqual(["invalid_argument", 'invalid port "x": strconv.ParseUint: parsing "x": invalid syntax']);
    e = await rejects(gatewayStart({ ...o, subnet: "bad" }));
    expect([e.code, e.message]).toEqual(["internal", "create gateway: parse subnet: invalid CIDR address: bad"]);
    e = await rejects(gatewayStart({ ...o, mappings: ["0:zz"] }));
    expect(e.code).toBe("invalid_argument");
    e = await rejects(gatewayStart({ dataDir, socket: join(dataDir, "nope.sock"), mappings: [A4] }));
    expect([e.code, e.message]).toEqual(["internal", "start gateway: connect to daemon: daemon is not running"]);
  });

  test("start → map/unmap/list act on the live gateway → stop", async () => {
    const o = { dataDir, socket: fd.path };
    const r = await gatewayStart({ ...o, subnet: "127.81.0.0/16", ports: [port], mappings: [A4] });
    expect(r.subnet).toBe("127.81.0.0/16");
    expect(r.mappings).toEqual([{ local_ip: "127.81.0.1", pilot_addr: A4 }]);
    expect(r.listening).toEqual({ "127.81.0.1": [port] });
    expect(pidAlive(r.pid)).toBe(true);
    expect(readFileSync(join(dataDir, "gateway.pid"), "utf8").trim()).toBe(String(r.pid));
    expect(statSync(join(dataDir, "gateway.sock")).mode & 0o777).toBe(0o600);
    // The gateway is up when start returns: bytes flow through it to the (fake) daemon.
    expect(await roundTrip("127.81.0.1", port, "ping")).toBe("pong");

    const again = await rejects(gatewayStart({ ...o, ports: [port] }));
    expect([again.code, again.message]).toEqual(["already_exists", `gateway is already running (pid ${r.pid})`]);

    expect(await gatewayMap(o, A5)).toEqual({ local_ip: "127.81.0.2", pilot_addr: A5, listening: [port] });
    expect(await roundTrip("127.81.0.2", port, "ping")).toBe("pong");
    expect(await gatewayList(o)).toEqual({ mappings: [{ local_ip: "127.81.0.1", pilot_addr: A4 }, { local_ip: "127.81.0.2", pilot_addr: A5 }], total: 2 });
    const bad = await rejects(gatewayMap(o, "0:0000.0000.0009", "10.1.1.1"));
    expect([bad.code, bad.message]).toEqual(["internal", "map: IP 10.1.1.1 not in subnet 127.81.0.0/16"]);

    expect(await gatewayUnmap(o, "127.81.0.1")).toEqual({ unmapped: "127.81.0.1" });
    await expect(roundTrip("127.81.0.1", port, "ping")).rejects.toThrow();
    const nf = await rejects(gatewayUnmap(o, "127.81.0.1"));
    expect([nf.code, nf.message]).toEqual(["not_found", "no mapping for 127.81.0.1"]);
    expect(await gatewayUnmap(o, A5)).toEqual({ unmapped: "127.81.0.2" });
    expect(await gatewayList(o)).toEqual({ mappings: [], total: 0 });

    expect(await gatewayStop(o)).toEqual({ pid: r.pid });
    expect(pidAlive(r.pid)).toBe(false);
    expect(existsSync(join(dataDir, "gateway.pid"))).toBe(false);
    expect(existsSync(join(dataDir, "gateway.sock"))).toBe(false);
    expect((await rejects(gatewayList(o))).code).toBe("not_running");
  }, 30_000);

  test("a start that cannot listen fails with the reason and leaves nothing running", async () => {
    const blocker = createServer();
    await new Promise<void>((r) => blocker.listen(port, "127.82.0.1", () => r()));
    try {
      const e = await rejects(gatewayStart({ dataDir, socket: fd.path, subnet: "127.82.0.0/16", ports: [port], mappings: [A4] }));
      expect(e.code).toBe("internal");
      expect(e.message).toContain(`map ${A4}: no listener could be opened for 127.82.0.1`);
      expect(e.message).toContain("address already in use");
      expect(gatewayPid({ dataDir })).toBe(0);
    } finally {
      blocker.close();
    }
  }, 30_000);

  test("stale state of a crashed gateway is recovered on the next start", async () => {
    // A dead PID recorded as owning an alias on 127/8 (removal is a no-op there, no root needed).
    writeFileSync(join(dataDir, "gateway-state.json"), JSON.stringify({ pid: 2 ** 22 + 12345, aliases: ["127.83.0.1"] }));
    writeFileSync(join(dataDir, "gateway.pid"), `${2 ** 22 + 12345}\n`);
    const r = await gatewayStart({ dataDir, socket: fd.path, subnet: "127.83.0.0/16", ports: [port] });
    expect(r.mappings).toBeNull();
    expect(existsSync(join(dataDir, "gateway-state.json"))).toBe(false);
    expect(await gatewayStop({ dataDir })).toEqual({ pid: r.pid });
  }, 30_000);
});
