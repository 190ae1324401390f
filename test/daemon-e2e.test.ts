// Multi-process end-to-end: a real rendezvous and three real daemons on loopback, driven through
// the IPC driver. Trust, echo, data exchange (files, SHA-256), pub/sub, datagrams, revocation,
// privacy before trust, restart keeping node ID and trust.
import { until } from "./helpers/until.ts";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHash, randomBytes } from "node:crypto";
import { readdirSync, readFileSync, existsSync, statSync } from "node:fs";
import { join } from "node:path";
import { Cluster, type DaemonHandle } from "./helpers/cluster.ts";
import { Driver, type DriverConn } from "../src/client/driver.ts";
import { parseAddr } from "../src/proto/addr.ts";
import { DataExchangeClient } from "../src/daemon/services/dataexchange.ts";

const cl = new Cluster("pilot-e2e-");
let A: DaemonHandle, B: DaemonHandle, C: DaemonHandle;
const drivers: { h: DaemonHandle; d: Driver }[] = [];

async function drv(h: DaemonHandle): Promise<Driver> {
  const d = await Driver.connect(h.socket, { timeoutMs: 5000 });
  drivers.push({ h, d });
  return d;
}

function closeDrivers(h?: DaemonHandle): void {
  for (const x of drivers) if (!h || x.h === h) x.d.close();
}


async function readAll(c: DriverConn, n: number): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  let got = 0;
  while (got < n) {
    const ch = await c.read({ timeoutMs: 10000 }).catch((e) => { throw new Error(`read stalled after ${got} of ${n} bytes: ${e.message}`); });
    if (!ch) break;
    parts.push(ch);
    got += ch.length;
  }
  return Buffer.concat(parts);
}

async function trustPair(x: DaemonHandle, y: DaemonHandle): Promise<void> {
  const dx = await drv(x);
  const dy = await drv(y);
  const r = await dx.handshake(y.nodeId, "e2e test");
  expect(r.status).toBe("sent");
  await until(async () => ((await dy.pending()).pending as any[]).some((p) => p.node_id === x.nodeId), "pending request at y");
  const a = await dy.approve(x.nodeId);
  expect(a.status).toBe("approved");
  await until(async () => ((await dx.trusted()).trusted as any[]).some((p) => p.node_id === y.nodeId), "x trusts y");
}

beforeAll(async () => {
  await cl.startRendezvous();
  A = await cl.startDaemon("a");
  B = await cl.startDaemon("b");
  C = await cl.startDaemon("c");
}, 60000);

afterAll(async () => {
  closeDrivers();
  await cl.stop();
});

describe("daemon end to end", () => {
  test("registration: distinct node IDs, Info shape", async () => {
    expect(new Set([A.nodeId, B.nodeId, C.nodeId]).size).toBe(3);
    const info = await (await drv(A)).info();
    expect(info.node_id).toBe(A.nodeId);
    expect(info.address).toBe(A.address);
    expect(info.encrypt).toBe(true);
    expect(info.identity).toBe(true);
    expect(typeof info.public_key).toBe("string");
    expect((info.public_key as string).length).toBe(44);
    expect(info.ports).toBeGreaterThanOrEqual(4); // 7, 444, 1001, 1002
    for (const k of ["authenticated_peers", "bytes_recv", "bytes_sent", "conn_list", "connections", "encrypted_peers", "hostname", "owner", "peer_list", "peers", "pkts_recv", "pkts_sent", "uptime_secs"]) {
      expect(info).toHaveProperty(k);
    }
  });

  test("a private node's endpoint is not revealed before trust: dial fails", async () => {
    const dc = await drv(C);
    await expect(dc.dial(parseAddr(B.address), 7, { timeoutMs: 20000 })).rejects.toThrow(/resolve node/);
  });

  test("trust handshake: request, pending, approve, both sides trusted", async () => {
    await trustPair(A, B);
    const tb = await (await drv(B)).trusted();
    expect((tb.trusted as any[]).some((p) => p.node_id === A.nodeId)).toBe(true);
  }, 30000);

  test("echo over the encrypted tunnel, exact bytes back", async () => {
    const da = await drv(A);
    const conn = await da.dial(parseAddr(B.address), 7, { timeoutMs: 20000 });
    const msg = randomBytes(100_000);
    await conn.write(msg);
    const back = await readAll(conn, msg.length);
    expect(createHash("sha256").update(back).digest("hex")).toBe(createHash("sha256").update(msg).digest("hex"));
    conn.close();
    const info = await da.info();
    const peer = (info.peer_list as any[]).find((p) => p.node_id === B.nodeId);
    expect(peer.encrypted).toBe(true);
    expect(peer.authenticated).toBe(true);
  }, 30000);

  test("raw stream between two IPC clients (bind/accept/send/recv/close)", async () => {
    const da = await drv(A);
    const db = await drv(B);
    const l = await db.listen(1234);
    const dialing = da.dial(parseAddr(B.address), 1234, { timeoutMs: 20000 });
    const srv = await l.accept({ timeoutMs: 20000 });
    const cli = await dialing;
    expect(srv.remote.node).toBe(A.nodeId);
    const payload = randomBytes(3 * 1024 * 1024 + 17); // > 1 MiB: the driver must chunk
    const recv = readAll(srv, payload.length);
    await cli.write(payload);
    const got = await recv;
    expect(got.length).toBe(payload.length);
    expect(Buffer.compare(Buffer.from(got), payload)).toBe(0);
    cli.close();
    expect(await srv.read({ timeoutMs: 10000 })).toBeNull(); // EOF after the peer's FIN
  }, 60000);

  test("data exchange: file arrives in received/ with identical SHA-256, message in inbox/", async () => {
    const da = await drv(A);
    const data = randomBytes(2 * 1024 * 1024 + 3);
    const conn = await da.dial(parseAddr(B.address), 1001, { timeoutMs: 20000 });
    // Speak the data-exchange frame format directly through the driver connection.
    const { encodeFrame, encodeFilePayload, TYPE_FILE, TYPE_TEXT } = await import("../src/daemon/services/dataexchange.ts");
    await conn.write(encodeFrame(TYPE_FILE, encodeFilePayload("../../etc/evil name.bin", data)));
    await conn.write(encodeFrame(TYPE_TEXT, new TextEncoder().encode("hello bob")));
    const dir = join(B.home, ".pilot", "received");
    const file = await until(async () => {
      if (!existsSync(dir)) return null;
      for (const f of readdirSync(dir)) {
        const buf = readFileSync(join(dir, f));
        if (buf.length === data.length) return f;
      }
      return null;
    }, "file in received/");
    expect(file).not.toContain("/");
    expect(createHash("sha256").update(readFileSync(join(dir, file))).digest("hex")).toBe(createHash("sha256").update(data).digest("hex"));
    expect(statSync(join(dir, file)).mode & 0o777).toBe(0o600);
    const inbox = join(B.home, ".pilot", "inbox");
    const msg = await until(async () => (existsSync(inbox) ? readdirSync(inbox).find((f) => f.startsWith("TEXT-")) : null), "inbox message");
    const rec = JSON.parse(readFileSync(join(inbox, msg), "utf8"));
    expect(rec.data).toBe("hello bob");
    expect(rec.from).toContain(A.address);
    conn.close();
    void DataExchangeClient;
  }, 60000);

  test("datagrams reach every IPC client of the destination", async () => {
    const da = await drv(A);
    const db = await drv(B);
    const payload = new TextEncoder().encode("dgram-" + Date.now());
    // Datagrams go to the clients connected at arrival time; one round trip makes sure the daemon
    // has registered this new connection (its accept callback can run after our connect resolves).
    await db.info();
    const got = db.recvFrom({ timeoutMs: 10000 });
    await da.sendTo(parseAddr(B.address), 5555, payload);
    const d = await got;
    expect(d.dstPort).toBe(5555);
    expect(new TextDecoder().decode(d.data)).toBe(new TextDecoder().decode(payload));
  }, 30000);

  test("event stream: subscriber gets the publisher's event, publisher gets no echo", async () => {
    const da = await drv(A);
    const { encodeEvent, EventReader } = await import("../src/daemon/services/eventstream.ts");
    const enc = new TextEncoder();
    // B hosts the broker on 1002. First event on a connection = its subscription (docs/protocol.md §10.4).
    const sub = await da.dial(parseAddr(B.address), 1002, { timeoutMs: 20000 });
    await sub.write(encodeEvent("news"));
    const pub = await da.dial(parseAddr(B.address), 1002, { timeoutMs: 20000 });
    await pub.write(encodeEvent("news")); // the publisher subscribes to the same topic...
    // both subscriptions have reached the broker (the publication follows on pub's own stream)
    const db = await drv(B);
    await until(async () => {
      const list = (await db.info()).conn_list as any[];
      return list.filter((c) => c.local_port === 1002 && c.remote_addr === A.address && c.state === "ESTABLISHED" && c.bytes_recv > 0).length >= 2;
    }, "both subscriptions at B");
    await pub.write(encodeEvent("news", enc.encode("breaking")));
    const got: string[] = [];
    const reader = new EventReader((e) => got.push(new TextDecoder().decode(e.payload)));
    for (let i = 0; i < 20 && got.length === 0; i++) {
      const ch = await sub.read({ timeoutMs: 5000 });
      if (!ch) break;
      reader.push(ch);
    }
    expect(got).toEqual(["breaking"]);
    // ...but never receives its own publication back.
    await expect(pub.read({ timeoutMs: 700 })).rejects.toThrow(); // a window in which nothing may arrive
    sub.close();
    pub.close();
  }, 30000);

  test("revoking trust blocks traffic", async () => {
    await trustPair(A, C);
    const dc = await drv(C);
    const conn = await dc.dial(parseAddr(A.address), 7, { timeoutMs: 20000 });
    await conn.write("ping");
    expect(new TextDecoder().decode((await conn.read({ timeoutMs: 10000 }))!)).toBe("ping");
    conn.close();
    const da = await drv(A);
    const r = await da.untrust(C.nodeId);
    expect(r.status).toBe("revoked");
    // A notifies C, revokes the registry pair and drops the tunnel: C can no longer reach A.
    await until(async () => !((await da.info()).peer_list as any[]).some((p) => p.node_id === C.nodeId), "tunnel to C dropped");
    const dc2 = await drv(C);
    let failed = false;
    try {
      const c2 = await dc2.dial(parseAddr(A.address), 7, { timeoutMs: 12000 });
      await c2.write("x");
      const back = await c2.read({ timeoutMs: 3000 }).catch(() => null);
      failed = back === null;
    } catch {
      failed = true;
    }
    expect(failed).toBe(true);
    // and A's own dial to the revoked node fails at once with the way out, not after a timeout
    await expect(da.dial(parseAddr(C.address), 7, { timeoutMs: 5000 })).rejects.toThrow(/trust was revoked/);
  }, 60000);

  test("restart keeps node ID and trust", async () => {
    const before = B.nodeId;
    closeDrivers(B);
    await cl.restartDaemon(B);
    expect(B.nodeId).toBe(before);
    const db = await drv(B);
    const t = await db.trusted();
    expect((t.trusted as any[]).some((p) => p.node_id === A.nodeId)).toBe(true);
    // and traffic flows again after the restart (new tunnel keys)
    const da = await drv(A);
    const conn = await da.dial(parseAddr(B.address), 7, { timeoutMs: 30000 });
    await conn.write("after-restart");
    expect(new TextDecoder().decode((await conn.read({ timeoutMs: 15000 }))!)).toBe("after-restart");
    conn.close();
  }, 60000);
});

describe("loopback", () => {
  test("a daemon can dial its own services (no tunnel to itself)", async () => {
    const da = await drv(A);
    const conn = await da.dial(parseAddr(A.address), 7, { timeoutMs: 10000 });
    await conn.write("self");
    expect(new TextDecoder().decode((await conn.read({ timeoutMs: 5000 }))!)).toBe("self");
    conn.close();
    const info = await da.info();
    expect((info.peer_list as any[]).some((p) => p.node_id === A.nodeId)).toBe(false);
  }, 20000);
});

describe("start-up failures", () => {
  test("unreachable registry: exits 1 at once with 'registry dial'", async () => {
    const { spawnTool } = await import("./helpers/cluster.ts");
    const p = spawnTool("pilot-daemon", ["-registry", "127.0.0.1:1", "-beacon", "", "-listen", "127.0.0.1:0", "-socket", join(cl.dir, "dead.sock")]);
    const code = await p.proc.exited;
    expect(code).toBe(1);
    await p.drained;
    expect(p.log.join("\n")).toContain("daemon start: registry dial:");
  }, 20000);

  test("registry TLS without a fingerprint is refused (certificate pinning required)", async () => {
    const { spawnTool } = await import("./helpers/cluster.ts");
    const p = spawnTool("pilot-daemon", ["-registry", cl.registry, "-registry-tls", "-beacon", "", "-listen", "127.0.0.1:0", "-socket", join(cl.dir, "tls.sock")]);
    expect(await p.proc.exited).toBe(1);
    await p.drained;
    expect(p.log.join("\n")).toContain("registry TLS requires RegistryFingerprint for certificate pinning");
  }, 20000);
});

describe("webhook events from the daemon core (docs/protocol.md §10.6)", () => {
  test("node.registered, tunnel.*, conn.*, data.datagram reach the webhook with text addresses", async () => {
    const events: any[] = [];
    const srv = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      async fetch(req) {
        events.push(await req.json());
        return new Response("ok");
      },
    });
    try {
      const W = await cl.startDaemon("w", ["-public", "-webhook", `http://127.0.0.1:${srv.port}/hook`]);
      const da = await drv(A);
      const conn = await da.dial(parseAddr(W.address), 7, { timeoutMs: 20000 });
      await conn.write("hi");
      expect(new TextDecoder().decode((await conn.read({ timeoutMs: 10000 }))!)).toBe("hi");
      conn.close();
      await da.sendTo(parseAddr(W.address), 4444, new TextEncoder().encode("dg"));
      const want = ["node.registered", "tunnel.peer_added", "tunnel.established", "conn.syn_received", "conn.established", "conn.fin", "data.datagram"];
      await until(async () => want.every((w) => events.some((e) => e.event === w)), `events ${want.join(",")}`);
      const byName = (n: string) => events.find((e) => e.event === n);
      expect(byName("node.registered").data.address).toBe(W.address);
      expect(byName("node.registered").node_id).toBe(W.nodeId);
      expect(byName("tunnel.established").data).toMatchObject({ authenticated: true, peer_node_id: A.nodeId, rekeyed: false, relay: false });
      expect(byName("conn.established").data).toMatchObject({ dst_port: 7, src_addr: A.address });
      expect(byName("conn.fin").data).toMatchObject({ local_port: 7, remote_addr: A.address });
      expect(byName("data.datagram").data).toMatchObject({ dst_port: 4444, size: 2, src_addr: A.address });
      await W.proc.kill("SIGTERM");
      await until(async () => events.some((e) => e.event === "node.deregistered"), "node.deregistered");
    } finally {
      srv.stop(true);
    }
  }, 60000);
});

describe("key rotation while running", () => {
  test("pilotctl rotate-key on a running daemon: it adopts the new key, peers re-learn it", async () => {
    const R = await cl.startDaemon("r", ["-public"]);
    const dr = await drv(R);
    const before = (await dr.info()).public_key as string;
    // A talks to R first, so A caches R's old key.
    const da = await drv(A);
    let c = await da.dial(parseAddr(R.address), 7, { timeoutMs: 20000 });
    await c.write("one");
    expect(new TextDecoder().decode((await c.read({ timeoutMs: 10000 }))!)).toBe("one");
    c.close();
    const rk = await cl.ctl(R, ["rotate-key", String(R.nodeId), "ops@example.com"], { env: { PILOT_REGISTRY: cl.registry } });
    expect(rk.code).toBe(0);
    expect(rk.json.data.public_key).not.toBe(before);
    // The daemon notices the changed identity file at its next heartbeat (2 s here).
    await until(async () => (await dr.info()).public_key === rk.json.data.public_key, "daemon adopted the rotated key", 20000);
    // Its signed registry calls work with the new key (set_hostname is signed).
    expect((await dr.setHostname("rotated-node")).hostname).toBe("rotated-node");
    // A new key exchange is needed for A to trust R again: restart R so its tunnel key changes too.
    await cl.restartDaemon(R);
    c = await da.dial(parseAddr(R.address), 7, { timeoutMs: 30000 });
    await c.write("two");
    expect(new TextDecoder().decode((await c.read({ timeoutMs: 10000 }))!)).toBe("two");
    c.close();
  }, 90000);
});
