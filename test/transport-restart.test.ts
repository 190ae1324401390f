// A peer that restarts and reuses its ephemeral port; ephemeral port allocation; the
// per-connection diagnostics reported by stats().
import { describe, expect, test } from "bun:test";
import { EPHEMERAL_MAX, EPHEMERAL_MIN, FLAG_ACK, FLAG_SYN, type Packet, PROTO_STREAM } from "../src/proto/types.ts";
import { type StreamConn, TransportError } from "../src/transport/api.ts";
import { ADDR_A, ADDR_B, SimNet, mulberry32 } from "../src/transport/sim.ts";
import { Transport } from "../src/transport/transport.ts";
import { connect, fill } from "./transport-util.ts";

const FIXED = { ephemeralRandom: () => 0 }; // both lives start the counter at 49152

describe("peer restart on the same ephemeral port", () => {
  test("the new SYN resets the stale connection and is accepted as a new one; data flows at once", async () => {
    const net = new SimNet({ delayMs: 5 }, FIXED, {});
    const accepted: StreamConn[] = [];
    const closes: (TransportError | undefined)[] = [];
    const got: number[] = [];
    net.b.listen(1000, (c) => {
      const i = accepted.length;
      accepted.push(c);
      got.push(0);
      c.onData = (d) => (got[i] += d.length);
      c.onClose = (e) => closes.push(e);
    });
    let first: StreamConn | null = null;
    net.a.dial(ADDR_B, 1000).then((c) => (first = c));
    net.run(() => accepted.length === 1 && first !== null, 10_000);
    await net.settle();
    (first as unknown as StreamConn).write(fill(mulberry32(1), 10_000));
    net.run(() => got[0] === 10_000, 10_000);
    expect(got[0]).toBe(10_000);
    net.advance(5_000); // the old connection is well past its handshake

    // side A restarts: no FIN, no RST, all state lost; its first dial reuses port 49152
    const a2 = net.restart(0, FIXED);
    let second: StreamConn | null = null;
    let dialErr: unknown = null;
    a2.dial(ADDR_B, 1000).then((c) => (second = c), (e) => (dialErr = e));
    net.run(() => accepted.length === 2, 60_000);
    await net.settle();
    expect(dialErr).toBeNull();
    expect(accepted.length).toBe(2);
    expect(accepted[1].remotePort).toBe(accepted[0].remotePort); // same 4-tuple
    // the stale connection was reset locally, with a clear code
    expect(closes.length).toBe(1);
    expect(closes[0]?.code).toBe("connection_reset");
    expect(accepted[0].state).toBe("CLOSED");
    // no SYN retransmission was needed: the first SYN was accepted
    expect(net.synTimeouts[0].length).toBe(0);
    net.run(() => second !== null, 1_000);
    await net.settle();
    (second as unknown as StreamConn).write(fill(mulberry32(2), 5_000));
    net.run(() => got[1] === 5_000, 60_000);
    expect(got[1]).toBe(5_000);
    expect(net.b.connections().filter((c) => c.state === "ESTABLISHED").length).toBe(1);
  });

  /** Drive side B by hand: SYN, ACK, then another SYN with `seq` after `gapMs`. */
  function handDriven(seq: number, gapMs: number) {
    let now = 0;
    const out: Packet[] = [];
    const tr = new Transport({ now: () => now, output: (p) => void out.push(p) }, { localAddr: ADDR_B });
    const accepted: StreamConn[] = [];
    const closes: (TransportError | undefined)[] = [];
    tr.listen(1000, (c) => {
      accepted.push(c);
      c.onClose = (e) => closes.push(e);
    });
    const base = { version: 1, protocol: PROTO_STREAM, src: ADDR_A, dst: ADDR_B, srcPort: 50000, dstPort: 1000, window: 512, ack: 0, payload: new Uint8Array(0) };
    tr.handlePacket({ ...base, flags: FLAG_SYN, seq: 0 });
    now += 10;
    tr.handlePacket({ ...base, flags: FLAG_ACK, seq: 1, ack: 1 });
    now += gapMs;
    out.length = 0;
    tr.handlePacket({ ...base, flags: FLAG_SYN, seq });
    return { tr, out, accepted, closes };
  }

  test("a duplicate SYN arriving just after the handshake is still answered with the original SYN+ACK", () => {
    const { out, accepted, closes } = handDriven(0, 50);
    expect(accepted.length).toBe(1);
    expect(closes.length).toBe(0);
    expect(out.length).toBe(1);
    expect([out[0].flags, out[0].seq, out[0].ack]).toEqual([FLAG_SYN | FLAG_ACK, 0, 1]);
    expect(accepted[0].state).toBe("ESTABLISHED");
  });

  test("the same ISN long after the handshake is a new incarnation", () => {
    const { out, accepted, closes, tr } = handDriven(0, 5_000);
    expect(accepted.length).toBe(2);
    expect(closes.map((e) => e?.code)).toEqual(["connection_reset"]);
    expect(out.length).toBe(1); // the new connection's SYN+ACK, and no RST towards the new incarnation
    expect([out[0].flags, out[0].seq, out[0].ack]).toEqual([FLAG_SYN | FLAG_ACK, 0, 1]);
    expect(tr.size).toBe(1);
  });

  test("a SYN with a different ISN resets the stale connection at once", () => {
    const { out, accepted, closes } = handDriven(777, 20);
    expect(accepted.length).toBe(2);
    expect(closes.map((e) => e?.code)).toEqual(["connection_reset"]);
    expect([out[0].flags, out[0].seq, out[0].ack]).toEqual([FLAG_SYN | FLAG_ACK, 0, 778]);
  });
});

describe("ephemeral ports", () => {
  test("the counter starts at a random point of the range (injectable) and wraps", () => {
    const mk = (r: number) => {
      const out: Packet[] = [];
      const tr = new Transport({ now: () => 0, output: (p) => void out.push(p) }, { localAddr: ADDR_A, ephemeralRandom: () => r });
      return { tr, out };
    };
    const mid = mk(0.5);
    mid.tr.sendDatagram(ADDR_B, 7, new Uint8Array(1));
    expect(mid.out[0].srcPort).toBe(EPHEMERAL_MIN + Math.floor(0.5 * (EPHEMERAL_MAX - EPHEMERAL_MIN + 1)));
    const top = mk(0.9999999);
    top.tr.sendDatagram(ADDR_B, 7, new Uint8Array(1));
    top.tr.sendDatagram(ADDR_B, 7, new Uint8Array(1));
    expect(top.out.map((p) => p.srcPort)).toEqual([EPHEMERAL_MAX, EPHEMERAL_MIN]);
    const bad = mk(Number.NaN); // a broken source falls back to the start of the range
    bad.tr.sendDatagram(ADDR_B, 7, new Uint8Array(1));
    expect(bad.out[0].srcPort).toBe(EPHEMERAL_MIN);
  });

  test("by default two transports do not all start at 49152", () => {
    const ports = new Set<number>();
    for (let i = 0; i < 8; i++) {
      const out: Packet[] = [];
      const tr = new Transport({ now: () => 0, output: (p) => void out.push(p) }, { localAddr: ADDR_A });
      tr.sendDatagram(ADDR_B, 7, new Uint8Array(1));
      ports.add(out[0].srcPort);
    }
    for (const p of ports) expect(p >= EPHEMERAL_MIN && p <= EPHEMERAL_MAX).toBe(true);
    expect(ports.size).toBeGreaterThan(1); // 8 draws of 16384 all equal: ~2^-98
  });
});

describe("stats() diagnostics", () => {
  test("SACK counters, recovery, reassembly and window are reported", async () => {
    const net = new SimNet({ seed: 3, delayMs: 20, loss: 0.05 });
    const { client, server } = await connect(net);
    let got = 0;
    let sawOoo = 0;
    let sawRecovery = false;
    server.onData = (d) => {
      got += d.length;
    };
    const total = 2 << 20;
    const block = fill(mulberry32(4), 64 * 1024);
    let sent = 0;
    const w = () => {
      while (sent < total) {
        sent += block.length;
        if (!client.write(block)) return;
      }
    };
    client.onDrain = w;
    w();
    net.run(() => {
      const ss = server.stats(), cs = client.stats();
      if ((ss.oooSegments ?? 0) > sawOoo) sawOoo = ss.oooSegments ?? 0;
      if (cs.inRecovery) sawRecovery = true;
      return got >= total;
    }, 600_000);
    expect(got).toBe(total);
    const cs = client.stats(), ss = server.stats();
    expect(cs.sackRecv).toBeGreaterThan(0);
    expect(ss.sackSent).toBeGreaterThan(0);
    expect(ss.sackSent!).toBeGreaterThanOrEqual(cs.sackRecv!); // SACK ACKs lost on the link are sent, never received
    expect(sawOoo).toBeGreaterThan(0);
    expect(sawRecovery).toBe(true);
    expect(ss.oooSegments).toBe(0); // all reassembled
    expect(ss.recvWindow).toBeGreaterThan(0);
    expect(cs.dupAcks).toBe(0); // SACK peer: loss detection is RACK, no dup-ACK counting
    expect(typeof cs.inRecovery).toBe("boolean");
  });
});

