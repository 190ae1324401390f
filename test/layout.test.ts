// Structure guards for the whole of src/: the layer rules of docs/architecture.md (a folder imports
// only from the folders below it), no import cycles between files, and no source file far above
// the ~500-line mark of one concept per file.
import { describe, expect, test } from "bun:test";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";

const SRC = resolve(import.meta.dir, "../src");

function files(dir: string): string[] {
  const out: string[] = [];
  for (const n of readdirSync(dir)) {
    const p = join(dir, n);
    if (statSync(p).isDirectory()) out.push(...files(p));
    else if (p.endsWith(".ts")) out.push(p);
  }
  return out;
}

/** Relative imports of a file (static, dynamic and re-exports; type-only ones couple files too). */
function imports(file: string): string[] {
  const src = readFileSync(file, "utf8");
  const out = new Set<string>();
  for (const m of src.matchAll(/\b(?:from|import)\s*\(?\s*"(\.[^"]+)"/g)) out.add(resolve(dirname(file), m[1]!));
  return [...out];
}

const ALL = files(SRC);
const layer = (f: string): string => {
  const r = relative(SRC, f);
  return r.includes("/") ? r.split("/")[0]! : r; // "main.ts", "index.ts" are entries
};

/**
 * Imports across layers that are deliberate: `pilotctl daemon start --foreground` runs the daemon
 * program in-process (loaded lazily, only for that command).
 */
const EXCEPTIONS = new Set(["ctl/cmds/daemon.ts -> daemon/main.ts"]);

/** What each folder may import (besides itself). */
const ALLOWED: Record<string, string[]> = {
  sys: [],
  proto: ["sys"],
  crypto: ["proto", "sys"],
  transport: ["proto", "sys"],
  client: ["proto", "crypto", "sys"],
  daemon: ["proto", "crypto", "transport", "sys"],
  server: ["proto", "crypto", "sys"],
  // pilotctl drives the gateway through the gateway's own control client (gateway/control.ts).
  ctl: ["client", "proto", "crypto", "sys", "gateway"],
  gateway: ["client", "proto", "sys"],
  "index.ts": ["client", "proto"],
};

describe("src layout", () => {
  test("every folder imports only from the layers below it", () => {
    const bad: string[] = [];
    for (const f of ALL) {
      const from = layer(f);
      const allowed = ALLOWED[from];
      if (!allowed) continue; // main.ts: the multi-call entry loads every program
      for (const i of imports(f)) {
        if (!i.startsWith(SRC + "/")) continue; // package.json (the version)
        const to = layer(i);
        const edge = `${relative(SRC, f)} -> ${relative(SRC, i)}`;
        if (to !== from && !allowed.includes(to) && !EXCEPTIONS.has(edge)) bad.push(edge);
      }
    }
    expect(bad).toEqual([]);
  });

  test("no import cycles between files", () => {
    const graph = new Map(ALL.map((f) => [f, imports(f).filter((i) => ALL.includes(i))]));
    const state = new Map<string, 1 | 2>();
    const cycles: string[] = [];
    const visit = (f: string, path: string[]): void => {
      state.set(f, 1);
      for (const n of graph.get(f) ?? []) {
        if (state.get(n) === 1) cycles.push([...path.slice(path.indexOf(n)), n].map((x) => relative(SRC, x)).join(" -> "));
        else if (!state.has(n)) visit(n, [...path, n]);
      }
      state.set(f, 2);
    };
    for (const f of ALL) if (!state.has(f)) visit(f, [f]);
    expect(cycles).toEqual([]);
  });

  test("no source file above 600 lines", () => {
    const big = ALL.map((f) => [relative(SRC, f), readFileSync(f, "utf8").split("\n").length] as const).filter(([, n]) => n > 600);
    expect(big).toEqual([]);
  });
});
