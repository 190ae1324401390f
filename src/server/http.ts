// HTTP endpoints of `rendezvous -http` (registry.md §10): /metrics (Prometheus text 0.0.4,
// localhost only), /healthz, /api/stats. R7: "localhost only" uses the socket peer address only;
// X-Real-IP is ignored (no configured proxy), so it cannot be spoofed.
import type { BeaconServer } from "./beacon.ts";
import type { Registry } from "./registry.ts";

const LOCAL = new Set(["127.0.0.1", "::1", "::ffff:127.0.0.1"]);

export function startHttp(registry: Registry, beacon: BeaconServer, host: string, port: number): { port: number; stop(): void } {
  const server = Bun.serve({
    hostname: host,
    port,
    async fetch(req, srv) {
      const url = new URL(req.url);
      const ip = srv.requestIP(req)?.address ?? "";
      switch (url.pathname) {
        case "/healthz":
          return new Response("ok\n", { headers: { "content-type": "text/plain" } });
        case "/metrics": {
          if (!LOCAL.has(ip)) return new Response("Forbidden\n", { status: 403 });
          const g = await registry.gauges();
          let body = registry.metrics.render(g);
          const b = beacon.stats;
          body += `# HELP pilot_beacon_messages_total Beacon datagrams by kind.\n# TYPE pilot_beacon_messages_total counter\n`;
          for (const [k, v] of Object.entries(b)) body += `pilot_beacon_messages_total{kind="${k}"} ${v}\n`;
          // Replication (§9): subscribers/pushes on a primary; follower state on a standby.
          body += `# HELP pilot_replication_subscribers Connected replication subscribers.\n# TYPE pilot_replication_subscribers gauge\npilot_replication_subscribers ${registry.replication.subscriberCount}\n`;
          body += `# HELP pilot_replication_pushes_total Replication snapshots pushed after changes.\n# TYPE pilot_replication_pushes_total counter\npilot_replication_pushes_total ${registry.replication.pushes}\n`;
          const sb = registry.standbyInfo?.();
          if (sb) {
            body += `# HELP pilot_standby_connected 1 while the standby holds a replication stream from its primary.\n# TYPE pilot_standby_connected gauge\npilot_standby_connected ${sb.connected ? 1 : 0}\n`;
            body += `# HELP pilot_standby_snapshots_total Replication snapshots applied by this standby.\n# TYPE pilot_standby_snapshots_total counter\npilot_standby_snapshots_total ${sb.snapshots}\n`;
          }
          body += `# HELP pilot_beacon_nodes Beacon node table size.\n# TYPE pilot_beacon_nodes gauge\npilot_beacon_nodes ${beacon.table.size}\n`;
          return new Response(body, { headers: { "content-type": "text/plain; version=0.0.4; charset=utf-8" } });
        }
        case "/api/stats":
          return Response.json(await registry.stats(), { headers: { "access-control-allow-origin": "*" } });
        case "/":
          return new Response("<!doctype html><title>Pilot rendezvous</title><p>See <a href=\"/api/stats\">/api/stats</a>.</p>\n", { headers: { "content-type": "text/html" } });
        default:
          return new Response("404 page not found\n", { status: 404 });
      }
    },
  });
  return { port: server.port ?? 0, stop: () => server.stop(true) };
}
