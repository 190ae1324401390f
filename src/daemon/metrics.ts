// The daemon's own metrics, opt-in (`pilot-daemon -metrics 127.0.0.1:9102`): Prometheus text on
// GET /metrics. Counting costs nothing on the packet path beyond what already exists: the tunnel
// and transport keep their own counters, and this module reads them at scrape time (plus a 1 s
// sampler for the RTT histogram). The daemon only reports events and dropped frames through the
// two-method DaemonObserver.
//
// Series (all prefixed pilot_daemon_):
//   peers{path}                       gauge: tunnel peers by path direct / punched / relayed
//   connections{state}                gauge: stream connections by state
//   tunnel_bytes_total{direction}     counter: tunnel frame bytes in / out
//   tunnel_packets_total{direction}   counter: tunnel packets in / out
//   stream_bytes_total{direction}     counter: stream payload bytes in / out
//   retransmits_total{kind}           counter: timeout / fast retransmissions
//   rtt_seconds                       histogram: smoothed RTT of connections, sampled each second
//   events_total{event}               counter: daemon events (handshake.*, trust.*, tunnel.*, conn.*, security.*)
//   dropped_frames_total{reason}      counter: inbound tunnel frames dropped, by reason
//   ipc_clients                       gauge: connected IPC clients (pilotctl, SDK)
//   uptime_seconds                    gauge
import { Histogram, PROM_CONTENT_TYPE, PromWriter } from "../sys/prom.ts";

/** What the daemon tells the metrics about (the only hook inside the daemon and tunnel). */
export interface DaemonObserver {
  event(name: string): void;
  drop(reason: string): void;
}

interface ConnView {
  id: number;
  state: string;
  stats: { bytesSent: number; bytesRecv: number; retransmits: number; fastRetransmits: number; srttMs: number };
}

/** The parts of a running daemon the metrics read (structural: no import of the daemon). */
export interface DaemonView {
  tunnel: {
    stats: { bytesSent: number; bytesRecv: number; pktsSent: number; pktsRecv: number };
    peers: ReadonlyMap<number, unknown>;
    pathOf(nodeId: number): string | null;
  };
  transport?: { connections(): ConnView[]; closedTotals: ConnTotals };
  ipc?: { clients: { size: number } };
}

const STATES = ["SYN_SENT", "SYN_RECEIVED", "ESTABLISHED", "FIN_WAIT", "CLOSE_WAIT", "TIME_WAIT", "CLOSED"];
const PATHS = ["direct", "punched", "relayed"];
/** RTT bucket bounds in seconds: loopback (sub-ms) to intercontinental relays. */
export const RTT_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];
/** Event and drop-reason names come from the code; the cap only guards against a bug. */
const MAX_KEYS = 256;

type ConnTotals = { bytesSent: number; bytesRecv: number; retransmits: number; fastRetransmits: number };

export class DaemonMetrics implements DaemonObserver {
  readonly events = new Map<string, number>();
  readonly drops = new Map<string, number>();
  readonly rtt = new Histogram(RTT_BUCKETS);
  private readonly started = Date.now();
  private timer: ReturnType<typeof setInterval> | null = null;

  event(name: string): void {
    bump(this.events, name);
  }

  drop(reason: string): void {
    bump(this.drops, reason);
  }

  /**
   * Observe RTTs every `ms`: each established connection once per tick, and a connection that
   * was never observed (a short transfer already closing, kept in TIME_WAIT) once.
   */
  startSampler(view: DaemonView, ms = 1000): void {
    this.stopSampler();
    let sampled = new Set<number>();
    this.timer = setInterval(() => {
      const next = new Set<number>();
      for (const c of view.transport?.connections() ?? []) {
        if (c.stats.srttMs <= 0) continue;
        if (c.state === "ESTABLISHED" || !sampled.has(c.id)) this.rtt.observe(c.stats.srttMs / 1000);
        next.add(c.id);
      }
      sampled = next;
    }, ms);
    (this.timer as { unref?: () => void }).unref?.();
  }

  stopSampler(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  render(view: DaemonView): string {
    const conns = view.transport?.connections() ?? [];
    // live connections plus the transport's sums over closed ones: exact and monotonic
    const totals = { ...(view.transport?.closedTotals ?? { bytesSent: 0, bytesRecv: 0, retransmits: 0, fastRetransmits: 0 }) };
    for (const c of conns) {
      totals.bytesSent += c.stats.bytesSent;
      totals.bytesRecv += c.stats.bytesRecv;
      totals.retransmits += c.stats.retransmits;
      totals.fastRetransmits += c.stats.fastRetransmits;
    }
    const w = new PromWriter();
    const paths: Record<string, number> = Object.fromEntries(PATHS.map((p) => [p, 0]));
    for (const id of view.tunnel.peers.keys()) {
      const p = view.tunnel.pathOf(id);
      if (p) paths[p] = (paths[p] ?? 0) + 1;
    }
    w.byLabel("pilot_daemon_peers", "gauge", "Tunnel peers by path (direct, punched, relayed).", "path", paths);
    const states: Record<string, number> = Object.fromEntries(STATES.map((s) => [s, 0]));
    for (const c of conns) states[c.state] = (states[c.state] ?? 0) + 1;
    w.byLabel("pilot_daemon_connections", "gauge", "Stream connections by state.", "state", states);
    const ts = view.tunnel.stats;
    w.byLabel("pilot_daemon_tunnel_bytes_total", "counter", "Tunnel frame bytes received (in) and sent (out).", "direction", { in: ts.bytesRecv, out: ts.bytesSent });
    w.byLabel("pilot_daemon_tunnel_packets_total", "counter", "Tunnel packets received (in) and sent (out).", "direction", { in: ts.pktsRecv, out: ts.pktsSent });
    w.byLabel("pilot_daemon_stream_bytes_total", "counter", "Stream payload bytes received (in) and sent (out).", "direction", { in: totals.bytesRecv, out: totals.bytesSent });
    w.byLabel("pilot_daemon_retransmits_total", "counter", "Stream segment retransmissions, by trigger.", "kind", { fast: totals.fastRetransmits, timeout: Math.max(0, totals.retransmits - totals.fastRetransmits) });
    w.histogram("pilot_daemon_rtt_seconds", "Smoothed RTT of stream connections, sampled every second (each at least once).", [[{}, this.rtt]]);
    w.byLabel("pilot_daemon_events_total", "counter", "Daemon events (handshake, trust, tunnel, connection, security).", "event", this.events);
    w.byLabel("pilot_daemon_dropped_frames_total", "counter", "Inbound tunnel frames dropped, by reason.", "reason", this.drops);
    w.gauge("pilot_daemon_ipc_clients", "Connected IPC clients.", view.ipc?.clients.size ?? 0);
    w.gauge("pilot_daemon_uptime_seconds", "Seconds since the metrics endpoint started.", Math.floor((Date.now() - this.started) / 1000));
    return w.text();
  }
}

function bump(m: Map<string, number>, k: string): void {
  const v = m.get(k);
  if (v !== undefined) m.set(k, v + 1);
  else if (m.size < MAX_KEYS) m.set(k, 1);
  else m.set("other", (m.get("other") ?? 0) + 1);
}

/** Serve GET /metrics on host:port. Throws (with the address) when the port cannot be bound. */
export function startMetricsServer(m: DaemonMetrics, view: DaemonView, host: string, port: number): { port: number; stop(): void } {
  m.startSampler(view);
  let server;
  try {
    server = Bun.serve({
      hostname: host,
      port,
      fetch(req) {
        const path = new URL(req.url).pathname;
        if (path !== "/metrics") return new Response("404 page not found\n", { status: 404 });
        if (req.method !== "GET" && req.method !== "HEAD") return new Response("method not allowed\n", { status: 405 });
        return new Response(m.render(view), { headers: { "content-type": PROM_CONTENT_TYPE } });
      },
    });
  } catch (e) {
    m.stopSampler();
    throw new Error(`metrics: listen ${host}:${port}: ${(e as Error).message}`);
  }
  return {
    port: server.port ?? 0,
    stop() {
      m.stopSampler();
      server.stop(true);
    },
  };
}
