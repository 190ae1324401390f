// A standalone IpcServer process over a minimal fake DaemonApi, for tests that measure the
// server's own memory (RSS) while a hostile client talks to it. Usage:
//   bun test/helpers/ipc-server-proc.ts <socket path> [stallTimeoutMs]
// Prints one JSON line per 100 ms: {"rss":…,"infoCalls":…,"sendTos":…,"stats":{…}} (first line = ready).
import { IpcServer, type DaemonApi } from "../../src/daemon/ipc-server.ts";
import { Logger } from "../../src/sys/log.ts";
import type { JsonObject } from "../../src/proto/ipc.ts";

const [path, stall] = process.argv.slice(2);
let infoCalls = 0;
let sendTos = 0;
// A realistic Info reply (~1.5 KB of JSON).
const peers = Array.from({ length: 12 }, (_, i) => ({ authenticated: true, encrypted: true, endpoint: `127.0.0.1:${4000 + i}`, node_id: 100 + i, path: "direct" }));
const fail = (): never => {
  throw new Error("not available in this test server");
};
const api: DaemonApi = {
  bind: fail,
  dial: async () => fail(),
  sendTo: async () => {
    sendTos++;
  },
  conn: () => undefined,
  closeConn: () => {},
  info: (): JsonObject => {
    infoCalls++;
    return { address: "0:0000.0000.0005", node_id: 5, peer_list: peers, peers: peers.length };
  },
  handshake: async () => fail(),
  resolveHostname: async () => fail(),
  setHostname: async () => fail(),
  setVisibility: async () => fail(),
  deregister: async () => fail(),
  setTags: async () => fail(),
  setWebhook: async () => fail(),
  setTaskExec: async () => fail(),
};
const log = new Logger("warn", "json", (line) => void process.stderr.write(line));
const srv = new IpcServer(api, log, stall ? { stallTimeoutMs: Number(stall) } : {});
await srv.listen(path);
const report = (): void => {
  process.stdout.write(`${JSON.stringify({ rss: process.memoryUsage.rss(), infoCalls, sendTos, stats: srv.stats() })}\n`);
};
report();
setInterval(report, 100);
process.on("SIGTERM", () => {
  srv.close();
  process.exit(0);
});
