// Command line for running a sibling tool (pilot-daemon, pilot-gateway) as a child process.
import { existsSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";

export interface ToolCommand {
  cmd: string[];
  env: Record<string, string>;
}

/**
 * Compiled binary: a sibling executable named `tool` next to process.execPath if it exists, else
 * process.execPath with PILOT_TOOL=tool. From source (running under bun): [bun, src/main.ts, tool].
 */
export function toolCommand(tool: string): ToolCommand {
  const exe = process.execPath;
  const isBun = /^bun(\.exe)?$/.test(basename(exe));
  if (!isBun) {
    const sib = join(dirname(exe), tool);
    if (existsSync(sib)) return { cmd: [sib], env: {} };
    return { cmd: [exe], env: { PILOT_TOOL: tool } };
  }
  const main = resolve(import.meta.dir, "..", "main.ts");
  return { cmd: [exe, main, tool], env: {} };
}
