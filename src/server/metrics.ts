// Registry metrics in the Prometheus text format: request/error counters and latency histograms
// per request type (labels limited to the known request types, so a client cannot grow the label
// set), gauges supplied by the caller, and operation counters.
import { REQUEST_TYPES } from "../proto/registry.ts";

const BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1];

export class Metrics {
  requests = new Map<string, number>();
  errors = new Map<string, number>();
  hist = new Map<string, { counts: number[]; sum: number; n: number }>();
  registrations = 0;
  deregistrations = 0;
  trustReports = 0;
  trustRevocations = 0;
  handshakeRequests = 0;
  total = 0;
  readonly started = Date.now();

  observe(type: string, seconds: number, ok: boolean): void {
    const t = REQUEST_TYPES.has(type) && type !== "subscribe_replication" ? type : "other";
    this.total++;
    this.requests.set(t, (this.requests.get(t) ?? 0) + 1);
    if (!ok) this.errors.set(t, (this.errors.get(t) ?? 0) + 1);
    let h = this.hist.get(t);
    if (!h) this.hist.set(t, (h = { counts: new Array(BUCKETS.length).fill(0), sum: 0, n: 0 }));
    for (let i = 0; i < BUCKETS.length; i++) if (seconds <= BUCKETS[i]) h.counts[i]++;
    h.sum += seconds;
    h.n++;
  }

  render(g: { online: number; total: number; trust: number; taskExec: number }): string {
    const out: string[] = [];
    const esc = (s: string) => s.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
    const counter = (name: string, help: string, m: Map<string, number>) => {
      out.push(`# HELP ${name} ${help}`, `# TYPE ${name} counter`);
      for (const [k, v] of [...m].sort()) out.push(`${name}{type="${esc(k)}"} ${v}`);
    };
    counter("pilot_requests_total", "Total registry requests by type.", this.requests);
    counter("pilot_errors_total", "Total registry errors by type.", this.errors);
    out.push("# HELP pilot_request_duration_seconds Registry request duration.", "# TYPE pilot_request_duration_seconds histogram");
    for (const [k, h] of [...this.hist].sort((a, b) => (a[0] < b[0] ? -1 : 1))) {
      for (let i = 0; i < BUCKETS.length; i++) out.push(`pilot_request_duration_seconds_bucket{type="${esc(k)}",le="${BUCKETS[i]}"} ${h.counts[i]}`);
      out.push(`pilot_request_duration_seconds_bucket{type="${esc(k)}",le="+Inf"} ${h.n}`);
      out.push(`pilot_request_duration_seconds_sum{type="${esc(k)}"} ${h.sum}`);
      out.push(`pilot_request_duration_seconds_count{type="${esc(k)}"} ${h.n}`);
    }
    const gauge = (n: string, help: string, v: number) => out.push(`# HELP ${n} ${help}`, `# TYPE ${n} gauge`, `${n} ${v}`);
    gauge("pilot_nodes_online", "Nodes seen within 3 minutes.", g.online);
    gauge("pilot_nodes_total", "Registered nodes.", g.total);
    gauge("pilot_trust_links", "Trust pairs.", g.trust);
    gauge("pilot_task_executors", "Nodes with task execution enabled.", g.taskExec);
    gauge("pilot_uptime_seconds", "Seconds since start.", Math.floor((Date.now() - this.started) / 1000));
    const c = (n: string, help: string, v: number) => out.push(`# HELP ${n} ${help}`, `# TYPE ${n} counter`, `${n} ${v}`);
    c("pilot_registrations_total", "Successful registrations.", this.registrations);
    c("pilot_deregistrations_total", "Deregistrations of existing nodes.", this.deregistrations);
    c("pilot_trust_reports_total", "Trust reports.", this.trustReports);
    c("pilot_trust_revocations_total", "Trust revocations.", this.trustRevocations);
    c("pilot_handshake_requests_total", "Relayed handshake requests.", this.handshakeRequests);
    return out.join("\n") + "\n";
  }
}
