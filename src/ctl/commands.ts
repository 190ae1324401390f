// ONE table of command definitions. It drives the router (main.ts) and the `context` catalog,
// so the two can never disagree.
//
// The table is plain literal rows, turned into CommandDef objects only on demand: evaluating 60
// helper calls and closures at start-up measured ≈0.15 ms of a ≈1 ms budget in the compiled
// executable, whereas literal arrays cost next to nothing and a route is a scan of the names.
import { ERROR_CODE_MEANINGS, type ErrorCode } from "../client/errors.ts";
import type { Ctx } from "./util.ts";
import { version } from "./cmds/version.ts";

export type Handler = (ctx: Ctx, args: string[]) => Promise<void>;

export interface CommandDef {
  /** Full name; multi-word for subcommands ("daemon start"). */
  name: string;
  args: string[];
  description: string;
  returns: string;
  /** false: not one of the reference catalog's 49 entries (listed under the extension keys). */
  reference: boolean;
  hidden: boolean;
  load: () => Promise<Handler>;
}

type M = Record<string, unknown>;
/** Command modules, loaded only when one of their commands runs. */
const MODULES: Record<string, () => Promise<M>> = {
  core: () => import("./cmds/core.ts"),
  status: () => import("./cmds/status.ts"),
  comm: () => import("./cmds/comm.ts"),
  daemon: () => import("./cmds/daemon.ts"),
  task: () => import("./cmds/task.ts"),
  gw: () => import("./cmds/gateway.ts"),
  mcp: () => import("./mcp/server.ts"),
};
/** Handlers that need no module of their own (answered from the router's chunk). */
const BUILTIN: Record<string, Handler> = { version, context: async (ctx) => ctx.ok(catalog()) };

/** Row flag: an extension (not in the reference catalog's 49 entries). */
const EXT = 1;
/** Row flag: internal, not listed in the catalog. */
const HIDDEN = 2;
/** [name, args, description, returns, handler as "module.export" (or a BUILTIN name), flags] */
type Row = readonly [string, readonly string[], string, string, string, number?];

const ROWS: readonly Row[] = [
  ["approve", ["<node_id>"], "Approve a pending handshake request", "status, node_id", "core.approve"],
  ["bench", ["<address|hostname>", "[size_mb]", "[--timeout <dur>]"], "Throughput benchmark via echo port (default 1 MB)", "target, sent_bytes, recv_bytes, send_duration_ms, total_duration_ms, send_mbps, total_mbps", "comm.bench"],
  ["broadcast", ["<network_id>", "<message>"], "Broadcast a message to all network members", "network_id, message", "core.broadcast"],
  ["clear-hostname", [], "Clear hostname for this daemon's node", "hostname, node_id", "core.clearHostname"],
  ["clear-tags", [], "Clear all tags for this daemon's node", "node_id, tags", "core.clearTags"],
  ["clear-webhook", [], "Clear the webhook URL (applies immediately if daemon is running)", "webhook, applied", "core.clearWebhook"],
  ["config", ["[--set key=value]"], "Show or set configuration values", "current configuration as JSON", "core.config"],
  ["connect", ["<address|hostname>", "[port]", "[--message <msg>]", "[--timeout <dur>]"], "Open a stream connection. Use --message to send a single message and get a response", "target, port, sent, response (with --message), or interactive stdio session", "comm.connect"],
  ["connections", [], "List active connections", "connections [{id, local_port, remote_addr, remote_port, state, ...}], total", "status.connections"],
  ["daemon start", ["[--config <path>]", "[--registry <addr>]", "[--beacon <addr>]", "[--listen <addr>]", "[--identity <path>]", "[--owner <owner>]", "[--hostname <name>]", "[--log-level <level>]", "[--log-format <fmt>]", "[--public]", "[--foreground]", "[--no-encrypt]", "[--socket <path>]", "[--webhook <url>]"], "Start the daemon as a background process. Blocks until registered, then prints status and exits", "node_id, address, pid, socket, hostname, log_file", "daemon.start"],
  ["daemon status", ["[--check]"], "Check if daemon is running and responsive. --check: silent, exits 0 if responsive, 1 otherwise", "running (bool), responsive (bool), pid, pid_file, socket, node_id, address, hostname, uptime_secs, peers, connections", "daemon.status"],
  ["daemon stop", [], "Stop the running daemon", "pid, forced (bool)", "daemon.stop"],
  ["deregister", [], "Deregister this node from the registry (routes through daemon)", "status", "core.deregister"],
  ["disable-tasks", [], "Stop advertising task execution capability", "node_id, task_exec", "core.disableTasks"],
  ["disconnect", ["<conn_id>"], "Close a connection by ID", "conn_id", "core.disconnect"],
  ["enable-tasks", [], "Advertise that this node can execute tasks", "node_id, task_exec", "core.enableTasks"],
  ["find", ["<hostname>"], "Discover a node by hostname", "hostname, node_id, address, public", "core.find"],
  ["gateway list", [], "List all current gateway mappings", "mappings [{local_ip, pilot_addr}], total", "gw.list"],
  ["gateway map", ["<pilot-addr>", "[local-ip]"], "Add a mapping to the running gateway", "local_ip, pilot_addr", "gw.map"],
  ["gateway start", ["[--subnet <cidr>]", "[--ports <list>]", "[<pilot-addr>...]"], "Start the IP gateway (bridges TCP to Pilot Protocol)", "pid, subnet, mappings [{local_ip, pilot_addr}]", "gw.start"],
  ["gateway stop", [], "Stop the running gateway", "pid", "gw.stop"],
  ["gateway unmap", ["<local-ip>"], "Remove a mapping and clean up loopback alias", "unmapped", "gw.unmap"],
  ["handshake", ["<node_id|hostname>", "[justification]"], "Send a trust handshake request to a remote node", "status, node_id", "core.handshake"],
  ["inbox", ["[--clear]"], "List messages received via data exchange (port 1001). Messages saved to ~/.pilot/inbox/. Use --clear to delete all", "messages [{type, from, data, received_at}], total, dir", "core.inbox"],
  ["info", [], "Show daemon status: node_id, address, hostname, uptime, peers, connections, encryption, identity", "node_id, address, hostname, uptime_secs, connections, ports, peers, encrypt, bytes_sent, bytes_recv, conn_list, peer_list", "status.info"],
  ["init", ["--registry <addr>", "--beacon <addr>", "--hostname <name>", "[--socket <path>]"], "Initialize pilot configuration (writes ~/.pilot/config.json)", "config_path, registry, beacon, socket, hostname", "core.init"],
  ["listen", ["<port>", "[--count <n>]", "[--timeout <dur>]"], "Listen for incoming datagrams. Default: infinite (NDJSON streaming). Use --count/--timeout to bound", "messages [{src_addr, src_port, data, bytes}], timeout (bool). Unbounded: NDJSON per line", "comm.listen"],
  ["lookup", ["<node_id>"], "Look up a node by ID", "node_id, address, real_addr, public, hostname", "core.lookup"],
  ["peers", ["[--search <query>]"], "List connected peers with optional search filter", "peers [{node_id, endpoint, encrypted, authenticated}], total", "status.peers"],
  ["pending", [], "List pending handshake requests", "pending [{node_id, justification, received_at}]", "core.pending"],
  ["ping", ["<address|hostname>", "[--count <n>]", "[--timeout <dur>]"], "Ping a node via echo port. Default 4 pings", "target, results [{seq, bytes, rtt_ms, error}], timeout (bool)", "comm.ping"],
  ["publish", ["<address|hostname>", "<topic>", "--data <message>"], "Publish an event to a topic on the target's event stream broker (port 1002)", "target, topic, bytes", "comm.publish"],
  ["received", ["[--clear]"], "List files received via data exchange (port 1001). Files saved to ~/.pilot/received/. Use --clear to delete all", "files [{name, bytes, modified, path}], total, dir", "core.received"],
  ["recv", ["<port>", "[--count <n>]", "[--timeout <dur>]"], "Accept incoming connections, receive messages", "messages [{seq, port, data, bytes}], timeout (bool)", "comm.recv"],
  ["register", ["[listen_addr]"], "Register a new node with the registry", "node_id, address, public_key", "core.register"],
  ["reject", ["<node_id>", "[reason]"], "Reject a pending handshake request", "status, node_id", "core.reject"],
  ["rotate-key", ["<node_id>", "<owner>"], "Rotate keypair via owner recovery", "node_id, new public_key", "core.rotateKey"],
  ["send", ["<address|hostname>", "<port>", "--data <msg>", "[--timeout <dur>]"], "Send a single message to a port and read the response", "target, port, sent, response", "comm.send"],
  ["send-file", ["<address|hostname>", "<filepath>"], "Send a file to a node on port 1001 (data exchange)", "filename, bytes, destination, ack", "comm.sendFile"],
  ["send-message", ["<address|hostname>", "--data <text>", "[--type text|json|binary]"], "Send a typed message via data exchange (port 1001). Default type: text", "target, type, bytes, ack", "comm.sendMessage"],
  ["set-hostname", ["<hostname>"], "Set hostname for this daemon's node", "hostname, node_id", "core.setHostname"],
  ["set-private", [], "Hide this node's endpoint (private, default; routes through daemon)", "status", "core.setPrivate"],
  ["set-public", [], "Make this node's endpoint publicly visible (routes through daemon)", "status", "core.setPublic"],
  ["set-tags", ["<tag1>", "[tag2]", "..."], "Set capability tags for this daemon's node (replaces existing tags)", "node_id, tags", "core.setTags"],
  ["set-webhook", ["<url>"], "Set the webhook URL for event notifications (applies immediately if daemon is running)", "webhook, applied", "core.setWebhook"],
  ["subscribe", ["<address|hostname>", "<topic>", "[--count <n>]", "[--timeout <dur>]"], "Subscribe to event stream topics (port 1002). Use * for all topics. Without --count: streams NDJSON", "events [{topic, data, bytes}], timeout (bool). Unbounded: NDJSON per line", "comm.subscribe"],
  ["traceroute", ["<address>", "[--timeout <dur>]"], "Trace path to a node (connection setup + RTT samples)", "target, setup_ms, rtt_samples [{rtt_ms, bytes}]", "comm.traceroute"],
  ["trust", [], "List trusted peers", "trusted [{node_id, mutual, network, approved_at}]", "core.trust"],
  ["untrust", ["<node_id>"], "Revoke trust for a peer", "node_id", "core.untrust"],
  // Extensions: not in the reference catalog's 49 entries (docs/differences.md: added as extra keys).
  ["version", [], "Print the pilotctl version and build runtime (extension; docs/differences.md)", "version, runtime, platform", "version", EXT],
  ["context", [], "Print this machine-readable catalog of commands, flags, return fields and error codes", "commands, error_codes, global_flags, environment, config_file, version", "context", EXT],
  ["task submit", ["<address|hostname>", "--task <description>"], "Submit a task to a node (port 1003)", "task_id, target, task, status (int 200|400), accepted (bool), message", "task.submit", EXT],
  ["task accept", ["--id <task_id>"], "Accept a received task (within 1 minute of creation)", "task_id, status, message", "task.accept", EXT],
  ["task decline", ["--id <task_id>", "--justification <reason>"], "Decline a received task", "task_id, status, message, justification", "task.decline", EXT],
  ["task execute", [], "Start executing the next accepted task", "task_id, task_description, from, status", "task.execute", EXT],
  ["task send-results", ["--id <task_id>", "--results <text> | --file <filepath>"], "Send the results of a task back to its submitter", "task_id, status, sent_to, sent_type, filename, file_size", "task.sendResults", EXT],
  ["task list", ["[--type received|submitted]"], "List received and/or submitted tasks", "tasks [{task_id, description, status, from, to, created_at, category}]", "task.list", EXT],
  ["task queue", [], "List accepted tasks waiting for execution", "queue [{task_id, description, from, created_at}], count", "task.queue", EXT],
  ["mcp", ["[--socket <path>]", "[--data-dir <dir>]"], "Serve the daemon to AI agents over MCP (Model Context Protocol) on stdin/stdout; see docs/mcp.md", "(MCP session on stdio)", "mcp.run", EXT],
  ["_daemon-run", [], "internal: run the daemon in the foreground", "", "daemon.run", EXT | HIDDEN],
];

function toDef(r: Row): CommandDef {
  const [name, args, description, returns, handler, flags = 0] = r;
  const dot = handler.indexOf(".");
  const load = dot < 0
    ? async () => BUILTIN[handler]!
    : async () => (await MODULES[handler.slice(0, dot)]!())[handler.slice(dot + 1)] as Handler;
  return { name, args: [...args], description, returns, reference: (flags & EXT) === 0, hidden: (flags & HIDDEN) !== 0, load };
}

/** The command named exactly `name` ("info", "daemon start"), or undefined. */
export function findCommand(name: string): CommandDef | undefined {
  for (const r of ROWS) if (r[0] === name) return toDef(r);
  return undefined;
}

/** Every command, in table order. */
export function commands(): CommandDef[] {
  return ROWS.map(toDef);
}

export const GROUPS: Record<string, { missingHint: string; unknownHint: string }> = {
  daemon: { missingHint: "available: pilotctl daemon start | stop | status", unknownHint: "available: start, stop, status" },
  gateway: { missingHint: "available: pilotctl gateway start | stop | map | unmap | list", unknownHint: "available: start, stop, map, unmap, list" },
  task: { missingHint: "available: pilotctl task submit | accept | decline | execute | send-results | list | queue", unknownHint: "available: submit, accept, decline, execute, send-results, list, queue" },
};

const pick = (keys: ErrorCode[]): Record<string, string> => Object.fromEntries(keys.map((k) => [k, ERROR_CODE_MEANINGS[k]]));
/** The reference's documented codes (the `error_codes` key of the catalog). */
export const errorCodes = (): Record<string, string> => pick(["already_exists", "connection_failed", "internal", "invalid_argument", "not_found", "not_running", "timeout"]);
/** Codes the reference uses without listing them, plus the SDK's `aborted`; exposed under a separate key. */
export const extraErrorCodes = (): Record<string, string> => pick(["unavailable", "invalid_state", "expired", "internal_error", "unsupported", "refused", "aborted"]);

/** The `context` catalog, generated from the table: the reference's keys plus additive extension keys. */
export function catalog(): Record<string, unknown> {
  const ref: Record<string, unknown> = {};
  const ext: Record<string, unknown> = {};
  for (const c of commands()) {
    if (c.hidden) continue;
    const e = { args: c.args, description: c.description, returns: c.returns };
    (c.reference ? ref : ext)[c.name] = e;
  }
  return {
    commands: ref,
    config_file: "~/.pilot/config.json",
    environment: {
      PILOT_REGISTRY: "Registry address (default: 34.71.57.205:9000)",
      PILOT_SOCKET: "Daemon socket path (default: /tmp/pilot.sock)",
    },
    error_codes: errorCodes(),
    extension_commands: ext,
    extension_error_codes: extraErrorCodes(),
    exit_codes: { "0": "success (including soft failures reported in data)", "1": "error (see code)", "2": "usage text printed" },
    global_flags: {
      "--json": "Output structured JSON for all commands. Success: {status:ok, data:{...}}. Error: {status:error, code:string, message:string}",
    },
    version: "1.2",
  };
}
