// The npm package as a user gets it: `npm pack`, install the tarball into a fresh project outside
// the repository, then (1) run a consumer under Node against real daemons from createTestnet and
// (2) type-check consumer files against the published declarations (a wrong field must fail).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

const REPO = resolve(import.meta.dir, "..");
const TSC = join(REPO, "node_modules", ".bin", "tsc");
const work = mkdtempSync(join(tmpdir(), "sdk-pack-"));
const proj = join(work, "consumer");
const hasNode = spawnSync("node", ["--version"]).status === 0;

function sh(cmd: string, args: string[], cwd: string, env: Record<string, string> = {}) {
  const r = spawnSync(cmd, args, { cwd, env: { ...process.env, ...env }, encoding: "utf8", timeout: 240_000 });
  return { code: r.status ?? -1, out: r.stdout ?? "", err: r.stderr ?? "" };
}

let tarball = "";
beforeAll(() => {
  const p = sh("npm", ["pack", "--silent", "--pack-destination", work], REPO);
  if (p.code !== 0) throw new Error(`npm pack failed:\n${p.out}\n${p.err}`);
  tarball = join(work, readdirSync(work).find((f) => f.endsWith(".tgz"))!);
  sh("mkdir", ["-p", proj], work);
  writeFileSync(join(proj, "package.json"), JSON.stringify({ name: "consumer", private: true, type: "module" }));
  const i = sh("npm", ["install", "--prefer-offline", "--no-audit", "--no-fund", "--loglevel=error", tarball], proj);
  if (i.code !== 0) throw new Error(`npm install of the tarball failed:\n${i.out}\n${i.err}`);
}, 300_000);
afterAll(() => rmSync(work, { recursive: true, force: true, maxRetries: 5 }));

const CONSUMER = `
import { createHash } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createTestnet, PilotError } from "pilot-ts";

const out = {};
const net = await createTestnet({ nodes: 2 });
try {
  const [a, b] = net.nodes;
  out.runtime = typeof Bun === "undefined" ? "node" : "bun";
  out.trusted = (await a.pilot.trusted()).map((t) => t.nodeId).includes(b.nodeId);

  const m = await a.pilot.sendMessage(b.hostname, "hello from the package");
  out.ack = m.ack;
  out.inbox = (await b.pilot.inbox()).map((x) => [x.from === a.address, x.type, x.data]);

  const file = join(process.cwd(), "payload.bin");
  const bytes = new Uint8Array(200000).map((_, i) => (i * 13) & 255);
  writeFileSync(file, bytes);
  const want = createHash("sha256").update(bytes).digest("hex");
  let last = 0;
  const sf = await a.pilot.sendFile(b.address, file, { onProgress: (p) => { last = p.sentBytes; } });
  out.file = { sentHash: sf.sha256 === want, progress: last, ack: sf.ack };
  const rec = await b.pilot.received();
  out.fileHashes = rec.map((f) => createHash("sha256").update(readFileSync(f.path)).digest("hex") === want);

  const c = await a.pilot.dial(b.nodeId, 7);
  await c.write("web streams over pilot");
  let echoed = "";
  const reader = c.readable.getReader();
  while (echoed.length < 22) { const { value, done } = await reader.read(); if (done) break; echoed += new TextDecoder().decode(value); }
  await reader.cancel();
  out.echo = echoed;

  const sub = await a.pilot.subscribe(b.address, "t");
  const events = [];
  const reading = (async () => { for await (const ev of sub) { events.push(ev.text); if (ev.text === "last") break; } })();
  for (let i = 0; i < 100 && events.length === 0; i++) {
    await b.pilot.publish(b.address, "t", "early");
    await new Promise((r) => setTimeout(r, 100));
  }
  await b.pilot.publish(b.address, "t", "last");
  await reading;
  out.events = [events[0], events.at(-1)];

  const ac = new AbortController();
  const l = await a.pilot.listen(4300);
  const pending = l.accept({ signal: ac.signal });
  ac.abort();
  try { await pending; out.abort = "resolved"; } catch (e) { out.abort = [e instanceof PilotError, e.code, e.name]; }
  try { await l.accept({ timeoutMs: 50 }); } catch (e) { out.timeout = [e instanceof PilotError, e.code]; }
} finally {
  await net.close();
}
console.log(JSON.stringify(out));
`;

describe("npm package", () => {
  test("the tarball holds the library build, its declarations and the sources", () => {
    const base = join(proj, "node_modules", "pilot-ts");
    for (const f of ["package.json", "lib/index.js", "lib/index.d.ts", "lib/client/pilot.d.ts", "src/main.ts", "examples/agent-answer.ts", "docs/mcp.md"]) {
      expect([f, existsSync(join(base, f))]).toEqual([f, true]);
    }
    expect(existsSync(join(base, "test"))).toBe(false);
  });

  function runConsumer(runtime: string[]): Record<string, any> {
    writeFileSync(join(proj, "consumer.mjs"), CONSUMER);
    const r = sh(runtime[0], [...runtime.slice(1), "consumer.mjs"], proj, { PILOT_BUN: process.execPath });
    if (r.code !== 0) throw new Error(`consumer failed (${r.code}):\n${r.out}\n${r.err}`);
    return JSON.parse(r.out.trim().split("\n").pop()!);
  }
  function check(out: Record<string, any>): void {
    expect(out.trusted).toBe(true);
    expect(out.ack).toBe("ACK TEXT 22 bytes");
    expect(out.inbox).toEqual([[true, "text", "hello from the package"]]);
    expect(out.file).toEqual({ sentHash: true, progress: 200000, ack: "ACK FILE 200000 bytes" });
    expect(out.fileHashes).toEqual([true]);
    expect(out.echo).toBe("web streams over pilot");
    expect(out.events).toEqual(["early", "last"]);
    expect(out.abort).toEqual([true, "aborted", "PilotError"]);
    expect(out.timeout).toEqual([true, "timeout"]);
  }

  test.skipIf(!hasNode)("a Node consumer talks to real daemons started with createTestnet", () => {
    const out = runConsumer(["node"]);
    expect(out.runtime).toBe("node");
    check(out);
  }, 120_000);

  test("the same consumer under Bun (the package's lib/ build, not our sources)", () => {
    const out = runConsumer([process.execPath]);
    expect(out.runtime).toBe("bun");
    check(out);
  }, 120_000);

  test("tsc type-checks a consumer against the published declarations; a wrong field is a compile error", () => {
    writeFileSync(join(proj, "tsconfig.json"), JSON.stringify({
      compilerOptions: { target: "ES2022", module: "NodeNext", moduleResolution: "NodeNext", lib: ["ESNext", "DOM"], types: [], strict: true, noEmit: true, skipLibCheck: false },
      files: ["good.ts"],
    }));
    writeFileSync(join(proj, "good.ts"), `
import { connect, createTestnet, PilotError, type ErrorCode, type NodeInfo, type StreamEvent } from "pilot-ts";
export async function main(): Promise<void> {
  const p = await connect({ socket: "/tmp/x.sock", signal: AbortSignal.timeout(1000) });
  const info: NodeInfo = await p.info();
  const id: number = info.nodeId;
  const c = await p.dial(info.address, 7);
  const rs: ReadableStream<Uint8Array> = c.readable;
  const ws: WritableStream<Uint8Array> = c.writable;
  for await (const chunk of c) chunk satisfies Uint8Array;
  const sub = await p.subscribe(id, "*");
  for await (const ev of sub) { const e: StreamEvent = ev; e.topic.toUpperCase(); }
  const net = await createTestnet({ nodes: 2 });
  const sent = await net.nodes[0].pilot.sendFile(net.nodes[1].address, { name: "f", data: new Uint8Array(1) }, { onProgress: (x) => x.sentBytes + x.totalBytes + (x.phase === "sending" ? x.ackedBytes : x.hashedBytes) });
  const mode: "resumable" | "single-frame" = sent.mode;
  const ack: string = sent.ack;
  void mode; void ack; void sent.resumedFrom;
  try { await p.pending(); } catch (e) { if (e instanceof PilotError) { const code: ErrorCode = e.code; void code; void e.hint; } }
  void rs; void ws;
}
`);
    const good = sh(TSC, ["-p", "."], proj);
    expect(good.out + good.err).toBe("");
    expect(good.code).toBe(0);

    writeFileSync(join(proj, "tsconfig.json"), JSON.stringify({
      compilerOptions: { target: "ES2022", module: "NodeNext", moduleResolution: "NodeNext", lib: ["ESNext", "DOM"], types: [], strict: true, noEmit: true },
      files: ["bad.ts"],
    }));
    writeFileSync(join(proj, "bad.ts"), `
import { connect, PilotError } from "pilot-ts";
export async function main(): Promise<void> {
  const p = await connect();
  const info = await p.info();
  const x: string = info.nodeID;
  const e = new PilotError("no_such_code", "m");
  void x; void e;
}
`);
    const bad = sh(TSC, ["-p", "."], proj);
    expect(bad.code).not.toBe(0);
    expect(bad.out).toContain("Property 'nodeID' does not exist on type 'NodeInfo'");
    expect(bad.out).toContain(`Argument of type '"no_such_code"' is not assignable to parameter of type 'ErrorCode'`);
  }, 60_000);
});
