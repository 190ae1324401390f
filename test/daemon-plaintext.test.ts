// First contact with a daemon that runs without encryption (-encrypt=false), on loopback with real
// processes: the encrypting dialer must not hold its SYN for the plaintext fallback wait. The
// non-encrypting daemon answers the key exchange with the plaintext notice, and the dialer reports
// (webhook `tunnel.plaintext`) why it switched to plaintext: "peer_plaintext" (the notice arrived)
// rather than "no_answer" (the fallback timer fired).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Cluster, type DaemonHandle } from "./helpers/cluster.ts";
import { until } from "./helpers/until.ts";
import { Driver } from "../src/client/driver.ts";
import { parseAddr } from "../src/proto/addr.ts";

const cl = new Cluster("pilot-plain-");
let A: DaemonHandle, B: DaemonHandle;
const events: { event: string; data: Record<string, unknown> }[] = [];
const hook = Bun.serve({
  hostname: "127.0.0.1",
  port: 0,
  fetch: async (r) => {
    events.push((await r.json()) as (typeof events)[number]);
    return new Response("ok");
  },
});

beforeAll(async () => {
  await cl.startRendezvous();
  A = await cl.startDaemon("a");
  B = await cl.startDaemon("b", ["-encrypt=false", "-public"]);
}, 60000);

afterAll(async () => {
  hook.stop(true);
  await cl.stop();
});

describe("first dial to a non-encrypting daemon", () => {
  test("the SYN leaves on the peer's plaintext notice, not on the fallback timer; echo works", async () => {
    const da = await Driver.connect(A.socket, { timeoutMs: 5000 });
    const db = await Driver.connect(B.socket, { timeoutMs: 5000 });
    try {
      expect((await db.info()).encrypt).toBe(false);
      await da.setWebhook(`http://127.0.0.1:${hook.port}/`);
      const conn = await da.dial(parseAddr(B.address), 7, { timeoutMs: 20000 });
      const msg = new TextEncoder().encode("hello in plaintext");
      await conn.write(msg);
      const back = await conn.read({ timeoutMs: 10000 });
      expect(Buffer.from(back!).toString()).toBe("hello in plaintext");
      conn.close();
      const ev = await until(async () => events.find((e) => e.event === "tunnel.plaintext"), "tunnel.plaintext webhook");
      expect(ev.data).toEqual({ cause: "peer_plaintext", peer_node_id: B.nodeId });
      // Both tunnel.plaintext causes are emitted at most once per peer, and the first one decides.
      expect(events.filter((e) => e.event === "tunnel.plaintext").map((e) => e.data.cause)).not.toContain("no_answer");
    } finally {
      await da.setWebhook("").catch(() => {});
      da.close();
      db.close();
    }
  }, 60000);
});
