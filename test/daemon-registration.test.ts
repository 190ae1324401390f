// The daemon's registration session against a fake registry: what a re-registration could not
// re-apply (hostname, visibility) is logged and retried after later heartbeats instead of being
// lost silently; a registry without the push subscription is not an error.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { Cluster, spawnTool, type Proc } from "./helpers/cluster.ts";
import { FakeRegistry } from "./interop-helpers.ts";

describe("registration session", () => {
  let fake: FakeRegistry;
  let daemon: Proc;
  let tmp: Cluster;
  let failHeartbeat = false;
  let failSetHostname = false;

  beforeAll(async () => {
    tmp = new Cluster("pilot-registration-");
    fake = new FakeRegistry((m) => {
      switch (m.type) {
        case "register":
          return { type: "register_ok", node_id: 4242, network_id: 0, address: "0:0000.0000.1092", public_key: m.public_key };
        case "heartbeat":
          return failHeartbeat ? { type: "error", error: "request failed" } : { type: "heartbeat_ok", time: Math.floor(Date.now() / 1000) };
        case "poll_handshakes":
          return { type: "poll_handshakes_ok", requests: [], responses: [] };
        case "set_hostname":
          return failSetHostname ? { type: "error", error: "hostname store unavailable" } : { type: "set_hostname_ok", node_id: m.node_id, hostname: m.hostname };
        case "set_visibility":
          return { type: "set_visibility_ok", node_id: m.node_id, visibility: m.public ? "public" : "private" };
        case "deregister":
          return { type: "deregister_ok" };
        default:
          return { type: "error", error: "request failed" }; // a reference registry (no `subscribe`)
      }
    });
    const addr = await fake.listen();
    const home = join(tmp.dir, "d");
    mkdirSync(home, { recursive: true });
    daemon = spawnTool("pilot-daemon", [
      "-registry", addr, "-beacon", "", "-listen", "127.0.0.1:0", "-socket", join(home, "pilot.sock"),
      "-identity", join(home, "identity.json"), "-data-dir", home, "-keepalive", "500ms", "-hostname", "reg-host", "-public",
      "-log-level", "debug",
    ], { HOME: home }, "registration-daemon");
    await daemon.waitFor(/daemon running"? node_id=(\d+)/);
  }, 30000);
  afterAll(async () => {
    await daemon?.kill("SIGTERM");
    fake?.close();
    await tmp.stop();
  });

  test("a registry refusing `subscribe` is noted at debug level, never as a failure", async () => {
    await daemon.waitFor(/registry has no push subscription/);
    expect(daemon.log.some((l) => l.includes("registry subscribe failed"))).toBe(false);
  });

  test("hostname refused after a re-registration: logged, then re-applied once the registry accepts it", async () => {
    const before = fake.msgs.length;
    failSetHostname = true;
    failHeartbeat = true;
    const reg = await fake.waitFor((x) => x.type === "register" && fake.msgs.indexOf(x) >= before, 15000);
    failHeartbeat = false;
    await daemon.waitFor(/hostname not restored/, 15000);
    const refused = fake.msgs.filter((x, i) => i > fake.msgs.indexOf(reg) && x.type === "set_hostname").length;
    expect(refused).toBeGreaterThanOrEqual(1);
    // The visibility was re-applied in the same pass.
    expect(fake.msgs.some((x, i) => i > fake.msgs.indexOf(reg) && x.type === "set_visibility" && x.public === true)).toBe(true);
    failSetHostname = false;
    const mark = fake.msgs.length;
    const retried = await fake.waitFor((x) => x.type === "set_hostname" && fake.msgs.indexOf(x) >= mark, 15000);
    expect(retried.hostname).toBe("reg-host");
    // Once accepted it is not sent again on every heartbeat.
    const hb = await fake.waitFor((x) => x.type === "heartbeat" && fake.msgs.indexOf(x) > fake.msgs.indexOf(retried), 5000);
    const hb2 = await fake.waitFor((x) => x.type === "heartbeat" && fake.msgs.indexOf(x) > fake.msgs.indexOf(hb), 5000);
    expect(fake.msgs.slice(fake.msgs.indexOf(retried) + 1, fake.msgs.indexOf(hb2)).some((x) => x.type === "set_hostname")).toBe(false);
  }, 40000);
});
