// Loss recovery under reordering (RACK, PRR, undo): no spurious retransmission storms when
// packets are merely reordered, every lost segment repaired, fallback for peers without SACK.
// Counts only (no timing thresholds: speed lives in bench/transport.ts).
import { describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import type { StreamConn } from "../src/transport/api.ts";
import { SimNet, type LinkOptions, mulberry32 } from "../src/transport/sim.ts";
import { connect, fill } from "./transport-util.ts";

interface Rec {
  episodes: number;
  rtos: number;
  spurious: number;
  undos: number;
}

/** size bytes a→b; returns the sender's counters taken when the receiver has everything. */
async function run(size: number, link: LinkOptions, setup?: (net: SimNet) => void) {
  const net = new SimNet(link);
  const { client, server } = await connect(net);
  setup?.(net);
  const rng = mulberry32(link.seed ?? 1);
  const data = fill(rng, size);
  const h = createHash("sha256");
  let got = 0;
  server.onData = (d) => {
    h.update(d);
    got += d.length;
  };
  let off = 0;
  const w = () => {
    while (off < size) {
      const n = Math.min(65536, size - off);
      const ok = client.write(data.subarray(off, off + n));
      off += n;
      if (!ok) return;
    }
  };
  client.onDrain = w;
  w();
  net.run(() => got >= size, 3_600_000);
  const st = client.stats();
  const rec = (client as StreamConn & { rec: Rec }).rec;
  return { ok: got === size && h.digest("hex") === createHash("sha256").update(data).digest("hex"), st, rec, segs: Math.ceil(size / 4096) };
}

describe("reordering is not loss", () => {
  test("50–200 ms per-packet jitter (100 ms RTT), 2 MiB × 3 seeds: retransmits < 5 % of segments", async () => {
    for (const seed of [1, 2, 3]) {
      const r = await run(2 << 20, { seed, delayMs: 50, jitterMs: 150 });
      expect(r.ok).toBe(true);
      // before RACK: 202 retransmits for 512 segments (every reordering read as loss)
      expect(r.st.retransmits).toBeLessThan(r.segs * 0.05);
      expect(r.rec.rtos).toBe(0);
    }
  });

  // A detour shorter than the RTT: a premature verdict is provably wrong (the original's ACK
  // returns sooner than any retransmission could), so the reordering window learns. (A detour of
  // several RTTs on a short path cannot be told from loss without DSACK, which the wire lacks.)
  test("20 % of packets delayed by 30 ms on a 40 ms RTT path: retransmits < 5 %, reductions undone", async () => {
    const r = await run(4 << 20, { seed: 7, delayMs: 20, reorder: 0.2, reorderMs: 30 });
    expect(r.ok).toBe(true);
    expect(r.st.retransmits).toBeLessThan(r.segs * 0.05);
    expect(r.rec.rtos).toBe(0);
    // the few wrong verdicts were recognised and their window reductions reverted
    expect(r.rec.spurious).toBeGreaterThan(0);
    expect(r.rec.undos).toBeGreaterThan(0);
  });
});

describe("loss is repaired promptly", () => {
  test("5 % data loss (exactly counted): every lost segment resent, few duplicates, almost no RTOs", async () => {
    let dropped = 0;
    const r = await run(2 << 20, { seed: 11, delayMs: 50 }, (net) => {
      const rng = mulberry32(99);
      net.tap = (p, from) => {
        if (from === 0 && p.payload.length > 0 && rng() < 0.05) {
          dropped++;
          return false;
        }
      };
    });
    expect(r.ok).toBe(true);
    expect(dropped).toBeGreaterThan(10);
    expect(r.st.retransmits).toBeGreaterThanOrEqual(dropped);
    expect(r.st.retransmits).toBeLessThanOrEqual(Math.ceil(dropped * 1.3) + 2);
    expect(r.rec.rtos).toBeLessThanOrEqual(2);
  });

  test("jitter + 5 % loss + 3 % dup + 5 % reorder, 2 MiB: intact, retransmits bounded", async () => {
    const r = await run(2 << 20, { seed: 5, delayMs: 50, jitterMs: 150, loss: 0.05, dup: 0.03, reorder: 0.05, reorderMs: 50 });
    expect(r.ok).toBe(true);
    // data loss is ~5 % (plus lost repairs); before RACK the sender resent 40 % of all segments
    expect(r.st.retransmits).toBeLessThan(r.segs * 0.2);
  });

  test("peer that never SACKs (blocks stripped): duplicate-ACK trigger + RACK still repair 3 % loss", async () => {
    const r = await run(1 << 20, { seed: 3, delayMs: 20, loss: 0.03 }, (net) => {
      net.tap = (p, from) => {
        if (from === 1 && p.payload.length > 0) p.payload = new Uint8Array(0); // b only sends ACKs
      };
    });
    expect(r.ok).toBe(true);
    expect(r.st.fastRetransmits).toBeGreaterThan(0);
  });
});
