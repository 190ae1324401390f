// Structure guards for src/transport: one concept per file (no file above 500 lines) and no
// import cycles (type-only imports included: they couple the files just the same).
import { describe, expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";

const DIR = resolve(import.meta.dir, "../src/transport");

function imports(file: string): string[] {
  const src = readFileSync(file, "utf8");
  const out: string[] = [];
  for (const m of src.matchAll(/^\s*(?:import|export)\b[^;]*?\bfrom\s+"(\.[^"]+)"/gms)) out.push(resolve(dirname(file), m[1]));
  return out;
}

describe("src/transport layout", () => {
  const files = readdirSync(DIR).filter((f) => f.endsWith(".ts")).map((f) => join(DIR, f));

  test("no file above 500 lines", () => {
    const big = files.map((f) => [f, readFileSync(f, "utf8").trimEnd().split("\n").length] as const).filter(([, n]) => n > 500);
    expect(big).toEqual([]);
  });

  test("no import cycles among the transport files", () => {
    const graph = new Map(files.map((f) => [f, imports(f).filter((d) => d.startsWith(DIR + "/"))]));
    const cycles: string[] = [];
    const state = new Map<string, number>(); // 1 = on the stack, 2 = done
    const stack: string[] = [];
    const visit = (f: string) => {
      state.set(f, 1);
      stack.push(f);
      for (const d of graph.get(f) ?? []) {
        if (state.get(d) === 1) cycles.push(stack.slice(stack.indexOf(d)).concat(d).map((x) => x.slice(DIR.length + 1)).join(" -> "));
        else if (!state.has(d)) visit(d);
      }
      stack.pop();
      state.set(f, 2);
    };
    for (const f of files) if (!state.has(f)) visit(f);
    expect(cycles).toEqual([]);
    // the guard itself sees the edges it is meant to check
    expect(graph.get(join(DIR, "transport.ts"))).toContain(join(DIR, "conn.ts"));
  });
});
