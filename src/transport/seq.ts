// Serial-number arithmetic (RFC 1982) for 32-bit sequence numbers, correct across the 2^32 wrap
// (the reference's SACK code is not; ours is everywhere).
export const seqLt = (a: number, b: number): boolean => ((a - b) | 0) < 0;
export const seqLe = (a: number, b: number): boolean => ((a - b) | 0) <= 0;
export const seqGt = (a: number, b: number): boolean => ((a - b) | 0) > 0;
export const seqGe = (a: number, b: number): boolean => ((a - b) | 0) >= 0;
/** Reduce to an unsigned 32-bit value (sequence numbers and distances between them). */
export const u32 = (x: number): number => x >>> 0;
