// Shared helpers for transport tests (not a test file itself).
import { createHash } from "node:crypto";
import type { StreamConn } from "../src/transport/api.ts";
import { ADDR_B, SimNet, mulberry32, type LinkOptions } from "../src/transport/sim.ts";
import type { TransportOptions } from "../src/transport/transport.ts";

export function fill(rng: () => number, n: number): Uint8Array {
  const b = new Uint8Array(n);
  const dv = new DataView(b.buffer);
  let i = 0;
  for (; i + 4 <= n; i += 4) dv.setUint32(i, (rng() * 4294967296) >>> 0);
  for (; i < n; i++) b[i] = (rng() * 256) | 0;
  return b;
}

export async function connect(net: SimNet, port = 1000): Promise<{ client: StreamConn; server: StreamConn }> {
  let server: StreamConn | null = null;
  net.b.listen(port, (c) => {
    server = c;
  });
  const p = net.a.dial(ADDR_B, port);
  let client: StreamConn | null = null;
  p.then((c) => (client = c));
  let err: unknown = null;
  p.catch((e) => (err = e));
  for (let i = 0; i < 100 && (client === null || server === null) && err === null; i++) {
    net.run(() => server !== null && net.a.connections().some((c) => c.state === "ESTABLISHED"), 120_000);
    await net.settle();
  }
  if (err) throw err;
  if (!client || !server) throw new Error("connect failed");
  return { client, server };
}

export interface TransferResult {
  sentHash: string;
  recvHash: string;
  recvBytes: number;
  ended: boolean;
  virtualMs: number;
  segsRecv: number;
  chunks: number;
}

/** Send `size` bytes a→b with backpressure, then end(); run until b sees end-of-stream. */
export async function transfer(
  size: number,
  link: LinkOptions,
  opts: {
    a?: Partial<TransportOptions>;
    b?: Partial<TransportOptions>;
    chunk?: number;
    maxMs?: number;
    tap?: SimNet["tap"];
    /** Hand each chunk over (write(d, true)); onAcked overwrites it, so a resend from it corrupts. */
    handOver?: boolean;
    /** The reader pauses after every this many bytes, for `pauseMs` of virtual time. */
    pauseEvery?: number;
    pauseMs?: number;
  } = {},
): Promise<TransferResult & { net: SimNet; written: number; reported: number; reportedInOrder: boolean }> {
  const net = new SimNet(link, opts.a, opts.b);
  const { client, server } = await connect(net);
  if (opts.tap) net.tap = opts.tap;
  const t0 = net.now;
  const rng = mulberry32((link.seed ?? 1) * 7919 + size);
  const hs = createHash("sha256");
  const hr = createHash("sha256");
  let recvBytes = 0, chunks = 0, ended = false, closed = false;
  let sincePause = 0, pausedAt = -1; // pausedAt: the reader paused and waits for its resume
  server.onData = (d) => {
    hr.update(d);
    recvBytes += d.length;
    chunks++;
    if (opts.pauseEvery && (sincePause += d.length) >= opts.pauseEvery) {
      sincePause = 0;
      server.pause();
      pausedAt = net.now;
    }
  };
  const handed: Uint8Array[] = [];
  let reported = 0, reportedInOrder = true;
  if (opts.handOver) {
    client.onAcked = (c) => {
      if (handed[reported++] !== c) reportedInOrder = false;
      c.fill(0xee);
    };
  }
  server.onEnd = () => (ended = true);
  server.onClose = () => (closed = true);
  let sent = 0;
  const chunk = opts.chunk ?? 65536;
  const pumpWriter = () => {
    while (sent < size) {
      const n = Math.min(chunk, size - sent);
      const d = fill(rng, n);
      hs.update(d);
      sent += n;
      if (opts.handOver) handed.push(d);
      if (!client.write(d, opts.handOver)) return;
    }
    client.end();
  };
  client.onDrain = pumpWriter;
  pumpWriter();
  const until = net.now + (opts.maxMs ?? 3_600_000);
  for (;;) {
    net.run(() => closed || pausedAt >= 0, until - net.now);
    if (closed || pausedAt < 0 || net.now >= until) break;
    net.advance(opts.pauseMs ?? 20); // the link goes on while the reader is paused
    pausedAt = -1;
    server.resume();
  }
  return {
    net,
    written: handed.length,
    reported,
    reportedInOrder,
    sentHash: hs.digest("hex"),
    recvHash: hr.digest("hex"),
    recvBytes,
    ended,
    virtualMs: net.now - t0,
    segsRecv: server.stats().segsRecv,
    chunks,
  };
}
