// The rendezvous dashboard in a real headless Chromium (DevTools protocol over a websocket):
// a rendezvous with registered nodes (two over the wire with tags, a task executor and a trust
// link; the rest bulk-loaded, some offline, some tagged), the page at `/` loads its data, the
// numbers and rows it renders are checked, the tag filter and the pager are driven through the
// page, and screenshots (wide screen and phone) are written under the test's temp dir.
// Skips with a message when Chromium is not installed (`apt-get install chromium`).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { generateKeyPairSync, randomBytes, sign as edSign } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { RegistryClient } from "../src/daemon/registry-client.ts";
import { startRendezvous, type Rendezvous } from "../src/server/main.ts";
import type { NodeRec } from "../src/server/store.ts";
import { Browser, findChromium } from "./dashboard-cdp.ts";
import { until } from "./helpers/until.ts";

const CHROMIUM = findChromium();
if (!CHROMIUM) console.warn("dashboard-page: SKIPPED — no Chromium found (apt-get install -y chromium, or set PILOT_TEST_CHROMIUM)");

const BULK = 118; // bulk-loaded nodes, ids 1..118
const hex = (n: number) => n.toString(16).toUpperCase().padStart(4, "0");
const addr = (id: number) => `0:0000.${hex(id >>> 16)}.${hex(id & 0xffff)}`;

function edKey() {
  const { publicKey, privateKey } = generateKeyPairSync("ed25519");
  return { pub: Buffer.from(publicKey.export({ format: "jwk" }).x!, "base64url").toString("base64"), priv: privateKey };
}

describe.skipIf(!CHROMIUM)("dashboard page in headless Chromium", () => {
  let dir: string;
  let rv: Rendezvous;
  let br: Browser;
  let base: string;
  const clients: RegistryClient[] = [];
  let wireIds: number[] = [];
  // model of what was registered
  const offline = new Set<number>();
  const gpu = new Set<number>();
  const tags = new Set<string>();

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "pilot-dashboard-"));
    rv = await startRendezvous({ "registry-addr": "127.0.0.1:0", "beacon-addr": "127.0.0.1:0", http: "127.0.0.1:0", store: join(dir, "reg.db"), quiet: true, noRateLimit: true });
    const now = Date.now();
    const nodes: NodeRec[] = [];
    for (let id = 1; id <= BULK; id++) {
      const t: string[] = [];
      if (id % 10 === 0) { t.push("gpu"); gpu.add(id); }
      if (id % 4 === 0) t.push("storage");
      if (id === 33) t.push("llm-inference");
      for (const x of t) tags.add(x);
      const off = id % 6 === 0;
      if (off) offline.add(id);
      nodes.push({
        id, owner: "", publicKey: randomBytes(32).toString("base64"), realAddr: `198.51.100.${id}:4000`, networks: [0], public: id % 2 === 0,
        lastSeen: off ? now - 10 * 60_000 : now, hostname: `host-${id}`, tags: t, polo: id * 3, taskExec: false, seq: id, strict: false,
      });
    }
    await rv.registry.store.bulkLoadNodes(nodes);
    // A private network with 10 members, 2 of them offline (6 and 12... only ids ≤ 10 here: 6).
    await rv.registry.store.tx(async (t) => t.putNetwork({ id: 1, name: "research", joinRule: "open", token: "", members: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], created: now }));
    // Two nodes over the wire: tags, task executor, one trust link between them.
    for (let i = 0; i < 2; i++) {
      const k = edKey();
      const cl = new RegistryClient(`127.0.0.1:${rv.registryPort}`, { sign: (m) => edSign(null, Buffer.from(m), k.priv).toString("base64") });
      await cl.connect();
      clients.push(cl);
      const r = await cl.register(k.pub, "203.0.113.7:5000", "", `wire-${i}`);
      wireIds.push(r.node_id as number);
    }
    await clients[0].setTags(wireIds[0], ["gpu", "edge-agent"]);
    gpu.add(wireIds[0]);
    tags.add("gpu").add("edge-agent");
    await clients[0].setTaskExec(wireIds[0], true);
    await clients[0].reportTrust(wireIds[0], wireIds[1]);
    br = await Browser.launch(CHROMIUM!);
    base = `http://127.0.0.1:${rv.httpPort}`;
  }, 60000);

  afterAll(async () => {
    for (const c of clients) c.close();
    await br?.close();
    await rv?.stop();
    // the screenshots stay for inspection; only the store goes
    rmSync(join(dir, "reg.db"), { force: true });
  });

  const total = () => BULK + 2;
  const loads = () => br.eval<number>(`Number(document.body.dataset.loads || 0)`);
  async function waitLoaded(after: number): Promise<void> {
    await until(async () => (await loads()) > after && (await br.eval<string>(`document.body.dataset.state`)) === "ready", "page data loaded");
  }
  const text = (id: string) => br.eval<string>(`document.getElementById(${JSON.stringify(id)}).textContent`);
  const rows = () => br.eval<string[][]>(`[...document.querySelectorAll("#nodes tbody tr")].map(tr => [...tr.cells].map(td => td.textContent))`);

  test("renders the totals, networks and the first page of nodes", async () => {
    expect(wireIds).toEqual([BULK + 1, BULK + 2]);
    await br.viewport(1280, 900, false);
    await br.navigate(`${base}/`);
    await waitLoaded(0);
    expect(await text("c-online")).toBe(String(total() - offline.size));
    expect(await text("c-total")).toBe(String(total()));
    expect(await text("c-trust")).toBe("1");
    expect(await text("c-tags")).toBe(String(tags.size));
    expect(await text("c-tasks")).toBe("1");
    expect(Number((await text("c-requests")).replace(/,/g, ""))).toBeGreaterThanOrEqual(5); // 2 register, set_tags, set_task_exec, report_trust
    const nets = await br.eval<string[][]>(`[...document.querySelectorAll("#networks tbody tr")].map(tr => [...tr.cells].map(td => td.textContent))`);
    expect(nets).toEqual([
      ["0", "backbone", String(total()), String(total() - offline.size)],
      ["1", "research", "10", "9"],
    ]);
    const r = await rows();
    expect(r.length).toBe(50);
    expect(r[0]).toEqual([addr(1), "online", "3", "0", "", "–"]);
    expect(r[5]).toEqual([addr(6), "offline", "18", "0", "", "–"]);
    expect(r[9]).toEqual([addr(10), "online", "30", "0", "#gpu", "–"]);
    expect(await text("page-info")).toBe("Page 1 of 3");
    expect(await text("nodes-count")).toBe(`(${total()})`);
    expect(await br.eval<boolean>(`document.getElementById("prev").disabled`)).toBe(true);
    // Privacy: nothing on the page names an endpoint or a hostname.
    const html = await br.eval<string>(`document.documentElement.outerHTML`);
    expect(html).not.toContain("198.51.100.");
    expect(html).not.toContain("203.0.113.7");
    expect(html).not.toContain("host-1");
    const shot = join(dir, "dashboard-wide.png");
    writeFileSync(shot, await br.screenshot());
    console.log(`dashboard screenshot (1280 wide): ${shot}`);
  });

  test("the pager moves through server-side pages", async () => {
    let n = await loads();
    await br.eval(`document.getElementById("next").click()`);
    await waitLoaded(n);
    expect(await text("page-info")).toBe("Page 2 of 3");
    expect((await rows())[0][0]).toBe(addr(51));
    n = await loads();
    await br.eval(`document.getElementById("next").click()`);
    await waitLoaded(n);
    const last = await rows();
    expect(await text("page-info")).toBe("Page 3 of 3");
    expect(last.length).toBe(total() - 100);
    expect(last[last.length - 1]).toEqual([addr(wireIds[1]), "online", "0", "1", "", "–"]);
    expect(last[last.length - 2]).toEqual([addr(wireIds[0]), "online", "0", "1", "#gpu#edge-agent", "executor"]);
    expect(await br.eval<boolean>(`document.getElementById("next").disabled`)).toBe(true);
    expect(await br.eval<string>(`location.search`)).toBe("?page=3");
    // a bigger page size goes back to page 1
    n = await loads();
    await br.eval(`(() => { const s = document.getElementById("per"); s.value = "100"; s.dispatchEvent(new Event("change")); })()`);
    await waitLoaded(n);
    expect(await text("page-info")).toBe("Page 1 of 2");
    expect((await rows()).length).toBe(100);
    expect(await br.eval<string>(`location.search`)).toBe("?per=100");
    n = await loads();
    await br.eval(`(() => { const s = document.getElementById("per"); s.value = "50"; s.dispatchEvent(new Event("change")); })()`);
    await waitLoaded(n);
  });

  test("the tag filter is applied on the server and resets to page 1", async () => {
    const n = await loads();
    await br.eval(`(() => { const i = document.getElementById("tag-filter"); i.value = "gpu"; document.querySelector("#filter button[type=submit]").click(); })()`);
    await waitLoaded(n);
    const r = await rows();
    expect(r.map((x) => x[0])).toEqual([...gpu].sort((a, b) => a - b).map(addr));
    expect(r.every((x) => x[4].includes("#gpu"))).toBe(true);
    expect(await text("nodes-count")).toBe(`(${gpu.size} matching)`);
    expect(await text("page-info")).toBe("Page 1 of 1");
    // clicking a tag chip filters by that tag
    const m = await loads();
    await br.eval(`[...document.querySelectorAll("#nodes .tag")].find(b => b.textContent === "#edge-agent").click()`);
    await waitLoaded(m);
    expect((await rows()).map((x) => x[0])).toEqual([addr(wireIds[0])]);
    const e = await loads();
    await br.eval(`(() => { const i = document.getElementById("tag-filter"); i.value = "no-such-tag"; document.querySelector("#filter button[type=submit]").click(); })()`);
    await waitLoaded(e);
    expect(await text("nodes-count")).toBe("(0 matching)");
    expect((await rows())[0][0]).toContain("No node has a tag matching");
    const c = await loads();
    await br.eval(`document.getElementById("clear").click()`);
    await waitLoaded(c);
    expect(await text("nodes-count")).toBe(`(${total()})`);
  });

  test("fits a phone screen", async () => {
    await br.viewport(390, 844, true);
    const n = await loads();
    await br.navigate(`${base}/?tag=storage`);
    await waitLoaded(0);
    expect(await loads()).toBeGreaterThan(0);
    void n;
    // the cards reflow: the page itself never scrolls sideways (only the tables' own boxes do)
    expect(await br.eval<number>(`document.documentElement.scrollWidth`)).toBeLessThanOrEqual(390);
    expect(await text("nodes-count")).toBe(`(${Math.floor(BULK / 4)} matching)`);
    const shot = join(dir, "dashboard-phone.png");
    writeFileSync(shot, await br.screenshot());
    console.log(`dashboard screenshot (390 phone): ${shot}`);
    expect(br.pageErrors()).toEqual([]);
  });
});
