// Rendezvous HTTP API behind the dashboard: /api/stats (reference keys, capped lists), /api/nodes
// (server-side paging and tag filter, input errors), the SVG badges (parsed as XML, right
// numbers), the page and its assets, and the registry's /metrics through a strict parser.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { abbreviate } from "../src/server/dashboard/badge.ts";
import { startHttp } from "../src/server/http.ts";
import { startRendezvous, type Rendezvous } from "../src/server/main.ts";
import type { NodeRec } from "../src/server/store.ts";
import { parseProm, sampleValue } from "./metrics-parse.ts";

// ---- a strict little XML well-formedness checker (elements, attributes, entities, nesting)
interface XmlEl { name: string; attrs: Record<string, string>; children: XmlEl[]; text: string }
function parseXml(src: string): XmlEl {
  let i = 0;
  const decode = (s: string) => {
    if (/&(?!(amp|lt|gt|quot|apos|#\d+|#x[0-9a-fA-F]+);)/.test(s)) throw new Error(`bad entity in ${JSON.stringify(s)}`);
    return s.replace(/&(amp|lt|gt|quot|apos);/g, (_, e) => ({ amp: "&", lt: "<", gt: ">", quot: '"', apos: "'" })[e as "amp"]);
  };
  const root: XmlEl = { name: "#doc", attrs: {}, children: [], text: "" };
  const stack: XmlEl[] = [root];
  if (src.startsWith("<?xml")) i = src.indexOf("?>") + 2;
  while (i < src.length) {
    if (src[i] !== "<") {
      const j = src.indexOf("<", i);
      const t = src.slice(i, j < 0 ? src.length : j);
      if (t.includes(">")) throw new Error("stray >");
      if (stack.length === 1 && t.trim()) throw new Error("text outside the root element");
      stack[stack.length - 1].text += decode(t);
      i = j < 0 ? src.length : j;
      continue;
    }
    if (src.startsWith("</", i)) {
      const m = /^<\/([A-Za-z_][\w:.-]*)\s*>/.exec(src.slice(i));
      if (!m) throw new Error(`bad end tag at ${i}`);
      const top = stack.pop()!;
      if (top.name !== m[1]) throw new Error(`</${m[1]}> closes <${top.name}>`);
      i += m[0].length;
      continue;
    }
    const m = /^<([A-Za-z_][\w:.-]*)/.exec(src.slice(i));
    if (!m) throw new Error(`bad tag at ${i}`);
    const el: XmlEl = { name: m[1], attrs: {}, children: [], text: "" };
    i += m[0].length;
    for (;;) {
      const ws = /^\s*/.exec(src.slice(i))![0];
      i += ws.length;
      if (src.startsWith("/>", i)) { i += 2; stack[stack.length - 1].children.push(el); break; }
      if (src[i] === ">") { i++; stack[stack.length - 1].children.push(el); stack.push(el); break; }
      if (!ws) throw new Error(`attribute without preceding space in <${el.name}>`);
      const a = /^([A-Za-z_][\w:.-]*)="([^"<]*)"/.exec(src.slice(i));
      if (!a) throw new Error(`bad attribute in <${el.name}> at ${JSON.stringify(src.slice(i, i + 20))}`);
      if (a[1] in el.attrs) throw new Error(`duplicate attribute ${a[1]}`);
      el.attrs[a[1]] = decode(a[2]);
      i += a[0].length;
    }
    if (stack.length === 1 && root.children.length > 1) throw new Error("more than one root element");
  }
  if (stack.length !== 1) throw new Error(`unclosed <${stack[stack.length - 1].name}>`);
  if (root.children.length !== 1) throw new Error("no root element");
  return root.children[0];
}
const allText = (e: XmlEl): string[] => [e.text, ...e.children.flatMap(allText)].filter((x) => x);

const N = 1234; // bulk-loaded nodes
describe("rendezvous dashboard API", () => {
  let dir: string;
  let rv: Rendezvous;
  let base: string;
  let small: { port: number; stop(): void };
  const now = Date.now();

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "pilot-dash-api-"));
    rv = await startRendezvous({ "registry-addr": "127.0.0.1:0", "beacon-addr": "127.0.0.1:0", http: "127.0.0.1:0", store: join(dir, "reg.db"), quiet: true });
    const nodes: NodeRec[] = [];
    for (let id = 1; id <= N; id++) {
      nodes.push({
        id, owner: `owner-${id}@example.com`, publicKey: randomBytes(32).toString("base64"), realAddr: `192.0.2.${id % 250}:${4000 + id}`, networks: [0], public: true,
        lastSeen: id <= 1000 ? now : now - 3_600_000, hostname: `h${id}`, tags: id % 100 === 0 ? ["GPU-box", "x"] : id % 7 === 0 ? ["x"] : [],
        polo: id, taskExec: id % 500 === 0, seq: id, strict: false,
      });
    }
    await rv.registry.store.bulkLoadNodes(nodes);
    await rv.registry.store.tx(async (t) => {
      for (let k = 2; k <= 6; k++) { await t.grantAdd(1, k); await t.grantAdd(k, 1); }
    });
    base = `http://127.0.0.1:${rv.httpPort}`;
    small = startHttp(rv.registry, rv.beacon, "127.0.0.1", 0, { dashboard: { statsNodeCap: 10, statsEdgeCap: 2, ttlMs: 0 } });
  });
  afterAll(async () => {
    small?.stop();
    await rv?.stop();
    rmSync(dir, { recursive: true, force: true, maxRetries: 5 });
  });

  test("/api/stats has the reference's keys and numbers, nothing private", async () => {
    const r = await fetch(`${base}/api/stats`);
    expect(r.headers.get("access-control-allow-origin")).toBe("*");
    const raw = await r.text();
    const s = JSON.parse(raw);
    expect(Object.keys(s).slice(0, 10)).toEqual(["total_nodes", "active_nodes", "total_trust_links", "total_requests", "unique_tags", "task_executors", "uptime_secs", "networks", "nodes", "edges"]);
    expect(s.total_nodes).toBe(N);
    expect(s.active_nodes).toBe(1000);
    expect(s.total_trust_links).toBe(5);
    expect(s.unique_tags).toBe(2);
    expect(s.task_executors).toBe(2);
    expect(s.networks).toEqual([{ id: 0, name: "backbone", members: N, online_members: 1000 }]);
    // default cap 1000: first 1000 by address, flagged
    expect(s.nodes.length).toBe(1000);
    expect(s.nodes_truncated).toBe(true);
    expect(s.nodes[0]).toEqual({ address: "0:0000.0000.0001", tags: [], online: true, trust_links: 5, task_exec: false, polo_score: 1 });
    expect(s.nodes[99]).toEqual({ address: "0:0000.0000.0064", tags: ["GPU-box", "x"], online: true, trust_links: 0, task_exec: false, polo_score: 100 });
    expect(s.edges.length).toBe(5);
    expect(s.edges[0]).toEqual({ source: "0:0000.0000.0001", target: "0:0000.0000.0002" });
    for (const bad of ["192.0.2.", "owner-", "public_key", "hostname", "\"h1\"", "real_addr"]) expect(raw).not.toContain(bad);
    // the page's poll leaves the lists out
    const lite = (await (await fetch(`${base}/api/stats?nodes=0`)).json()) as any;
    expect(lite.nodes).toEqual([]);
    expect(lite.total_nodes).toBe(N);
    expect(lite.top_tags[0]).toEqual({ tag: "x", nodes: 176 + 12 - 1 });
    // caps are configurable
    const c = (await (await fetch(`http://127.0.0.1:${small.port}/api/stats`)).json()) as any;
    expect([c.nodes.length, c.nodes_truncated, c.edges.length, c.edges_truncated]).toEqual([10, true, 2, true]);
  });

  test("/api/nodes pages and filters on the server", async () => {
    const p = (await (await fetch(`${base}/api/nodes?page=3&per=100`)).json()) as any;
    expect([p.page, p.per, p.pages, p.total, p.nodes.length]).toEqual([3, 100, 13, N, 100]);
    expect(p.nodes[0].address).toBe("0:0000.0000.00C9"); // node 201
    const last = (await (await fetch(`${base}/api/nodes?page=13&per=100`)).json()) as any;
    expect(last.nodes.length).toBe(34);
    expect(last.nodes[33]).toMatchObject({ address: "0:0000.0000.04D2", online: false, polo_score: N });
    const beyond = (await (await fetch(`${base}/api/nodes?page=99&per=100`)).json()) as any;
    expect(beyond.nodes).toEqual([]);
    // tag filter: case-insensitive substring, "#" prefix accepted
    const g = (await (await fetch(`${base}/api/nodes?tag=%23gpu&per=5&page=2`)).json()) as any;
    expect([g.total, g.pages, g.tag]).toEqual([12, 3, "gpu"]);
    expect(g.nodes.map((n: any) => n.polo_score)).toEqual([600, 700, 800, 900, 1000]);
    const again = (await (await fetch(`${base}/api/nodes?tag=GPU&per=5&page=3`)).json()) as any; // cached filter, other page
    expect(again.nodes.map((n: any) => n.polo_score)).toEqual([1100, 1200]);
    const def = (await (await fetch(`${base}/api/nodes`)).json()) as any;
    expect([def.page, def.per, def.nodes.length]).toEqual([1, 50, 50]);
  });

  test("/api/nodes rejects bad input with a code and a hint", async () => {
    for (const [q, code] of [["per=0", "bad_per"], ["per=201", "bad_per"], ["page=0", "bad_page"], ["page=abc", "bad_page"], ["page=-1", "bad_page"], [`tag=${"a".repeat(65)}`, "bad_tag"], ["tag=gpu%0Ax", "bad_tag"]]) {
      const r = await fetch(`${base}/api/nodes?${q}`);
      expect(r.status).toBe(400);
      const j = (await r.json()) as any;
      expect(j.code).toBe(code);
      expect(typeof j.hint).toBe("string");
    }
  });

  test("badges are valid SVG with the right labels and numbers", async () => {
    const want: Record<string, [string, string]> = {
      nodes: ["online nodes", "1.0K"],
      trust: ["trust links", "5"],
      tags: ["tags", "2"],
      "task-executors": ["task executors", "2"],
    };
    for (const [kind, [label, value]] of Object.entries(want)) {
      const r = await fetch(`${base}/api/badge/${kind}`);
      expect(r.status).toBe(200);
      expect(r.headers.get("content-type")).toBe("image/svg+xml");
      expect(r.headers.get("cache-control")).toBe("no-cache, no-store, must-revalidate");
      expect(r.headers.get("access-control-allow-origin")).toBe("*");
      const svg = parseXml(await r.text());
      expect(svg.name).toBe("svg");
      expect(svg.attrs.xmlns).toBe("http://www.w3.org/2000/svg");
      expect(Number(svg.attrs.width)).toBeGreaterThan(0);
      expect(svg.attrs["aria-label"]).toBe(`${label}: ${value}`);
      expect(allText(svg)).toEqual([`${label}: ${value}`, label, label, value, value]);
    }
    const req = parseXml(await (await fetch(`${base}/api/badge/requests`)).text());
    expect(req.attrs["aria-label"]).toMatch(/^requests: \d+$/);
    expect((await fetch(`${base}/api/badge/other`)).status).toBe(404);
  });

  test("badge numbers are abbreviated like the reference", () => {
    expect([0, 999, 1000, 1234, 999_999, 3_400_000, 5_600_000_000].map(abbreviate)).toEqual(["0", "999", "1.0K", "1.2K", "1000.0K", "3.4M", "5.6B"]);
  });

  test("the page and its assets are served from the binary, with a strict CSP", async () => {
    const r = await fetch(`${base}/`);
    expect(r.headers.get("content-type")).toBe("text/html; charset=utf-8");
    expect(r.headers.get("content-security-policy")).toContain("script-src 'self'");
    const html = await r.text();
    expect(html).toContain(`<script src="/assets/dashboard.js" defer></script>`);
    expect(html).not.toMatch(/https?:\/\/(?!www\.w3\.org)/); // no CDN
    const js = await fetch(`${base}/assets/dashboard.js`);
    expect(js.headers.get("content-type")).toBe("text/javascript; charset=utf-8");
    new Function(await js.text()); // parses as JavaScript
    expect((await fetch(`${base}/assets/dashboard.css`)).headers.get("content-type")).toBe("text/css; charset=utf-8");
    expect((await fetch(`${base}/nope`)).status).toBe(404);
  });

  test("registry /metrics passes the strict exposition parser", async () => {
    const r = await fetch(`${base}/metrics`);
    expect(r.headers.get("content-type")).toBe("text/plain; version=0.0.4; charset=utf-8");
    const fams = parseProm(await r.text());
    expect(sampleValue(fams, "pilot_nodes_total")).toBe(N);
    expect(sampleValue(fams, "pilot_nodes_online")).toBe(1000);
    expect(sampleValue(fams, "pilot_trust_links")).toBe(5);
    expect(fams.get("pilot_request_duration_seconds")?.type).toBe("histogram");
    expect(sampleValue(fams, "pilot_beacon_messages_total", { kind: "discover" })).toBe(0);
  });
});
