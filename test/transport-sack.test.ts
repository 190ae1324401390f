import { describe, expect, test } from "bun:test";
import { decodeSack, decodeSackInto, encodeSack, isSack, sackCount } from "../src/proto/sack.ts";

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const unhex = (s: string) => new Uint8Array(Buffer.from(s, "hex"));

describe("SACK codec (docs/protocol.md §2)", () => {
  test("vector from docs/protocol.md test vectors: blocks [4097,8193) [12289,16385)", () => {
    const enc = encodeSack([{ left: 4097, right: 8193 }, { left: 12289, right: 16385 }]);
    expect(hex(enc)).toBe("5341434b0200001001000020010000300100004001");
    expect(decodeSack(enc)).toEqual([{ left: 4097, right: 8193 }, { left: 12289, right: 16385 }]);
  });
  test("at most 4 blocks, first 4 kept; zero blocks -> empty", () => {
    const bl = [1, 2, 3, 4, 5].map((i) => ({ left: i * 100, right: i * 100 + 10 }));
    const enc = encodeSack(bl);
    expect(enc.length).toBe(5 + 32);
    expect(enc[4]).toBe(4);
    expect(decodeSack(enc)!.map((b) => b.left)).toEqual([100, 200, 300, 400]);
    expect(encodeSack([]).length).toBe(0);
  });
  test("u32 extremes round-trip", () => {
    const enc = encodeSack([{ left: 0xfffffff0, right: 0x10 }]);
    expect(decodeSack(enc)).toEqual([{ left: 0xfffffff0, right: 0x10 }]);
  });
  test("predicate exactly as the reference", () => {
    expect(isSack(unhex("5341434b01" + "00".repeat(8)))).toBe(true);
    expect(isSack(unhex("5341434b01" + "00".repeat(8) + "ffff"))).toBe(true); // trailing ignored
    expect(isSack(unhex("5341434b01" + "00".repeat(7)))).toBe(false); // short
    expect(isSack(unhex("5341434b00" + "00".repeat(8)))).toBe(false); // count 0
    expect(isSack(unhex("5341434b05" + "00".repeat(40)))).toBe(false); // count 5
    expect(isSack(unhex("5341434c01" + "00".repeat(8)))).toBe(false); // magic
    expect(isSack(unhex("5341434b"))).toBe(false);
    expect(sackCount(unhex("5341434b04" + "00".repeat(32)))).toBe(4);
    expect(decodeSack(new TextEncoder().encode("hello world, data"))).toBeNull();
    const out = new Uint32Array(8);
    expect(decodeSackInto(unhex("5341434b03" + "00".repeat(23)), out)).toBe(0);
  });
});
