// HTTP endpoints of `rendezvous -http`:
//   /                     live dashboard page (assets under /assets/, compiled in)
//   /api/stats            the reference's JSON (CORS *); `?nodes=0` leaves out the node and edge lists
//   /api/nodes            one page of nodes, filtered on the server (?page=&per=&tag=), CORS *
//   /api/badge/<kind>     SVG badges: nodes, trust, requests, tags, task-executors
//   /metrics              Prometheus text 0.0.4, localhost only
//   /healthz              "ok"
// "Localhost only" uses the socket peer address only; X-Real-IP is ignored (there is no
// configured proxy to trust), so it cannot be spoofed by a remote client.
import { PROM_CONTENT_TYPE, PromWriter } from "../sys/prom.ts";
import type { BeaconServer } from "./beacon.ts";
import { BADGES, abbreviate, badgeSvg } from "./dashboard/badge.ts";
import { PAGE_JS } from "./dashboard/client.ts";
import { DashboardData, DashboardQueryError, type DashboardOptions } from "./dashboard/data.ts";
import { PAGE_HTML } from "./dashboard/page.ts";
import { PAGE_CSS } from "./dashboard/style.ts";
import type { Registry } from "./registry.ts";

const LOCAL = new Set(["127.0.0.1", "::1", "::ffff:127.0.0.1"]);

const CORS = { "access-control-allow-origin": "*" };
const PAGE_HEADERS = {
  "content-type": "text/html; charset=utf-8",
  "cache-control": "no-cache",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
};
const ASSET_CACHE = "public, max-age=300";

export interface HttpOptions {
  dashboard?: DashboardOptions;
}

export function startHttp(registry: Registry, beacon: BeaconServer, host: string, port: number, opts: HttpOptions = {}): { port: number; stop(): void; dashboard: DashboardData } {
  const dash = new DashboardData(registry, opts.dashboard);
  const server = Bun.serve({
    hostname: host,
    port,
    async fetch(req, srv) {
      const url = new URL(req.url);
      const path = url.pathname;
      try {
        switch (path) {
          case "/healthz":
            return new Response("ok\n", { headers: { "content-type": "text/plain" } });
          case "/metrics": {
            const ip = srv.requestIP(req)?.address ?? "";
            if (!LOCAL.has(ip)) return new Response("Forbidden\n", { status: 403 });
            return new Response(await renderMetrics(registry, beacon), { headers: { "content-type": PROM_CONTENT_TYPE } });
          }
          case "/api/stats":
            return new Response(await dash.statsJson(url.searchParams.get("nodes") !== "0"), { headers: { "content-type": "application/json", ...CORS } });
          case "/api/nodes":
            return Response.json(await dash.page(url.searchParams), { headers: CORS });
          case "/":
            return new Response(PAGE_HTML, { headers: PAGE_HEADERS });
          case "/assets/dashboard.css":
            return new Response(PAGE_CSS, { headers: { "content-type": "text/css; charset=utf-8", "cache-control": ASSET_CACHE } });
          case "/assets/dashboard.js":
            return new Response(PAGE_JS, { headers: { "content-type": "text/javascript; charset=utf-8", "cache-control": ASSET_CACHE } });
        }
        if (path.startsWith("/api/badge/")) {
          const b = BADGES[path.slice("/api/badge/".length)];
          if (b) {
            const svg = badgeSvg(b.label, abbreviate(b.value(await dash.summary())));
            return new Response(svg, {
              headers: { "content-type": "image/svg+xml", "cache-control": "no-cache, no-store, must-revalidate", ...CORS },
            });
          }
        }
        return new Response("404 page not found\n", { status: 404, headers: { "content-type": "text/plain" } });
      } catch (e) {
        if (e instanceof DashboardQueryError) {
          return Response.json({ error: e.message, code: e.code, hint: e.hint }, { status: 400, headers: CORS });
        }
        return Response.json({ error: "internal error", code: "internal", hint: "see the rendezvous log" }, { status: 500, headers: CORS });
      }
    },
  });
  return { port: server.port ?? 0, stop: () => server.stop(true), dashboard: dash };
}

async function renderMetrics(registry: Registry, beacon: BeaconServer): Promise<string> {
  const w = new PromWriter();
  w.raw(registry.metrics.render(await registry.gauges()));
  w.byLabel("pilot_beacon_messages_total", "counter", "Beacon datagrams by kind.", "kind", beacon.stats as unknown as Record<string, number>);
  // Replication: subscribers/pushes on a primary; follower state on a standby.
  w.gauge("pilot_replication_subscribers", "Connected replication subscribers.", registry.replication.subscriberCount);
  w.counter("pilot_replication_pushes_total", "Replication snapshots pushed after changes.", registry.replication.pushes);
  const sb = registry.standbyInfo?.();
  if (sb) {
    w.gauge("pilot_standby_connected", "1 while the standby holds a replication stream from its primary.", sb.connected ? 1 : 0);
    w.counter("pilot_standby_snapshots_total", "Replication snapshots applied by this standby.", sb.snapshots);
  }
  w.gauge("pilot_beacon_nodes", "Beacon node table size.", beacon.table.size);
  return w.text();
}
