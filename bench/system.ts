// End-to-end system figures against real processes on loopback: a rendezvous (registry + beacon)
// and pilot daemons, each a separate `bun src/main.ts` process, driven through the IPC driver
// exactly like an application would. Each figure names the raw limit it is divided by (measured
// by bench/raw.ts in the same run; see bench/README.md).
import { existsSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { Driver, type DriverConn } from "../src/client/driver.ts";
import { encodeFilePayload, encodeFrame, TYPE_FILE } from "../src/daemon/services/dataexchange.ts";
import { parseAddr } from "../src/proto/addr.ts";
import { BUN, Cluster, type DaemonHandle, MAIN, REPO } from "../test/helpers/cluster.ts";
import { cpuMeter, quantile, rssMiB, udpRcvbufErrors } from "./lib/proc.ts";
import { freshPort, MB, MiB, streams, withTimeout } from "./lib/streams.ts";
import type { Reporter } from "./run.ts";

const STREAM_BYTES = 64 * MiB;

async function readExactly(c: DriverConn, n: number): Promise<void> {
  let got = 0;
  while (got < n) {
    const ch = await c.read({ timeoutMs: 10000 });
    if (!ch) throw new Error("echo connection closed");
    got += ch.length;
  }
}

export default async function system(r: Reporter): Promise<void> {
  const cl = new Cluster("pilot-bench-");
  const drivers: Driver[] = [];
  const failures: string[] = [];
  const section = async (what: string, fn: () => Promise<void>) => {
    try {
      await fn();
    } catch (e) {
      const msg = `${what}: ${(e as Error).message.split("\n")[0]}`;
      console.error(`  FAILED ${msg}`);
      failures.push(msg);
    }
  };
  // A black hole on another loopback address: the relay node registers it as its endpoint, so
  // direct frames to it vanish and dialers fall back to the beacon relay (docs/protocol.md §7).
  const hole = await Bun.udpSocket({ hostname: "127.0.0.2", port: 0, socket: { data() {} } });
  try {
    await cl.startRendezvous();
    const [A, B, C, D, R] = await Promise.all([
      cl.startDaemon("a", ["-public"]),
      cl.startDaemon("b", ["-public"]),
      cl.startDaemon("c", ["-public", "-encrypt=false"]),
      cl.startDaemon("d", ["-public", "-encrypt=false"]),
      cl.startDaemon("r", ["-public", "-endpoint", `127.0.0.2:${hole.port}`]),
    ]);
    const drv = async (h: DaemonHandle) => {
      const d = await Driver.connect(h.socket, { timeoutMs: 5000 });
      drivers.push(d);
      return d;
    };
    const [da, db, dc, dd, dr] = await Promise.all([A, B, C, D, R].map(drv));
    const pid = (h: DaemonHandle) => h.proc.proc.pid;

    // The relayed connection takes ~7 s to come up (3 SYN timeouts); start it now, in the background.
    const relayPort = freshPort();
    const relayListener = await dr.listen(relayPort);
    const relayT0 = performance.now();
    // Own IPC connection: replies on one connection come back in request order (positional
    // correlation, docs/protocol.md §9.3), so a slow dial there would hold up every later reply.
    const daRelay = await drv(A);
    const relayDial = daRelay.dial(parseAddr(R.address), relayPort, { timeoutMs: 40000 }).then((c) => ({ c, ms: performance.now() - relayT0 }));
    relayDial.catch(() => {});

    await Bun.sleep(500);
    r.add("daemon RSS idle", rssMiB(pid(B)), "MiB", "VmRSS of a registered daemon with no traffic", { vs: ["rss.bun"] });

    await section("dial", async () => {
      let t0 = performance.now();
      const first = await da.dial(parseAddr(B.address), 7, { timeoutMs: 20000 });
      r.add("dial → DialOK, new peer", performance.now() - t0, "ms", "first dial: registry resolve + tunnel key exchange + SYN/SYN-ACK");
      first.close();
      // Paced at 10/s: the receiver's per-source SYN bucket (10 SYN/s, docs/protocol.md §6.3) drops
      // the 11th back-to-back SYN silently and that dial then waits the 1 s SYN RTO.
      const times: number[] = [];
      for (let i = 0; i < 20; i++) {
        await Bun.sleep(110);
        t0 = performance.now();
        const c = await da.dial(parseAddr(B.address), 7, { timeoutMs: 20000 });
        times.push(performance.now() - t0);
        c.close();
      }
      times.sort((x, y) => x - y);
      r.add("dial → DialOK, known peer (median)", quantile(times, 0.5), "ms", `20 dials to echo port 7 paced at 9/s, max ${times[times.length - 1].toFixed(2)} ms`, { vs: ["rtt.unix", "rtt.udp"] });
    });

    await section("ping", async () => {
      const c = await da.dial(parseAddr(B.address), 7, { timeoutMs: 20000 });
      const msg = new Uint8Array(32).fill(0x70);
      const rtt: number[] = [];
      for (let i = 0; i < 220; i++) {
        const t0 = performance.now();
        await c.write(msg);
        await readExactly(c, msg.length);
        if (i >= 20) rtt.push(performance.now() - t0);
      }
      c.close();
      rtt.sort((x, y) => x - y);
      r.add("ping RTT echo 32B (median)", quantile(rtt, 0.5), "ms", `200 round trips app→IPC→daemon→UDP→daemon echo→back`, { vs: ["rtt.unix", "rtt.udp"] });
      r.add("ping RTT echo 32B (p99)", quantile(rtt, 0.99), "ms", "same 200 samples", { vs: ["rtt.unix", "rtt.udp"] });
    });

    // Best of two runs per figure (the machine is shared; one run can be starved). The note keeps both.
    const best = async (src: Driver, dst: Driver, to: DaemonHandle, n: number, pids: number[]) => {
      const a = await streams(src, dst, to, n, STREAM_BYTES, pids);
      const b = await streams(src, dst, to, n, STREAM_BYTES, pids);
      const top = a.mbps >= b.mbps ? a : b;
      const cpu = `CPU sender ${top.cpu[0].toFixed(0)}% receiver ${top.cpu[1].toFixed(0)}% app ${top.cpu[2].toFixed(0)}%; ${top.drops} UDP rcvbuf drops`;
      // CPU cost per MB, averaged over both runs: steadier than MB/s on a shared machine.
      const costOf = (x: typeof a, i: number) => (x.cpu[i] * 10) / x.mbps; // (% of a core × 10) / (MB/s) = ms CPU per MB
      const cost = (i: number) => (costOf(a, i) + costOf(b, i)) / 2;
      return { mbps: top.mbps, runs: `runs ${a.mbps.toFixed(1)} / ${b.mbps.toFixed(1)} MB/s; ${cpu}`, rss: a.rss.map((x, i) => Math.max(x, b.rss[i])), txCost: cost(0), rxCost: cost(1) };
    };
    await section("stream encrypted x1", async () => {
      const s = await best(da, db, B, 1, [pid(A), pid(B)]);
      r.add("stream 1x64MiB encrypted", s.mbps, "MB/s", `driver write → daemon → AES-GCM tunnel → daemon → driver read; ${s.runs}`, { vs: ["udp", "aes", "unix"] });
      r.add("daemon CPU cost, sender (1 stream, encrypted)", s.txCost, "ms CPU/MB", "sender daemon CPU time per MB delivered", { vs: ["cpu.udp"] });
      r.add("daemon CPU cost, receiver (1 stream, encrypted)", s.rxCost, "ms CPU/MB", "receiver daemon CPU time per MB delivered", { vs: ["cpu.udp"] });
      r.add("daemon RSS under load (sender)", s.rss[0], "MiB", "max VmRSS during the 1-stream transfers", { vs: ["rss.bun"] });
      r.add("daemon RSS under load (receiver)", s.rss[1], "MiB", "max VmRSS during the 1-stream transfers", { vs: ["rss.bun"] });
    });
    await section("stream encrypted x8", async () => {
      const s = await best(da, db, B, 8, [pid(A), pid(B)]);
      r.add("stream 8x8MiB encrypted", s.mbps, "MB/s", `8 parallel streams, aggregate; ${s.runs}`, { vs: ["udp", "aes", "unix"] });
      r.add("daemon RSS under load, 8 streams (max)", Math.max(...s.rss), "MiB", "max VmRSS of sender/receiver", { vs: ["rss.bun"] });
    });
    await section("stream plaintext x1", async () => {
      const s = await best(dc, dd, D, 1, [pid(C), pid(D)]);
      r.add("stream 1x64MiB -encrypt=false", s.mbps, "MB/s", `same path without tunnel encryption; ${s.runs}`, { vs: ["udp", "unix"] });
      r.add("daemon CPU cost, receiver (1 stream, plaintext)", s.rxCost, "ms CPU/MB", "receiver daemon CPU time per MB delivered, -encrypt=false", { vs: ["cpu.udp"] });
    });
    await section("stream plaintext x8", async () => {
      const s = await best(dc, dd, D, 8, [pid(C), pid(D)]);
      r.add("stream 8x8MiB -encrypt=false", s.mbps, "MB/s", `8 parallel streams, aggregate; ${s.runs}`, { vs: ["udp", "unix"] });
    });

    await section("data exchange file", async () => {
      const size = 16 * MiB - 64;
      const frame = encodeFrame(TYPE_FILE, encodeFilePayload("bench.bin", new Uint8Array(size).fill(0x42)));
      const dir = join(B.home, ".pilot", "received");
      const t0 = performance.now();
      const c = await da.dial(parseAddr(B.address), 1001, { timeoutMs: 20000 });
      await c.write(frame);
      await withTimeout(
        (async () => {
          for (;;) {
            if (existsSync(dir) && readdirSync(dir).some((f) => f.startsWith("bench") && statSync(join(dir, f)).size === size)) return;
            await Bun.sleep(10);
          }
        })(),
        60000,
        () => "file never arrived in received/",
      );
      const ms = performance.now() - t0;
      c.close();
      r.add("data exchange send 16MiB file", size / MB / (ms / 1000), "MB/s", "dial port 1001 → file complete on disk at the receiver (encrypted)", { vs: ["udp", "aes"] });
    });

    await section("relay", async () => {
      const { c, ms } = await withTimeout(relayDial, 45000, () => "relayed dial");
      const srv = await relayListener.accept({ timeoutMs: 10000 });
      const info = await da.info();
      const peer = (info.peer_list as { node_id: number; path?: string }[]).find((p) => p.node_id === R.nodeId);
      r.add("relay fallback dial → DialOK", ms, "ms", `direct endpoint black-holed; path=${peer?.path ?? "?"}`);
      const bytes = 16 * MiB;
      let got = 0;
      const done = new Promise<void>((res) => (srv.onData = (ch) => ((got += ch.length), got >= bytes && res())));
      const block = new Uint8Array(MiB);
      const cpu = cpuMeter([pid(A), pid(R), cl.rendezvous!.proc.pid]);
      const drops0 = udpRcvbufErrors();
      const t0 = performance.now();
      for (let s = 0; s < bytes; s += MiB) await c.write(block);
      await withTimeout(done, 60000, () => `relay transfer stalled at ${got} of ${bytes}`);
      const rms = performance.now() - t0;
      const [ca, cr, cb] = cpu.stop();
      const drops = udpRcvbufErrors() - drops0;
      const conn = ((await daRelay.info()).conn_list as { remote_port: number; retransmits?: number }[]).find((x) => x.remote_port === relayPort);
      r.add("stream 1x16MiB via beacon relay", bytes / MB / (rms / 1000), "MB/s", `daemon → beacon → daemon, encrypted; CPU sender ${ca.toFixed(0)}% receiver ${cr.toFixed(0)}% beacon ${cb.toFixed(0)}%; ${conn?.retransmits ?? "?"} retransmits, ${drops} UDP rcvbuf drops (host-wide)`, { vs: ["udp", "aes"] });
      c.close();
      srv.close();
    });

    await section("pilotctl info", async () => {
      const times: number[] = [];
      for (let i = 0; i < 11; i++) {
        const t0 = performance.now();
        const p = Bun.spawn([BUN, MAIN, "pilotctl", "--json", "info"], { cwd: REPO, env: { ...process.env, PILOT_SOCKET: A.socket, HOME: A.home }, stdout: "pipe", stderr: "pipe" });
        await new Response(p.stdout).text();
        if ((await p.exited) !== 0) throw new Error("pilotctl --json info failed");
        times.push(performance.now() - t0);
      }
      times.sort((x, y) => x - y);
      r.add("pilotctl --json info, real daemon (median)", quantile(times, 0.5), "ms", "11 runs, process spawn to exit", { vs: ["bun.start"] });
    });
  } finally {
    for (const d of drivers) d.close();
    hole.close();
    await cl.stop();
  }
  if (failures.length > 0) throw new Error(failures.join("; "));
}

if (import.meta.main) {
  await system({ add: (n, v, u, note) => console.log(`${n}: ${v.toFixed(2)} ${u}${note ? `  (${note})` : ""}`) });
}
