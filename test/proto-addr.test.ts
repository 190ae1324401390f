import { describe, expect, test } from "bun:test";
import {
  addrEquals, addrFromKey, addrKey, BROADCAST_NODE, formatAddr, formatSocketAddr, isBroadcast, isZero,
  marshalAddr, parseAddr, parseSocketAddr, readAddr, writeAddr,
} from "../src/proto/addr.ts";
import { expectProtoError, hex, prng, randInt } from "./proto-helpers.ts";

// docs/protocol.md §1 table.
const TABLE: [number, number, string, string][] = [
  [0, 0, "0:0000.0000.0000", "000000000000"],
  [0, 1, "0:0000.0000.0001", "000000000001"],
  [0, 0x2a, "0:0000.0000.002A", "00000000002a"],
  [1, 0xf2910004, "1:0001.F291.0004", "0001f2910004"],
  [23, 1, "23:0017.0000.0001", "001700000001"],
  [5, 0xffffffff, "5:0005.FFFF.FFFF", "0005ffffffff"],
  [65535, 0xffffffff, "65535:FFFF.FFFF.FFFF", "ffffffffffff"],
];

describe("address table docs/protocol.md §1", () => {
  for (const [network, node, text, bin] of TABLE) {
    test(text, () => {
      const a = { network, node };
      expect(formatAddr(a)).toBe(text);
      expect(parseAddr(text)).toEqual(a);
      expect(parseAddr(text.toLowerCase())).toEqual(a);
      expect(hex(marshalAddr(a))).toBe(bin);
      const buf = new Uint8Array(10);
      expect(writeAddr(buf, 3, a)).toBe(9);
      expect(readAddr(buf, 3)).toEqual(a);
    });
  }
});

describe("parseAddr accepts", () => {
  test("lowercase hex", () => expect(parseAddr("0:0000.0000.002a")).toEqual({ network: 0, node: 0x2a }));
  test("leading zeros in the decimal network", () => expect(parseAddr("007:0007.0000.0001")).toEqual({ network: 7, node: 1 }));
  test("mixed case", () => expect(parseAddr("255:00fF.aBcD.EfEf")).toEqual({ network: 255, node: 0xabcdefef }));
});

describe("parseAddr must fail (docs/protocol.md §1)", () => {
  const cases: [string, string][] = [
    ["", 'invalid address: "" (expected N:XXXX.YYYY.YYYY)'],
    ["0", 'invalid address: "0" (expected N:XXXX.YYYY.YYYY)'],
    ["0:0000", 'invalid address: "0000" (expected 3 dot-separated hex groups)'],
    ["0:0000.0000", 'invalid address: "0000.0000" (expected 3 dot-separated hex groups)'],
    ["0:0000.0000.0000.0000", 'invalid address: "0000.0000.0000.0000" (expected 3 dot-separated hex groups)'],
    ["0:000.0000.0000", 'invalid hex group: "000" (expected 4 digits)'],
    ["0:0000.000.0000", 'invalid hex group: "000" (expected 4 digits)'],
    ["99999:0000.0000.0000", 'invalid network ID: "99999": strconv.ParseUint: parsing "99999": value out of range'],
    ["0:ZZZZ.0000.0000", 'invalid hex group: "ZZZZ": strconv.ParseUint: parsing "ZZZZ": invalid syntax'],
    ["1:0000.0000.0001", "network mismatch: decimal 1 != hex 0x0000"],
    // the reference's own specification shows this address as valid, but its network parts disagree (W1)
    ["1:00A3.F291.0004", "network mismatch: decimal 1 != hex 0x00A3"],
    [":0000.0000.0000", 'invalid network ID: "": strconv.ParseUint: parsing "": invalid syntax'],
    ["+1:0001.0000.0000", 'invalid network ID: "+1": strconv.ParseUint: parsing "+1": invalid syntax'],
    ["-1:0001.0000.0000", 'invalid network ID: "-1": strconv.ParseUint: parsing "-1": invalid syntax'],
    [" 1:0001.0000.0000", 'invalid network ID: " 1": strconv.ParseUint: parsing " 1": invalid syntax'],
    ["1_0:000A.0000.0000", 'invalid network ID: "1_0": strconv.ParseUint: parsing "1_0": invalid syntax'],
    ["0x1:0001.0000.0000", 'invalid network ID: "0x1": strconv.ParseUint: parsing "0x1": invalid syntax'],
    ["65536:0000.0000.0000", 'invalid network ID: "65536": strconv.ParseUint: parsing "65536": value out of range'],
    ["0:0000.0000.000G", 'invalid hex group: "000G": strconv.ParseUint: parsing "000G": invalid syntax'],
    ["0:0000.+000.0000", 'invalid hex group: "+000": strconv.ParseUint: parsing "+000": invalid syntax'],
    ["0:0000.0000.0000:80", 'invalid hex group: "0000:80" (expected 4 digits)'],
    ["0:0000.0000.00000", 'invalid hex group: "00000" (expected 4 digits)'],
    ["0:0000..0000", 'invalid hex group: "" (expected 4 digits)'],
    // length is checked on all groups before hex parsing
    ["0:ZZZZ.0000.000", 'invalid hex group: "000" (expected 4 digits)'],
    ["0:0000.0000.0x00", 'invalid hex group: "0x00": strconv.ParseUint: parsing "0x00": invalid syntax'],
    ["0:0000.0000.00é", 'invalid hex group: "00é": strconv.ParseUint: parsing "00é": invalid syntax'],
    ["0:0000.0000.0é", 'invalid hex group: "0é" (expected 4 digits)'],
    ["0:0000.0000.000\n", 'invalid hex group: "000\\n": strconv.ParseUint: parsing "000\\n": invalid syntax'],
  ];
  for (const [input, msg] of cases) {
    test(JSON.stringify(input), () => {
      const e = expectProtoError(() => parseAddr(input), "invalid_address");
      expect(e.message).toBe(msg);
      expect(e.hint).toBeTruthy();
    });
  }
});

describe("socket addresses docs/protocol.md §1", () => {
  test("accept", () => {
    expect(parseSocketAddr("0:0000.0000.0001:1000")).toEqual({ addr: { network: 0, node: 1 }, port: 1000 });
    expect(parseSocketAddr("1:0001.F291.0004:80")).toEqual({ addr: { network: 1, node: 0xf2910004 }, port: 80 });
    expect(parseSocketAddr("1:0001.F291.0004:065535")).toEqual({ addr: { network: 1, node: 0xf2910004 }, port: 65535 });
    expect(formatSocketAddr({ network: 1, node: 0xf2910004 }, 80)).toBe("1:0001.F291.0004:80");
  });
  const fails: [string, string, string][] = [
    ["", "invalid_socket_address", 'invalid socket address: "" (no port)'],
    ["noport", "invalid_socket_address", 'invalid socket address: "noport" (no port)'],
    ["1:0001.00A3.F291:", "invalid_port", 'invalid port: "": strconv.ParseUint: parsing "": invalid syntax'],
    ["1:0001.00A3.F291:99999", "invalid_port", 'invalid port: "99999": strconv.ParseUint: parsing "99999": value out of range'],
    ["0:0000.0000.0001", "invalid_address", 'invalid address: "0" (expected N:XXXX.YYYY.YYYY)'],
    ["1:0001.00A3.F291:-1", "invalid_port", 'invalid port: "-1": strconv.ParseUint: parsing "-1": invalid syntax'],
    ["1:0000.00A3.F291:80", "invalid_address", "network mismatch: decimal 1 != hex 0x0000"],
  ];
  for (const [input, code, msg] of fails) {
    test(`fails ${JSON.stringify(input)}`, () => {
      expect(expectProtoError(() => parseSocketAddr(input), code).message).toBe(msg);
    });
  }
});

describe("predicates and keys", () => {
  test("isZero / isBroadcast", () => {
    expect(isZero({ network: 0, node: 0 })).toBe(true);
    expect(isZero({ network: 1, node: 0 })).toBe(false);
    expect(isZero({ network: 0, node: 1 })).toBe(false);
    expect(isBroadcast({ network: 0, node: BROADCAST_NODE })).toBe(true);
    expect(isBroadcast({ network: 7, node: 0xffffffff })).toBe(true);
    expect(isBroadcast({ network: 0xffff, node: 0xfffffffe })).toBe(false);
  });
  test("addrEquals / addrKey", () => {
    expect(addrEquals({ network: 1, node: 2 }, { network: 1, node: 2 })).toBe(true);
    expect(addrEquals({ network: 1, node: 2 }, { network: 2, node: 1 })).toBe(false);
    expect(addrKey({ network: 1, node: 2 })).toBe(2 ** 32 + 2);
    expect(addrKey({ network: 65535, node: 0xffffffff })).toBe(2 ** 48 - 1);
    expect(addrFromKey(addrKey({ network: 9, node: 0xdeadbeef }))).toEqual({ network: 9, node: 0xdeadbeef });
  });
  test("readAddr out of bounds", () => {
    expectProtoError(() => readAddr(new Uint8Array(5), 0), "addr_truncated");
    expectProtoError(() => readAddr(new Uint8Array(8), 3), "addr_truncated");
  });
});

test("round trip over random addresses (seeded)", () => {
  const r = prng(12345);
  const seen = new Map<number, string>();
  for (let i = 0; i < 5000; i++) {
    const a = { network: randInt(r, 0x10000), node: randInt(r, 0x100000000) };
    const t = formatAddr(a);
    expect(t).toMatch(/^\d{1,5}:[0-9A-F]{4}\.[0-9A-F]{4}\.[0-9A-F]{4}$/);
    expect(parseAddr(t)).toEqual(a);
    expect(parseAddr(t.toLowerCase())).toEqual(a);
    const port = randInt(r, 0x10000);
    expect(parseSocketAddr(formatSocketAddr(a, port))).toEqual({ addr: a, port });
    const b = marshalAddr(a);
    expect(readAddr(b, 0)).toEqual(a);
    const k = addrKey(a);
    if (seen.has(k)) expect(seen.get(k)).toBe(t);
    seen.set(k, t);
  }
});

test("random mutations of valid text never throw anything but ProtoError", () => {
  const r = prng(777);
  const alphabet = "0123456789abcdefABCDEFG:.+- _xé";
  let accepted = 0;
  for (let i = 0; i < 20000; i++) {
    const a = { network: randInt(r, 0x10000), node: randInt(r, 0x100000000) };
    const chars = formatAddr(a).split("");
    const nmut = 1 + randInt(r, 3);
    for (let m = 0; m < nmut; m++) {
      const op = randInt(r, 3);
      const pos = randInt(r, chars.length + 1);
      const ch = alphabet[randInt(r, alphabet.length)];
      if (op === 0) chars.splice(pos, 1);
      else if (op === 1) chars.splice(pos, 0, ch);
      else chars[pos] = ch;
    }
    const s = chars.join("");
    try {
      const got = parseAddr(s);
      accepted++;
      // Whatever is accepted must satisfy the grammar and round-trip case-insensitively.
      expect(s).toMatch(/^\d+:[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}$/);
      expect(parseInt(s.split(":")[0], 10)).toBe(got.network);
      expect(formatAddr(got).split(":")[1]).toBe(s.split(":")[1].toUpperCase());
    } catch (e) {
      expect((e as Error).name).toBe("ProtoError");
    }
  }
  expect(accepted).toBeGreaterThan(0);
});
