// SACK payload option codec (docs/protocol.md §2, §6.6).
//
// Layout: "SACK" (0x53 0x41 0x43 0x4B), count n (1..4), then n × (Left u32-BE, Right u32-BE),
// Left inclusive, Right exclusive. The decoder predicate MUST match the reference exactly:
// length >= 5, magic, 1 <= n <= 4, length >= 5 + 8n (trailing bytes ignored). A payload that
// fails the predicate is user data.

export const SACK_MAX_BLOCKS = 4;
const M0 = 0x53, M1 = 0x41, M2 = 0x43, M3 = 0x4b;

/** Number of SACK blocks if `p` satisfies the SACK predicate, else 0 (= it is user data). */
export function sackCount(p: Uint8Array): number {
  if (p.length < 5 || p[0] !== M0 || p[1] !== M1 || p[2] !== M2 || p[3] !== M3) return 0;
  const n = p[4];
  if (n < 1 || n > SACK_MAX_BLOCKS || p.length < 5 + 8 * n) return 0;
  return n;
}

/** True when `p` would be swallowed as SACK by a reference receiver. */
export function isSack(p: Uint8Array): boolean {
  return sackCount(p) > 0;
}

/**
 * Decode into `out` (length >= 8): out[2i] = Left, out[2i+1] = Right. Returns the block count,
 * 0 when the payload is not a SACK option. Allocation-free for the packet path.
 */
export function decodeSackInto(p: Uint8Array, out: Uint32Array | number[]): number {
  const n = sackCount(p);
  for (let i = 0, o = 5; i < n; i++, o += 8) {
    out[2 * i] = ((p[o] << 24) | (p[o + 1] << 16) | (p[o + 2] << 8) | p[o + 3]) >>> 0;
    out[2 * i + 1] = ((p[o + 4] << 24) | (p[o + 5] << 16) | (p[o + 6] << 8) | p[o + 7]) >>> 0;
  }
  return n;
}

export interface SackBlock {
  left: number;
  right: number;
}

/** Convenience decoder: blocks, or null when the payload is user data. */
export function decodeSack(p: Uint8Array): SackBlock[] | null {
  const tmp = new Uint32Array(8);
  const n = decodeSackInto(p, tmp);
  if (n === 0) return null;
  const r: SackBlock[] = [];
  for (let i = 0; i < n; i++) r.push({ left: tmp[2 * i], right: tmp[2 * i + 1] });
  return r;
}

/**
 * Encode from flat pairs (lefts/rights as u32). At most the first 4 blocks are written (callers
 * pass them in ascending sequence order, like the reference). Returns an empty array for 0 blocks
 * (the reference sends no option then).
 */
export function encodeSackFlat(pairs: ArrayLike<number>, count: number): Uint8Array {
  const n = Math.min(count, SACK_MAX_BLOCKS);
  if (n <= 0) return new Uint8Array(0);
  const b = new Uint8Array(5 + 8 * n);
  b[0] = M0; b[1] = M1; b[2] = M2; b[3] = M3; b[4] = n;
  const dv = new DataView(b.buffer);
  for (let i = 0; i < n; i++) {
    dv.setUint32(5 + 8 * i, pairs[2 * i] >>> 0);
    dv.setUint32(9 + 8 * i, pairs[2 * i + 1] >>> 0);
  }
  return b;
}

export function encodeSack(blocks: readonly SackBlock[]): Uint8Array {
  const flat: number[] = [];
  for (let i = 0; i < blocks.length && i < SACK_MAX_BLOCKS; i++) flat.push(blocks[i].left, blocks[i].right);
  return encodeSackFlat(flat, flat.length / 2);
}
