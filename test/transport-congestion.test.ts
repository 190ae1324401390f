// The congestion controller (src/transport/congestion.ts) counts acknowledged bytes, so a receiver
// that acknowledges a batch of segments at once (the daemon: one ACK per event-loop turn or per 32
// segments) does not slow the sender's window growth (docs/protocol.md §6.8).
import { expect, test } from "bun:test";
import { INITIAL_CWND, PrrCongestion } from "../src/transport/congestion.ts";
import { MSS } from "../src/proto/types.ts";

/** cwnd after acknowledging `rtts` full windows, `perAck` segments per ACK. */
function grow(perAck: number, rtts: number, start?: { cwnd: number; ssthresh: number }): number {
  const cc = new PrrCongestion(64 << 20);
  if (start) {
    cc.cwnd = start.cwnd;
    cc.ssthresh = start.ssthresh;
  }
  for (let r = 0; r < rtts; r++) {
    const window = cc.cwnd;
    for (let acked = 0; acked + perAck * MSS <= window; acked += perAck * MSS) cc.onAck(perAck * MSS, false);
  }
  return cc.cwnd;
}

test("slow start doubles the window per round trip whether ACKs cover 1, 2, 8 or 32 segments", () => {
  for (const per of [1, 2, 8, 32]) {
    const cc = new PrrCongestion(64 << 20);
    cc.onAck(per * MSS, false);
    expect(cc.cwnd).toBe(INITIAL_CWND + per * MSS); // every acknowledged byte counts
  }
  // From 32 segments, 3 round trips of full windows: 32 → 64 → 128 → 256 segments for every batch size.
  for (const per of [1, 2, 8, 32]) expect(grow(per, 3, { cwnd: 32 * MSS, ssthresh: 1 << 30 })).toBe(256 * MSS);
});

test("congestion avoidance adds about one segment per round trip, independent of ACK batching", () => {
  const start = { cwnd: 256 * MSS, ssthresh: 128 * MSS };
  const results = [2, 8, 32].map((per) => grow(per, 10, start) - start.cwnd);
  for (const g of results) {
    expect(g).toBeGreaterThanOrEqual(9 * MSS);
    expect(g).toBeLessThanOrEqual(11 * MSS);
  }
});

test("the window never exceeds its cap", () => {
  const cc = new PrrCongestion(100 * MSS);
  for (let i = 0; i < 100; i++) cc.onAck(32 * MSS, false);
  expect(cc.cwnd).toBe(100 * MSS);
});
