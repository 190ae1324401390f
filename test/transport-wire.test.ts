// Pin what goes on the wire (docs/protocol.md §6 interop checklist, docs/protocol.md §2).
import { describe, expect, test } from "bun:test";
import { decodeSack } from "../src/proto/sack.ts";
import { FLAG_ACK, FLAG_FIN, FLAG_SYN, MSS, PROTO_CONTROL, PROTO_STREAM, type Packet } from "../src/proto/types.ts";
import { ADDR_A, ADDR_B, SimNet, mulberry32 } from "../src/transport/sim.ts";
import { connect, fill } from "./transport-util.ts";

type Ev = { p: Packet; from: number };
function record(net: SimNet, drop?: (p: Packet, from: number) => boolean) {
  const log: Ev[] = [];
  net.tap = (p, from) => {
    log.push({ p, from });
    return drop ? !drop(p, from) : true;
  };
  return log;
}

describe("wire format of the stream engine", () => {
  test("handshake: SYN (no ACK, seq 0, our window), SYN+ACK (ISN 0, ack 1), final ACK", async () => {
    const net = new SimNet({ delayMs: 5 }, { recvBufBytes: 512 * MSS }, { recvBufBytes: 512 * MSS });
    const log = record(net);
    await connect(net);
    const [syn, synack, ack] = log.map((e) => e.p);
    expect([syn.flags, syn.seq, syn.ack, syn.window, syn.payload.length, syn.protocol]).toEqual([FLAG_SYN, 0, 0, 512, 0, PROTO_STREAM]);
    expect(syn.srcPort).toBeGreaterThanOrEqual(49152);
    expect([synack.flags, synack.seq, synack.ack, synack.window]).toEqual([FLAG_SYN | FLAG_ACK, 0, 1, 512]);
    expect([ack.flags, ack.seq, ack.ack, ack.window]).toEqual([FLAG_ACK, 1, 1, 512]);
  });

  test("data segments: flag ACK only, seq = first byte, MSS-sized, window never 0", async () => {
    const net = new SimNet({ delayMs: 5 });
    const { client } = await connect(net);
    const log = record(net);
    client.write(fill(mulberry32(1), 3 * MSS + 100));
    net.advance(1000);
    const data = log.filter((e) => e.from === 0 && e.p.payload.length > 0).map((e) => e.p);
    expect(data.map((p) => p.flags)).toEqual([FLAG_ACK, FLAG_ACK, FLAG_ACK, FLAG_ACK]);
    expect(data.map((p) => p.seq)).toEqual([1, 1 + MSS, 1 + 2 * MSS, 1 + 3 * MSS]);
    expect(data.map((p) => p.payload.length)).toEqual([MSS, MSS, MSS, 100]);
    for (const p of log.map((e) => e.p)) expect(p.window).toBeGreaterThan(0);
  });

  test("retransmission reuses the original boundaries; SACK block layout", async () => {
    const net = new SimNet({ delayMs: 5 });
    const { client } = await connect(net);
    let dropped = false;
    // lose the first transmission of the 2nd segment (seq 1+MSS)
    const log = record(net, (p, from) => {
      if (from === 0 && p.seq === 1 + MSS && p.payload.length > 0 && !dropped) {
        dropped = true;
        return true;
      }
      return false;
    });
    client.write(fill(mulberry32(2), 6 * MSS));
    net.advance(3000);
    const segs = log.filter((e) => e.from === 0 && e.p.payload.length > 0).map((e) => e.p);
    const tx = segs.filter((p) => p.seq === 1 + MSS);
    expect(tx.length).toBe(2);
    expect(tx[1].payload.length).toBe(tx[0].payload.length);
    expect(Buffer.compare(Buffer.from(tx[1].payload), Buffer.from(tx[0].payload))).toBe(0);
    expect(tx[1].flags).toBe(FLAG_ACK);
    // the receiver's first ACK after the hole carries SACK [1+2MSS, 1+3MSS) as a pure ACK
    const sackAcks = log.filter((e) => e.from === 1 && e.p.payload.length > 0).map((e) => e.p);
    expect(sackAcks.length).toBeGreaterThan(0);
    const first = sackAcks[0];
    expect(first.flags).toBe(FLAG_ACK);
    expect(first.ack).toBe(1 + MSS);
    expect(Buffer.from(first.payload.subarray(0, 5)).toString("hex")).toBe("5341434b01");
    expect(first.payload.length).toBe(13);
    expect(decodeSack(first.payload)).toEqual([{ left: 1 + 2 * MSS, right: 1 + 3 * MSS }]);
    // blocks are repeated (and grow) in every ACK while the hole exists
    for (const p of sackAcks) expect(decodeSack(p.payload)![0].left).toBe(1 + 2 * MSS);
    // T9: three pure duplicate ACKs follow the first SACK so a reference sender fast-retransmits
    const b = log.filter((e) => e.from === 1).map((e) => e.p);
    const i = b.indexOf(first);
    expect(b.slice(i + 1, i + 4).map((p) => [p.payload.length, p.ack])).toEqual([[0, 1 + MSS], [0, 1 + MSS], [0, 1 + MSS]]);
  });

  test("FIN: flags FIN, seq = SendSeq, ack 0, window 0; FIN+ACK ack = seq+1 window 0; FIN+ACK never answered", async () => {
    const net = new SimNet({ delayMs: 5 });
    const { client, server } = await connect(net);
    const log = record(net);
    client.write(new Uint8Array(10));
    net.advance(500);
    client.end();
    net.advance(5000);
    const fins = log.filter((e) => e.p.flags & FLAG_FIN);
    expect(fins.length).toBe(2);
    const [fin, finack] = fins;
    expect(fin.from).toBe(0);
    expect([fin.p.flags, fin.p.seq, fin.p.ack, fin.p.window]).toEqual([FLAG_FIN, 11, 0, 0]);
    expect(finack.from).toBe(1);
    expect([finack.p.flags, finack.p.ack, finack.p.window]).toEqual([FLAG_FIN | FLAG_ACK, 12, 0]);
    // a reference peer answers our FIN+ACK with its own FIN+ACK: inject one, expect silence
    const n = log.length;
    net.a.handlePacket({ ...finack.p });
    net.b.handlePacket({ ...finack.p, src: ADDR_A, dst: ADDR_B, srcPort: fin.p.srcPort, dstPort: fin.p.dstPort });
    net.advance(5000);
    expect(log.length).toBe(n);
    expect(server.state).toBe("TIME_WAIT");
  });

  test("keepalive: pure ACK with seq = SendSeq, ack = RecvAck and our (non-zero) window", async () => {
    const net = new SimNet({ delayMs: 5 }, { keepaliveMs: 30_000, recvBufBytes: 512 * MSS }, { keepaliveMs: 30_000 });
    const { client } = await connect(net);
    const log = record(net);
    client.write(new Uint8Array(5));
    net.advance(40_000);
    const ka = log.filter((e) => e.from === 0 && e.p.payload.length === 0);
    expect(ka.length).toBeGreaterThan(0);
    expect([ka[0].p.flags, ka[0].p.seq, ka[0].p.ack, ka[0].p.window]).toEqual([FLAG_ACK, 6, 1, 512]);
  });

  test("duplicate SYN after data was sent is answered with the ORIGINAL ISN (T2)", async () => {
    const net = new SimNet({ delayMs: 5 });
    const { client, server } = await connect(net);
    server.write(new Uint8Array(100));
    net.advance(500);
    const log = record(net);
    net.b.handlePacket({ version: 1, flags: FLAG_SYN, protocol: PROTO_STREAM, src: ADDR_A, dst: ADDR_B, srcPort: client.localPort, dstPort: 1000, seq: 0, ack: 0, window: 512, payload: new Uint8Array(0) });
    const sa = log.find((e) => e.from === 1)!.p;
    expect([sa.flags, sa.seq, sa.ack]).toEqual([FLAG_SYN | FLAG_ACK, 0, 1]);
  });

  test("user data starting with a SACK pattern is sent as a separate 4-byte segment (T8)", async () => {
    const net = new SimNet({ delayMs: 5 });
    const { client, server } = await connect(net);
    const got: Uint8Array[] = [];
    server.onData = (d) => got.push(d.slice()); // views are valid during the call only
    const log = record(net);
    const evil = new Uint8Array(40);
    evil.set([0x53, 0x41, 0x43, 0x4b, 2]);
    client.write(evil);
    net.advance(1000);
    const segs = log.filter((e) => e.from === 0 && e.p.payload.length > 0).map((e) => e.p.payload.length);
    expect(segs).toEqual([4, 36]);
    expect(Buffer.concat(got).equals(Buffer.from(evil))).toBe(true);
  });

  test("a received window of 0 (reference keepalive artefact) allows exactly one segment in flight", async () => {
    const net = new SimNet({ delayMs: 5 });
    const { client } = await connect(net);
    // peer (b) says window 0 in a keepalive
    net.a.handlePacket({ version: 1, flags: FLAG_ACK, protocol: PROTO_STREAM, src: ADDR_B, dst: ADDR_A, srcPort: 1000, dstPort: client.localPort, seq: 1, ack: 1, window: 0, payload: new Uint8Array(0) });
    const log = record(net, (_p, from) => from === 1); // hold b's answers back
    client.write(fill(mulberry32(3), 10 * MSS));
    net.advance(50);
    expect(log.filter((e) => e.from === 0 && e.p.payload.length > 0).length).toBe(1);
  });

  test("control packets carrying ACK (pongs) are never answered; ping to port 0 answered", () => {
    const net = new SimNet({ delayMs: 5 });
    const log = record(net);
    const base = { version: 1, protocol: PROTO_CONTROL, src: ADDR_A, dst: ADDR_B, srcPort: 0, dstPort: 0, seq: 5, ack: 6, window: 0, payload: new Uint8Array([1]) };
    net.b.handlePacket({ ...base, flags: FLAG_ACK });
    net.advance(100);
    expect(log.length).toBe(0);
    net.b.handlePacket({ ...base, flags: 0, srcPort: 50000 });
    net.advance(100);
    expect(log.length).toBe(1);
    expect(log[0].p.dstPort).toBe(50000);
  });
});
