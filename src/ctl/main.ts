// pilotctl entry point (cli.md §2). Argument routing goes through a citty command tree generated
// from the single COMMANDS table (commands.ts); flags inside a command follow the reference's
// parseFlags rules (util.ts), which citty's own parser does not reproduce, so leaves receive rawArgs.
import { COMMANDS, type CommandDef, GROUPS } from "./commands.ts";
import { CtlError, CtlExit, makeCtx, writeError } from "./util.ts";
import { DEFAULT_REGISTRY, DEFAULT_SOCKET } from "../sys/constants.ts";

export const USAGE = `pilotctl — Pilot Protocol CLI

Global flags:
  --json                        Output structured JSON (for agent/programmatic use)

Bootstrap:
  pilotctl init --registry <addr> [--hostname <name>] [--beacon <addr>]
  pilotctl config [--set key=value]

Daemon lifecycle:
  pilotctl daemon start [--config <path>] [--registry <addr>] [--beacon <addr>] [--webhook <url>]
  pilotctl daemon stop
  pilotctl daemon status

Registry commands:
  pilotctl register [listen_addr]
  pilotctl lookup <node_id>
  pilotctl rotate-key <node_id> <owner>
  pilotctl set-public
  pilotctl set-private
  pilotctl deregister

Discovery commands:
  pilotctl find <hostname>
  pilotctl set-hostname <hostname>
  pilotctl clear-hostname
  pilotctl set-tags <tag1> [tag2] ...
  pilotctl clear-tags
  pilotctl enable-tasks
  pilotctl disable-tasks

Communication commands:
  pilotctl connect <address|hostname> [port] [--message <msg>] [--timeout <dur>]
  pilotctl send <address|hostname> <port> --data <msg> [--timeout <dur>]
  pilotctl recv <port> [--count <n>] [--timeout <dur>]
  pilotctl send-file <address|hostname> <filepath>
  pilotctl send-message <address|hostname> --data <text> [--type text|json|binary]
  pilotctl subscribe <address|hostname> <topic> [--count <n>] [--timeout <dur>]
  pilotctl publish <address|hostname> <topic> --data <message>

Task commands:
  pilotctl task submit <address|hostname> --task <description>
  pilotctl task accept --id <task_id>
  pilotctl task decline --id <task_id> --justification <reason>
  pilotctl task execute
  pilotctl task send-results --id <task_id> --results <text> | --file <filepath>
  pilotctl task list [--type received|submitted]
  pilotctl task queue

Trust commands:
  pilotctl handshake <node_id|hostname> [justification]
  pilotctl approve <node_id>
  pilotctl reject <node_id> [reason]
  pilotctl untrust <node_id>
  pilotctl pending
  pilotctl trust

Management commands:
  pilotctl connections
  pilotctl disconnect <conn_id>

Mailbox:
  pilotctl received [--clear]
  pilotctl inbox [--clear]

Diagnostic commands:
  pilotctl info
  pilotctl peers [--search <query>]
  pilotctl ping <address|hostname> [--count <n>] [--timeout <dur>]
  pilotctl traceroute <address> [--timeout <dur>]
  pilotctl bench <address|hostname> [size_mb] [--timeout <dur>]
  pilotctl listen <port> [--count <n>] [--timeout <dur>]
  pilotctl broadcast <network_id> <message>

Agent tool discovery:
  pilotctl context

Gateway (requires root for ports <1024):
  pilotctl gateway start [--subnet <cidr>] [--ports <list>] [<pilot-addr>...]
  pilotctl gateway stop
  pilotctl gateway map <pilot-addr> [local-ip]
  pilotctl gateway unmap <local-ip>
  pilotctl gateway list

Environment:
  PILOT_REGISTRY     Registry address (default: ${DEFAULT_REGISTRY})
  PILOT_SOCKET       Daemon socket path (default: ${DEFAULT_SOCKET})

Config file: ~/.pilot/config.json
`;

// deno-lint-ignore no-explicit-any
type CittyCmd = any;

/** Build the citty command tree from COMMANDS. Each leaf calls `invoke(def, rawArgs)`. */
export function buildCittyTree(invoke: (def: CommandDef, rawArgs: string[]) => Promise<void>): CittyCmd {
  const sub: Record<string, CittyCmd> = {};
  for (const def of COMMANDS) {
    const parts = def.name.split(" ");
    const leaf = {
      meta: { name: parts[parts.length - 1], description: def.description, hidden: def.hidden },
      run: (c: { rawArgs: string[] }) => invoke(def, c.rawArgs),
    };
    if (parts.length === 1) sub[parts[0]] = leaf;
    else {
      sub[parts[0]] ??= { meta: { name: parts[0] }, subCommands: {} };
      sub[parts[0]].subCommands[parts[1]] = leaf;
    }
  }
  return { meta: { name: "pilotctl", description: "Pilot Protocol CLI" }, subCommands: sub };
}

/** Names the parser accepts (for tests: must equal the catalog). */
export function parserCommandNames(): string[] {
  const tree = buildCittyTree(async () => {});
  const out: string[] = [];
  for (const [k, v] of Object.entries(tree.subCommands as Record<string, CittyCmd>)) {
    if (v.subCommands) for (const s of Object.keys(v.subCommands)) out.push(`${k} ${s}`);
    else out.push(k);
  }
  return out;
}

export async function run(argv: string[]): Promise<number> {
  let json = false;
  const args: string[] = [];
  for (const a of argv) {
    if (a === "--json") json = true;
    else args.push(a);
  }
  if (args.length === 0) {
    process.stderr.write(USAGE);
    return 2;
  }
  const cmd = args[0];
  const isGroup = cmd in GROUPS;
  const known = isGroup || COMMANDS.some((c) => c.name === cmd);
  try {
    if (!known) {
      if (!json) {
        process.stderr.write(`unknown command: ${cmd}\n\n${USAGE}`);
        return 2;
      }
      throw new CtlError("invalid_argument", `unknown command: ${cmd}`, "run 'pilotctl context' for the full command list");
    }
    if (isGroup) {
      const g = GROUPS[cmd];
      if (args.length < 2) throw new CtlError("invalid_argument", "missing subcommand", g.missingHint);
      if (!COMMANDS.some((c) => c.name === `${cmd} ${args[1]}`)) {
        throw new CtlError("invalid_argument", `unknown ${cmd} subcommand: ${args[1]}`, g.unknownHint);
      }
    }
    const ctx = makeCtx(json);
    const { runCommand } = await import("citty");
    const tree = buildCittyTree(async (def, rawArgs) => {
      const handler = await def.load();
      await handler(ctx, rawArgs);
    });
    await runCommand(tree, { rawArgs: args });
    return 0;
  } catch (e) {
    if (e instanceof CtlExit) return e.status;
    if (e instanceof CtlError) {
      writeError(json, e);
      return 1;
    }
    const err = e as Error & { code?: string; hint?: string };
    // Any error carrying a machine-readable code (PilotError, or a module's own typed error) keeps it.
    writeError(json, { code: typeof err?.code === "string" && /^[a-z_]+$/.test(err.code) ? err.code : "internal", message: err?.message ?? String(e), hint: err?.hint });
    return 1;
  }
}
