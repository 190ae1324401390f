import { describe, expect, test } from "bun:test";
import { crc32, crc32Js, crc32JsUpdate, crc32Update, CRC32_IMPL, setNativeThreshold, NATIVE_THRESHOLD, WHOLE_THRESHOLD } from "../src/proto/crc32.ts";
import { decodePacket, encodePacket, encodePacketInto, makePacket, packetChecksum, packetSize } from "../src/proto/packet.ts";
import { FLAG_ACK, FLAG_FIN, FLAG_RST, FLAG_SYN, type Packet, ProtoError } from "../src/proto/types.ts";
import { expectProtoError, hex, prng, randBytes, randInt, unhex } from "./proto-helpers.ts";
import { zlibSync } from "./proto-zlib.ts";

const A1 = { network: 0, node: 1 };
const A2 = { network: 0, node: 2 };
const enc = (s: string) => new TextEncoder().encode(s);

describe("crc32 docs/protocol.md §2", () => {
  test("check value and empty input", () => {
    expect(crc32(enc("123456789"))).toBe(0xcbf43926);
    expect(crc32Js(enc("123456789"))).toBe(0xcbf43926);
    expect(crc32(new Uint8Array(0))).toBe(0);
    expect(crc32Js(new Uint8Array(0))).toBe(0);
    expect(["bun-native", "js-slicing-by-8"]).toContain(CRC32_IMPL);
  });
  test("JS, native and node:zlib agree on random inputs of every length class, with offsets", () => {
    const r = prng(42);
    const saved = NATIVE_THRESHOLD, savedWhole = WHOLE_THRESHOLD;
    try {
      for (let i = 0; i < 400; i++) {
        const n = i < 300 ? i : randInt(r, 70000);
        const b = randBytes(r, n + 16);
        const s = randInt(r, 8), e = s + n;
        const ref = zlibSync(b.subarray(s, e));
        expect(crc32Js(b, s, e)).toBe(ref);
        setNativeThreshold(0);
        expect(crc32(b, s, e)).toBe(ref);
        expect(crc32(b.slice(s, e))).toBe(ref);
        setNativeThreshold(1 << 30);
        expect(crc32(b, s, e)).toBe(ref);
        // chaining
        const cut = s + randInt(r, n + 1);
        expect(crc32JsUpdate(crc32Js(b, s, cut), b, cut, e)).toBe(ref);
        setNativeThreshold(0);
        expect(crc32Update(crc32(b, s, cut), b, cut, e)).toBe(ref);
        setNativeThreshold(saved, savedWhole);
      }
    } finally {
      setNativeThreshold(saved, savedWhole);
    }
  });
});

// reference packet vectors: [description, packet, hex, crc]
const VECTORS: [string, Packet, string, number][] = [
  ["8.1 SYN", makePacket({ flags: FLAG_SYN, protocol: 1, src: A1, dst: A2, srcPort: 49152, dstPort: 1000, window: 512 }),
    "110100000000000000010000000000 02c00003e800000000000000000200145ed874", 0x145ed874],
  ["8.2 data hello", makePacket({ flags: FLAG_ACK, protocol: 1, src: A1, dst: A2, srcPort: 49152, dstPort: 1000, seq: 1, ack: 1, window: 502, payload: enc("hello") }),
    "12010005000000000001000000000002c00003e800000001000000010 1f65ee872c868656c6c6f", 0x5ee872c8],
  ["SYN-ACK", makePacket({ flags: FLAG_SYN | FLAG_ACK, protocol: 1, src: A2, dst: A1, srcPort: 1000, dstPort: 49152, seq: 0, ack: 1, window: 512 }),
    "1301000000000000000200000000000103e8c0000000000000000001020024f40f8e", 0x24f40f8e],
  ["final ACK", makePacket({ flags: FLAG_ACK, protocol: 1, src: A1, dst: A2, srcPort: 49152, dstPort: 1000, seq: 1, ack: 1, window: 512 }),
    "12010000000000000001000000000002c00003e8000000010000000102001e21ff5a", 0x1e21ff5a],
  ["ACK+SACK", makePacket({ flags: FLAG_ACK, protocol: 1, src: A2, dst: A1, srcPort: 1000, dstPort: 49152, seq: 1, ack: 1, window: 512,
    payload: unhex("5341434b02" + "00001001" + "00002001" + "00003001" + "00004001") }),
    "1201001500000000000200000000000103e8c00000000001000000010200d949404e5341434b0200001001000020010000300100004001", 0xd949404e],
  ["FIN", makePacket({ flags: FLAG_FIN, protocol: 1, src: A1, dst: A2, srcPort: 49152, dstPort: 1000, seq: 6 }),
    "14010000000000000001000000000002c00003e80000000600000000000007a8a6d2", 0x07a8a6d2],
  ["FIN-ACK", makePacket({ flags: FLAG_FIN | FLAG_ACK, protocol: 1, src: A2, dst: A1, srcPort: 1000, dstPort: 49152, seq: 1, ack: 7 }),
    "1601000000000000000200000000000103e8c000000000010000000700007de95191", 0x7de95191],
  ["RST", makePacket({ flags: FLAG_RST, protocol: 1, src: A2, dst: A1, srcPort: 9999, dstPort: 49152 }),
    "18010000000000000002000000000001270fc00000000000000000000000e2bb5601", 0xe2bb5601],
  ["keepalive", makePacket({ flags: FLAG_ACK, protocol: 1, src: A2, dst: A1, srcPort: 1000, dstPort: 49152, seq: 1, ack: 6, window: 0 }),
    "1201000000000000000200000000000103e8c0000000000100000006000049971efd", 0x49971efd],
  ["datagram", makePacket({ protocol: 2, src: A1, dst: A2, srcPort: 49153, dstPort: 5000, payload: enc("hi") }),
    "10020002000000000001000000000002c001138800000000000000000000a00f9fbf6869", 0xa00f9fbf],
  ["ping", makePacket({ protocol: 3, src: A1, dst: A2, srcPort: 49154, dstPort: 0, seq: 7, payload: enc("abc") }),
    "10030003000000000001000000000002c002000000000007000000000000c35a0b2e616263", 0xc35a0b2e],
  ["pong", makePacket({ flags: FLAG_ACK, protocol: 3, src: A2, dst: A1, srcPort: 0, dstPort: 49154, seq: 7, ack: 8, payload: enc("abc") }),
    "120300030000000000020000000000010000c00200000007000000080000efeb30e7616263", 0xefeb30e7],
];

describe("reference packet vectors", () => {
  for (const [name, p, h, c] of VECTORS) {
    const want = h.replace(/\s+/g, "");
    test(name, () => {
      const b = encodePacket(p);
      expect(hex(b)).toBe(want);
      expect(packetChecksum(b)).toBe(c);
      expect(b.length).toBe(packetSize(p));
      const d = decodePacket(unhex(want));
      expect({ ...d, payload: hex(d.payload) }).toEqual({ ...p, payload: hex(p.payload) });
      // Into a larger buffer at an offset.
      const out = new Uint8Array(b.length + 10).fill(0xee);
      expect(encodePacketInto(p, out, 7)).toBe(b.length);
      expect(hex(out.subarray(7, 7 + b.length))).toBe(want);
      expect(out[6]).toBe(0xee);
      expect(out[7 + b.length]).toBe(0xee);
      expect(decodePacket(out, 7, 7 + b.length).seq).toBe(p.seq);
    });
  }
  test("8.2 is 39 bytes", () => expect(encodePacket(VECTORS[1][1]).length).toBe(39));
});

describe("decode rules docs/protocol.md §2", () => {
  const syn = unhex("110100000000000000010000000000 02c00003e800000000000000000200145ed874");
  const data = unhex("12010005000000000001000000000002c00003e8000000010000000101f65ee872c868656c6c6f");
  test("too short", () => {
    for (let n = 0; n < 34; n++) expectProtoError(() => decodePacket(syn.subarray(0, n)), "packet_too_short");
    expectProtoError(() => decodePacket(syn, 1), "packet_too_short");
    expectProtoError(() => decodePacket(syn, 0, 33), "packet_too_short");
    expectProtoError(() => decodePacket(syn, -1), "packet_too_short");
  });
  test("truncated", () => {
    for (let n = 34; n < 39; n++) expectProtoError(() => decodePacket(data.subarray(0, n)), "packet_truncated");
    expectProtoError(() => decodePacket(data, 0, 38), "packet_truncated");
  });
  test("checksum mismatch on every single-bit flip outside the length field", () => {
    for (let i = 0; i < data.length; i++) {
      if (i === 2 || i === 3) continue;
      for (let bit = 0; bit < 8; bit++) {
        const b = data.slice();
        b[i] ^= 1 << bit;
        expectProtoError(() => decodePacket(b), "checksum_mismatch");
      }
    }
  });
  test("bytes after the declared payload are ignored (W16)", () => {
    const longer = new Uint8Array(data.length + 20);
    longer.set(data);
    longer.fill(0xab, data.length);
    const d = decodePacket(longer);
    expect(new TextDecoder().decode(d.payload)).toBe("hello");
    expect(d.payload.length).toBe(5);
  });
  test("payload is a view, not a copy", () => {
    const b = data.slice();
    const d = decodePacket(b);
    expect(d.payload.buffer).toBe(b.buffer);
    expect(d.payload.byteOffset).toBe(34);
  });
  test("version nibble is not checked", () => {
    const p = makePacket({ version: 7, flags: 0xf, protocol: 0x99 });
    const d = decodePacket(encodePacket(p));
    expect(d.version).toBe(7);
    expect(d.flags).toBe(0xf);
    expect(d.protocol).toBe(0x99);
  });
  test("payload too large", () => {
    expectProtoError(() => encodePacket(makePacket({ payload: new Uint8Array(65536) })), "payload_too_large");
    expectProtoError(() => encodePacketInto(makePacket({ payload: new Uint8Array(65536) }), new Uint8Array(70000), 0), "payload_too_large");
    const max = encodePacket(makePacket({ payload: new Uint8Array(65535).fill(3) }));
    expect(max.length).toBe(65535 + 34);
    expect(decodePacket(max).payload.length).toBe(65535);
  });
  test("buffer too small for encodePacketInto", () => {
    expectProtoError(() => encodePacketInto(makePacket({ payload: new Uint8Array(10) }), new Uint8Array(43), 0), "buffer_too_small");
    expectProtoError(() => encodePacketInto(makePacket({}), new Uint8Array(40), 7), "buffer_too_small");
  });
});

test("round trip over random packets (seeded)", () => {
  const r = prng(2024);
  for (let i = 0; i < 3000; i++) {
    const n = i % 10 === 0 ? randInt(r, 5000) : randInt(r, 200);
    const p: Packet = {
      version: randInt(r, 16), flags: randInt(r, 16), protocol: randInt(r, 256),
      src: { network: randInt(r, 0x10000), node: randInt(r, 0x100000000) },
      dst: { network: randInt(r, 0x10000), node: randInt(r, 0x100000000) },
      srcPort: randInt(r, 0x10000), dstPort: randInt(r, 0x10000),
      seq: randInt(r, 0x100000000), ack: randInt(r, 0x100000000), window: randInt(r, 0x10000),
      payload: randBytes(r, n),
    };
    const b = encodePacket(p);
    // The stored CRC is zlib's CRC over the packet with the checksum field zeroed.
    const z = b.slice();
    z.fill(0, 30, 34);
    expect(packetChecksum(b)).toBe(zlibSync(z));
    const d = decodePacket(b);
    expect({ ...d, payload: hex(d.payload) }).toEqual({ ...p, payload: hex(p.payload) });
  }
});

test("fuzz: random and mutated bytes only ever raise ProtoError", () => {
  const r = prng(99);
  const seeds = VECTORS.map(([, , h]) => unhex(h));
  let ok = 0;
  for (let i = 0; i < 20000; i++) {
    let b: Uint8Array;
    if (i % 2 === 0) b = randBytes(r, randInt(r, 80));
    else {
      b = seeds[randInt(r, seeds.length)].slice();
      const m = 1 + randInt(r, 3);
      for (let k = 0; k < m; k++) b[randInt(r, b.length)] = randInt(r, 256);
      if (r() < 0.3) b = b.subarray(0, randInt(r, b.length + 1));
    }
    const off = randInt(r, 3);
    let d: Packet;
    try {
      d = decodePacket(b, off);
    } catch (e) {
      if (!(e instanceof ProtoError)) throw e;
      expect(["packet_too_short", "packet_truncated", "checksum_mismatch"]).toContain(e.code);
      continue;
    }
    // an accepted input is a well-formed packet: it re-encodes to the very bytes it came from
    const again = encodePacket(d);
    expect(hex(again)).toBe(hex(b.subarray(off, off + again.length)));
    ok++;
  }
  expect(ok).toBeGreaterThan(0); // this seed exercises the accepting path too
});
