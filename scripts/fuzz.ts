// `npm run fuzz -- [--n <inputs per decoder>] [--seed <n>] [decoder name…]`
// Runs every network-facing decoder (test/helpers/fuzz.ts) on random and mutated inputs and
// prints, per decoder, the number of inputs, how many were rejected with the typed error, the
// rate, and the escapes (any other exception). Exit code 1 when anything escaped. Not part of CI:
// the test suite runs the same targets with a few thousand inputs each.
import { fuzzSeed, fuzzTarget } from "../test/helpers/fuzz.ts";
import { fuzzTargets } from "../test/helpers/fuzz-targets.ts";

const args = process.argv.slice(2);
let n = 100_000;
let seed = fuzzSeed((Date.now() & 0x7fffffff) >>> 0);
const only: string[] = [];
for (let i = 0; i < args.length; i++) {
  const a = args[i]!;
  if (a === "--n") n = Number(args[++i]);
  else if (a === "--seed") seed = Number(args[++i]) >>> 0;
  else if (a === "-h" || a === "--help") {
    console.log("usage: npm run fuzz -- [--n <inputs per decoder>] [--seed <n>] [decoder name…]");
    process.exit(0);
  } else only.push(a.toLowerCase());
}
if (!Number.isInteger(n) || n <= 0) {
  console.error("--n must be a positive integer");
  process.exit(2);
}

const targets = fuzzTargets().filter((t) => only.length === 0 || only.some((o) => t.name.toLowerCase().includes(o)));
console.log(`fuzz: seed ${seed}, ${n} inputs per decoder (replay: npm run fuzz -- --seed ${seed} --n ${n})`);
console.log(`${"decoder".padEnd(18)} ${"inputs".padStart(9)} ${"rejected".padStart(9)} ${"inputs/s".padStart(10)} escapes`);
let escaped = 0;
for (const t of targets) {
  const rep = await fuzzTarget(t, seed, n);
  escaped += rep.escapes.length;
  const rate = Math.round(rep.inputs / (rep.ms / 1000));
  console.log(`${t.name.padEnd(18)} ${String(rep.inputs).padStart(9)} ${String(rep.rejected).padStart(9)} ${String(rate).padStart(10)} ${rep.escapes.length}`);
  for (const e of rep.escapes.filter((x) => x.error).slice(0, 3)) console.log(`  input #${e.index}: ${e.input}\n  ${e.error.split("\n").slice(0, 4).join("\n  ")}`);
}
console.log(escaped ? `FAIL: ${escaped} escapes (seed ${seed})` : "ok: no escapes");
process.exit(escaped ? 1 : 0);
