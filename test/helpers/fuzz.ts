// Seeded fuzzing harness: random inputs and mutations of valid ones (the decoders are in
// fuzz-targets.ts). A decoder may reject an input only with
// its typed error (ProtoError); anything else is an "escape". Used by the fuzz tests (a few
// thousand inputs per decoder) and by `npm run fuzz` (scripts/fuzz.ts, as many as asked).
//
// Every run has a seed (FUZZ_SEED, or a fixed default in tests); a failure names the seed, the
// decoder and the input index, and the same seed replays the same inputs.
import { ProtoError } from "../../src/proto/types.ts";
import { mulberry32 } from "../../src/sys/prng.ts";

export type Rng = () => number;

/** Seed from FUZZ_SEED (decimal or 0x-hex), else `fallback`. */
export function fuzzSeed(fallback: number): number {
  const s = process.env.FUZZ_SEED;
  if (s === undefined || s === "") return fallback >>> 0;
  const n = Number(s);
  if (!Number.isInteger(n)) throw new Error(`FUZZ_SEED must be an integer, got ${JSON.stringify(s)}`);
  return n >>> 0;
}

export function seededRng(seed: number): Rng {
  return mulberry32(seed);
}

export function bytes(r: Rng, n: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (r() * 256) | 0;
  return b;
}

/** Flip, overwrite, truncate, extend or splice a valid input. */
export function mutate(r: Rng, b: Uint8Array): Uint8Array {
  let out = Uint8Array.from(b);
  const ops = 1 + ((r() * 4) | 0);
  for (let k = 0; k < ops; k++) {
    const op = (r() * 5) | 0;
    if (op === 0 && out.length) out[(r() * out.length) | 0] ^= 1 << ((r() * 8) | 0);
    else if (op === 1 && out.length) out[(r() * out.length) | 0] = (r() * 256) | 0;
    else if (op === 2) out = out.subarray(0, (r() * (out.length + 1)) | 0);
    else if (op === 3) {
      const tail = bytes(r, (r() * 16) | 0);
      const n = new Uint8Array(out.length + tail.length);
      n.set(out);
      n.set(tail, out.length);
      out = n;
    } else if (out.length >= 4) {
      // a boundary value at a random aligned spot (lengths, counts)
      const at = ((r() * (out.length - 3)) | 0) & ~3;
      const v = [0, 1, 0x7fffffff, 0xffffffff, 0x01000001, 0x10000][(r() * 6) | 0]!;
      new DataView(out.buffer, out.byteOffset, out.length).setUint32(at, v >>> 0);
    }
  }
  return out;
}

export interface FuzzTarget {
  name: string;
  /** Valid inputs to mutate. */
  samples: Uint8Array[];
  /** Decode one input; throwing ProtoError is a rejection, any other exception an escape. */
  run(input: Uint8Array): void | Promise<void>;
}

export interface FuzzReport {
  name: string;
  inputs: number;
  rejected: number;
  escapes: { index: number; error: string; input: string }[];
  ms: number;
}

/** Run `n` inputs (every third one random, the rest mutated samples) through a target. */
export async function fuzzTarget(t: FuzzTarget, seed: number, n: number, maxRandomLen = 300): Promise<FuzzReport> {
  const r = seededRng(seed);
  const rep: FuzzReport = { name: t.name, inputs: n, rejected: 0, escapes: [], ms: 0 };
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    const input = i % 3 === 0 || t.samples.length === 0 ? bytes(r, (r() * maxRandomLen) | 0) : mutate(r, t.samples[(r() * t.samples.length) | 0]!);
    try {
      await t.run(input);
    } catch (e) {
      if (e instanceof ProtoError) rep.rejected++;
      else if (rep.escapes.length < 5) rep.escapes.push({ index: i, error: (e as Error)?.stack ?? String(e), input: Buffer.from(input).toString("hex").slice(0, 400) });
      else rep.escapes.push({ index: i, error: "", input: "" });
    }
  }
  rep.ms = performance.now() - t0;
  return rep;
}

/** Fails with the seed and the first escape, so the run can be replayed with FUZZ_SEED. */
export function assertNoEscapes(rep: FuzzReport, seed: number): void {
  if (rep.escapes.length === 0) return;
  const e = rep.escapes[0]!;
  throw new Error(
    `fuzz ${rep.name}: ${rep.escapes.length} of ${rep.inputs} inputs escaped with an untyped error ` +
    `(seed ${seed}, first at input #${e.index}; replay with FUZZ_SEED=${seed})\ninput: ${e.input}\n${e.error}`,
  );
}
