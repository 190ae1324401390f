import { describe, expect, test } from "bun:test";
import { ReplayWindow } from "../src/crypto/replay.ts";

describe("ReplayWindow", () => {
  test("reference walk-through", () => {
    const w = new ReplayWindow();
    const steps: [number, boolean, number][] = [
      [5, true, 5],
      [5, false, 5],
      [3, true, 5],
      [3, false, 5],
      [300, true, 300],
      [44, false, 300],
      [45, true, 300],
    ];
    for (const [c, ok, max] of steps) {
      expect(w.check(c)).toBe(ok);
      expect(w.record(c)).toBe(ok);
      expect(w.max).toBe(max);
    }
  });

  test("check() has no side effects", () => {
    const w = new ReplayWindow();
    expect(w.check(2 ** 53 - 1)).toBe(true);
    expect(w.isEmpty).toBe(true);
    w.record(10);
    for (let i = 0; i < 5; i++) expect(w.check(1000)).toBe(true);
    expect(w.max).toBe(10);
    expect(w.check(10)).toBe(false);
    expect(w.check(9)).toBe(true);
  });

  test("each counter in (max-256, max] accepted exactly once, in any order", () => {
    const w = new ReplayWindow();
    w.record(1000);
    const order = Array.from({ length: 255 }, (_, i) => 745 + i); // 745..999
    // deterministic shuffle
    let s = 12345;
    for (let i = order.length - 1; i > 0; i--) {
      s = (s * 1103515245 + 12345) >>> 0;
      const j = s % (i + 1);
      [order[i], order[j]] = [order[j], order[i]];
    }
    for (const c of order) expect(w.record(c)).toBe(true);
    for (const c of order) expect(w.record(c)).toBe(false);
    expect(w.record(744)).toBe(false); // 1000-744 = 256: too old
    expect(w.record(1000)).toBe(false);
  });

  test("sliding clears exactly the skipped bits", () => {
    const w = new ReplayWindow();
    for (let c = 1; c <= 10; c++) w.record(c);
    // jump by 255: counters 11..265 get their (reused) bits cleared, 10 is still in window
    expect(w.record(265)).toBe(true);
    expect(w.record(10)).toBe(false); // 265-10 = 255 < 256, bit of 10 still set (not cleared)
    expect(w.record(11)).toBe(true); // bit position 11 was cleared by the slide
    expect(w.record(9)).toBe(false); // too old (256 behind)
    // slide by exactly 256 clears everything
    expect(w.record(521)).toBe(true);
    expect(w.record(266)).toBe(true);
    expect(w.record(265)).toBe(false);
  });

  test("counter 0 is not replayable (W15 fix) and bad values are rejected", () => {
    const w = new ReplayWindow();
    expect(w.record(0)).toBe(true);
    expect(w.record(0)).toBe(false);
    expect(w.record(1)).toBe(true);
    expect(w.record(0)).toBe(false);
    for (const bad of [-1, 1.5, NaN, Infinity, 2 ** 53]) expect(w.check(bad)).toBe(false);
    w.reset();
    expect(w.isEmpty).toBe(true);
    expect(w.record(0)).toBe(true);
  });

  test("huge counters near 2^53 keep exact bit positions", () => {
    const w = new ReplayWindow();
    const big = 2 ** 53 - 1;
    expect(w.record(big - 300)).toBe(true);
    expect(w.record(big)).toBe(true);
    expect(w.record(big - 255)).toBe(true);
    expect(w.record(big - 255)).toBe(false);
    expect(w.record(big - 256)).toBe(false);
  });
});
