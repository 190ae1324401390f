import { describe, expect, test } from "bun:test";
import { transfer } from "./transport-util.ts";

describe("transport: basic open / transfer / close over a clean link", () => {
  test("1 KiB arrives exactly, end-of-stream seen", async () => {
    const r = await transfer(1024, { seed: 1 });
    expect(r.recvBytes).toBe(1024);
    expect(r.recvHash).toBe(r.sentHash);
    expect(r.ended).toBe(true);
  });
  test("1 MiB arrives exactly", async () => {
    const r = await transfer(1 << 20, { seed: 2, delayMs: 10 });
    expect(r.recvBytes).toBe(1 << 20);
    expect(r.recvHash).toBe(r.sentHash);
    expect(r.ended).toBe(true);
  });
});
