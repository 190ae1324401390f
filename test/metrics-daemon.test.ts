// The daemon's opt-in Prometheus endpoint (`pilot-daemon -metrics host:port`) on real processes:
// after a trust handshake and a file transfer, a scrape of both daemons shows the bytes moved and
// the events; the rendezvous' /metrics and both daemons' pass the same strict parser.
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
setDefaultTimeout(60000);
import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { Cluster, type DaemonHandle } from "./helpers/cluster.ts";
import { until } from "./helpers/until.ts";
import { Driver } from "../src/client/driver.ts";
import { parseProm, sampleValue } from "./metrics-parse.ts";

const cl = new Cluster("pilot-metrics-");
let A: DaemonHandle, B: DaemonHandle;
let mA = "", mB = "", rvHttp = "";

async function scrape(url: string) {
  const r = await fetch(url);
  expect(r.status).toBe(200);
  expect(r.headers.get("content-type")).toBe("text/plain; version=0.0.4; charset=utf-8");
  return parseProm(await r.text());
}
async function ctlOk(h: DaemonHandle, args: string[]) {
  const r = await cl.ctl(h, args);
  if (r.code !== 0) throw new Error(`pilotctl ${args.join(" ")}: exit ${r.code}\n${r.stderr}`);
  return r.json?.data;
}

beforeAll(async () => {
  await cl.startRendezvous(["-http", "127.0.0.1:0"]);
  rvHttp = (await cl.rendezvous!.waitFor(/http listening on (\S+)/))[1];
  [A, B] = await Promise.all([cl.startDaemon("a", ["-metrics", "127.0.0.1:0"]), cl.startDaemon("b", ["-metrics", "127.0.0.1:0"])]);
  mA = (await A.proc.waitFor(/metrics listening"? addr=(\S+)/))[1];
  mB = (await B.proc.waitFor(/metrics listening"? addr=(\S+)/))[1];
  await ctlOk(A, ["handshake", String(B.nodeId), "metrics test"]);
  await until(async () => ((await ctlOk(B, ["pending"])).pending as any[]).some((p) => p.node_id === A.nodeId), "pending at B");
  await ctlOk(B, ["approve", String(A.nodeId)]);
  await until(async () => ((await ctlOk(A, ["trust"])).trusted as any[]).some((p) => p.node_id === B.nodeId), "A trusts B");
}, 60000);

afterAll(async () => { await cl.stop(); });

describe("daemon -metrics", () => {
  test("ipc_clients follows a client connecting and leaving", async () => {
    const clients = async () => sampleValue(await scrape(`http://${mA}/metrics`), "pilot_daemon_ipc_clients");
    // the pilotctl runs of the set-up have exited; their disconnects may still be in flight
    await until(async () => (await clients()) === 0, "no IPC client at A");
    const d = await Driver.connect(A.socket);
    try {
      await d.info(); // the daemon has served it, so it counts it
      expect(await clients()).toBe(1);
    } finally {
      d.close();
    }
    await until(async () => (await clients()) === 0, "the client's disconnect counted");
  });
  test("a transfer shows up in both daemons' byte counters", async () => {
    const before = await scrape(`http://${mA}/metrics`);
    const outBefore = sampleValue(before, "pilot_daemon_stream_bytes_total", { direction: "out" })!;
    const tunBefore = sampleValue(before, "pilot_daemon_tunnel_bytes_total", { direction: "out" })!;
    const SIZE = 1_000_000;
    const f = join(cl.dir, "payload.bin");
    writeFileSync(f, randomBytes(SIZE));
    const r = await ctlOk(A, ["send-file", B.address, f]);
    expect(r.bytes).toBe(SIZE);

    const a = await scrape(`http://${mA}/metrics`);
    // the file plus its small header went out on one stream; tunnel frames add headers and tags
    expect(sampleValue(a, "pilot_daemon_stream_bytes_total", { direction: "out" })! - outBefore).toBeGreaterThanOrEqual(SIZE);
    expect(sampleValue(a, "pilot_daemon_tunnel_bytes_total", { direction: "out" })! - tunBefore).toBeGreaterThan(SIZE);
    expect(sampleValue(a, "pilot_daemon_tunnel_packets_total", { direction: "out" })!).toBeGreaterThan(SIZE / 4096);
    expect(sampleValue(a, "pilot_daemon_peers", { path: "direct" })).toBe(1);
    expect(sampleValue(a, "pilot_daemon_peers", { path: "relayed" })).toBe(0);
    expect(a.get("pilot_daemon_connections")!.samples.map((s) => s.labels.state)).toContain("ESTABLISHED");
    expect(sampleValue(a, "pilot_daemon_events_total", { event: "tunnel.established" })).toBeGreaterThanOrEqual(1);
    expect(sampleValue(a, "pilot_daemon_events_total", { event: "node.registered" })).toBe(1);
    expect(a.get("pilot_daemon_rtt_seconds")?.type).toBe("histogram");
    expect(a.get("pilot_daemon_retransmits_total")?.type).toBe("counter");
    expect(a.get("pilot_daemon_dropped_frames_total")?.type).toBe("counter");

    const b = await scrape(`http://${mB}/metrics`);
    expect(sampleValue(b, "pilot_daemon_stream_bytes_total", { direction: "in" })!).toBeGreaterThanOrEqual(SIZE);
    expect(sampleValue(b, "pilot_daemon_tunnel_bytes_total", { direction: "in" })!).toBeGreaterThan(SIZE);
    expect([...b.get("pilot_daemon_events_total")!.samples.map((s) => s.labels.event)].some((e) => e.startsWith("handshake."))).toBe(true);
  });

  test("the RTT histogram holds the transfer's connection", async () => {
    // the sampler observes every connection at least once (the transfer's lingers in TIME_WAIT)
    const m = await until(async () => {
      const x = await scrape(`http://${mA}/metrics`);
      return (sampleValue(x, "pilot_daemon_rtt_seconds_count") ?? 0) > 0 ? x : null;
    }, "an RTT sample", 15000, 200);
    expect(sampleValue(m, "pilot_daemon_rtt_seconds_count")).toBe(sampleValue(m, "pilot_daemon_rtt_seconds_bucket", { le: "+Inf" }));
    expect(sampleValue(m, "pilot_daemon_rtt_seconds_sum")!).toBeGreaterThan(0);
    expect(sampleValue(m, "pilot_daemon_rtt_seconds_bucket", { le: "5" })).toBe(sampleValue(m, "pilot_daemon_rtt_seconds_count"));
  });

  test("forged frames sent to the tunnel port are counted as drops by reason", async () => {
    const tun = (await A.proc.waitFor(/tunnel listening"? addr=(\S+)/))[1];
    const port = Number(tun.slice(tun.lastIndexOf(":") + 1));
    const before = await scrape(`http://${mA}/metrics`);
    const drops = (m: typeof before, reason: string) => sampleValue(m, "pilot_daemon_dropped_frames_total", { reason }) ?? 0;
    const sock = await Bun.udpSocket({});
    const pils = new Uint8Array(4 + 40);
    pils.set([0x50, 0x49, 0x4c, 0x53, 0x7f, 0xff, 0xff, 0xf0]); // "PILS" from a node with no session
    const pilt = new Uint8Array([0x50, 0x49, 0x4c, 0x54, 1, 2, 3]); // "PILT" shorter than a header
    for (let i = 0; i < 3; i++) { sock.send(pils, port, "127.0.0.1"); sock.send(pilt, port, "127.0.0.1"); }
    const after = await until(async () => {
      const m = await scrape(`http://${mA}/metrics`);
      return drops(m, "no_session") - drops(before, "no_session") >= 3 && drops(m, "malformed") - drops(before, "malformed") >= 3 ? m : null;
    }, "drops counted", 10000, 100);
    sock.close();
    expect(drops(after, "no_session") - drops(before, "no_session")).toBe(3);
    expect(drops(after, "malformed") - drops(before, "malformed")).toBe(3);
  });

  test("the rendezvous /metrics passes the same parser", async () => {
    const m = await scrape(`http://${rvHttp}/metrics`);
    expect(sampleValue(m, "pilot_nodes_total")).toBe(2);
    expect(sampleValue(m, "pilot_registrations_total")).toBe(2);
    expect(sampleValue(m, "pilot_requests_total", { type: "register" })).toBe(2);
  });

  test("other paths are 404; a bad -metrics address is a usage error", async () => {
    expect((await fetch(`http://${mA}/`)).status).toBe(404);
    const p = Bun.spawn([process.execPath, join(import.meta.dir, "../src/main.ts"), "pilot-daemon", "-metrics", "nope"], { stdout: "pipe", stderr: "pipe" });
    const [err, code] = await Promise.all([new Response(p.stderr).text(), p.exited]);
    expect(code).toBe(2);
    expect(err).toContain("invalid -metrics address");
  });
});
