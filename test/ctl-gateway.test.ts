// `pilotctl gateway …` end to end without root: a 127.x subnet needs no loopback alias on Linux,
// so the real CLI starts a background gateway on daemon A, maps daemon B (which serves the demo
// HTTP server on Pilot port 3000), and plain `fetch` reaches it. map/unmap/list act on the live
// gateway; stop ends it.
import { until } from "./helpers/until.ts";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { Cluster, type DaemonHandle, type Proc, BUN, REPO, spawnWatched } from "./helpers/cluster.ts";
import { Driver } from "../src/client/driver.ts";

const cl = new Cluster("pilot-ctlgw-");
let A: DaemonHandle, B: DaemonHandle, C: DaemonHandle;
let server: Proc | null = null;
let cserver: Proc | null = null;
const PORT = 3000;
const SUBNET = "127.77.0.0/16";


beforeAll(async () => {
  await cl.startRendezvous();
  A = await cl.startDaemon("a");
  B = await cl.startDaemon("b");
  C = await cl.startDaemon("c");
  for (const peer of [B, C]) {
    const da = await Driver.connect(A.socket);
    const dp = await Driver.connect(peer.socket);
    await da.handshake(peer.nodeId, "gateway test");
    await until(async () => ((await dp.pending()).pending as any[]).some((p) => p.node_id === A.nodeId), "pending");
    await dp.approve(A.nodeId);
    await until(async () => ((await da.trusted()).trusted as any[]).some((p) => p.node_id === peer.nodeId), "trusted");
    da.close();
    dp.close();
  }
  for (const peer of [B, C]) {
    const s = spawnWatched([BUN, join(REPO, "examples/http-server.ts"), "-socket", peer.socket, String(PORT)], `http-${peer.name}`);
    if (peer === B) server = s;
    else cserver = s;
  }
  await Promise.all([server!, cserver!].map((s) => s.waitFor(/listening on pilot port/)));
}, 60000);


afterAll(async () => {
  await cl.ctl(A, ["gateway", "stop"]).catch(() => {});
  await server?.kill();
  await cserver?.kill();
  await cl.stop();
});

describe("pilotctl gateway", () => {
  test("start returns once listening; curl-style fetch reaches the agent's HTTP server", async () => {
    const r = await cl.ctl(A, ["gateway", "start", "--subnet", SUBNET, "--ports", String(PORT), B.address]);
    expect(r.code).toBe(0);
    expect(r.json.status).toBe("ok");
    expect(r.json.data.subnet).toBe(SUBNET);
    expect(r.json.data.mappings).toEqual([{ local_ip: "127.77.0.1", pilot_addr: B.address }]);
    const res = await fetch(`http://127.77.0.1:${PORT}/`);
    expect(await res.json()).toEqual({ status: "ok", protocol: "pilot", port: PORT });
  }, 60000);

  test("a second start is refused with already_exists", async () => {
    const r = await cl.ctl(A, ["gateway", "start", "--subnet", SUBNET, "--ports", String(PORT)]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('"code":"already_exists"');
  });

  test("map / list / unmap act on the live gateway", async () => {
    const m = await cl.ctl(A, ["gateway", "map", C.address]);
    expect(m.code).toBe(0);
    expect(m.json.data.local_ip).toBe("127.77.0.2");
    const res = await fetch(`http://127.77.0.2:${PORT}/status`);
    expect(((await res.json()) as { status: string }).status).toBe("ok");
    const l = await cl.ctl(A, ["gateway", "list"]);
    expect(l.json.data.total).toBe(2);
    const human = await cl.ctl(A, ["gateway", "list"], { json: false });
    expect(human.stdout).toContain(`127.77.0.2 → ${C.address}`);
    const u = await cl.ctl(A, ["gateway", "unmap", "127.77.0.2"]);
    expect(u.json.data).toEqual({ unmapped: "127.77.0.2" });
    expect((await cl.ctl(A, ["gateway", "list"])).json.data.total).toBe(1);
    await expect(fetch(`http://127.77.0.2:${PORT}/`)).rejects.toThrow();
    const nf = await cl.ctl(A, ["gateway", "unmap", "127.77.0.9"]);
    expect(nf.code).toBe(1);
    expect(nf.stderr).toContain('"code":"not_found"');
  }, 60000);

  test("stop ends the gateway; list then reports not_running", async () => {
    const s = await cl.ctl(A, ["gateway", "stop"]);
    expect(s.code).toBe(0);
    expect(typeof s.json.data.pid).toBe("number");
    const l = await cl.ctl(A, ["gateway", "list"]);
    expect(l.code).toBe(1);
    expect(l.stderr).toContain('"code":"not_running"');
    await expect(fetch(`http://127.77.0.1:${PORT}/`)).rejects.toThrow();
  }, 30000);
});
