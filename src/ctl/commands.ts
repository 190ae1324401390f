// ONE table of command definitions. It drives the parser (citty command tree, built in main.ts)
// and the `context` catalog (cli.md §5), so the two can never disagree.
import { ERROR_CODE_MEANINGS, type ErrorCode } from "../client/errors.ts";
import type { Ctx } from "./util.ts";

export type Handler = (ctx: Ctx, args: string[]) => Promise<void>;

export interface CommandDef {
  /** Full name; multi-word for subcommands ("daemon start"). */
  name: string;
  args: string[];
  description: string;
  returns: string;
  /** false: not one of the reference catalog's 49 entries (listed under the extension keys). */
  reference?: boolean;
  hidden?: boolean;
  load: () => Promise<Handler>;
}

const core = () => import("./cmds/core.ts");
const status = () => import("./cmds/status.ts");
const comm = () => import("./cmds/comm.ts");
const daemon = () => import("./cmds/daemon.ts");
const task = () => import("./cmds/task.ts");
const gw = () => import("./cmds/gateway.ts");
const mcp = () => import("./mcp/server.ts");
type M = Record<string, unknown>;
const h = (mod: () => Promise<M>, fn: string) => async () => (await mod())[fn] as Handler;

const D = (name: string, args: string[], description: string, returns: string, load: () => Promise<Handler>, extra: Partial<CommandDef> = {}): CommandDef => ({ name, args, description, returns, load, reference: true, ...extra });

export const COMMANDS: CommandDef[] = [
  D("approve", ["<node_id>"], "Approve a pending handshake request", "status, node_id", h(core, "approve")),
  D("bench", ["<address|hostname>", "[size_mb]", "[--timeout <dur>]"], "Throughput benchmark via echo port (default 1 MB)", "target, sent_bytes, recv_bytes, send_duration_ms, total_duration_ms, send_mbps, total_mbps", h(comm, "bench")),
  D("broadcast", ["<network_id>", "<message>"], "Broadcast a message to all network members", "network_id, message", h(core, "broadcast")),
  D("clear-hostname", [], "Clear hostname for this daemon's node", "hostname, node_id", h(core, "clearHostname")),
  D("clear-tags", [], "Clear all tags for this daemon's node", "node_id, tags", h(core, "clearTags")),
  D("clear-webhook", [], "Clear the webhook URL (applies immediately if daemon is running)", "webhook, applied", h(core, "clearWebhook")),
  D("config", ["[--set key=value]"], "Show or set configuration values", "current configuration as JSON", h(core, "config")),
  D("connect", ["<address|hostname>", "[port]", "[--message <msg>]", "[--timeout <dur>]"], "Open a stream connection. Use --message to send a single message and get a response", "target, port, sent, response (with --message), or interactive stdio session", h(comm, "connect")),
  D("connections", [], "List active connections", "connections [{id, local_port, remote_addr, remote_port, state, ...}], total", h(status, "connections")),
  D("daemon start", ["[--config <path>]", "[--registry <addr>]", "[--beacon <addr>]", "[--listen <addr>]", "[--identity <path>]", "[--owner <owner>]", "[--hostname <name>]", "[--log-level <level>]", "[--log-format <fmt>]", "[--public]", "[--foreground]", "[--no-encrypt]", "[--socket <path>]", "[--webhook <url>]"], "Start the daemon as a background process. Blocks until registered, then prints status and exits", "node_id, address, pid, socket, hostname, log_file", h(daemon, "start")),
  D("daemon status", ["[--check]"], "Check if daemon is running and responsive. --check: silent, exits 0 if responsive, 1 otherwise", "running (bool), responsive (bool), pid, pid_file, socket, node_id, address, hostname, uptime_secs, peers, connections", h(daemon, "status")),
  D("daemon stop", [], "Stop the running daemon", "pid, forced (bool)", h(daemon, "stop")),
  D("deregister", [], "Deregister this node from the registry (routes through daemon)", "status", h(core, "deregister")),
  D("disable-tasks", [], "Stop advertising task execution capability", "node_id, task_exec", h(core, "disableTasks")),
  D("disconnect", ["<conn_id>"], "Close a connection by ID", "conn_id", h(core, "disconnect")),
  D("enable-tasks", [], "Advertise that this node can execute tasks", "node_id, task_exec", h(core, "enableTasks")),
  D("find", ["<hostname>"], "Discover a node by hostname", "hostname, node_id, address, public", h(core, "find")),
  D("gateway list", [], "List all current gateway mappings", "mappings [{local_ip, pilot_addr}], total", h(gw, "list")),
  D("gateway map", ["<pilot-addr>", "[local-ip]"], "Add a mapping to the running gateway", "local_ip, pilot_addr", h(gw, "map")),
  D("gateway start", ["[--subnet <cidr>]", "[--ports <list>]", "[<pilot-addr>...]"], "Start the IP gateway (bridges TCP to Pilot Protocol)", "pid, subnet, mappings [{local_ip, pilot_addr}]", h(gw, "start")),
  D("gateway stop", [], "Stop the running gateway", "pid", h(gw, "stop")),
  D("gateway unmap", ["<local-ip>"], "Remove a mapping and clean up loopback alias", "unmapped", h(gw, "unmap")),
  D("handshake", ["<node_id|hostname>", "[justification]"], "Send a trust handshake request to a remote node", "status, node_id", h(core, "handshake")),
  D("inbox", ["[--clear]"], "List messages received via data exchange (port 1001). Messages saved to ~/.pilot/inbox/. Use --clear to delete all", "messages [{type, from, data, received_at}], total, dir", h(core, "inbox")),
  D("info", [], "Show daemon status: node_id, address, hostname, uptime, peers, connections, encryption, identity", "node_id, address, hostname, uptime_secs, connections, ports, peers, encrypt, bytes_sent, bytes_recv, conn_list, peer_list", h(status, "info")),
  D("init", ["--registry <addr>", "--beacon <addr>", "--hostname <name>", "[--socket <path>]"], "Initialize pilot configuration (writes ~/.pilot/config.json)", "config_path, registry, beacon, socket, hostname", h(core, "init")),
  D("listen", ["<port>", "[--count <n>]", "[--timeout <dur>]"], "Listen for incoming datagrams. Default: infinite (NDJSON streaming). Use --count/--timeout to bound", "messages [{src_addr, src_port, data, bytes}], timeout (bool). Unbounded: NDJSON per line", h(comm, "listen")),
  D("lookup", ["<node_id>"], "Look up a node by ID", "node_id, address, real_addr, public, hostname", h(core, "lookup")),
  D("peers", ["[--search <query>]"], "List connected peers with optional search filter", "peers [{node_id, endpoint, encrypted, authenticated}], total", h(status, "peers")),
  D("pending", [], "List pending handshake requests", "pending [{node_id, justification, received_at}]", h(core, "pending")),
  D("ping", ["<address|hostname>", "[--count <n>]", "[--timeout <dur>]"], "Ping a node via echo port. Default 4 pings", "target, results [{seq, bytes, rtt_ms, error}], timeout (bool)", h(comm, "ping")),
  D("publish", ["<address|hostname>", "<topic>", "--data <message>"], "Publish an event to a topic on the target's event stream broker (port 1002)", "target, topic, bytes", h(comm, "publish")),
  D("received", ["[--clear]"], "List files received via data exchange (port 1001). Files saved to ~/.pilot/received/. Use --clear to delete all", "files [{name, bytes, modified, path}], total, dir", h(core, "received")),
  D("recv", ["<port>", "[--count <n>]", "[--timeout <dur>]"], "Accept incoming connections, receive messages", "messages [{seq, port, data, bytes}], timeout (bool)", h(comm, "recv")),
  D("register", ["[listen_addr]"], "Register a new node with the registry", "node_id, address, public_key", h(core, "register")),
  D("reject", ["<node_id>", "[reason]"], "Reject a pending handshake request", "status, node_id", h(core, "reject")),
  D("rotate-key", ["<node_id>", "<owner>"], "Rotate keypair via owner recovery", "node_id, new public_key", h(core, "rotateKey")),
  D("send", ["<address|hostname>", "<port>", "--data <msg>", "[--timeout <dur>]"], "Send a single message to a port and read the response", "target, port, sent, response", h(comm, "send")),
  D("send-file", ["<address|hostname>", "<filepath>"], "Send a file to a node on port 1001 (data exchange)", "filename, bytes, destination, ack", h(comm, "sendFile")),
  D("send-message", ["<address|hostname>", "--data <text>", "[--type text|json|binary]"], "Send a typed message via data exchange (port 1001). Default type: text", "target, type, bytes, ack", h(comm, "sendMessage")),
  D("set-hostname", ["<hostname>"], "Set hostname for this daemon's node", "hostname, node_id", h(core, "setHostname")),
  D("set-private", [], "Hide this node's endpoint (private, default; routes through daemon)", "status", h(core, "setPrivate")),
  D("set-public", [], "Make this node's endpoint publicly visible (routes through daemon)", "status", h(core, "setPublic")),
  D("set-tags", ["<tag1>", "[tag2]", "..."], "Set capability tags for this daemon's node (replaces existing tags)", "node_id, tags", h(core, "setTags")),
  D("set-webhook", ["<url>"], "Set the webhook URL for event notifications (applies immediately if daemon is running)", "webhook, applied", h(core, "setWebhook")),
  D("subscribe", ["<address|hostname>", "<topic>", "[--count <n>]", "[--timeout <dur>]"], "Subscribe to event stream topics (port 1002). Use * for all topics. Without --count: streams NDJSON", "events [{topic, data, bytes}], timeout (bool). Unbounded: NDJSON per line", h(comm, "subscribe")),
  D("traceroute", ["<address>", "[--timeout <dur>]"], "Trace path to a node (connection setup + RTT samples)", "target, setup_ms, rtt_samples [{rtt_ms, bytes}]", h(comm, "traceroute")),
  D("trust", [], "List trusted peers", "trusted [{node_id, mutual, network, approved_at}]", h(core, "trust")),
  D("untrust", ["<node_id>"], "Revoke trust for a peer", "node_id", h(core, "untrust")),
  // Extensions: not in the reference catalog's 49 entries (cli.md §11.5-2: added as extra keys).
  D("version", [], "Print the pilotctl version and build runtime (extension; cli.md §11.5)", "version, runtime, platform", h(status, "version"), { reference: false }),
  D("context", [], "Print this machine-readable catalog of commands, flags, return fields and error codes", "commands, error_codes, global_flags, environment, config_file, version", h(core, "context"), { reference: false }),
  D("task submit", ["<address|hostname>", "--task <description>"], "Submit a task to a node (port 1003)", "task_id, target, task, status (int 200|400), accepted (bool), message", h(task, "submit"), { reference: false }),
  D("task accept", ["--id <task_id>"], "Accept a received task (within 1 minute of creation)", "task_id, status, message", h(task, "accept"), { reference: false }),
  D("task decline", ["--id <task_id>", "--justification <reason>"], "Decline a received task", "task_id, status, message, justification", h(task, "decline"), { reference: false }),
  D("task execute", [], "Start executing the next accepted task", "task_id, task_description, from, status", h(task, "execute"), { reference: false }),
  D("task send-results", ["--id <task_id>", "--results <text> | --file <filepath>"], "Send the results of a task back to its submitter", "task_id, status, sent_to, sent_type, filename, file_size", h(task, "sendResults"), { reference: false }),
  D("task list", ["[--type received|submitted]"], "List received and/or submitted tasks", "tasks [{task_id, description, status, from, to, created_at, category}]", h(task, "list"), { reference: false }),
  D("task queue", [], "List accepted tasks waiting for execution", "queue [{task_id, description, from, created_at}], count", h(task, "queue"), { reference: false }),
  D("mcp", ["[--socket <path>]", "[--data-dir <dir>]"], "Serve the daemon to AI agents over MCP (Model Context Protocol) on stdin/stdout; see docs/mcp.md", "(MCP session on stdio)", h(mcp, "run"), { reference: false }),
  D("_daemon-run", [], "internal: run the daemon in the foreground", "", h(daemon, "run"), { reference: false, hidden: true }),
];

export const GROUPS: Record<string, { missingHint: string; unknownHint: string }> = {
  daemon: { missingHint: "available: pilotctl daemon start | stop | status", unknownHint: "available: start, stop, status" },
  gateway: { missingHint: "available: pilotctl gateway start | stop | map | unmap | list", unknownHint: "available: start, stop, map, unmap, list" },
  task: { missingHint: "available: pilotctl task submit | accept | decline | execute | send-results | list | queue", unknownHint: "available: submit, accept, decline, execute, send-results, list, queue" },
};

const pick = (keys: ErrorCode[]): Record<string, string> => Object.fromEntries(keys.map((k) => [k, ERROR_CODE_MEANINGS[k]]));
/** The reference's documented codes (the `error_codes` key of the catalog). */
export const ERROR_CODES: Record<string, string> = pick(["already_exists", "connection_failed", "internal", "invalid_argument", "not_found", "not_running", "timeout"]);
/** Codes the reference uses without listing them, plus the SDK's `aborted`; exposed under a separate key. */
export const EXTRA_ERROR_CODES: Record<string, string> = pick(["unavailable", "invalid_state", "expired", "internal_error", "unsupported", "refused", "aborted"]);

/** The `context` catalog, generated from COMMANDS (cli.md §5 + additive extension keys). */
export function catalog(): Record<string, unknown> {
  const commands: Record<string, unknown> = {};
  const ext: Record<string, unknown> = {};
  for (const c of COMMANDS) {
    if (c.hidden) continue;
    const e = { args: c.args, description: c.description, returns: c.returns };
    (c.reference ? commands : ext)[c.name] = e;
  }
  return {
    commands,
    config_file: "~/.pilot/config.json",
    environment: {
      PILOT_REGISTRY: "Registry address (default: 34.71.57.205:9000)",
      PILOT_SOCKET: "Daemon socket path (default: /tmp/pilot.sock)",
    },
    error_codes: ERROR_CODES,
    extension_commands: ext,
    extension_error_codes: EXTRA_ERROR_CODES,
    exit_codes: { "0": "success (including soft failures reported in data)", "1": "error (see code)", "2": "usage text printed" },
    global_flags: {
      "--json": "Output structured JSON for all commands. Success: {status:ok, data:{...}}. Error: {status:error, code:string, message:string}",
    },
    version: "1.2",
  };
}
