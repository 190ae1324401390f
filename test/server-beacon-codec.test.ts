import { describe, expect, test } from "bun:test";
import {
  decodeBeacon, decodeEp, encodeDiscover, encodeDiscoverReply, encodePunchCommand, encodePunchRequest,
  encodeRelay, encodeRelayDeliver, encodeSync, formatIp, parseIp, relayToDeliver,
} from "../src/proto/beacon.ts";
import { ProtoError } from "../src/proto/types.ts";

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const unhex = (s: string) => new Uint8Array(Buffer.from(s.replace(/\s+/g, ""), "hex"));
const hello = new TextEncoder().encode("hello");

describe("reference beacon test vectors", () => {
  const vectors: [string, Uint8Array, string][] = [
    ["Discover STUN probe", encodeDiscover(0), "01 00000000"],
    ["Discover node 1", encodeDiscover(1), "01 00000001"],
    ["DiscoverReply v4", encodeDiscoverReply({ ip: "203.0.113.7", port: 40000 }), "02 04 cb007107 9c40"],
    ["DiscoverReply v6", encodeDiscoverReply({ ip: "2001:db8::1", port: 4000 }), "02 10 20010db8000000000000000000000001 0fa0"],
    ["PunchRequest", encodePunchRequest(1, 2), "03 00000001 00000002"],
    ["PunchCommand v4", encodePunchCommand({ ip: "127.0.0.1", port: 9000 }), "04 04 7f000001 2328"],
    ["PunchCommand v6", encodePunchCommand({ ip: "2001:db8::1", port: 4000 }), "04 10 20010db8000000000000000000000001 0fa0"],
    ["Relay", encodeRelay(10, 20, hello), "05 0000000a 00000014 68656c6c6f"],
    ["RelayDeliver", encodeRelayDeliver(10, hello), "06 0000000a 68656c6c6f"],
    ["Sync", encodeSync(1, [100, 200]), "07 00000001 0002 00000064 000000c8"],
  ];
  for (const [name, got, want] of vectors) {
    test(name, () => expect(hex(got)).toBe(want.replace(/\s+/g, "")));
  }
  test("decode round trips", () => {
    expect(decodeBeacon(unhex("02 04 cb007107 9c40"))).toEqual({ type: 2, ep: { ip: "203.0.113.7", port: 40000 } });
    expect(decodeBeacon(unhex("04 10 20010db8000000000000000000000001 0fa0"))).toEqual({ type: 4, ep: { ip: "2001:db8::1", port: 4000 } });
    expect(decodeBeacon(unhex("03 00000001 00000002"))).toEqual({ type: 3, requester: 1, target: 2 });
    const r = decodeBeacon(unhex("05 0000000a 00000014 68656c6c6f"));
    expect(r.type).toBe(5);
    if (r.type === 5) { expect(r.sender).toBe(10); expect(r.dest).toBe(20); expect(hex(r.payload)).toBe("68656c6c6f"); }
    expect(decodeBeacon(unhex("07 00000001 0002 00000064 000000c8"))).toEqual({ type: 7, beaconId: 1, nodeIds: [100, 200] });
    expect(hex(relayToDeliver(unhex("05 0000000a 00000014 68656c6c6f")))).toBe("060000000a68656c6c6f");
    // Discover with extra trailing bytes is accepted (extra bytes ignored).
    expect(decodeBeacon(unhex("01 00000001 ffff"))).toEqual({ type: 1, nodeId: 1 });
    // Max u32 node id
    expect(decodeBeacon(unhex("01 ffffffff"))).toEqual({ type: 1, nodeId: 0xffffffff });
  });
});

describe("EP encoding", () => {
  test("IPv4-mapped IPv6 uses the 4-byte form", () => {
    expect(hex(encodePunchCommand({ ip: "::ffff:127.0.0.1", port: 9000 }))).toBe("04047f0000012328");
  });
  test("IPv6 formatting is canonical", () => {
    expect(formatIp(parseIp("2001:0db8:0000:0000:0001:0000:0000:0001"))).toBe("2001:db8::1:0:0:1");
    expect(formatIp(parseIp("::1"))).toBe("::1");
    expect(formatIp(parseIp("::"))).toBe("::");
    expect(formatIp(parseIp("[fe80::1%eth0]"))).toBe("fe80::1");
    expect(formatIp(parseIp("1:2:3:4:5:6:7:8"))).toBe("1:2:3:4:5:6:7:8");
  });
  test("bad ip_len and truncation are typed errors", () => {
    for (const bytes of ["02", "02 05 0102030405 0000", "02 04 7f00", "04 10 2001", "01 000000", "03 00000001 000000", "05 00", "07 00000001 0002 00000064", "09", "00"]) {
      let err: unknown;
      try { decodeBeacon(unhex(bytes)); } catch (e) { err = e; }
      expect(err).toBeInstanceOf(ProtoError);
    }
    expect(() => decodeBeacon(new Uint8Array(0))).toThrow(ProtoError);
    expect(() => parseIp("1.2.3")).toThrow(ProtoError);
    expect(() => parseIp("1::2::3")).toThrow(ProtoError);
    expect(() => parseIp("hello")).toThrow(ProtoError);
    expect(() => encodePunchCommand({ ip: "1.2.3.4", port: 70000 })).toThrow(ProtoError);
  });
  test("EP trailing bytes ignored", () => {
    expect(decodeEp(unhex("04 7f000001 2328 abcd"))).toEqual({ ip: "127.0.0.1", port: 9000 });
  });
});

describe("fuzz", () => {
  test("random bytes never throw anything but ProtoError", () => {
    let seed = 12345;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 16) & 0xff;
    for (let i = 0; i < 20000; i++) {
      const len = rnd() % 40;
      const b = new Uint8Array(len);
      for (let j = 0; j < len; j++) b[j] = rnd();
      if (len > 0 && i % 2 === 0) b[0] = (rnd() % 8);
      try { decodeBeacon(b); } catch (e) { if (!(e instanceof ProtoError)) throw e; }
    }
  });
});
