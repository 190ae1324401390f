#!/usr/bin/env bun
// Single entry point. One compiled binary serves as pilot-daemon, pilotctl, pilot-gateway and
// rendezvous: it dispatches on the name it was invoked under (argv[0] basename, links or copies).
// `bun src/main.ts <tool> ...` (or PILOT_TOOL=<tool>) selects a tool when run from source.
// Nothing is imported statically: this module runs on every start of every tool, and even
// node:path costs measurable start-up time in a compiled executable.

/** Last path component (either separator, so `C:\\bin\\pilotctl.exe` works too). */
const basename = (p: string): string => p.slice(Math.max(p.lastIndexOf("/"), p.lastIndexOf("\\")) + 1);

export const TOOLS = ["pilot-daemon", "pilotctl", "pilot-gateway", "rendezvous"] as const;
export type Tool = (typeof TOOLS)[number];

// How a `bun build --compile` executable sees itself (measured with Bun 1.4.5 on Linux, see
// test/build.test.ts): process.argv = ["bun", "/$bunfs/root/<name given to --outfile>", ...user args];
// process.argv0 = the name it was invoked under, verbatim ("./pilotctl", "pilotctl" from PATH, the
// link name for a symlink, whatever `exec -a` said); process.execPath = the opened file, which is
// the copy/hard link's own path but the *target* for a symlink. So argv0 decides; execPath catches
// copies/hard links started with an odd argv0 (some supervisors); the embedded /$bunfs name is
// last, because scripts/build-binaries.ts compiles to the neutral name "pilot" (not a tool).
// The reference's release archives name two binaries `daemon` and `gateway` (docs/protocol.md §13.6), so
// those executable names are accepted as aliases. Aliases apply only to executable names, never
// to the first argument (`bun src/main.ts daemon` would be ambiguous with `pilotctl daemon …`).
// PILOT_DEBUG_DISPATCH=1 prints the decision on stderr (used by the distribution tests).
export function pickTool(
  argv: string[],
  argv0: string | undefined = process.argv0,
  execPath: string | undefined = process.execPath,
  envTool: string | undefined = process.env.PILOT_TOOL,
): { tool: Tool | null; args: string[] } {
  const isTool = (s: string): s is Tool => (TOOLS as readonly string[]).includes(s);
  const exeName = (p: string): Tool | null => {
    const b = basename(p).replace(/\.exe$/i, "");
    if (isTool(b)) return b;
    if (b === "daemon") return "pilot-daemon";
    if (b === "gateway") return "pilot-gateway";
    return null;
  };
  let res: { tool: Tool | null; args: string[] } | null = null;
  let via = "none";
  if (envTool && isTool(envTool)) {
    res = { tool: envTool, args: argv.slice(2) };
    via = "PILOT_TOOL";
  }
  if (!res) {
    const cands: [string, string | undefined][] = [["argv0", argv0], ["execPath", execPath], ["argv1", argv[1]]];
    for (const [name, cand] of cands) {
      if (!cand) continue;
      const t = exeName(cand);
      if (t) {
        res = { tool: t, args: argv.slice(2) };
        via = name;
        break;
      }
    }
  }
  if (!res) {
    const first = argv[2];
    if (first && isTool(first)) {
      res = { tool: first, args: argv.slice(3) };
      via = "arg";
    } else res = { tool: null, args: argv.slice(2) };
  }
  if (process.env.PILOT_DEBUG_DISPATCH) process.stderr.write(`pilot: dispatch tool=${res.tool ?? "none"} via=${via}\n`);
  return res;
}

export async function main(argv: string[] = process.argv): Promise<number> {
  const { tool, args } = pickTool(argv);
  switch (tool) {
    case "pilotctl":
      return (await import("./ctl/main.ts")).run(args);
    case "pilot-daemon":
      return (await import("./daemon/main.ts")).run(args);
    case "pilot-gateway":
      return (await import("./gateway/main.ts")).run(args);
    case "rendezvous":
      return (await import("./server/main.ts")).run(args);
    default:
      process.stderr.write(`usage: pilotctl|pilot-daemon|pilot-gateway|rendezvous [args...]\n` +
        `  (invoke through a link of that name, or: bun src/main.ts <tool> [args...])\n`);
      return 2;
  }
}

if (import.meta.main) {
  main().then((code) => {
    if (typeof code === "number") process.exitCode = code;
  });
}
