// The MCP tools: one table entry per tool (schema + description written for a model + handler).
// Every handler talks to the daemon through the SDK and returns a plain JSON object.
import type { Pilot } from "../../client/pilot.ts";
import { PilotError } from "../../client/errors.ts";
import type { Args, ObjectSchema, PropSchema } from "./schema.ts";

/** State of one MCP session (one `pilotctl mcp` process). */
export interface Session {
  /** Inbox message IDs already returned to the client by inbox or wait_for_message. */
  delivered: Set<string>;
}

export interface Tool {
  name: string;
  title: string;
  description: string;
  inputSchema: ObjectSchema;
  /** true: only reads state */
  readOnly: boolean;
  run(p: Pilot, a: Args, signal: AbortSignal, session: Session): Promise<Record<string, unknown>>;
}

/** Longest wait a tool accepts (MCP clients commonly time requests out at 60 s). */
export const MAX_WAIT_MS = 55_000;

const td = new TextDecoder();
const obj = (properties: Record<string, PropSchema>, required: string[] = []): ObjectSchema => ({ type: "object", properties, required, additionalProperties: false });
const target: PropSchema = { type: "string", minLength: 1, maxLength: 253, description: "The peer: a Pilot address like 0:0000.0000.0005, a numeric node ID, or a hostname" };
const nodeId: PropSchema = { type: "integer", minimum: 1, maximum: 0xffffffff, description: "Numeric node ID of the peer (see the pending or trust tools)" };
const waitMs = (def: number): PropSchema => ({ type: "integer", minimum: 0, maximum: MAX_WAIT_MS, default: def, description: `How long to wait, in milliseconds (0-${MAX_WAIT_MS}, default ${def})` });
const port: PropSchema = { type: "integer", minimum: 1, maximum: 65535, description: "Pilot port number (1000 = stdio, 7 = echo; 1001-1003 are the built-in services)" };
const s = (a: Args, k: string) => (a[k] === undefined ? "" : String(a[k]));
const n = (a: Args, k: string) => Number(a[k]);

export const TOOLS: Tool[] = [
  {
    name: "info", title: "Node status", readOnly: true, inputSchema: obj({}),
    description: "Show this node's identity and status: node ID, Pilot address, hostname, uptime, number of peers and connections, encryption. Call this first to learn your own address.",
    run: async (p, _a, signal) => {
      const i = await p.info({ signal });
      return { node_id: i.nodeId, address: i.address, hostname: i.hostname, uptime_secs: i.uptimeSecs, peers: i.peers, connections: i.connections, encrypt: i.encrypt, public_key: i.publicKey, peer_list: i.peerList };
    },
  },
  {
    name: "find", title: "Find a node by hostname", readOnly: true, inputSchema: obj({ hostname: { type: "string", minLength: 1, maxLength: 63, description: "Hostname to look up" } }, ["hostname"]),
    description: "Resolve a hostname to a node ID and address through the registry. Only works for public nodes or nodes that trust you (see handshake).",
    run: async (p, a, signal) => {
      const f = await p.find(s(a, "hostname"), { signal });
      return { hostname: f.hostname, node_id: f.nodeId, address: f.address, public: f.public };
    },
  },
  {
    name: "handshake", title: "Request trust", readOnly: false,
    inputSchema: obj({ target, justification: { type: "string", maxLength: 1024, default: "", description: "Why you want to connect (shown to the other node's operator)" } }, ["target"]),
    description: "Ask another node for mutual trust. Nodes can only exchange messages, files and events after both sides trust each other. The other node must approve (or send a handshake back). Status 'already_trusted' means you can communicate now.",
    run: async (p, a, signal) => {
      const r = await p.handshake(s(a, "target"), s(a, "justification"), { signal });
      return { node_id: r.nodeId, status: r.status };
    },
  },
  {
    name: "pending", title: "Pending trust requests", readOnly: true, inputSchema: obj({}),
    description: "List trust (handshake) requests other nodes sent to this node that wait for approve or reject.",
    run: async (p, _a, signal) => ({ pending: (await p.pending({ signal })).map((r) => ({ node_id: r.nodeId, justification: r.justification, received_at: r.receivedAt })) }),
  },
  {
    name: "approve", title: "Approve a trust request", readOnly: false, inputSchema: obj({ node_id: nodeId }, ["node_id"]),
    description: "Approve a pending handshake request: the node becomes trusted and can then message this node. Only approve nodes whose justification you accept.",
    run: async (p, a, signal) => {
      const r = await p.approve(n(a, "node_id"), { signal });
      return { node_id: r.nodeId, status: r.status };
    },
  },
  {
    name: "reject", title: "Reject a trust request", readOnly: false,
    inputSchema: obj({ node_id: nodeId, reason: { type: "string", maxLength: 1024, default: "", description: "Optional reason sent back" } }, ["node_id"]),
    description: "Reject a pending handshake request.",
    run: async (p, a, signal) => {
      const r = await p.reject(n(a, "node_id"), s(a, "reason"), { signal });
      return { node_id: r.nodeId, status: r.status };
    },
  },
  {
    name: "trust", title: "Trusted peers", readOnly: true, inputSchema: obj({}),
    description: "List the nodes this node trusts (mutual = both sides approved).",
    run: async (p, _a, signal) => ({ trusted: (await p.trusted({ signal })).map((t) => ({ node_id: t.nodeId, mutual: t.mutual, approved_at: t.approvedAt })) }),
  },
  {
    name: "untrust", title: "Revoke trust", readOnly: false, inputSchema: obj({ node_id: nodeId }, ["node_id"]),
    description: "Revoke trust in a node: it can no longer reach this node until a new handshake is approved.",
    run: async (p, a, signal) => {
      const r = await p.untrust(n(a, "node_id"), { signal });
      return { node_id: r.nodeId, status: r.status };
    },
  },
  {
    name: "send_message", title: "Send a message", readOnly: false,
    inputSchema: obj({
      target,
      data: { type: "string", minLength: 1, maxLength: 1 << 20, description: "The message text (for type json: a JSON document)" },
      type: { type: "string", enum: ["text", "json", "binary"], default: "text", description: "Message type stored with it (default text)" },
    }, ["target", "data"]),
    description: "Send a message to a trusted node's inbox. The receiver reads it with its inbox or wait_for_message tool. Succeeds only once the receiver acknowledged it (returned as ack); without an acknowledgement within 30 s it fails with code timeout.",
    run: async (p, a, signal) => {
      const type = s(a, "type") as "text" | "json" | "binary";
      if (type === "json") {
        try { JSON.parse(s(a, "data")); } catch { throw new PilotError("invalid_argument", "data is not valid JSON", "send it with type text, or fix the JSON"); }
      }
      const r = await p.sendMessage(s(a, "target"), s(a, "data"), { type, signal, timeoutMs: 30_000 });
      return { target: r.target, type: r.type, bytes: r.bytes, ack: r.ack };
    },
  },
  {
    name: "inbox", title: "Read the inbox", readOnly: false,
    inputSchema: obj({
      limit: { type: "integer", minimum: 1, maximum: 500, default: 50, description: "Return at most this many of the newest messages (default 50)" },
      clear: { type: "boolean", default: false, description: "Delete the returned messages after reading them" },
    }),
    description: "List messages other nodes sent to this node (newest last). Each has an id, sender address, type and text. Use clear=true to delete what you have handled.",
    run: async (p, a, _signal, session) => {
      const all = await p.inbox();
      const msgs = all.slice(-n(a, "limit"));
      for (const m of msgs) session.delivered.add(m.id);
      const cleared = a.clear === true ? await p.clearInbox(msgs.map((m) => m.id)) : 0;
      return { messages: msgs.map((m) => ({ id: m.id, from: m.from, type: m.type, data: m.data, bytes: m.bytes, received_at: m.receivedAt })), total: all.length, cleared };
    },
  },
  {
    name: "wait_for_message", title: "Wait for a message", readOnly: true,
    inputSchema: obj({ timeout_ms: waitMs(20_000), from: { type: "string", maxLength: 64, description: "Only a message from this Pilot address (optional)" } }),
    description: "Return the oldest inbox message you have not seen yet in this session (through inbox or wait_for_message), waiting for one to arrive if there is none. Returns {message: null, timeout: true} when none arrives in time; call again to keep waiting.",
    run: async (p, a, signal, session) => {
      const m = await p.waitForMessage({ timeoutMs: n(a, "timeout_ms"), signal, seen: session.delivered, from: a.from === undefined ? undefined : s(a, "from") });
      if (m) session.delivered.add(m.id);
      return m ? { message: { id: m.id, from: m.from, type: m.type, data: m.data, bytes: m.bytes, received_at: m.receivedAt }, timeout: false } : { message: null, timeout: true };
    },
  },
  {
    name: "send_file", title: "Send a file", readOnly: false,
    inputSchema: obj({ target, path: { type: "string", minLength: 1, maxLength: 4096, description: "Path of a local file to send" } }, ["target", "path"]),
    description: "Send a local file to a trusted node; it lands in the receiver's received files. Succeeds only once the receiver acknowledged the stored file; returns size, SHA-256 and that acknowledgement. Any size between pilot-ts nodes, and sending the same file again after a failure resumes where it stopped (resumed_from); receivers on other implementations take at most 16 MiB (error code unsupported, nothing sent).",
    run: async (p, a, signal) => {
      const r = await p.sendFile(s(a, "target"), s(a, "path"), { signal, timeoutMs: 60_000 });
      return { filename: r.filename, bytes: r.bytes, destination: r.destination, sha256: r.sha256, ack: r.ack, mode: r.mode, resumed_from: r.resumedFrom };
    },
  },
  {
    name: "received", title: "Received files", readOnly: true, inputSchema: obj({}),
    description: "List files other nodes sent to this node, with their local paths (read them with your file tools or the pilot://received resource).",
    run: async (p) => {
      const f = await p.received();
      return { files: f.map((x) => ({ name: x.name, path: x.path, bytes: x.bytes, modified: x.modified })), total: f.length };
    },
  },
  {
    name: "publish", title: "Publish an event", readOnly: false,
    inputSchema: obj({ target, topic: { type: "string", minLength: 1, maxLength: 256, description: "Topic name" }, data: { type: "string", maxLength: 1 << 20, description: "Event payload text" } }, ["target", "topic", "data"]),
    description: "Publish an event on a topic of a node's event broker; every subscriber of that topic on that node receives it.",
    run: async (p, a, signal) => {
      const r = await p.publish(s(a, "target"), s(a, "topic"), s(a, "data"), { signal });
      return { target: r.target, topic: r.topic, bytes: r.bytes };
    },
  },
  {
    name: "subscribe", title: "Wait for events", readOnly: true,
    inputSchema: obj({
      target, topic: { type: "string", minLength: 1, maxLength: 256, description: "Topic name, or * for all topics" },
      count: { type: "integer", minimum: 1, maximum: 100, default: 1, description: "Return after this many events (default 1)" },
      timeout_ms: waitMs(20_000),
    }, ["target", "topic"]),
    description: "Subscribe to a topic on a node's event broker and wait for events published from now on. Returns when `count` events arrived or the time is up (timeout: true).",
    run: async (p, a, signal) => {
      const sub = await p.subscribe(s(a, "target"), s(a, "topic"), { signal });
      const events: { topic: string; data: string; bytes: number }[] = [];
      const end = Date.now() + n(a, "timeout_ms");
      try {
        while (events.length < n(a, "count")) {
          let ev;
          try { ev = await sub.next({ timeoutMs: Math.max(0, end - Date.now()), signal }); } catch (e) {
            if ((e as PilotError).code === "timeout") return { events, timeout: true };
            throw e;
          }
          if (!ev) return { events, timeout: false, ended: true };
          events.push({ topic: ev.topic, data: ev.text, bytes: ev.data.length });
        }
      } finally { sub.close(); }
      return { events, timeout: false };
    },
  },
  {
    name: "send", title: "Send on a port", readOnly: false,
    inputSchema: obj({ target, port, data: { type: "string", minLength: 1, maxLength: 1 << 20, description: "Text to send" }, timeout_ms: waitMs(10_000) }, ["target", "port", "data"]),
    description: "Open a stream to a port of a node, send text, and return the first reply (if one arrives before the timeout). For talking to custom services or to an agent waiting with recv.",
    run: async (p, a, signal) => {
      const c = await p.dial(s(a, "target"), n(a, "port"), { signal, timeoutMs: 30_000 });
      try {
        await c.write(s(a, "data"));
        let reply: Uint8Array | null = null;
        try { reply = await c.read({ timeoutMs: n(a, "timeout_ms"), signal }); } catch (e) {
          if ((e as PilotError).code !== "timeout") throw e;
          return { target: c.remote, sent: s(a, "data"), response: null, timeout: true };
        }
        return { target: c.remote, sent: s(a, "data"), response: reply ? td.decode(reply) : null, timeout: false };
      } finally { c.close(); }
    },
  },
  {
    name: "recv", title: "Receive on a port", readOnly: false,
    inputSchema: obj({
      port, count: { type: "integer", minimum: 1, maximum: 100, default: 1, description: "Connections to accept (default 1)" },
      timeout_ms: waitMs(20_000),
      reply: { type: "string", maxLength: 1 << 20, description: "Optional text written back on each connection after reading its message" },
    }, ["port"]),
    description: "Listen on a port and receive messages: accepts up to `count` inbound connections, reads one message from each (optionally answering with `reply`), and returns them. Returns early with timeout: true.",
    run: async (p, a, signal) => {
      const l = await p.listen(n(a, "port"), { signal });
      const end = Date.now() + n(a, "timeout_ms");
      const messages: { from: string; data: string; bytes: number }[] = [];
      try {
        while (messages.length < n(a, "count")) {
          let c;
          try { c = await l.accept({ timeoutMs: Math.max(0, end - Date.now()), signal }); } catch (e) {
            if ((e as PilotError).code === "timeout") return { port: l.port, messages, timeout: true };
            throw e;
          }
          try {
            const r = await c.read({ timeoutMs: Math.max(0, end - Date.now()), signal }).catch(() => null);
            messages.push({ from: c.remote, data: r ? td.decode(r) : "", bytes: r ? r.length : 0 });
            if (a.reply !== undefined) await c.write(s(a, "reply"));
          } finally { c.close(); }
        }
      } finally { l.close(); }
      return { port: l.port, messages, timeout: false };
    },
  },
  {
    name: "ping", title: "Ping a node", readOnly: true,
    inputSchema: obj({ target, count: { type: "integer", minimum: 1, maximum: 10, default: 3, description: "Number of pings (default 3)" } }, ["target"]),
    description: "Check that a node is reachable: round trips to its echo port, with the round-trip time of each.",
    run: async (p, a, signal) => {
      const r = await p.ping(s(a, "target"), { count: n(a, "count"), intervalMs: 200, signal, timeoutMs: 10_000 });
      return { target: r.target, results: r.results.map((x) => ({ seq: x.seq, bytes: x.bytes, rtt_ms: x.rttMs, ...(x.error ? { error: x.error } : {}) })) };
    },
  },
];
