#!/usr/bin/env bun
// Single entry point. One compiled binary serves as pilot-daemon, pilotctl, pilot-gateway and
// rendezvous: it dispatches on the name it was invoked under (argv[0] basename, links or copies).
// `bun src/main.ts <tool> ...` (or PILOT_TOOL=<tool>) selects a tool when run from source.
import { basename } from "node:path";

export const TOOLS = ["pilot-daemon", "pilotctl", "pilot-gateway", "rendezvous"] as const;
export type Tool = (typeof TOOLS)[number];

function pickTool(argv: string[]): { tool: Tool | null; args: string[] } {
  const env = process.env.PILOT_TOOL;
  if (env && (TOOLS as readonly string[]).includes(env)) return { tool: env as Tool, args: argv.slice(2) };
  // Compiled binary: process.execPath / argv0 is the link name.
  for (const cand of [process.argv0, argv[1], process.execPath]) {
    if (!cand) continue;
    const b = basename(cand).replace(/\.exe$/, "");
    if ((TOOLS as readonly string[]).includes(b)) return { tool: b as Tool, args: argv.slice(2) };
  }
  const first = argv[2];
  if (first && (TOOLS as readonly string[]).includes(first)) return { tool: first as Tool, args: argv.slice(3) };
  return { tool: null, args: argv.slice(2) };
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
