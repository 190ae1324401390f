// The worker-read UDP receive ring (src/sys/udp-ring.ts) and the descriptor sender that goes with
// it (src/sys/udp-fd-send.ts), on loopback sockets.
import { afterEach, describe, expect, test } from "bun:test";
import { RING_SLOTS, SLOT_BYTES, UdpRing } from "../src/sys/udp-ring.ts";
import { UdpFdSender } from "../src/sys/udp-fd-send.ts";

const linux = process.platform === "linux" && (process.arch === "x64" || process.arch === "arm64");
const rings: UdpRing[] = [];
afterEach(() => {
  for (const r of rings.splice(0)) r.close();
});

type Got = { data: Uint8Array; ip: string; port: number };

function open(onPacket: (g: Got) => void, port = 0): UdpRing {
  const r = UdpRing.open("127.0.0.1", port, (data, ip, p) => onPacket({ data: data.slice(), ip, port: p }), (e) => { throw e; }, (e) => { throw e; }, 4 << 20);
  if (!r) throw new Error("ring unavailable");
  rings.push(r);
  return r;
}

/** Resolves once `n` datagrams are in `got` (the ring wakes the main thread itself). */
function collect(n: number): { got: Got[]; done: Promise<void>; push: (g: Got) => void } {
  const got: Got[] = [];
  let resolve = () => {};
  const done = new Promise<void>((r) => (resolve = r));
  return {
    got,
    done,
    push: (g) => {
      got.push(g);
      if (got.length === n) resolve();
    },
  };
}

function datagram(i: number, len: number): Uint8Array {
  const b = new Uint8Array(len);
  for (let k = 0; k < len; k++) b[k] = (i * 7 + k) & 0xff;
  b[0] = i & 0xff;
  b[1] = (i >> 8) & 0xff;
  return b;
}

describe.skipIf(!linux)("udp receive ring", () => {
  test("datagrams arrive whole, in order, with the sender's address; more than the ring holds", async () => {
    const n = RING_SLOTS * 3;
    const c = collect(n);
    const ring = open(c.push);
    const tx = await Bun.udpSocket({ hostname: "127.0.0.1", port: 0, binaryType: "uint8array" });
    try {
      // Sizes vary from 1 byte to a full slot; sent in bursts the kernel buffer holds.
      const sizes = (i: number) => 2 + ((i * 997) % (SLOT_BYTES - 2));
      for (let i = 0; i < n; i += 64) {
        const batch: (Uint8Array | number | string)[] = [];
        for (let k = i; k < Math.min(n, i + 64); k++) batch.push(datagram(k, sizes(k)), ring.port, "127.0.0.1");
        expect(tx.sendMany(batch)).toBe(batch.length / 3);
        await Bun.sleep(0);
      }
      await c.done;
      expect(c.got.length).toBe(n);
      for (let i = 0; i < n; i++) {
        expect(c.got[i].data).toEqual(datagram(i, sizes(i)));
        expect(c.got[i].ip).toBe("127.0.0.1");
        expect(c.got[i].port).toBe(tx.port);
      }
      expect(ring.datagrams).toBe(n);
    } finally {
      tx.close();
    }
  });

  test("a datagram larger than a slot (up to the UDP maximum) arrives whole", async () => {
    const c = collect(3);
    const ring = open(c.push);
    const tx = await Bun.udpSocket({ hostname: "127.0.0.1", port: 0, binaryType: "uint8array" });
    try {
      const big = [datagram(1, SLOT_BYTES + 1), datagram(2, 20_000), datagram(3, 65_507)];
      for (const b of big) tx.send(b, ring.port, "127.0.0.1");
      await c.done;
      // Large ones travel by message and may overtake ring datagrams; compare as a set by size.
      const bySize = new Map(c.got.map((g) => [g.data.length, g.data]));
      for (const b of big) expect(bySize.get(b.length)).toEqual(b);
    } finally {
      tx.close();
    }
  });

  // Fewer and smaller than Bun's default receive buffer holds (this receiver is a Bun socket).
  const N = 64;
  test("the descriptor sender sends from the ring's port, in order; unsendable destinations throw", async () => {
    const back = collect(N);
    const ring = open(() => {});
    const rx = await Bun.udpSocket({
      hostname: "127.0.0.1",
      port: 0,
      binaryType: "uint8array",
      socket: { data: (_s, data, port, ip) => back.push({ data: data.slice(), ip, port }) },
    });
    try {
      let writable = 0;
      const tx = UdpFdSender.create(ring.fd, () => writable++);
      expect(tx).not.toBeNull();
      const batch: (Uint8Array | number | string)[] = [];
      for (let i = 0; i < N; i++) batch.push(datagram(i, 500), rx.port, "127.0.0.1");
      expect(tx!.sendMany(batch)).toBe(N);
      await back.done;
      for (let i = 0; i < N; i++) {
        expect(back.got[i].data).toEqual(datagram(i, 500));
        expect(back.got[i].port).toBe(ring.port);
      }
      expect(() => tx!.sendMany([new Uint8Array(4), rx.port, "::1"])).toThrow(/IPv4/);
      expect(() => tx!.send(new Uint8Array(4), 0, "127.0.0.1")).toThrow();
      tx!.close();
      expect(writable).toBe(0);
    } finally {
      rx.close();
    }
  });

  test("binding a port in use fails with EADDRINUSE; after close() the port can be bound again", async () => {
    const a = open(() => {});
    let err: unknown;
    try {
      open(() => {}, a.port);
    } catch (e) {
      err = e;
    }
    expect((err as { code?: string }).code).toBe("EADDRINUSE");
    const port = a.port;
    rings.splice(rings.indexOf(a), 1);
    a.close();
    // The descriptor is closed once the worker has left recvmmsg (it is woken by shutdown()).
    let b: UdpRing | null = null;
    for (let i = 0; i < 100 && !b; i++) {
      try {
        b = open(() => {}, port);
      } catch {
        await Bun.sleep(20);
      }
    }
    expect(b?.port).toBe(port);
  });

  test("hosts it cannot serve (IPv6, names) give null, not a throw", () => {
    expect(UdpRing.open("::1", 0, () => {}, () => {}, () => {}, 1 << 20)).toBeNull();
    expect(UdpRing.open("localhost", 0, () => {}, () => {}, () => {}, 1 << 20)).toBeNull();
    expect(UdpRing.open("1.2.3.256", 0, () => {}, () => {}, () => {}, 1 << 20)).toBeNull();
  });

  test("a handler that throws drops only its datagram", async () => {
    const c = collect(2);
    const errors: string[] = [];
    const r = UdpRing.open(
      "127.0.0.1",
      0,
      (data, ip, port) => {
        if (data[0] === 0xbd) throw new Error("bad datagram");
        c.push({ data: data.slice(), ip, port });
      },
      (e) => errors.push(e.message),
      (e) => errors.push(`fatal ${e.message}`),
      1 << 20,
    )!;
    rings.push(r);
    const tx = await Bun.udpSocket({ hostname: "127.0.0.1", port: 0, binaryType: "uint8array" });
    try {
      tx.sendMany([new Uint8Array([1]), r.port, "127.0.0.1", new Uint8Array([0xbd]), r.port, "127.0.0.1", new Uint8Array([2]), r.port, "127.0.0.1"]);
      await c.done;
      expect(c.got.map((g) => g.data[0])).toEqual([1, 2]);
      expect(errors).toEqual(["bad datagram"]);
    } finally {
      tx.close();
    }
  });
});
