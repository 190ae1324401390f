// What a pilotctl start loads. The release executable is `bun build --compile --splitting` of
// src/main.ts, so a module is evaluated only if the invoked tool reaches it through static
// imports. The bundler's metafile gives that import graph; these tests pin it: the multi-call
// entry imports nothing, and `pilotctl version` / `pilotctl info` reach neither daemon, server,
// gateway, MCP or crypto code nor the Node built-ins whose loading dominated their start-up
// (node:fs, node:net, node:crypto, node:child_process). The timings themselves are in bench/ctl.ts.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

const ROOT = resolve(import.meta.dir, "..");
type Imp = { path: string; kind: string; external?: boolean };
let inputs: Record<string, { imports: Imp[] }>;
let dir: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "pilot-ctl-startup-"));
  const r = Bun.spawnSync([process.execPath, "build", "--splitting", "--format=esm", "--target=bun", join(ROOT, "src", "main.ts"),
    "--outdir", join(dir, "out"), `--metafile=${join(dir, "meta.json")}`], { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`bun build failed: ${r.stderr.toString()}`);
  inputs = JSON.parse(readFileSync(join(dir, "meta.json"), "utf8")).inputs;
});
afterAll(() => rmSync(dir, { recursive: true, force: true, maxRetries: 5 }));

/** Every module (and external built-in) evaluated when `from` is imported: static imports only. */
function staticClosure(from: string): { modules: string[]; builtins: string[] } {
  const seen = new Set<string>();
  const builtins = new Set<string>();
  const todo = [from];
  while (todo.length) {
    const m = todo.pop()!;
    if (seen.has(m)) continue;
    const node = inputs[m];
    if (!node) throw new Error(`${m} is not in the metafile`);
    seen.add(m);
    for (const i of node.imports) {
      if (i.kind !== "import-statement") continue;
      if (i.external) builtins.add(i.path.replace(/^node:/, ""));
      else todo.push(i.path);
    }
  }
  return { modules: [...seen].sort(), builtins: [...builtins].sort() };
}

const FORBIDDEN_DIRS = ["src/daemon/", "src/server/", "src/gateway/", "src/crypto/", "src/transport/", "src/ctl/mcp/"];
const SLOW_BUILTINS = ["fs", "fs/promises", "net", "crypto", "child_process", "os", "path", "util"];

describe("start-up module graph", () => {
  test("the multi-call entry imports nothing statically", () => {
    expect(staticClosure("src/main.ts")).toEqual({ modules: ["src/main.ts"], builtins: [] });
  });

  test("pilotctl's router and `version` load only the router's modules", () => {
    const g = staticClosure("src/ctl/main.ts");
    expect(g.builtins).toEqual([]);
    expect(g.modules).toEqual(["package.json", "src/client/errors.ts", "src/ctl/cmds/version.ts", "src/ctl/commands.ts", "src/ctl/io.ts",
      "src/ctl/main.ts", "src/ctl/util.ts", "src/proto/gojson.ts", "src/sys/constants.ts"]);
  });

  test("`info`, `peers`, `connections` add only the IPC codec and a one-shot request (not the Driver)", () => {
    const g = staticClosure("src/ctl/cmds/status.ts");
    expect(g.builtins.filter((b) => SLOW_BUILTINS.includes(b))).toEqual([]);
    expect(g.modules.filter((m) => FORBIDDEN_DIRS.some((d) => m.startsWith(d)))).toEqual([]);
    const router = new Set(staticClosure("src/ctl/main.ts").modules);
    expect(g.modules.filter((m) => !router.has(m))).toEqual(["src/client/ipc-once.ts", "src/ctl/cmds/status.ts", "src/proto/addr.ts",
      "src/proto/framing.ts", "src/proto/ipc.ts", "src/proto/types.ts"]);
  });

  test("the other tools are only dynamic imports of the entry", () => {
    const dyn = inputs["src/main.ts"]!.imports.filter((i) => i.kind === "dynamic-import").length;
    expect(dyn).toBe(4);
  });
});
