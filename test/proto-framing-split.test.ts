// FrameDecoder: frames of every size (incl. the large-frame direct-fill path) survive arbitrary chunk splits.
import { test, expect } from "bun:test";
import { FrameDecoder, encodeFrame } from "../src/proto/framing.ts";
test("200 rounds of random frames and random chunk boundaries decode exactly", () => {
  let seed = 7; const r = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
  for (let round = 0; round < 200; round++) {
    const bodies: Uint8Array[] = [];
    for (let i = 0; i < 8; i++) { const n = r() < 0.3 ? Math.floor(r() * 200000) : Math.floor(r() * 100); const b = new Uint8Array(n); for (let j = 0; j < n; j++) b[j] = (j * 31 + i) & 255; bodies.push(b); }
    const all = Buffer.concat(bodies.map((b) => encodeFrame(b)));
    const d = new FrameDecoder();
    const out: Uint8Array[] = [];
    let off = 0;
    while (off < all.length) { const n = 1 + Math.floor(r() * 70000); out.push(...d.push(all.subarray(off, off + n))); off += n; }
    const want = bodies.filter((b) => b.length > 0);
    expect(out.length).toBe(want.length);
    for (let i = 0; i < want.length; i++) expect(Buffer.compare(Buffer.from(out[i]), Buffer.from(want[i]))).toBe(0);
    expect(d.pending).toBe(0);
  }
});

test("owned chunks: whole frames come back as views of the chunk, split ones are assembled", () => {
  const bodies = [new Uint8Array(5).fill(1), new Uint8Array(40000).fill(2), new Uint8Array(3).fill(3), new Uint8Array(70000).fill(4)];
  const wire = new Uint8Array(bodies.reduce((n, b) => n + 4 + b.length, 0));
  let o = 0;
  for (const b of bodies) {
    wire.set(encodeFrame(b), o);
    o += 4 + b.length;
  }
  for (const cut of [1, 7, 9, 40013, 40016, 40020, 50000, wire.length - 1]) {
    const d = new FrameDecoder();
    const first = wire.slice(0, cut);
    const got = [...d.push(first, true), ...d.push(wire.slice(cut), true)];
    expect(got.map((f) => f.length)).toEqual(bodies.map((b) => b.length));
    got.forEach((f, i) => expect(f.every((x) => x === bodies[i][0])).toBe(true));
    // Frames wholly inside the first chunk are views of it, not copies.
    let end = 0;
    for (let i = 0; i < bodies.length && end + 4 + bodies[i].length <= cut; i++) {
      expect(got[i].buffer).toBe(first.buffer);
      end += 4 + bodies[i].length;
    }
    expect(d.pending).toBe(0);
  }
});
