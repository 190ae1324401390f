// Raw limits of this machine, measured in the same run as the system figures (bench/system.ts
// divides by these; see bench/README.md). Each figure declares a short limit key (`limit:`) that
// other results name in `vs:`.
//
// UDP: one sender process, one receiver process, 4 KiB datagrams on 127.0.0.1, sender paced only
// by the socket's backpressure; the figure is what the receiver got (goodput), with the loss in
// the note. Unix socket: node:net, 64 KiB writes, one writer process, one reader process.
// AES-256-GCM: node:crypto, seal of a 4 KiB tunnel frame on one core (in this process).
import { createCipheriv, randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as net from "node:net";
import { bunPeer, rssMiB } from "./lib/proc.ts";
import { measure, type Reporter } from "./run.ts";

const MB = 1e6;
const UDP_SECONDS = 1;

async function udp(sink: "bun" | "dgram", source: "bun" | "bunmany" | "dgram") {
  const s = bunPeer("udp-sink", sink);
  try {
    const port = Number((await s.line()).replace("PORT ", ""));
    const src = bunPeer("udp-source", source, String(port), String(UDP_SECONDS));
    const sent = JSON.parse(await src.line(UDP_SECONDS * 1000 + 15000)) as { sent: number; cpuMs: number };
    const got = JSON.parse(await s.line(10000)) as { bytes: number; datagrams: number; ms: number; cpuMs: number };
    return { mbps: got.bytes / MB / (got.ms / 1000), pps: got.datagrams / (got.ms / 1000), loss: 1 - got.datagrams / Math.max(1, sent.sent), sentMbps: (sent.sent * 4096) / MB / UDP_SECONDS, rxCpuPerMB: got.cpuMs / (got.bytes / MB) };
  } finally {
    s.kill();
  }
}

async function unix(bytes: number) {
  const dir = mkdtempSync(join(tmpdir(), "pilot-bench-raw-"));
  const path = join(dir, "raw.sock");
  const s = bunPeer("unix-sink", path);
  try {
    await s.line();
    const src = bunPeer("unix-source", path, String(bytes));
    const got = JSON.parse(await s.line(60000)) as { bytes: number; ms: number };
    await src.proc.exited;
    return got.bytes / MB / (got.ms / 1000);
  } finally {
    s.kill();
    rmSync(dir, { recursive: true, force: true });
  }
}

export default async function raw(r: Reporter): Promise<void> {
  const fmtLoss = (l: number) => `${(Math.max(0, l) * 100).toFixed(1)}% lost`;
  // Best of two runs for the main UDP limit: the machine is shared and one run can be starved.
  let u = await udp("bun", "bun");
  const u2 = await udp("bun", "bun");
  if (u2.mbps > u.mbps) u = u2;
  r.add("raw UDP Bun send 4KiB", u.mbps, "MB/s", `receiver goodput, ${Math.round(u.pps).toLocaleString("en-US")} dgrams/s, ${fmtLoss(u.loss)} of ${u.sentMbps.toFixed(0)} MB/s sent; Bun.udpSocket both ends, 2 processes, best of 2`, { limit: "udp" });
  r.add("raw UDP Bun receive CPU cost", u.rxCpuPerMB, "ms CPU/MB", "receiver process CPU time per MB received (incl. its startup), 4 KiB datagrams", { limit: "cpu.udp" });
  u = await udp("bun", "bunmany");
  r.add("raw UDP Bun sendMany 4KiB", u.mbps, "MB/s", `receiver goodput, ${Math.round(u.pps).toLocaleString("en-US")} dgrams/s, ${fmtLoss(u.loss)}; batches of 32`, { limit: "udp.many" });
  u = await udp("dgram", "dgram");
  r.add("raw UDP node:dgram 4KiB", u.mbps, "MB/s", `receiver goodput, ${Math.round(u.pps).toLocaleString("en-US")} dgrams/s, ${fmtLoss(u.loss)}; node:dgram both ends`, { limit: "udp.dgram" });

  const key = randomBytes(32);
  const iv = new Uint8Array(12);
  const pt = new Uint8Array(randomBytes(4096 + 34)); // one 4 KiB segment + packet header
  const enc = measure(
    () => {
      const c = createCipheriv("aes-256-gcm", key, iv);
      const ct = c.update(pt);
      c.final();
      return [ct, c.getAuthTag()];
    },
    { batch: 200, minMs: 300 },
  );
  r.add("raw AES-256-GCM seal 4KiB", (enc.opsPerSec * pt.length) / MB, "MB/s", "node:crypto createCipheriv+update+final+tag, 1 core", { limit: "aes" });

  r.add("raw Unix socket 64KiB writes", await unix(256 << 20), "MB/s", "node:net, 256 MiB, writer and reader processes", { limit: "unix" });

  const rtt = await roundTrips();
  r.add("raw Unix socket RTT 32B (median)", rtt.unix, "ms", "node:net request/echo between 2 processes, 200 samples", { limit: "rtt.unix" });
  r.add("raw UDP RTT 32B (median)", rtt.udp, "ms", "Bun.udpSocket request/echo between 2 processes, 200 samples", { limit: "rtt.udp" });

  // Startup and memory floor of the runtime itself.
  const starts: number[] = [];
  for (let i = 0; i < 11; i++) {
    const t0 = performance.now();
    const p = Bun.spawn([process.execPath, "-e", "0"], { stdout: "ignore", stderr: "ignore" });
    await p.exited;
    starts.push(performance.now() - t0);
  }
  starts.sort((a, b) => a - b);
  r.add("raw bun startup (median)", starts[5], "ms", "`bun -e 0`, 11 runs, spawn to exit", { limit: "bun.start" });
  const idle = bunPeer("idle");
  try {
    await idle.line();
    await Bun.sleep(200);
    r.add("raw bun idle process RSS", rssMiB(idle.proc.pid), "MiB", "VmRSS of a bun process running one timer", { limit: "rss.bun" });
  } finally {
    idle.kill();
  }
}

async function roundTrips(): Promise<{ unix: number; udp: number }> {
  const N = 200;
  const msg = new Uint8Array(32).fill(1);
  const median = (xs: number[]) => xs.sort((a, b) => a - b)[xs.length >> 1];
  // Unix
  const dir = mkdtempSync(join(tmpdir(), "pilot-bench-raw-"));
  const path = join(dir, "echo.sock");
  const ue = bunPeer("unix-echo", path);
  const udpE = bunPeer("udp-echo");
  try {
    await ue.line();
    const sock = net.connect({ path });
    await new Promise<void>((res) => sock.once("connect", () => res()));
    let waiting: (() => void) | null = null;
    let pending = 0;
    sock.on("data", (b: Buffer) => {
      pending -= b.length;
      if (pending <= 0 && waiting) waiting();
    });
    const unixT: number[] = [];
    for (let i = 0; i < N + 20; i++) {
      const t0 = performance.now();
      pending = msg.length;
      await new Promise<void>((res) => {
        waiting = res;
        sock.write(msg);
      });
      if (i >= 20) unixT.push(performance.now() - t0);
    }
    sock.destroy();
    // UDP
    const port = Number((await udpE.line()).replace("PORT ", ""));
    let wake: (() => void) | null = null;
    const us = await Bun.udpSocket({ hostname: "127.0.0.1", port: 0, socket: { data: () => wake?.() } });
    const udpT: number[] = [];
    for (let i = 0; i < N + 20; i++) {
      const t0 = performance.now();
      await new Promise<void>((res) => {
        const t = setTimeout(res, 200); // a lost datagram must not hang the bench
        wake = () => (clearTimeout(t), res());
        us.send(msg, port, "127.0.0.1");
      });
      if (i >= 20) udpT.push(performance.now() - t0);
    }
    us.close();
    return { unix: median(unixT), udp: median(udpT) };
  } finally {
    ue.kill();
    udpE.kill();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.main) {
  await raw({ add: (n, v, u, note) => console.log(`${n}: ${v.toFixed(1)} ${u}${note ? `  (${note})` : ""}`) });
}
