// `pilotctl mcp` as an MCP client sees it: a child process on stdio driven with the official SDK's
// client, against two real daemons (createTestnet without pre-established trust).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { McpError } from "@modelcontextprotocol/sdk/types.js";
import { createTestnet, type Testnet, type TestnetNode } from "../src/index.ts";
import { until } from "./helpers/until.ts";

const MAIN = resolve(import.meta.dir, "../src/main.ts");
const tmp = mkdtempSync(join(tmpdir(), "mcp-test-"));
let net: Testnet;
let A: TestnetNode, B: TestnetNode;
let ca: Client, cb: Client;

/** Start `pilotctl mcp` for a node: A through the environment (HOME, PILOT_SOCKET), B through flags. */
async function mcpClient(n: TestnetNode, viaEnv: boolean): Promise<Client> {
  const env: Record<string, string> = { ...(process.env as Record<string, string>), PILOT_TOOL: "" };
  const args = [MAIN, "pilotctl", "mcp"];
  if (viaEnv) {
    env.HOME = dirname(n.dataDir);
    env.PILOT_SOCKET = n.socket;
  } else args.push("--socket", n.socket, "--data-dir", n.dataDir);
  const t = new StdioClientTransport({ command: process.execPath, args, env, stderr: "pipe" });
  const c = new Client({ name: "pilot-test", version: "1.0.0" });
  await c.connect(t);
  return c;
}

type Out = Record<string, any>;
async function call(c: Client, name: string, args: Record<string, unknown> = {}): Promise<Out> {
  const r = await c.callTool({ name, arguments: args });
  if (r.isError) throw new Error(`${name} failed: ${JSON.stringify(r.content)}`);
  const text = JSON.parse((r.content as { text: string }[])[0].text);
  expect(r.structuredContent).toEqual(text);
  return r.structuredContent as Out;
}
async function rpcError(p: Promise<unknown>): Promise<McpError> {
  const e = await p.then(() => null, (x) => x);
  expect(e).toBeInstanceOf(McpError);
  return e as McpError;
}

beforeAll(async () => {
  net = await createTestnet({ nodes: 2, trust: false });
  [A, B] = net.nodes;
  [ca, cb] = await Promise.all([mcpClient(A, true), mcpClient(B, false)]);
}, 60_000);
afterAll(async () => {
  await ca?.close();
  await cb?.close();
  await net?.close();
  rmSync(tmp, { recursive: true, force: true, maxRetries: 5 });
});

describe("pilotctl mcp", () => {
  test("lists the tools, each with a closed object schema and a description", async () => {
    const { tools } = await ca.listTools();
    const names = tools.map((t) => t.name);
    for (const n of ["info", "find", "handshake", "pending", "approve", "trust", "send_message", "inbox", "wait_for_message", "send_file", "received", "publish", "subscribe", "send", "recv", "ping"]) {
      expect(names).toContain(n);
    }
    for (const t of tools) {
      const s = t.inputSchema as { type: string; properties: Record<string, { type: string; description: string }>; required?: string[]; additionalProperties: boolean };
      expect([t.name, s.type, s.additionalProperties]).toEqual([t.name, "object", false]);
      expect((t.description ?? "").length).toBeGreaterThan(30);
      for (const r of s.required ?? []) expect(Object.keys(s.properties)).toContain(r);
      for (const [k, p] of Object.entries(s.properties)) {
        expect([k, ["string", "integer", "boolean"].includes(p.type), p.description.length > 5]).toEqual([k, true, true]);
      }
    }
  });

  test("info reports the node it serves", async () => {
    expect((await call(ca, "info")).node_id).toBe(A.nodeId);
    expect((await call(cb, "info")).address).toBe(B.address);
  });

  test("malformed arguments get an MCP error with code invalid_argument; the server keeps serving", async () => {
    const e1 = await rpcError(ca.callTool({ name: "approve", arguments: { node_id: "x" } }));
    expect(e1.code).toBe(-32602);
    expect(e1.message).toContain('argument "node_id" must be an integer');
    expect(e1.data).toEqual({ code: "invalid_argument", hint: "check the tool's inputSchema (tools/list)" });
    const e2 = await rpcError(ca.callTool({ name: "send_message", arguments: { target: B.address } }));
    expect([e2.message.includes('missing required argument "data"'), (e2.data as Out).code]).toEqual([true, "invalid_argument"]);
    const e3 = await rpcError(ca.callTool({ name: "info", arguments: { bogus: 1 } }));
    expect(e3.message).toContain('unknown argument "bogus"');
    const e4 = await rpcError(ca.callTool({ name: "ping", arguments: { target: B.address, count: 1e9 } }));
    expect(e4.message).toContain("must be <= 10");
    const e5 = await rpcError(ca.callTool({ name: "no_such_tool", arguments: {} }));
    expect((e5.data as Out).code).toBe("invalid_argument");
    // an operation failure is a tool result with isError and the JSON {code, message, hint}
    const r = await ca.callTool({ name: "find", arguments: { hostname: "nobody-here" } });
    expect(r.isError).toBe(true);
    const body = JSON.parse((r.content as { text: string }[])[0].text);
    expect(body.code).toBe("not_found");
    expect(body.hint).toContain("handshake");
    expect((await call(ca, "info")).node_id).toBe(A.nodeId);
  });

  test("handshake, pending, approve, trust", async () => {
    expect(await call(ca, "handshake", { target: String(B.nodeId), justification: "mcp test" })).toEqual({ node_id: B.nodeId, status: "sent" });
    const pend = await until(async () => {
      const p = (await call(cb, "pending")).pending as Out[];
      return p.find((x) => x.node_id === A.nodeId);
    }, "B sees A's request", 15_000);
    expect(pend.justification).toBe("mcp test");
    expect(await call(cb, "approve", { node_id: A.nodeId })).toEqual({ node_id: A.nodeId, status: "approved" });
    await until(async () => ((await call(ca, "trust")).trusted as Out[]).some((t) => t.node_id === B.nodeId), "A trusts B", 15_000);
  });

  test("send_message, inbox, wait_for_message", async () => {
    const sent = await until(() => call(ca, "send_message", { target: B.address, data: "hello over mcp" }).catch(() => null), "message delivered", 15_000);
    expect(sent).toEqual({ target: B.address, type: "text", bytes: 14, ack: "ACK TEXT 14 bytes" });
    const inbox = await call(cb, "inbox");
    expect(inbox.messages.map((m: Out) => [m.from, m.type, m.data])).toEqual([[A.address, "text", "hello over mcp"]]);
    // wait_for_message returns the oldest message this session has not seen (the inbox call above
    // saw the first one), whether it arrives before or while the call waits
    const waiting = call(cb, "wait_for_message", { timeout_ms: 20_000 });
    await call(ca, "send_message", { target: B.address, data: '{"n":1}', type: "json" });
    const w = await waiting;
    expect([w.timeout, w.message.data, w.message.type, w.message.from]).toEqual([false, '{"n":1}', "json", A.address]);
    const none = await call(cb, "wait_for_message", { timeout_ms: 200 });
    expect(none).toEqual({ message: null, timeout: true });
    // the inbox is also a resource
    const res = await cb.readResource({ uri: "pilot://inbox" });
    expect(JSON.parse((res.contents[0] as { text: string }).text).length).toBe(2);
    const cleared = await call(cb, "inbox", { clear: true });
    expect([cleared.total, cleared.cleared]).toEqual([2, 2]);
    expect((await call(cb, "inbox")).total).toBe(0);
  });

  test("send_file, received, and the received file as a resource", async () => {
    const path = join(tmp, "report.txt");
    const text = "quarterly numbers\n".repeat(500);
    writeFileSync(path, text);
    const sha = createHash("sha256").update(text).digest("hex");
    const r = await call(ca, "send_file", { target: B.address, path });
    expect([r.filename, r.bytes, r.sha256, r.ack, r.mode, r.resumed_from]).toEqual(["report.txt", text.length, sha, `ACK FILE ${text.length} bytes`, "resumable", 0]);
    const rec = await call(cb, "received");
    expect(rec.total).toBe(1);
    expect(createHash("sha256").update(readFileSync(rec.files[0].path)).digest("hex")).toBe(sha);
    const res = await cb.readResource({ uri: `pilot://received/${encodeURIComponent(rec.files[0].name)}` });
    expect((res.contents[0] as { text: string }).text).toBe(text);
    const missing = await ca.callTool({ name: "send_file", arguments: { target: B.address, path: join(tmp, "nope") } });
    expect(missing.isError).toBe(true);
    expect(JSON.parse((missing.content as { text: string }[])[0].text)).toEqual({ code: "not_found", message: `file not found: ${join(tmp, "nope")}`, hint: "check the file path" });
  });

  test("send/recv on a port, publish/subscribe, ping", async () => {
    const recv = call(cb, "recv", { port: 5000, timeout_ms: 20_000, reply: "got it" });
    const sent = await until(() => call(ca, "send", { target: B.address, port: 5000, data: "over port 5000" }).catch(() => null), "recv bound", 15_000);
    expect([sent.response, sent.timeout]).toEqual(["got it", false]);
    const got = await recv;
    expect(got.messages).toEqual([{ from: A.address, data: "over port 5000", bytes: 14 }]);

    const sub = call(ca, "subscribe", { target: B.address, topic: "alerts", count: 1, timeout_ms: 20_000 });
    let ev: Out | null = null;
    void sub.then((x) => (ev = x));
    await until(async () => {
      // until the subscription is in place: until() polls again (and publishes again) meanwhile
      await call(cb, "publish", { target: B.address, topic: "alerts", data: "disk full" });
      return ev;
    }, "event delivered", 15_000);
    expect(ev!.events[0]).toEqual({ topic: "alerts", data: "disk full", bytes: 9 });

    const ping = await call(ca, "ping", { target: B.address, count: 2 });
    expect(ping.results.map((x: Out) => [x.seq, x.bytes, typeof x.rtt_ms, x.error])).toEqual([[0, 6, "number", undefined], [1, 6, "number", undefined]]);
  });

  test("pilotctl info does not load the MCP code", async () => {
    const script = join(tmp, "lazy.ts");
    writeFileSync(script, `
const { run } = await import(${JSON.stringify(resolve(import.meta.dir, "../src/ctl/main.ts"))});
const code = await run(["--json", "info"]);
const loaded = Object.keys(require.cache);
console.error(JSON.stringify({ code, mcp: loaded.filter((k) => k.includes("modelcontextprotocol") || k.includes("/ctl/mcp/")).length, total: loaded.length }));
`);
    const p = Bun.spawn([process.execPath, script], { env: { ...process.env, PILOT_SOCKET: A.socket, HOME: dirname(A.dataDir) }, stdout: "pipe", stderr: "pipe" });
    const [out, err] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
    expect(JSON.parse(out).data.node_id).toBe(A.nodeId);
    const r = JSON.parse(err.trim().split("\n").pop()!);
    expect([r.code, r.mcp]).toEqual([0, 0]);
    expect(r.total).toBeGreaterThan(5);
  });
});
