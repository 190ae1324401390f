// `npm run bench` runner.
//
// Contract: every bench/*.ts other than run.ts default-exports `async function (r: Reporter)`.
// The runner imports them in name order (or only those named on the command line:
// `npm run bench -- codec crypto`), prints an aligned table and writes bench/results.json
// ({ machine, date, results, errors }). A failing bench file prints its error and the runner
// moves on; the exit code is 1 if any file failed. Results of bench files not run this time are
// kept from the previous results.json so partial runs do not erase other numbers.
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import * as os from "node:os";
import { basename, dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

/**
 * `opts.limit` declares this figure a raw limit of the machine under a short key ("udp", "aes");
 * `opts.vs` names limit keys this figure is divided by (ratio columns, summary table). Ratios are
 * computed after all selected files ran, against limits measured in the same run (falling back
 * to the previous results.json, marked "(old)", when the limit's file was not run).
 */
export interface AddOptions {
  limit?: string;
  vs?: string[];
  /**
   * A goal for this figure: `min`/`max` bound the ratio to limit `of` when `of` is given, else the
   * value itself. Printed in a "Targets" table with met/MISSED and stored in results.json.
   */
  target?: Target;
}
export interface Target {
  min?: number;
  max?: number;
  of?: string;
}
export type Reporter = { add(name: string, value: number, unit: string, note?: string, opts?: AddOptions): void };

export interface BenchResult {
  bench: string;
  name: string;
  value: number;
  unit: string;
  note?: string;
  /** set when this figure is a raw limit (see AddOptions) */
  limit?: string;
  /** limit key → value ÷ limit value */
  ratios?: Record<string, number>;
  target?: Target & { met?: boolean };
}

export interface Measured {
  /** operations per second */
  opsPerSec: number;
  nsPerOp: number;
  iterations: number;
}

/**
 * Time `fn` (called `batch` times per timing check) for at least `minMs` after a short warm-up.
 * Kept short by default: the machine has 2 cores shared with others.
 */
export function measure(fn: () => unknown, opts: { minMs?: number; batch?: number; warmupMs?: number } = {}): Measured {
  const minMs = opts.minMs ?? 300;
  const batch = opts.batch ?? 100;
  const warm = opts.warmupMs ?? 50;
  let sink: unknown;
  let t0 = performance.now();
  while (performance.now() - t0 < warm) for (let i = 0; i < batch; i++) sink = fn();
  let n = 0;
  t0 = performance.now();
  let el = 0;
  do {
    for (let i = 0; i < batch; i++) sink = fn();
    n += batch;
    el = performance.now() - t0;
  } while (el < minMs);
  (globalThis as { __benchSink?: unknown }).__benchSink = sink;
  return { opsPerSec: (n * 1000) / el, nsPerOp: (el * 1e6) / n, iterations: n };
}

function fmtValue(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  const a = Math.abs(v);
  if (a >= 1000) return Math.round(v).toLocaleString("en-US");
  if (a >= 100) return v.toFixed(1);
  if (a >= 1) return v.toFixed(2);
  return v.toPrecision(3);
}

function fmtRatio(x: number): string {
  if (!Number.isFinite(x)) return String(x);
  if (x >= 10) return `${x.toFixed(0)}x`;
  if (x >= 0.1) return `${x.toFixed(2)}x`;
  return `${x.toPrecision(2)}x`;
}

function machineInfo() {
  const cpus = os.cpus();
  return {
    platform: `${os.platform()} ${os.release()}`,
    arch: os.arch(),
    cpu: cpus[0]?.model ?? "unknown",
    cores: cpus.length,
    memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    runtime: typeof Bun !== "undefined" ? `bun ${Bun.version}` : `node ${process.version}`,
    loadavg: os.loadavg().map((x) => Math.round(x * 100) / 100),
  };
}

/** Run the bench files of `dir` (default: this directory) named in argv (all when empty). Returns the exit code. */
export async function runBenches(argv: string[], dir: string = dirname(fileURLToPath(import.meta.url))): Promise<number> {
  const all = readdirSync(dir)
    .filter((f) => f.endsWith(".ts") && f !== "run.ts" && !f.endsWith(".d.ts"))
    .map((f) => basename(f, ".ts"))
    .sort();
  const wanted = argv.map((a) => basename(a).replace(/\.ts$/, "")).filter((a) => a.length > 0);
  const unknown = wanted.filter((w) => !all.includes(w));
  const errors: { bench: string; error: string }[] = [];
  for (const u of unknown) {
    console.error(`bench: no such bench file: ${u}.ts (available: ${all.join(", ")})`);
    errors.push({ bench: u, error: "no such bench file" });
  }
  const selected = wanted.length > 0 ? all.filter((b) => wanted.includes(b)) : all;
  const results: BenchResult[] = [];
  const pendingVs = new Map<BenchResult, string[]>();

  for (const bench of selected) {
    // Each bench starts from a collected heap: the in-process application side of the stream
    // benches otherwise pays for the garbage of the benches before it (100k-node registry runs).
    Bun.gc(true);
    const started = performance.now();
    console.error(`bench: running ${bench} ...`);
    const reporter: Reporter = {
      add(name, value, unit, note, opts) {
        const r: BenchResult = { bench, name, value, unit };
        if (note !== undefined && note !== "") r.note = note;
        if (opts?.limit) r.limit = opts.limit;
        if (opts?.target) r.target = { ...opts.target };
        const vs = [...(opts?.vs ?? [])];
        if (opts?.target?.of && !vs.includes(opts.target.of)) vs.push(opts.target.of);
        if (vs.length > 0) pendingVs.set(r, vs);
        results.push(r);
        console.error(`  ${name}: ${fmtValue(value)} ${unit}${note ? `  (${note})` : ""}`);
      },
    };
    try {
      const mod = await import(pathToFileURL(join(dir, `${bench}.ts`)).href);
      if (typeof mod.default !== "function") throw new Error(`${bench}.ts has no default-exported function`);
      await mod.default(reporter);
      console.error(`bench: ${bench} done in ${((performance.now() - started) / 1000).toFixed(1)} s`);
    } catch (e) {
      const msg = e instanceof Error ? (e.stack ?? e.message) : String(e);
      console.error(`bench: ${bench} FAILED: ${msg}`);
      errors.push({ bench, error: e instanceof Error ? e.message : String(e) });
    }
  }

  // results.json: keep previous results of benches not run this time.
  const out = join(dir, "results.json");
  let previous: BenchResult[] = [];
  try {
    const old = JSON.parse(readFileSync(out, "utf8")) as { results?: BenchResult[] };
    if (Array.isArray(old.results)) previous = old.results.filter((r) => !selected.includes(r.bench));
  } catch {
    /* no previous file */
  }

  // Ratios against raw limits: this run's limits first, else the kept previous ones.
  const limits = new Map<string, { r: BenchResult; old: boolean }>();
  for (const r of previous) if (r.limit) limits.set(r.limit, { r, old: true });
  for (const r of results) if (r.limit) limits.set(r.limit, { r, old: false });
  const ratioText = new Map<BenchResult, string>();
  for (const [r, keys] of pendingVs) {
    const parts: string[] = [];
    for (const k of keys) {
      const l = limits.get(k);
      if (!l || !(l.r.value > 0)) {
        parts.push(`${k}=?`);
        continue;
      }
      const ratio = r.value / l.r.value;
      (r.ratios ??= {})[k] = ratio;
      parts.push(`${fmtRatio(ratio)} ${k}${l.old ? "(old)" : ""}`);
    }
    ratioText.set(r, parts.join(", "));
  }

  // Table.
  const printTable = (head: string[], rows: string[][], rightAligned: number[]) => {
    const widths = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i].length)));
    const line = (row: string[]) => row.map((c, i) => (rightAligned.includes(i) ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join("  ").trimEnd();
    console.log(line(head));
    console.log(widths.map((w) => "-".repeat(w)).join("  "));
    for (const row of rows) console.log(line(row));
  };
  printTable(
    ["bench", "name", "value", "unit", "vs raw limit", "note"],
    results.map((r) => [r.bench, r.name, fmtValue(r.value), r.unit, r.limit ? `[limit: ${r.limit}]` : (ratioText.get(r) ?? ""), r.note ?? ""]),
    [2],
  );
  for (const e of errors) console.log(`FAILED ${e.bench}: ${e.error}`);

  // Targets: each goal with the figure, the limit it is measured against and whether it is met.
  const targeted = results.filter((r) => r.target);
  if (targeted.length > 0) {
    console.log("");
    console.log("Targets");
    const rows = targeted.map((r) => {
      const t = r.target!;
      const l = t.of ? limits.get(t.of) : undefined;
      const x = t.of ? r.ratios?.[t.of] : r.value;
      if (x !== undefined && Number.isFinite(x)) t.met = (t.min === undefined || x >= t.min) && (t.max === undefined || x <= t.max);
      const goal = [t.min !== undefined ? `≥ ${t.min}` : "", t.max !== undefined ? `≤ ${t.max}` : ""].filter(Boolean).join(" and ") + (t.of ? `x ${t.of}` : ` ${r.unit}`);
      const lim = l ? `${fmtValue(l.r.value)} ${l.r.unit}${l.old ? " (old)" : ""}` : "";
      return [r.name, `${fmtValue(r.value)} ${r.unit}`, lim, t.of && x !== undefined ? fmtRatio(x) : "", goal, t.met === undefined ? "?" : t.met ? "met" : "MISSED"];
    });
    printTable(["figure", "value", "raw limit", "ratio", "target", ""], rows, [1, 2, 3]);
  }

  // Summary: every figure that is compared with a raw limit, then the limits themselves.
  const compared = results.filter((r) => pendingVs.has(r));
  if (compared.length > 0) {
    console.log("");
    console.log("Summary: system figures as a fraction of this machine's raw limits");
    printTable(
      ["figure", "value", "unit", "ratio to raw limit"],
      compared.map((r) => [r.name, fmtValue(r.value), r.unit, ratioText.get(r) ?? ""]),
      [1],
    );
    console.log("");
    printTable(
      ["limit", "value", "unit", "measured as"],
      [...limits.entries()].map(([k, l]) => [k, fmtValue(l.r.value), l.r.unit, `${l.r.name}${l.old ? " (previous run)" : ""}`]),
      [1],
    );
  }

  const doc = { machine: machineInfo(), date: new Date().toISOString(), results: [...previous, ...results], errors };
  writeFileSync(out, JSON.stringify(doc, null, 2) + "\n");
  console.error(`bench: wrote ${out}`);
  return errors.length > 0 ? 1 : 0;
}

if (import.meta.main) {
  process.exitCode = await runBenches(process.argv.slice(2));
}
