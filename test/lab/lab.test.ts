// Network lab (root only): real daemons and a real rendezvous in network namespaces behind real
// iptables NATs (harness.ts), plus a user-space impairing pipe (impair.ts) for fault injection.
// Each scenario: trust handshake + approve, echo, data-exchange message, stream transfer with
// SHA-256, pub/sub event, and the tunnel path each side reports (Info peer_list[].path).
// The path table is printed at the end (and written to $PILOT_LAB_REPORT as JSON when set);
// docs/lab.md carries a copy.
import { until as untilShared } from "../helpers/until.ts";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Driver, type DriverConn } from "../../src/client/driver.ts";
import { parseAddr } from "../../src/proto/addr.ts";
import { encodeFrame, TYPE_TEXT } from "../../src/daemon/services/dataexchange.ts";
import { encodeEvent, EventReader } from "../../src/daemon/services/eventstream.ts";
import { Lab, labUnavailable, type LabDaemon, type NatKind } from "./harness.ts";

const why = labUnavailable();
if (why) console.warn(`lab: skipped (${why})`);

let lab: Lab;
const drivers: Driver[] = [];
interface Row { scenario: string; a: string; b: string; pathAtoB: string; pathBtoA: string; dialMs: number; bytes: number; transferMs: number; drops?: number }
const rows: Row[] = [];

async function drv(d: LabDaemon): Promise<Driver> {
  const x = await Driver.connect(d.socket, { timeoutMs: 10000 });
  drivers.push(x);
  return x;
}

const until = <T>(fn: () => Promise<T | null | undefined | false>, what: string, ms = 20000) => untilShared(fn, what, ms, 150);

const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

async function trust(a: LabDaemon, b: LabDaemon): Promise<void> {
  const da = await drv(a);
  const db = await drv(b);
  expect((await da.handshake(b.nodeId, "lab")).status).toBe("sent");
  await until(async () => ((await db.pending()).pending as any[]).some((p) => p.node_id === a.nodeId), `${b.name} sees ${a.name}'s request`, 60000);
  expect((await db.approve(a.nodeId)).status).toBe("approved");
  await until(async () => ((await da.trusted()).trusted as any[]).some((p) => p.node_id === b.nodeId), `${a.name} trusts ${b.name}`, 60000);
  da.close();
  db.close();
}

async function echo(a: LabDaemon, b: LabDaemon, msg: string, timeoutMs = 45000): Promise<number> {
  const da = await drv(a);
  const t0 = performance.now();
  const c = await da.dial(parseAddr(b.address), 7, { timeoutMs });
  const ms = performance.now() - t0;
  await c.write(msg);
  let got = "";
  while (got.length < msg.length) {
    const ch = await c.read({ timeoutMs: 60000 }); // generous: the impaired link can stall a segment for many RTOs
    if (!ch) break;
    got += new TextDecoder().decode(ch);
  }
  expect(got).toBe(msg);
  c.close();
  da.close();
  return ms;
}

/** Stream `size` random bytes a → b (raw IPC listener on b); SHA-256 compared; returns ms. */
async function transfer(a: LabDaemon, b: LabDaemon, port: number, size: number): Promise<number> {
  const da = await drv(a);
  const db = await drv(b);
  const l = await db.listen(port);
  const data = randomBytes(size);
  const t0 = performance.now();
  const dialing = da.dial(parseAddr(b.address), port, { timeoutMs: 45000 });
  const srv = await l.accept({ timeoutMs: 45000 });
  const cli = await dialing;
  const h = createHash("sha256");
  let got = 0;
  const recv = (async () => {
    while (got < size) {
      const ch = await srv.read({ timeoutMs: 60000 }).catch((e) => { throw new Error(`${b.name}: read stalled after ${got}/${size} bytes: ${e.message}`); });
      if (!ch) break;
      h.update(ch);
      got += ch.length;
    }
  })();
  await cli.write(data);
  await recv;
  const ms = performance.now() - t0;
  expect(got).toBe(size);
  expect(h.digest("hex")).toBe(sha(data));
  cli.close();
  l.close();
  da.close();
  db.close();
  return ms;
}

async function dataExchange(a: LabDaemon, b: LabDaemon): Promise<void> {
  const da = await drv(a);
  const text = `hello from ${a.name} ${Date.now()}`;
  const c = await da.dial(parseAddr(b.address), 1001, { timeoutMs: 45000 });
  await c.write(encodeFrame(TYPE_TEXT, new TextEncoder().encode(text)));
  const inbox = join(b.home, ".pilot", "inbox");
  await until(async () => {
    if (!existsSync(inbox)) return null;
    return readdirSync(inbox).some((f) => JSON.parse(readFileSync(join(inbox, f), "utf8")).data === text);
  }, `${b.name} inbox has the message`, 60000);
  c.close();
  da.close();
}

async function pubsub(a: LabDaemon, b: LabDaemon): Promise<void> {
  const da = await drv(a);
  const topic = `lab-${a.name}`;
  const sub = await da.dial(parseAddr(b.address), 1002, { timeoutMs: 45000 });
  await sub.write(encodeEvent(topic));
  const pub = await da.dial(parseAddr(b.address), 1002, { timeoutMs: 45000 });
  await pub.write(encodeEvent(topic));
  // both subscriptions have reached b's broker (the publication follows on pub's own stream)
  const db = await drv(b);
  await until(async () => {
    const list = (await db.info()).conn_list as any[];
    return list.filter((c) => c.local_port === 1002 && c.remote_addr === a.address && c.state === "ESTABLISHED" && c.bytes_recv > 0).length >= 2;
  }, `both subscriptions at ${b.name}`, 60000);
  await pub.write(encodeEvent(topic, new TextEncoder().encode("event-" + a.name)));
  const got: string[] = [];
  const reader = new EventReader((e) => got.push(new TextDecoder().decode(e.payload)));
  for (let i = 0; i < 20 && got.length === 0; i++) {
    const ch = await sub.read({ timeoutMs: 60000 });
    if (!ch) break;
    reader.push(ch);
  }
  expect(got).toEqual(["event-" + a.name]);
  sub.close();
  pub.close();
  da.close();
}

async function paths(a: LabDaemon, b: LabDaemon): Promise<[string, string]> {
  const pa = ((await (await drv(a)).info()).peer_list as any[]).find((p) => p.node_id === b.nodeId);
  const pb = ((await (await drv(b)).info()).peer_list as any[]).find((p) => p.node_id === a.nodeId);
  return [pa?.path ?? "none", pb?.path ?? "none"];
}

/** The whole scenario between a (dialer) and b; `expectRelay` says which path must result. */
async function scenario(name: string, a: LabDaemon, b: LabDaemon, size: number, expectRelay: boolean, port: number): Promise<Row> {
  await trust(a, b);
  const dialMs = await echo(a, b, `ping ${name}`);
  await dataExchange(a, b);
  const transferMs = await transfer(a, b, port, size);
  await pubsub(a, b);
  const [ab, ba] = await paths(a, b);
  const row: Row = { scenario: name, a: a.nat, b: b.nat, pathAtoB: ab, pathBtoA: ba, dialMs: Math.round(dialMs), bytes: size, transferMs: Math.round(transferMs) };
  const drops = [a, b].filter((d) => d.router).reduce((n, d) => n + lab.unsolicitedDrops(d.router), 0);
  if (a.router || b.router) row.drops = drops;
  rows.push(row);
  if (expectRelay) {
    expect(ab).toBe("relayed");
    expect(ba).toBe("relayed");
  } else {
    // "punched" vs "direct" depends on whether a PunchCommand matched an existing entry; both
    // mean the frames travel straight between the NAT mappings, never through the beacon.
    expect(["direct", "punched"]).toContain(ab);
    expect(["direct", "punched"]).toContain(ba);
  }
  return row;
}

const MiB = 1024 * 1024;
const D: Record<string, LabDaemon> = {};

beforeAll(async () => {
  if (why) return;
  lab = new Lab();
  await lab.startRendezvous();
  const spec: [string, NatKind | "none"][] = [
    ["pub1", "none"], ["pub2", "none"],
    ["cone1", "fullcone"], ["pub3", "none"],
    ["prc1", "restricted"], ["pub4", "none"],
    ["prc2", "restricted"], ["prc3", "restricted"],
    ["sym1", "symmetric"], ["sym2", "symmetric"],
    ["sym3", "symmetric"], ["cone2", "fullcone"],
  ];
  for (const [n, k] of spec) D[n] = await lab.startDaemon(n, k);
}, 120_000);

afterAll(async () => {
  for (const d of drivers) d.close();
  if (rows.length) {
    console.log("lab path table:\n" + rows.map((r) => JSON.stringify(r)).join("\n"));
    if (process.env.PILOT_LAB_REPORT) writeFileSync(process.env.PILOT_LAB_REPORT, JSON.stringify(rows, null, 2));
  }
  await lab?.destroy();
}, 60_000);

describe.skipIf(why !== null)("network lab: NAT traversal", () => {
  test("public <-> public: direct", async () => {
    await scenario("public-public", D.pub1, D.pub2, 4 * MiB, false, 2001);
  }, 90_000);

  test("full-cone NAT -> public and public -> full-cone NAT: direct", async () => {
    await scenario("fullcone-public", D.cone1, D.pub3, 4 * MiB, false, 2002);
    // and the public side dialing into the cone (endpoint-independent filtering lets it in)
    await echo(D.pub3, D.cone1, "into the cone");
  }, 90_000);

  test("public -> port-restricted NAT: the callee's punch opens its NAT", async () => {
    await scenario("public-restricted", D.pub4, D.prc1, 4 * MiB, false, 2003);
  }, 90_000);

  test("port-restricted NAT <-> port-restricted NAT: hole punch, 64 MiB SHA-256", async () => {
    const r = await scenario("restricted-restricted", D.prc2, D.prc3, 64 * MiB, false, 2004);
    // Real NATs in the way: the routers dropped unsolicited packets before the punch opened them.
    expect(r.drops ?? 0).toBeGreaterThan(0);
  }, 180_000);

  test("symmetric NAT <-> symmetric NAT: falls back to the beacon relay", async () => {
    await scenario("symmetric-symmetric", D.sym1, D.sym2, 2 * MiB, true, 2005);
  }, 120_000);

  test("symmetric NAT -> full-cone NAT: direct (the cone learns the symmetric mapping)", async () => {
    await scenario("symmetric-fullcone", D.sym3, D.cone2, 2 * MiB, false, 2006);
  }, 90_000);
});

describe.skipIf(why !== null)("network lab: fault injection", () => {
  test("impaired link (50-200 ms delay, 5% loss, 3% dup, 5% reorder): transfers intact", async () => {
    const a = await lab.startDaemon("imp-a", "none");
    const b = await lab.startDaemon("imp-b", "none");
    // PILOT_LAB_IMPAIR overrides the profile (space-separated impair.ts flags) for experiments.
    const profile = process.env.PILOT_LAB_IMPAIR?.split(" ") ?? ["--delay", "50", "--jitter", "150", "--loss", "0.05", "--dup", "0.03", "--reorder", "0.05", "--seed", "7"];
    const imp = await lab.impairLink(a, b, profile);
    const r = await scenario("impaired-public", a, b, Number(process.env.PILOT_LAB_IMPAIR_BYTES ?? 2 * MiB), false, 2007);
    await imp.kill("SIGTERM");
    const st = JSON.parse(imp.log.filter((l) => l.startsWith("impair stats")).pop()!.slice(13));
    // the traffic really crossed the pipe and was impaired
    expect(st.forwarded).toBeGreaterThan(1000);
    if (!process.env.PILOT_LAB_IMPAIR) {
      expect(st.dropped).toBeGreaterThan(0);
      expect(st.duplicated).toBeGreaterThan(0);
    }
    console.log(`impaired: ${JSON.stringify(st)} transfer ${r.transferMs} ms`);
  }, 180_000);

  test("daemon restarted mid-transfer behind NAT: new connection works, trust persists", async () => {
    const a = D.prc2, b = D.prc3;
    const da = await drv(a);
    const db = await drv(b);
    const l = await db.listen(2100);
    const dialing = da.dial(parseAddr(b.address), 2100, { timeoutMs: 45000 });
    const srv = await l.accept({ timeoutMs: 45000 });
    const cli = await dialing;
    let got = 0;
    const reading = (async () => {
      for (;;) {
        const ch = await srv.read({ timeoutMs: 30000 }).catch(() => null);
        if (!ch) return;
        got += ch.length;
      }
    })();
    const writing = cli.write(randomBytes(48 * MiB)).catch((e) => e as Error);
    await until(async () => got > 2 * MiB, "transfer under way");
    db.close();
    await lab.restartDaemon(b);
    await reading;
    expect(got).toBeLessThan(48 * MiB); // really interrupted
    cli.close();
    await Promise.race([writing, Bun.sleep(5000)]);
    const db2 = await drv(b);
    expect(((await db2.trusted()).trusted as any[]).some((p) => p.node_id === a.nodeId)).toBe(true);
    // The old tunnel session is gone on b; a re-keys on SYN timeout (no manual action).
    await until(async () => (await echo(a, b, "after daemon restart", 20000)) >= 0, "echo after daemon restart", 60000);
    await until(async () => (await echo(b, a, "restarted side dials", 20000)) >= 0, "echo from the restarted daemon", 60000);
  }, 180_000);

  test("rendezvous restarted mid-session: relayed and punched pairs recover", async () => {
    await lab.restartRendezvous();
    // relayed pair: the beacon lost its node table; daemons re-Discover after a heartbeat.
    await until(async () => (await echo(D.sym1, D.sym2, "relay after rendezvous restart", 40000)) >= 0, "relayed echo after rendezvous restart", 90000);
    // a brand-new pair that needs the registry (resolve) and the beacon (punch) after the restart
    await trust(D.pub4, D.prc3);
    await until(async () => (await echo(D.pub4, D.prc3, "new pair after rendezvous restart", 40000)) >= 0, "new pair echo", 60000);
    const db = await drv(D.sym2);
    expect(((await db.trusted()).trusted as any[]).some((p) => p.node_id === D.sym1.nodeId)).toBe(true);
  }, 180_000);
});
