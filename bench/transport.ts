// Transport engine benchmarks (wall-clock; the link is simulated in-process).
import { FLAG_ACK, FLAG_SYN, MSS, type Packet, PROTO_STREAM } from "../src/proto/types.ts";
import type { StreamConn } from "../src/transport/api.ts";
import { ADDR_A, ADDR_B, SimNet } from "../src/transport/sim.ts";
import { Transport } from "../src/transport/transport.ts";
import type { LinkOptions } from "../src/transport/sim.ts";

interface Reporter {
  add(name: string, value: number, unit: string, note?: string): void;
}

async function throughput(bytes: number, loss: number): Promise<number> {
  const net = new SimNet({ seed: 42, delayMs: 1, loss });
  let server: StreamConn | null = null;
  let got = 0;
  net.b.listen(1000, (c) => {
    server = c;
    c.onData = (d) => (got += d.length);
  });
  let client: StreamConn | null = null;
  net.a.dial(ADDR_B, 1000).then((c) => (client = c));
  net.run(() => server !== null && net.a.connections().some((x) => x.state === "ESTABLISHED"));
  await net.settle();
  const c = client as unknown as StreamConn;
  const t0 = performance.now();
  pumpWrites(c, bytes, 1 << 20);
  net.run(() => got >= bytes, 36_000_000);
  const ms = performance.now() - t0;
  return bytes / 1e6 / (ms / 1000);
}

/** Receiver-side engine cost: in-order MSS data packets into one connection, ACKs discarded. */
function enginePps(n: number): number {
  let now = 0;
  let outs = 0;
  const tr = new Transport({ now: () => now, output: () => void outs++ }, { localAddr: ADDR_B });
  tr.listen(1000, (c) => (c.onData = () => {}));
  const base = { version: 1, protocol: PROTO_STREAM, src: ADDR_A, dst: ADDR_B, srcPort: 50000, dstPort: 1000, window: 512 };
  tr.handlePacket({ ...base, flags: FLAG_SYN, seq: 0, ack: 0, payload: new Uint8Array(0) });
  const payload = new Uint8Array(MSS);
  const pkts: Packet[] = [];
  for (let i = 0; i < 1024; i++) pkts.push({ ...base, flags: FLAG_ACK, seq: 0, ack: 1, payload });
  const t0 = performance.now();
  let seq = 1;
  for (let i = 0; i < n; i++) {
    const p = pkts[i & 1023];
    p.seq = seq;
    seq = (seq + MSS) >>> 0;
    tr.handlePacket(p);
    if ((i & 63) === 0) {
      now += 1;
      tr.tick();
    }
  }
  const ms = performance.now() - t0;
  return n / (ms / 1000);
}

/**
 * Simulated (virtual-clock) completion time of one bulk transfer a→b over an impaired link, plus
 * the sender's retransmission count. Deterministic for a given seed. "100 ms RTT" = 50 ms each
 * way; "50–200 ms per-packet jitter" = one-way delay uniform in [50, 200) ms (every packet draws
 * its own delay, so packets overtake each other freely — the lab relay's behaviour).
 */
export async function simTransfer(bytes: number, link: LinkOptions): Promise<{ ms: number; retx: number; segs: number; rec: unknown }> {
  const net = new SimNet(link);
  let server: StreamConn | null = null;
  let got = 0;
  net.b.listen(1000, (c) => {
    server = c;
    c.onData = (d) => (got += d.length);
  });
  let client: StreamConn | null = null;
  net.a.dial(ADDR_B, 1000).then((c) => (client = c));
  for (let i = 0; i < 50 && (client === null || server === null); i++) {
    net.run(() => server !== null && net.a.connections().some((x) => x.state === "ESTABLISHED"), 60_000);
    await net.settle();
  }
  const c = client as unknown as StreamConn;
  const t0 = net.now;
  pumpWrites(c, bytes, 1 << 16);
  net.run(() => got >= bytes, 3_600_000);
  const st = c.stats();
  return { ms: net.now - t0, retx: st.retransmits, segs: st.segsSent, rec: (c as unknown as { rec?: unknown }).rec };
}

/** The lab scenarios (100 ms RTT): name → link. */
export const SIM_SCENARIOS: [string, LinkOptions][] = [
  ["clean", { seed: 5, delayMs: 50 }],
  ["jitter", { seed: 5, delayMs: 50, jitterMs: 150 }],
  ["loss5", { seed: 5, delayMs: 50, loss: 0.05 }],
  ["mixed", { seed: 5, delayMs: 50, jitterMs: 150, loss: 0.05, dup: 0.03, reorder: 0.05, reorderMs: 50 }],
];


/** Write `bytes` in `blockSize` blocks as fast as the connection accepts them (resumes on drain). */
function pumpWrites(c: StreamConn, bytes: number, blockSize: number): void {
  const block = new Uint8Array(blockSize).fill(7);
  let sent = 0;
  const w = () => {
    while (sent < bytes) {
      sent += block.length;
      if (!c.write(block)) return;
    }
  };
  c.onDrain = w;
  w();
}

export default async function bench(r: Reporter): Promise<void> {
  await throughput(8 << 20, 0); // warm-up
  r.add("transport.throughput.loss0", await throughput(256 << 20, 0), "MB/s", "engine↔engine, sim link 1 ms, 256 MiB");
  r.add("transport.throughput.loss1", await throughput(64 << 20, 0.01), "MB/s", "engine↔engine, sim link 1 ms, 1% loss, 64 MiB");
  for (const mib of [2, 16]) {
    for (const [name, link] of SIM_SCENARIOS) {
      const r = await simTransfer(mib << 20, link);
      rep(r, mib, name);
    }
  }
  function rep(x: { ms: number; retx: number; segs: number }, mib: number, name: string) {
    r.add(`transport.sim.${mib}mib.${name}`, x.ms / 1000, "s (virtual)", `100 ms RTT, ${x.retx} retransmits / ${x.segs} segments`);
  }
  enginePps(50_000);
  r.add("transport.engine.rx_pps", enginePps(500_000), "packets/s", "in-order 4 KiB segments into one connection incl. delayed ACKs");
}

if (import.meta.main && process.argv[2] === "sim") {
  for (const mib of [2, 16]) {
    for (const [name, link] of SIM_SCENARIOS) {
      const x = await simTransfer(mib << 20, link);
      console.log(`${mib} MiB ${name}: ${(x.ms / 1000).toFixed(2)} s, ${x.retx} retx / ${x.segs} segs ${JSON.stringify(x.rec)}`);
    }
  }
} else if (import.meta.main) {
  const rep: Reporter = { add: (n, v, u, note) => console.log(`${n}: ${v.toFixed(1)} ${u}${note ? `  (${note})` : ""}`) };
  await bench(rep);
}
