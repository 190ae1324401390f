// Segmented UDP sends (UDP_SEGMENT through bun:ffi) behind the UdpBatcher: runs of equal-sized
// datagrams back to back in one buffer arrive as the same separate datagrams, in order, on loopback.
import { expect, test } from "bun:test";
import { UdpBatcher } from "../src/sys/udp-batch.ts";
import { GsoSender } from "../src/sys/udp-gso.ts";
import { until } from "./helpers/until.ts";

test("runs of equal datagrams are sent segmented and arrive intact and in order", async () => {
  const got: Uint8Array[] = [];
  const rx = await Bun.udpSocket({ hostname: "127.0.0.1", port: 0, binaryType: "uint8array", socket: { data: (_s, b) => void got.push(b.slice()) } });
  const tx = await Bun.udpSocket({ hostname: "127.0.0.1", port: 0, binaryType: "uint8array", socket: {} });
  try {
    const out = new UdpBatcher(() => tx);
    out.gso = GsoSender.create((tx as unknown as { fd: number }).fd);
    const slab = new Uint8Array(200_000);
    // ~80 KB in all: well within the default socket buffers, so loopback loses nothing.
    const sizes = [...Array(12).fill(4166), 1000, 4166, 4166, 77, ...Array(10).fill(1500)];
    const want: Uint8Array[] = [];
    let off = 0;
    sizes.forEach((n, i) => {
      const d = slab.subarray(off, off + n).fill(i + 1);
      d[0] = i; // position, to check the order
      off += n;
      want.push(d.slice());
      out.queue(d, rx.port, "127.0.0.1");
    });
    out.flush();
    await until(async () => got.length >= want.length, "all datagrams", 5000, 10);
    expect(got.map((g) => g.length)).toEqual(sizes);
    got.forEach((g, i) => expect(Buffer.compare(g, want[i])).toBe(0));
    expect(out.sentDatagrams).toBe(sizes.length);
    if (out.gso && !out.gso.broken) expect(out.gsoDatagrams).toBeGreaterThanOrEqual(12 + 2 + 10);
  } finally {
    rx.close();
    tx.close();
  }
});

test("destinations GSO cannot take (IPv6) go the ordinary way", async () => {
  const got: number[] = [];
  const rx = await Bun.udpSocket({ hostname: "::1", port: 0, binaryType: "uint8array", socket: { data: (_s, b) => void got.push(b.length) } }).catch(() => null);
  if (!rx) return; // no IPv6 loopback here
  const tx = await Bun.udpSocket({ hostname: "::1", port: 0, binaryType: "uint8array", socket: {} });
  try {
    const out = new UdpBatcher(() => tx);
    out.gso = GsoSender.create((tx as unknown as { fd: number }).fd);
    const slab = new Uint8Array(10 * 1200);
    for (let i = 0; i < 10; i++) out.queue(slab.subarray(i * 1200, (i + 1) * 1200), rx.port, "::1");
    out.flush();
    await until(async () => got.length >= 10, "all datagrams", 5000, 10);
    expect(got).toEqual(Array(10).fill(1200));
    expect(out.gsoDatagrams).toBe(0);
  } finally {
    rx.close();
    tx.close();
  }
});
