// Keepalives vs. the reference's duplicate-ACK counting (docs/protocol.md §6.7, §6.10, Observation T10).
import { describe, expect, test } from "bun:test";
import { decodeSack } from "../src/proto/sack.ts";
import { FLAG_ACK, FLAG_FIN, FLAG_RST, FLAG_SYN, MSS, PROTO_STREAM, type Packet } from "../src/proto/types.ts";
import { ADDR_A, ADDR_B, SimNet, mulberry32 } from "../src/transport/sim.ts";
import { connect, fill } from "./transport-util.ts";

type Ev = { p: Packet; from: number; at: number };
function record(net: SimNet, drop?: (p: Packet, from: number) => boolean): Ev[] {
  const log: Ev[] = [];
  net.tap = (p, from) => {
    log.push({ p, from, at: net.now });
    return drop ? !drop(p, from) : true;
  };
  return log;
}

const sub = (a: number, b: number) => (a - b) | 0; // serial difference

/**
 * A reference sender's view of the ACKs it receives (docs/protocol.md §6.5 steps 1-3, §9.1):
 * last-activity refreshed by every ACK-flagged packet; dup count by ack value only, pure = empty
 * payload, a non-pure ACK with ack == LastAck ignored, only a new ACK resets; ack 0 ignored.
 * Returns the highest dup count reached, how many times it reached 3, and the largest gap between
 * activity refreshes.
 */
function referenceSenderModel(pkts: Ev[], startAt: number) {
  let lastAck = 0, dup = 0, maxDup = 0, hit3 = 0;
  let lastActivity = startAt, maxGap = 0;
  for (const { p, at } of pkts) {
    if (p.protocol !== PROTO_STREAM) continue;
    if (p.flags & FLAG_SYN || p.flags & FLAG_FIN || p.flags & FLAG_RST) continue; // other branches (docs/protocol.md §6.2)
    if (!(p.flags & FLAG_ACK)) continue;
    maxGap = Math.max(maxGap, at - lastActivity);
    lastActivity = at;
    const a = p.ack;
    if (a === 0) continue;
    const d = sub(a, lastAck);
    if (d < 0) continue;
    if (d === 0) {
      if (p.payload.length > 0) continue;
      dup++;
      if (dup === 3) hit3++;
      maxDup = Math.max(maxDup, dup);
    } else {
      lastAck = a;
      dup = 0;
    }
  }
  return { maxDup, hit3, maxGap };
}

describe("keepalives never look like three duplicate ACKs to a reference sender (T10)", () => {
  test("idle for 10 minutes with default timers: keepalives every 30 s, both sides alive, no 3rd dup ACK", async () => {
    const net = new SimNet({ delayMs: 5 }, {}, {}); // defaults: keepalive 30 s, idle timeout 120 s
    const log = record(net);
    const { client, server } = await connect(net);
    const got: Uint8Array[] = [];
    server.onData = (d) => got.push(d.slice());
    const cgot: Uint8Array[] = [];
    client.onData = (d) => cgot.push(d.slice());
    // some traffic both ways first, so the ack values are past the handshake
    const up = fill(mulberry32(11), 3 * MSS + 7);
    client.write(up);
    server.write(new Uint8Array([1, 2, 3]));
    net.advance(1_000);
    const idleFrom = net.now;
    const n0 = log.length;
    net.advance(600_000); // 5× the reference idle timeout
    expect(client.state).toBe("ESTABLISHED");
    expect(server.state).toBe("ESTABLISHED");

    const idle = log.slice(n0);
    for (const side of [0, 1]) {
      const ka = idle.filter((e) => e.from === side);
      // ~20 keepalives, one every keepalive interval (virtual time, deterministic)
      expect(ka.length).toBeGreaterThanOrEqual(19);
      for (let i = 1; i < ka.length; i++) expect(ka[i].at - ka[i - 1].at).toBe(30_000);
      for (const { p } of ka) {
        expect(p.flags).toBe(FLAG_ACK);
        expect(p.window).toBeGreaterThan(0); // never 0: that lifts a reference sender's flow control (T3)
        if (p.payload.length > 0) {
          // the only payload a keepalive may carry: a SACK option with one empty block [ack, ack)
          expect(decodeSack(p.payload)).toEqual([{ left: p.ack, right: p.ack }]);
          expect(p.payload.length).toBe(13);
        }
      }
      // the first two keepalives are the reference's plain form; later ones carry the SACK option
      expect(ka.slice(0, 2).map((e) => e.p.payload.length)).toEqual([0, 0]);
      expect(ka.slice(2).every((e) => e.p.payload.length === 13)).toBe(true);
      // never three identical pure ACKs in a row
      let run = 0;
      for (let i = 0; i < ka.length; i++) {
        const pure = ka[i].p.payload.length === 0;
        run = pure && i > 0 && ka[i - 1].p.payload.length === 0 && ka[i - 1].p.ack === ka[i].p.ack ? run + 1 : pure ? 1 : 0;
        expect(run).toBeLessThan(3);
      }
      // the whole conversation as seen by a reference sender on the other side: never 3 dups,
      // and its activity timer is refreshed far more often than its 120 s idle timeout
      const m = referenceSenderModel(log.filter((e) => e.from === side), 0);
      expect(m.hit3).toBe(0);
      expect(m.maxDup).toBeLessThan(3);
      const mi = referenceSenderModel(ka, idleFrom);
      expect(mi.maxGap).toBeLessThanOrEqual(30_000);
    }
    // the SACK keepalives were not taken as data by our receiver; the connection still works
    expect(Buffer.concat(got).equals(Buffer.from(up))).toBe(true);
    expect(Buffer.concat(cgot)).toEqual(Buffer.from([1, 2, 3]));
    const more = fill(mulberry32(12), 2 * MSS);
    client.write(more);
    net.advance(1_000);
    expect(Buffer.concat(got).equals(Buffer.concat([up, more]))).toBe(true);
    expect(client.state).toBe("ESTABLISHED");
  });

  test("pure ACKs already spent on the same ack value are counted: the next keepalive carries SACK at once", async () => {
    const net = new SimNet({ delayMs: 5 }, { keepaliveMs: 30_000 }, { keepaliveMs: 30_000 });
    const log = record(net);
    const { client, server } = await connect(net);
    server.onData = () => {};
    client.write(new Uint8Array(100));
    net.advance(500); // b acknowledges the 100 bytes: ack 101 is a new ACK at the sender
    const ack = 101;
    // a peer retransmitting data we already have gets two immediate duplicate pure ACKs
    const dupData = (): Packet => ({ version: 1, flags: FLAG_ACK, protocol: PROTO_STREAM, src: ADDR_A, dst: ADDR_B, srcPort: client.localPort, dstPort: 1000, seq: 1, ack: 1, window: 512, payload: new Uint8Array(100) });
    const n0 = log.length;
    net.b.handlePacket(dupData());
    net.b.handlePacket(dupData());
    net.advance(40_000);
    const fromB = log.slice(n0).filter((e) => e.from === 1).map((e) => e.p);
    // dups #1 and #2, then the first keepalive would be #3: it carries the SACK option instead
    expect(fromB.map((p) => [p.ack, p.payload.length])).toEqual([[ack, 0], [ack, 0], [ack, 13]]);
    const m = referenceSenderModel(log.filter((e) => e.from === 1), 0);
    expect(m.maxDup).toBe(2);
    expect(m.hit3).toBe(0);
    expect(server.state).toBe("ESTABLISHED");
  });

  test("near the 2^32 wrap (reference SACK compare not wrap-safe, T17) keepalives stay plain", async () => {
    // Only side a runs; b's packets are replaced by a hand-made SYN-ACK with ISN 2^32 - 16.
    const net = new SimNet({ delayMs: 5 }, { keepaliveMs: 30_000, idleTimeoutMs: 10_000_000 }, {});
    const log = record(net, () => true); // drop everything on the link
    const dial = net.a.dial(ADDR_B, 1000);
    net.advance(10);
    const syn = log[0].p;
    expect(syn.flags).toBe(FLAG_SYN);
    const isn = 0xfffffff0;
    net.a.handlePacket({ version: 1, flags: FLAG_SYN | FLAG_ACK, protocol: PROTO_STREAM, src: ADDR_B, dst: ADDR_A, srcPort: 1000, dstPort: syn.srcPort, seq: isn, ack: 1, window: 512, payload: new Uint8Array(0) });
    await net.settle();
    const c = await dial;
    expect(c.state).toBe("ESTABLISHED");
    net.advance(200_000);
    const ka = log.filter((e) => e.from === 0 && !(e.p.flags & FLAG_SYN));
    expect(ka.length).toBeGreaterThanOrEqual(6);
    for (const { p } of ka) {
      expect([p.flags, p.ack, p.payload.length]).toEqual([FLAG_ACK, isn + 1, 0]);
    }
  });
});
