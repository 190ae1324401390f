// Registry metrics in the Prometheus text format: request/error counters and latency histograms
// per request type (labels limited to the known request types, so a client cannot grow the label
// set), gauges supplied by the caller, and operation counters.
import { REQUEST_TYPES } from "../proto/registry.ts";
import { Histogram, PromWriter } from "../sys/prom.ts";

const BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1];

export class Metrics {
  requests = new Map<string, number>();
  errors = new Map<string, number>();
  hist = new Map<string, Histogram>();
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
    if (!h) this.hist.set(t, (h = new Histogram(BUCKETS)));
    h.observe(seconds);
  }

  render(g: { online: number; total: number; trust: number; taskExec: number }): string {
    const w = new PromWriter();
    w.byLabel("pilot_requests_total", "counter", "Total registry requests by type.", "type", this.requests);
    w.byLabel("pilot_errors_total", "counter", "Total registry errors by type.", "type", this.errors);
    w.histogram("pilot_request_duration_seconds", "Registry request duration.", [...this.hist].sort((a, b) => (a[0] < b[0] ? -1 : 1)).map(([k, h]) => [{ type: k }, h]));
    w.gauge("pilot_nodes_online", "Nodes seen within 3 minutes.", g.online);
    w.gauge("pilot_nodes_total", "Registered nodes.", g.total);
    w.gauge("pilot_trust_links", "Trust pairs.", g.trust);
    w.gauge("pilot_task_executors", "Nodes with task execution enabled.", g.taskExec);
    w.gauge("pilot_uptime_seconds", "Seconds since start.", Math.floor((Date.now() - this.started) / 1000));
    w.counter("pilot_registrations_total", "Successful registrations.", this.registrations);
    w.counter("pilot_deregistrations_total", "Deregistrations of existing nodes.", this.deregistrations);
    w.counter("pilot_trust_reports_total", "Trust reports.", this.trustReports);
    w.counter("pilot_trust_revocations_total", "Trust revocations.", this.trustRevocations);
    w.counter("pilot_handshake_requests_total", "Relayed handshake requests.", this.handshakeRequests);
    return w.text();
  }
}
