import { describe, expect, test } from "bun:test";
import { ed25519 } from "@noble/curves/ed25519.js";
import { decodePacket, encodePacket, makePacket } from "../src/proto/packet.ts";
import {
  classifyDatagram, decodePILA, decodePILK, decodePILP, decodePILT, encodePacketPILT, encodePILA, encodePILK,
  encodePILP, encodePILS, encodePILT, encodePILTInto, MAGIC_PILA, MAGIC_PILK, MAGIC_PILP, MAGIC_PILS, MAGIC_PILT,
  nonceCounter, parsePILS, pilaChallenge, PILA_SIZE, PILK_SIZE, PILS_OVERHEAD, writeNonce, writePILSHeader,
} from "../src/proto/tunnel.ts";
import { encodeRelay, encodeRelayDeliver } from "../src/proto/beacon.ts";
import { FLAG_SYN, ProtoError } from "../src/proto/types.ts";
import { expectProtoError, hex, prng, randBytes, randInt, unhex } from "./proto-helpers.ts";

const SYN = makePacket({ flags: FLAG_SYN, protocol: 1, src: { network: 0, node: 1 }, dst: { network: 0, node: 2 }, srcPort: 49152, dstPort: 1000, window: 512 });
const PILT_84 = "50494c54110100000000000000010000000000 02c00003e800000000000000000200145ed874".replace(/\s/g, "");
const X_A = unhex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
const PILK_85 = "50494c4b000000018520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a";
const PILS_85_A = "50494c5300000001a1b2c3d40000000000000001" +
  "56dfe3f8d3d878e2a8d87fc3412afca4dfc38b354ce7f0e1ecd34717b908c5461fcc585a0951448836deeed10cb8a3de519c";
const PILS_85_B = "50494c53000000020102030400000000000000015c66b3dda579208e0df0d58e46f1fbb7a4aa85646015c34cf09d95f4773aeb05902047e0699c1e5b2d6c000debd78c1c1848";
const SEED = unhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60");
const ED_PUB = unhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
const CHALLENGE = "61757468000000018520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a";
const SIG = unhex("880af5e2ce0d44fc98432c2ff8c867567f42f442cd9e00c298199823844f1e7d54c5560c7c7480b2f90855b73178c665295538bd30e521f794c494e793e7610d");
const PILA_86 = `
50 49 4c 41 00 00 00 01 85 20 f0 09 89 30 a7 54
74 8b 7d dc b4 3e f7 5a 0d bf 3a 0d 26 38 1a f4
eb a4 a9 8e aa 9b 4e 6a d7 5a 98 01 82 b1 0a b7
d5 4b fe d3 c9 64 07 3a 0e e1 72 f3 da a6 23 25
af 02 1a 68 f7 07 51 1a 88 0a f5 e2 ce 0d 44 fc
98 43 2c 2f f8 c8 67 56 7f 42 f4 42 cd 9e 00 c2
98 19 98 23 84 4f 1e 7d 54 c5 56 0c 7c 74 80 b2
f9 08 55 b7 31 78 c6 65 29 55 38 bd 30 e5 21 f7
94 c4 94 e7 93 e7 61 0d`.replace(/\s/g, "");

describe("magics docs/protocol.md §3", () => {
  test("constants spell the ASCII names", () => {
    const name = (m: number) => String.fromCharCode(m >>> 24, (m >>> 16) & 255, (m >>> 8) & 255, m & 255);
    expect([MAGIC_PILT, MAGIC_PILS, MAGIC_PILK, MAGIC_PILA, MAGIC_PILP].map(name)).toEqual(["PILT", "PILS", "PILK", "PILA", "PILP"]);
  });
  test("classifyDatagram", () => {
    expect(classifyDatagram(new Uint8Array(0))).toBe("empty");
    expect(classifyDatagram(unhex("0100000001"))).toBe("beacon");
    expect(classifyDatagram(unhex("0f"))).toBe("beacon");
    expect(classifyDatagram(unhex("06"))).toBe("beacon");
    expect(classifyDatagram(unhex("10"))).toBe("short");
    expect(classifyDatagram(unhex("50494c"))).toBe("short");
    expect(classifyDatagram(unhex(PILT_84))).toBe("PILT");
    expect(classifyDatagram(unhex(PILS_85_A))).toBe("PILS");
    expect(classifyDatagram(unhex(PILK_85))).toBe("PILK");
    expect(classifyDatagram(unhex(PILA_86))).toBe("PILA");
    expect(classifyDatagram(encodePILP())).toBe("PILP");
    expect(classifyDatagram(unhex("50494c58"))).toBe("unknown");
    expect(classifyDatagram(unhex("ffffffff00"))).toBe("unknown");
    // Length minimums belong to the decoders: a 4-byte "PILT" classifies as PILT and fails to decode.
    expect(classifyDatagram(unhex("50494c54"))).toBe("PILT");
  });
});

describe("PILT docs/protocol.md §3 (reference vectors)", () => {
  test("vector", () => {
    expect(hex(encodePacketPILT(SYN))).toBe(PILT_84);
    expect(hex(encodePILT(encodePacket(SYN)))).toBe(PILT_84);
    const out = new Uint8Array(50).fill(9);
    expect(encodePILTInto(SYN, out, 3)).toBe(38);
    expect(hex(out.subarray(3, 41))).toBe(PILT_84);
    expect(decodePILT(unhex(PILT_84))).toEqual({ ...SYN, payload: new Uint8Array(0) });
  });
  test("relay wrappers around the reference PILT frame", () => {
    const f = encodePacketPILT(SYN);
    expect(hex(encodeRelay(1, 2, f))).toBe("050000000100000002" + PILT_84);
    expect(hex(encodeRelayDeliver(1, f))).toBe("0600000001" + PILT_84);
  });
  test("malformed", () => {
    const f = unhex(PILT_84);
    for (let n = 0; n < 4; n++) expectProtoError(() => decodePILT(f.subarray(0, n)), "wrong_magic");
    for (let n = 4; n < 38; n++) expectProtoError(() => decodePILT(f.subarray(0, n)), "frame_too_short");
    const bad = f.slice();
    bad[3] = 0x53;
    expectProtoError(() => decodePILT(bad), "wrong_magic");
    const crc = f.slice();
    crc[37] ^= 1;
    expectProtoError(() => decodePILT(crc), "checksum_mismatch");
    const hello = encodePacketPILT(makePacket({ payload: new Uint8Array([1, 2, 3]) }));
    expectProtoError(() => decodePILT(hello.subarray(0, hello.length - 1)), "packet_truncated");
    const longer = new Uint8Array(hello.length + 7);
    longer.set(hello);
    expect(Array.from(decodePILT(longer).payload)).toEqual([1, 2, 3]);
    expectProtoError(() => encodePacketPILT(makePacket({ payload: new Uint8Array(65536) })), "payload_too_large");
    expectProtoError(() => encodePILTInto(SYN, new Uint8Array(37), 0), "buffer_too_small");
    expectProtoError(() => encodePILTInto(SYN, new Uint8Array(3), 0), "buffer_too_small");
  });
});

describe("PILS docs/protocol.md §3 (reference vectors, framing only)", () => {
  test("parse vectors", () => {
    const a = parsePILS(unhex(PILS_85_A));
    expect(unhex(PILS_85_A).length).toBe(70);
    expect(a.nodeId).toBe(1);
    expect(hex(a.nonce)).toBe("a1b2c3d40000000000000001");
    expect(a.prefix).toBe(0xa1b2c3d4);
    expect([a.counterHi, a.counterLo]).toEqual([0, 1]);
    expect(nonceCounter(a.nonce)).toBe(1n);
    expect(a.ciphertext.length).toBe(34 + 16);
    expect(hex(a.ciphertext)).toBe(PILS_85_A.slice(40));
    const b = parsePILS(unhex(PILS_85_B));
    expect(b.nodeId).toBe(2);
    expect(hex(b.nonce)).toBe("010203040000000000000001");
    // Re-assembling from parts reproduces the frame.
    expect(hex(encodePILS(a.nodeId, a.nonce, a.ciphertext))).toBe(PILS_85_A);
    expect(PILS_OVERHEAD).toBe(36);
  });
  test("nonce and header writers", () => {
    const n = new Uint8Array(12);
    writeNonce(n, 0, 0xa1b2c3d4, 1);
    expect(hex(n)).toBe("a1b2c3d40000000000000001");
    writeNonce(n, 0, 1, 2 ** 40 + 5);
    expect(hex(n)).toBe("000000010000010000000005");
    writeNonce(n, 0, 0xffffffff, 0xffffffffffffffffn);
    expect(hex(n)).toBe("ffffffffffffffffffffffff");
    expect(nonceCounter(n)).toBe(0xffffffffffffffffn);
    const f = parsePILS((() => { const b = new Uint8Array(40); writePILSHeader(b, 0, 0xdeadbeef, n); return b; })());
    expect(f.nodeId).toBe(0xdeadbeef);
    expect([f.counterHi, f.counterLo]).toEqual([0xffffffff, 0xffffffff]);
    expect(f.ciphertext.length).toBe(20);
  });
  test("malformed", () => {
    const f = unhex(PILS_85_A);
    expectProtoError(() => parsePILS(f.subarray(0, 35)), "frame_too_short");
    expect(parsePILS(f.subarray(0, 36)).ciphertext.length).toBe(16);
    expectProtoError(() => parsePILS(unhex(PILT_84)), "wrong_magic");
    expectProtoError(() => encodePILS(1, new Uint8Array(12), new Uint8Array(15)), "ciphertext_too_short");
    expectProtoError(() => encodePILS(1, new Uint8Array(11), new Uint8Array(16)), "invalid_key_length");
  });
});

describe("PILK docs/protocol.md §3 (reference vectors)", () => {
  test("vector", () => {
    expect(hex(encodePILK(1, X_A))).toBe(PILK_85);
    const d = decodePILK(unhex(PILK_85));
    expect(d.nodeId).toBe(1);
    expect(hex(d.x25519)).toBe(hex(X_A));
    expect(PILK_SIZE).toBe(40);
  });
  test("malformed", () => {
    const f = unhex(PILK_85);
    expectProtoError(() => decodePILK(f.subarray(0, 39)), "frame_too_short");
    expectProtoError(() => decodePILK(unhex(PILA_86)), "wrong_magic");
    const longer = new Uint8Array(50);
    longer.set(f);
    expect(decodePILK(longer).nodeId).toBe(1);
    expectProtoError(() => encodePILK(1, new Uint8Array(31)), "invalid_key_length");
  });
});

describe("PILA docs/protocol.md §3 (reference vectors)", () => {
  test("challenge, signature (noble oracle) and frame", () => {
    const ch = pilaChallenge(1, X_A);
    expect(hex(ch)).toBe(CHALLENGE);
    expect(hex(ed25519.getPublicKey(SEED))).toBe(hex(ED_PUB));
    expect(hex(ed25519.sign(ch, SEED))).toBe(hex(SIG));
    const frame = encodePILA({ nodeId: 1, x25519: X_A, ed25519: ED_PUB, signature: SIG });
    expect(frame.length).toBe(PILA_SIZE);
    expect(hex(frame)).toBe(PILA_86);
    const d = decodePILA(unhex(PILA_86));
    expect(d.nodeId).toBe(1);
    expect(hex(d.x25519)).toBe(hex(X_A));
    expect(hex(d.ed25519)).toBe(hex(ED_PUB));
    expect(hex(d.signature)).toBe(hex(SIG));
    expect(ed25519.verify(d.signature, pilaChallenge(d.nodeId, d.x25519), d.ed25519)).toBe(true);
  });
  test("malformed", () => {
    const f = unhex(PILA_86);
    expectProtoError(() => decodePILA(f.subarray(0, 135)), "frame_too_short");
    expectProtoError(() => decodePILA(unhex(PILK_85)), "wrong_magic");
    const longer = new Uint8Array(200);
    longer.set(f);
    expect(hex(decodePILA(longer).signature)).toBe(hex(SIG));
    expectProtoError(() => encodePILA({ nodeId: 1, x25519: X_A, ed25519: ED_PUB, signature: SIG.subarray(1) }), "invalid_key_length");
    expectProtoError(() => encodePILA({ nodeId: 1, x25519: X_A, ed25519: ED_PUB.subarray(1), signature: SIG }), "invalid_key_length");
    expectProtoError(() => pilaChallenge(1, new Uint8Array(33)), "invalid_key_length");
  });
});

describe("PILP docs/protocol.md §3", () => {
  test("encode/decode", () => {
    expect(hex(encodePILP())).toBe("50494c50");
    decodePILP(encodePILP());
    decodePILP(unhex("50494c5000"));
    expectProtoError(() => decodePILP(unhex("50494c")), "wrong_magic");
    expectProtoError(() => decodePILP(unhex("50494c54")), "wrong_magic");
  });
});

test("round trip: random packets through PILT, random PILK/PILA/PILS fields", () => {
  const r = prng(31337);
  for (let i = 0; i < 2000; i++) {
    const p = makePacket({
      version: 1, flags: randInt(r, 16), protocol: randInt(r, 4),
      src: { network: randInt(r, 0x10000), node: randInt(r, 0x100000000) },
      dst: { network: randInt(r, 0x10000), node: randInt(r, 0x100000000) },
      srcPort: randInt(r, 0x10000), dstPort: randInt(r, 0x10000),
      seq: randInt(r, 0x100000000), ack: randInt(r, 0x100000000), window: randInt(r, 0x10000),
      payload: randBytes(r, randInt(r, 300)),
    });
    const f = encodePacketPILT(p);
    expect(hex(f.subarray(4))).toBe(hex(encodePacket(p)));
    const d = decodePILT(f);
    expect({ ...d, payload: hex(d.payload) }).toEqual({ ...p, payload: hex(p.payload) });
    const node = randInt(r, 0x100000000);
    const x = randBytes(r, 32), e = randBytes(r, 32), s = randBytes(r, 64);
    const k = decodePILK(encodePILK(node, x));
    expect([k.nodeId, hex(k.x25519)]).toEqual([node, hex(x)]);
    const a = decodePILA(encodePILA({ nodeId: node, x25519: x, ed25519: e, signature: s }));
    expect([a.nodeId, hex(a.x25519), hex(a.ed25519), hex(a.signature)]).toEqual([node, hex(x), hex(e), hex(s)]);
    const nonce = randBytes(r, 12), ct = randBytes(r, 16 + randInt(r, 100));
    const v = parsePILS(encodePILS(node, nonce, ct));
    expect([v.nodeId, hex(v.nonce), hex(v.ciphertext)]).toEqual([node, hex(nonce), hex(ct)]);
  }
});

test("fuzz: classifyDatagram and every frame decoder only ever raise ProtoError", () => {
  const r = prng(4242);
  const seeds = [PILT_84, PILS_85_A, PILS_85_B, PILK_85, PILA_86, "50494c50", "0100000001"].map(unhex);
  seeds.push(encodePacketPILT(makePacket({ protocol: 2, payload: randBytes(r, 100) })));
  const decoders: ((b: Uint8Array) => unknown)[] = [decodePILT, parsePILS, decodePILK, decodePILA, decodePILP, (b) => decodePacket(b)];
  const kinds = new Set<string>();
  let accepted = 0;
  for (let i = 0; i < 30000; i++) {
    let b: Uint8Array;
    const mode = i % 3;
    if (mode === 0) b = randBytes(r, randInt(r, 160));
    else {
      b = seeds[randInt(r, seeds.length)].slice();
      const m = 1 + randInt(r, 3);
      for (let k = 0; k < m; k++) if (b.length) b[randInt(r, b.length)] = randInt(r, 256);
      if (mode === 2) b = b.subarray(0, randInt(r, b.length + 1));
    }
    const kind = classifyDatagram(b);
    kinds.add(kind);
    for (const dec of decoders) {
      try {
        dec(b);
        accepted++;
      } catch (e) {
        if (!(e instanceof ProtoError)) throw e;
        expect(typeof e.code).toBe("string");
      }
    }
  }
  expect(accepted).toBeGreaterThan(0);
  for (const k of ["empty", "beacon", "PILT", "PILS", "PILK", "PILA", "PILP", "short", "unknown"]) expect(kinds.has(k)).toBe(true);
});
