import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { measure, runBenches } from "../bench/run.ts";

const dir = mkdtempSync(join(tmpdir(), "pilot-bench-"));
afterAll(() => rmSync(dir, { recursive: true, force: true, maxRetries: 5 }));

writeFileSync(join(dir, "a_good.ts"), `export default async function (r) { r.add("x", 42, "ops/s", "note"); r.add("y", 1.5, "MB/s"); }`);
writeFileSync(join(dir, "b_fails.ts"), `export default async function (r) { r.add("before", 1, "u"); throw new Error("boom"); }`);
writeFileSync(join(dir, "c_nodefault.ts"), `export const x = 1;`);
writeFileSync(join(dir, "d_after.ts"), `export default async function (r) { r.add("z", 7, "ops/s"); }`);
writeFileSync(join(dir, "run.ts"), `throw new Error("run.ts must not be imported as a bench");`);

test("runner runs all files, survives failures, writes results.json", async () => {
  const code = await runBenches([], dir);
  expect(code).toBe(1);
  const doc = JSON.parse(readFileSync(join(dir, "results.json"), "utf8"));
  expect(typeof doc.date).toBe("string");
  expect(doc.machine.cores).toBeGreaterThan(0);
  expect(doc.results.map((r: { bench: string; name: string }) => `${r.bench}/${r.name}`)).toEqual(["a_good/x", "a_good/y", "b_fails/before", "d_after/z"]);
  expect(doc.results[0]).toEqual({ bench: "a_good", name: "x", value: 42, unit: "ops/s", note: "note" });
  expect(doc.errors.map((e: { bench: string }) => e.bench)).toEqual(["b_fails", "c_nodefault"]);
});

test("runner runs only the named files and keeps other results", async () => {
  expect(await runBenches(["d_after"], dir)).toBe(0);
  const doc = JSON.parse(readFileSync(join(dir, "results.json"), "utf8"));
  expect(doc.results.filter((r: { bench: string }) => r.bench === "a_good").length).toBe(2);
  expect(doc.results.filter((r: { bench: string }) => r.bench === "d_after").length).toBe(1);
  expect(doc.errors).toEqual([]);
  expect(await runBenches(["nosuch"], dir)).toBe(1);
});

test("measure returns a positive rate", () => {
  let n = 0;
  const m = measure(() => n++, { minMs: 5, warmupMs: 1, batch: 10 });
  expect(m.opsPerSec).toBeGreaterThan(0);
  expect(m.iterations).toBeGreaterThan(0);
  expect(n).toBeGreaterThanOrEqual(m.iterations);
});
