// `pilotctl mcp`: an MCP server on stdio exposing the local daemon to any MCP client. Tools are
// listed in tools.ts; the inbox and received files are also resources. Each tool call opens its own
// connection to the daemon (so ports bound by `recv` are released when the call ends).
// This module is loaded only by the `mcp` command (pilotctl's other commands never import it).
import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { Server } from "@modelcontextprotocol/sdk/server/index.js";
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";
import {
  CallToolRequestSchema, ErrorCode as RpcCode, ListResourcesRequestSchema, ListResourceTemplatesRequestSchema, ListToolsRequestSchema,
  McpError, ReadResourceRequestSchema, type CallToolResult,
} from "@modelcontextprotocol/sdk/types.js";
import { connect, type Pilot } from "../../client/pilot.ts";
import { PilotError } from "../../client/errors.ts";
import { type Ctx, getSocket, parseFlags, pilotDir } from "../util.ts";
import { validate } from "./schema.ts";
import { type Session, TOOLS, type Tool } from "./tools.ts";

/** Largest received file returned as resource contents. */
const MAX_RESOURCE_BYTES = 1 << 20;

export interface McpOptions {
  socket: string;
  dataDir: string;
  version: string;
}

function toolError(e: unknown): CallToolResult {
  const pe = e instanceof PilotError ? e : new PilotError("internal", (e as Error)?.message ?? String(e));
  const body = pe.toJSON();
  return { isError: true, content: [{ type: "text", text: JSON.stringify(body) }] };
}

/** Build the MCP server (not yet connected to a transport). */
export function createMcpServer(o: McpOptions): Server {
  const server = new Server(
    { name: "pilot", title: "Pilot Protocol", version: o.version },
    {
      capabilities: { tools: {}, resources: {} },
      instructions:
        "Tools for the Pilot Protocol network: this node (info), trust between nodes (handshake, pending, approve, reject, trust), " +
        "messages (send_message, inbox, wait_for_message), files (send_file, received), events (publish, subscribe), raw ports (send, recv) and ping. " +
        "Two nodes must trust each other before they can communicate. Errors are JSON {code, message, hint}.",
    },
  );
  const open = (signal?: AbortSignal): Promise<Pilot> => connect({ socket: o.socket, dataDir: o.dataDir, signal, timeoutMs: 5000 });
  const byName = new Map<string, Tool>(TOOLS.map((t) => [t.name, t]));
  const session: Session = { delivered: new Set() };

  server.setRequestHandler(ListToolsRequestSchema, async () => ({
    tools: TOOLS.map((t) => ({
      name: t.name,
      title: t.title,
      description: t.description,
      inputSchema: t.inputSchema,
      annotations: { title: t.title, readOnlyHint: t.readOnly, openWorldHint: true },
    })),
  }));

  server.setRequestHandler(CallToolRequestSchema, async (req, extra): Promise<CallToolResult> => {
    const t = byName.get(req.params.name);
    if (!t) throw new McpError(RpcCode.InvalidParams, `unknown tool ${JSON.stringify(req.params.name)}`, { code: "invalid_argument", hint: `available tools: ${TOOLS.map((x) => x.name).join(", ")}` });
    const v = validate(t.inputSchema, req.params.arguments);
    if (!v.ok) throw new McpError(RpcCode.InvalidParams, `${t.name}: ${v.error}`, { code: "invalid_argument", hint: "check the tool's inputSchema (tools/list)" });
    let p: Pilot;
    try {
      p = await open(extra.signal);
    } catch (e) {
      return toolError(e);
    }
    try {
      const out = await t.run(p, v.args, extra.signal, session);
      return { content: [{ type: "text", text: JSON.stringify(out) }], structuredContent: out };
    } catch (e) {
      return toolError(e);
    } finally {
      p.close();
    }
  });

  server.setRequestHandler(ListResourcesRequestSchema, async () => ({
    resources: [
      { uri: "pilot://inbox", name: "inbox", title: "Inbox", description: "Messages other nodes sent to this node (JSON list)", mimeType: "application/json" },
      { uri: "pilot://received", name: "received", title: "Received files", description: "Files other nodes sent to this node (JSON list)", mimeType: "application/json" },
    ],
  }));
  server.setRequestHandler(ListResourceTemplatesRequestSchema, async () => ({
    resourceTemplates: [
      { uriTemplate: "pilot://inbox/{id}", name: "inbox-message", title: "One inbox message", mimeType: "application/json" },
      { uriTemplate: "pilot://received/{name}", name: "received-file", title: "Contents of one received file (up to 1 MiB)" },
    ],
  }));
  server.setRequestHandler(ReadResourceRequestSchema, async (req) => {
    const uri = req.params.uri;
    const m = /^pilot:\/\/(inbox|received)(?:\/([^/]+))?$/.exec(uri);
    if (!m) throw new McpError(RpcCode.InvalidParams, `unknown resource ${uri}`, { code: "not_found", hint: "see resources/list" });
    const [, kind, raw] = m;
    const item = raw === undefined ? undefined : decodeURIComponent(raw);
    if (item !== undefined && (item.includes("/") || item === ".." || item === ".")) throw new McpError(RpcCode.InvalidParams, `bad resource name ${uri}`, { code: "invalid_argument" });
    const { readInbox, readReceived } = await import("../../client/mailbox.ts");
    const json = (v: unknown) => ({ contents: [{ uri, mimeType: "application/json", text: JSON.stringify(v) }] });
    if (kind === "inbox") {
      const all = await readInbox(o.dataDir);
      if (item === undefined) return json(all);
      const msg = all.find((x) => x.id === item);
      if (!msg) throw new McpError(RpcCode.InvalidParams, `no inbox message ${item}`, { code: "not_found" });
      return json(msg);
    }
    if (item === undefined) return json(await readReceived(o.dataDir));
    const path = join(o.dataDir, "received", item);
    let size: number;
    try {
      size = (await stat(path)).size;
    } catch {
      throw new McpError(RpcCode.InvalidParams, `no received file ${item}`, { code: "not_found" });
    }
    if (size > MAX_RESOURCE_BYTES) throw new McpError(RpcCode.InvalidParams, `${item} is ${size} bytes (resources are limited to ${MAX_RESOURCE_BYTES})`, { code: "invalid_argument", hint: `read it from ${path}` });
    const b = await readFile(path);
    const text = new TextDecoder("utf-8", { fatal: true });
    try {
      return { contents: [{ uri, mimeType: "text/plain", text: text.decode(b) }] };
    } catch {
      return { contents: [{ uri, mimeType: "application/octet-stream", blob: Buffer.from(b).toString("base64") }] };
    }
  });
  return server;
}

/** pilotctl mcp [--socket <path>] [--data-dir <dir>]: serve MCP on stdin/stdout until stdin closes. */
export async function run(_ctx: Ctx, args: string[]): Promise<void> {
  const p = parseFlags(args);
  const { default: pkg } = await import("../../../package.json");
  const server = createMcpServer({
    socket: p.flags.get("socket") ?? getSocket(),
    dataDir: p.flags.get("data-dir") ?? pilotDir(),
    version: String(pkg.version),
  });
  const transport = new StdioServerTransport();
  const closed = new Promise<void>((resolve) => {
    transport.onclose = () => resolve();
    process.stdin.once("end", () => resolve());
    process.stdin.once("close", () => resolve());
  });
  await server.connect(transport);
  await closed;
  await server.close().catch(() => {});
}
