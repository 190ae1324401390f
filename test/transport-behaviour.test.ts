// Connection lifecycle behaviour on the simulated link (docs/protocol.md §6.3, §6.9-§14).
import { describe, expect, test } from "bun:test";
import { FLAG_ACK, FLAG_FIN, FLAG_RST, FLAG_SYN, type Packet } from "../src/proto/types.ts";
import { TransportError, type StreamConn } from "../src/transport/api.ts";
import { ADDR_A, ADDR_B, SimNet, mulberry32 } from "../src/transport/sim.ts";
import { connect, fill } from "./transport-util.ts";

function record(net: SimNet) {
  const log: { p: Packet; from: number; t: number }[] = [];
  net.tap = (p, from) => {
    log.push({ p, from, t: net.now });
  };
  return log;
}

async function dialResult(net: SimNet, port: number, maxMs = 120_000): Promise<StreamConn | TransportError> {
  let res: StreamConn | TransportError | null = null;
  net.a.dial(ADDR_B, port).then(
    (c) => (res = c),
    (e) => (res = e),
  );
  for (let i = 0; i < 200 && res === null; i++) {
    net.run(() => false, maxMs / 200);
    await net.settle();
  }
  if (res === null) throw new Error("dial did not settle");
  return res;
}

describe("open", () => {
  test("SYN to a closed port -> RST -> connection_refused", async () => {
    const net = new SimNet({ delayMs: 5 });
    const log = record(net);
    const r = await dialResult(net, 4242);
    expect(r).toBeInstanceOf(TransportError);
    expect((r as TransportError).code).toBe("connection_refused");
    const rst = log.find((e) => e.from === 1)!.p;
    expect([rst.flags, rst.seq, rst.ack, rst.window]).toEqual([FLAG_RST, 0, 0, 0]);
    expect(net.a.connections()).toEqual([]);
  });

  test("port_in_use on double bind", () => {
    const net = new SimNet();
    net.b.listen(80, () => {});
    expect(() => net.b.listen(80, () => {})).toThrow(TransportError);
    try {
      net.b.listen(80, () => {});
    } catch (e) {
      expect((e as TransportError).code).toBe("port_in_use");
    }
  });

  test("silent peer: SYN schedule 0,1,3,7,15,23,31 s then dial_timeout at 39 s", async () => {
    const net = new SimNet({ delayMs: 5 });
    const log = record(net);
    net.tap = (p, from) => {
      log.push({ p, from, t: net.now });
      return false; // black hole
    };
    const r = await dialResult(net, 7, 60_000);
    expect((r as TransportError).code).toBe("dial_timeout");
    expect(log.map((e) => e.t / 1000)).toEqual([0, 1, 3, 7, 15, 23, 31]);
    expect(net.synTimeouts[0].map((t) => t / 1000)).toEqual([1, 3, 7, 15, 23, 31, 39]);
  });

  test("host switching to relay after 3 timeouts restarts the backoff: 0,1,3,7,9,13,21, fail 29", async () => {
    const net = new SimNet({ delayMs: 5 });
    const times: number[] = [];
    net.relayAt = 3;
    net.tap = () => {
      times.push(net.now / 1000);
      return false;
    };
    const r = await dialResult(net, 7, 60_000);
    expect((r as TransportError).code).toBe("dial_timeout");
    expect(times).toEqual([0, 1, 3, 7, 9, 13, 21]);
    expect(net.synTimeouts[0].at(-1)! / 1000).toBe(29);
  });

  test("accept backlog full -> RST (before any SYN+ACK), queued connections delivered on resume", async () => {
    const net = new SimNet({ delayMs: 5 }, {}, { acceptBacklog: 2 });
    const accepted: StreamConn[] = [];
    const l = net.b.listen(1000, (c) => accepted.push(c));
    l.pause!();
    const log = record(net);
    const r1 = await dialResult(net, 1000);
    const r2 = await dialResult(net, 1000);
    const r3 = await dialResult(net, 1000);
    expect(r1).not.toBeInstanceOf(TransportError);
    expect(r2).not.toBeInstanceOf(TransportError);
    expect((r3 as TransportError).code).toBe("connection_refused");
    expect(l.queued).toBe(2);
    // the refused dial saw RST and no SYN+ACK
    const third = log.filter((e) => e.from === 1 && e.p.dstPort === (log.filter((x) => x.from === 0 && x.p.flags === FLAG_SYN)[2].p.srcPort));
    expect(third.map((e) => e.p.flags)).toEqual([FLAG_RST]);
    expect(accepted.length).toBe(0);
    l.resume!();
    expect(accepted.length).toBe(2);
    expect(l.queued).toBe(0);
  });

  test("per-port connection limit -> RST; global SYN rate limit -> silent drop", async () => {
    const net = new SimNet({ delayMs: 1 }, {}, { maxConnsPerPort: 2 });
    net.b.listen(9, () => {});
    expect(await dialResult(net, 9)).not.toBeInstanceOf(TransportError);
    expect(await dialResult(net, 9)).not.toBeInstanceOf(TransportError);
    expect(((await dialResult(net, 9)) as TransportError).code).toBe("connection_refused");

    const net2 = new SimNet({ delayMs: 1 }, {}, { synRateLimit: 1000, perSourceSynLimit: 3 });
    net2.b.listen(9, () => {});
    const results: (StreamConn | TransportError | null)[] = [];
    for (let i = 0; i < 5; i++) {
      const k = i;
      results.push(null);
      net2.a.dial(ADDR_B, 9).then((c) => (results[k] = c), (e) => (results[k] = e));
    }
    net2.run(() => false, 500); // before the first SYN retransmission
    await net2.settle();
    expect(results.filter((r) => r !== null && !(r instanceof TransportError)).length).toBe(3);
    expect(results.filter((r) => r === null).length).toBe(2); // dropped silently, still dialing
  });
});

describe("close", () => {
  test("graceful end() delivers everything, then FIN; peer sees onEnd; TIME_WAIT reaped", async () => {
    const net = new SimNet({ delayMs: 5, loss: 0.05, seed: 11 }, { timeWaitMs: 2000 }, { timeWaitMs: 2000 });
    const { client, server } = await connect(net);
    const data = fill(mulberry32(5), 300_000);
    let got = 0, ended = false, cClosed: unknown = "no", sClosed: unknown = "no";
    server.onData = (d) => (got += d.length);
    server.onEnd = () => (ended = true);
    server.onClose = (e) => (sClosed = e);
    client.onClose = (e) => (cClosed = e);
    client.write(data);
    client.end();
    expect(client.state).toBe("FIN_WAIT");
    expect(() => client.write(new Uint8Array(1))).toThrow(TransportError);
    net.run(() => ended, 600_000);
    expect(got).toBe(300_000);
    expect(cClosed).toBeUndefined();
    expect(sClosed).toBeUndefined();
    net.advance(30_000);
    expect(net.a.connections()).toEqual([]);
    expect(net.b.connections()).toEqual([]);
  });

  test("simultaneous close: each bare FIN answered once by FIN+ACK, no FIN+ACK answered", async () => {
    const net = new SimNet({ delayMs: 5 });
    const { client, server } = await connect(net);
    const log = record(net);
    let n = 0;
    client.onClose = (e) => { expect(e).toBeUndefined(); n++; };
    server.onClose = (e) => { expect(e).toBeUndefined(); n++; };
    client.end();
    server.end();
    net.advance(5_000);
    expect(n).toBe(2);
    const kinds = log.map((e) => `${e.from}:${e.p.flags}`).sort();
    expect(kinds).toEqual([`0:${FLAG_FIN}`, `0:${FLAG_FIN | FLAG_ACK}`, `1:${FLAG_FIN}`, `1:${FLAG_FIN | FLAG_ACK}`].sort());
    expect(client.state).toBe("TIME_WAIT");
  });

  test("RST mid-transfer: writer gets connection_reset, both tables empty", async () => {
    const net = new SimNet({ delayMs: 5 });
    const { client, server } = await connect(net);
    let got = 0;
    let err: TransportError | undefined;
    server.onData = (d) => {
      got += d.length;
      if (got > 100_000) server.abort();
    };
    client.onClose = (e) => (err = e);
    client.write(fill(mulberry32(1), 1 << 20));
    net.run(() => err !== undefined, 10_000);
    expect(err?.code).toBe("connection_reset");
    expect(got).toBeLessThan(1 << 20);
    expect(net.a.connections()).toEqual([]);
    expect(net.b.connections()).toEqual([]);
  });

  test("peer silence during transfer: retransmission limit -> RST + timeout error", async () => {
    const net = new SimNet({ delayMs: 5 });
    const { client } = await connect(net);
    const log: Packet[] = [];
    net.tap = (p, from) => {
      if (from === 0) log.push(p);
      return from === 0 ? false : true; // everything from a is lost
    };
    let err: TransportError | undefined;
    client.onClose = (e) => (err = e);
    client.write(fill(mulberry32(1), 50_000));
    net.run(() => err !== undefined, 600_000);
    expect(err?.code).toBe("timeout");
    expect(log.at(-1)!.flags).toBe(FLAG_RST);
    expect(net.a.connections()).toEqual([]);
  });

  test("idle timeout closes a connection whose peer went silent; keepalives keep a quiet one open", async () => {
    const opts = { keepaliveMs: 1_000, idleTimeoutMs: 5_000 };
    const net = new SimNet({ delayMs: 5 }, opts, opts);
    const { client, server } = await connect(net);
    net.advance(60_000); // both idle, keepalives flowing
    expect(client.state).toBe("ESTABLISHED");
    expect(server.state).toBe("ESTABLISHED");
    net.tap = (_p, from) => from !== 1; // b goes silent
    let err: TransportError | undefined;
    client.onClose = (e) => (err = e);
    net.advance(10_000);
    expect(err?.code).toBe("timeout");
    expect(client.state).toBe("TIME_WAIT");
  });

  test("closeAll sends FIN on established connections and empties the table", async () => {
    const net = new SimNet({ delayMs: 5 });
    const { client } = await connect(net);
    const log = record(net);
    let e: TransportError | undefined;
    client.onClose = (x) => (e = x);
    net.a.closeAll();
    expect(e?.code).toBe("closed");
    expect(net.a.connections()).toEqual([]);
    expect(log.map((x) => x.p.flags)).toEqual([FLAG_FIN]);
  });
});

describe("flow control", () => {
  test("paused reader: sender stalls without aborting, resumes and completes intact", async () => {
    const bufB = { recvBufBytes: 256 * 1024 };
    const net = new SimNet({ delayMs: 5, seed: 3 }, {}, bufB);
    const { client, server } = await connect(net);
    const data = fill(mulberry32(9), 4 << 20);
    const chunks: Uint8Array[] = [];
    server.onData = (d) => chunks.push(d.slice()); // views are valid during the call only
    server.pause();
    client.write(data);
    net.advance(120_000); // two minutes of a stalled reader
    expect(client.state).toBe("ESTABLISHED");
    const st = server.stats();
    expect(st.recvBuffered).toBeGreaterThan(0);
    expect(st.recvBuffered).toBeLessThanOrEqual(256 * 1024 + 64 * 4096);
    expect(chunks.length).toBe(0);
    server.resume();
    net.run(() => chunks.reduce((a, c) => a + c.length, 0) >= data.length, 600_000);
    const got = Buffer.concat(chunks);
    expect(got.length).toBe(data.length);
    expect(Buffer.compare(got, Buffer.from(data))).toBe(0);
  });
});

describe("the peer ends while the reader is paused", () => {
  test("the queued data is delivered before the end, not dropped with the queue", async () => {
    const net = new SimNet({ delayMs: 5, seed: 4 });
    const { client, server } = await connect(net);
    const data = fill(mulberry32(5), 512 << 10);
    const got: Uint8Array[] = [];
    const order: string[] = [];
    server.onData = (d) => {
      got.push(d.slice());
      if (order.at(-1) !== "data") order.push("data");
    };
    server.onEnd = () => order.push("end");
    server.onClose = (e) => order.push(e ? `close ${e.code}` : "close");
    server.pause();
    client.write(data);
    client.end();
    net.advance(2000); // everything acknowledged and the FIN in while nothing is read
    expect(order).toEqual([]);
    expect(server.stats().recvBuffered).toBe(data.length);
    server.resume();
    net.advance(10);
    expect(order).toEqual(["data", "end", "close"]);
    expect(Buffer.compare(Buffer.concat(got), Buffer.from(data))).toBe(0);
  });
  test("a reader that never resumes gets an error end after the idle timeout, and the connection goes", async () => {
    const net = new SimNet({ delayMs: 5, seed: 4 }, {}, { idleTimeoutMs: 30_000 });
    const { client, server } = await connect(net);
    let err = "";
    server.onClose = (e) => (err = e?.code ?? "none");
    server.pause();
    client.write(fill(mulberry32(6), 64 << 10));
    client.end();
    net.advance(29_000);
    expect(err).toBe("");
    net.advance(2_000);
    expect(err).toBe("truncated");
    net.advance(60_000);
    expect(net.b.connections()).toEqual([]);
  });
});

describe("datagrams and ping", () => {
  test("datagram: flags 0, seq/ack/window 0, ephemeral src port, delivered; empty dropped; broadcast refused", () => {
    const net = new SimNet({ delayMs: 3 });
    net.a.sendDatagram(ADDR_B, 5000, new TextEncoder().encode("hello"));
    net.a.sendDatagram(ADDR_B, 5000, new Uint8Array(0));
    net.a.sendDatagram(ADDR_B, 5001, new Uint8Array([1]), 1234);
    net.advance(100);
    const got = net.datagrams[1];
    expect(got.length).toBe(2);
    const d = got[0];
    expect([d.flags, d.seq, d.ack, d.window, d.dstPort]).toEqual([0, 0, 0, 0, 5000]);
    expect(d.srcPort).toBeGreaterThanOrEqual(49152);
    expect(new TextDecoder().decode(d.payload)).toBe("hello");
    expect(got[1].srcPort).toBe(1234);
    expect(() => net.a.sendDatagram({ network: 1, node: 0xffffffff }, 1, new Uint8Array(1))).toThrow(TransportError);
  });

  test("ping: non-zero source port, pong format, RTT, pong not answered; timeout", async () => {
    const net = new SimNet({ delayMs: 7 });
    const log = record(net);
    let rtt = -1;
    net.a.ping(ADDR_B, new Uint8Array([9, 8, 7]), 1000).then((r) => (rtt = r));
    net.advance(2000);
    await net.settle();
    expect(rtt).toBe(14);
    expect(log.length).toBe(2); // ping + pong, nothing answers the pong
    const [ping, pong] = [log[0].p, log[1].p];
    expect(ping.srcPort).toBeGreaterThan(0);
    expect(ping.dstPort).toBe(0);
    expect([pong.flags, pong.srcPort, pong.dstPort, pong.seq, pong.ack, pong.window]).toEqual([FLAG_ACK, 0, ping.srcPort, ping.seq, ping.seq + 1, 0]);
    expect([...pong.payload]).toEqual([9, 8, 7]);
    net.tap = () => false;
    let err: TransportError | undefined;
    net.a.ping(ADDR_B, new Uint8Array(0), 500).catch((e) => (err = e));
    net.advance(1000);
    await net.settle();
    expect(err?.code).toBe("timeout");
    expect(ADDR_A.node).not.toBe(ADDR_B.node);
  });
});
