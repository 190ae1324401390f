// A private peer revokes its trust in us and the revoke notice is lost (as happens with reference
// daemons): the peer restarts without our session, our next dial times out on the SYN, and the
// daemon must resolve the peer through the registry BEFORE re-keying. The registry refuses (no
// trust pair any more), so the dial fails with "trust revoked" instead of re-keying its way back in.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { Cluster, type DaemonHandle } from "./helpers/cluster.ts";
import { until } from "./helpers/until.ts";
import { Driver } from "../src/client/driver.ts";
import { parseAddr } from "../src/proto/addr.ts";
import { RegistryClient } from "../src/daemon/registry-client.ts";
import { loadIdentity, sign, encodeBase64Std } from "../src/crypto/identity.ts";

const cl = new Cluster("pilot-tun-revoke-");
let X: DaemonHandle, Y: DaemonHandle;
const drivers: Driver[] = [];
const drv = async (h: DaemonHandle) => {
  const d = await Driver.connect(h.socket, { timeoutMs: 5000 });
  drivers.push(d);
  return d;
};

beforeAll(async () => {
  await cl.startRendezvous();
  X = await cl.startDaemon("x");
  Y = await cl.startDaemon("y");
}, 60000);

afterAll(async () => {
  for (const d of drivers) d.close();
  await cl.stop();
});

test("lost revoke notice: the registry's refusal stops the re-key and the dial reports trust revoked", async () => {
  const dx = await drv(X);
  const dy = await drv(Y);
  expect((await dx.handshake(Y.nodeId, "revoke test")).status).toBe("sent");
  await until(async () => ((await dy.pending()).pending as any[]).some((p) => p.node_id === X.nodeId), "pending at y");
  expect((await dy.approve(X.nodeId)).status).toBe("approved");
  await until(async () => ((await dx.trusted()).trusted as any[]).some((p) => p.node_id === Y.nodeId), "x trusts y");
  const c = await dx.dial(parseAddr(Y.address), 7, { timeoutMs: 20000 });
  await c.write("ping");
  expect(new TextDecoder().decode((await c.read({ timeoutMs: 10000 }))!)).toBe("ping");
  c.close();

  // Y revokes at the registry; X never hears of it. Y restarts without X's session or trust.
  const yid = loadIdentity(Y.identity)!;
  const reg = new RegistryClient(cl.registry, { sign: (ch) => encodeBase64Std(sign(yid, ch)), freshSignatures: true });
  await reg.connect();
  await reg.revokeTrust(Y.nodeId, X.nodeId);
  reg.close();
  await Y.proc.kill("SIGTERM");
  rmSync(join(Y.home, ".pilot", "trust.json"), { force: true });
  await cl.restartDaemon(Y);

  const err = await dx.dial(parseAddr(Y.address), 7, { timeoutMs: 30000 }).then(
    (conn) => {
      conn.close();
      return null;
    },
    (e: Error) => e,
  );
  expect(err?.message).toMatch(/trust revoked/);
  // and the next dial fails at once: the peer is blocked until trust is re-established
  await expect(dx.dial(parseAddr(Y.address), 7, { timeoutMs: 5000 })).rejects.toThrow(/trust was revoked/);
}, 90000);
