// IPv6 end to end on ::1: rendezvous (registry + beacon), two daemons with IPv6 tunnel sockets,
// registration with an [addr]:port endpoint, encrypted echo through the tunnel.
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawnTool, type Proc } from "./helpers/cluster.ts";
import { Driver } from "../src/client/driver.ts";
import { parseAddr } from "../src/proto/addr.ts";

const dir = mkdtempSync(join(tmpdir(), "pilot-v6-"));
const procs: Proc[] = [];

async function hasV6(): Promise<boolean> {
  try {
    const s = await Bun.udpSocket({ hostname: "::1", port: 0 });
    s.close();
    return true;
  } catch {
    return false;
  }
}

afterAll(async () => {
  for (const p of procs.reverse()) await p.kill().catch(() => 0);
  rmSync(dir, { recursive: true, force: true, maxRetries: 5 });
});

test.skipIf(!(await hasV6()))("IPv6 loopback: register, key exchange and echo over [::1]", async () => {
  const rv = spawnTool("rendezvous", ["-registry-addr", "[::1]:0", "-beacon-addr", "[::1]:0", "-store", join(dir, "r.db")]);
  procs.push(rv);
  const reg = (await rv.waitFor(/registry listening on (\S+)/))[1];
  const bea = (await rv.waitFor(/beacon listening on (\S+)/))[1];
  expect(reg).toStartWith("[::1]:");
  const mk = (n: string) =>
    spawnTool("pilot-daemon", ["-registry", reg, "-beacon", bea, "-listen", "[::1]:0", "-socket", join(dir, `${n}.sock`), "-public", "-data-dir", join(dir, n)], {}, n);
  const A = mk("a"), B = mk("b");
  procs.push(A, B);
  await A.waitFor(/daemon running"? node_id=(\d+)/);
  const mb = await B.waitFor(/daemon running"? node_id=(\d+) addr=(\S+)/);
  expect(A.log.join("\n")).toMatch(/daemon registered.*endpoint=\[::1\]:\d+/);
  const da = await Driver.connect(join(dir, "a.sock"));
  const c = await da.dial(parseAddr(mb[2]), 7, { timeoutMs: 15000 });
  await c.write("over v6");
  expect(new TextDecoder().decode((await c.read({ timeoutMs: 5000 }))!)).toBe("over v6");
  const peer = ((await da.info()).peer_list as any[]).find((p) => p.node_id === Number(mb[1]));
  expect(peer.endpoint).toMatch(/^\[::1\]:\d+$/);
  expect(peer.encrypted && peer.authenticated).toBe(true);
  c.close();
  da.close();
}, 30000);
