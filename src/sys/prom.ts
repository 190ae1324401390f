// Prometheus text exposition format 0.0.4: one small writer shared by the rendezvous /metrics and
// the daemon's opt-in /metrics. No registry of collectors: callers render their current values
// at scrape time, which keeps hot paths to plain integer increments.

export const PROM_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

export type Labels = Record<string, string | number>;
export type MetricType = "counter" | "gauge" | "histogram";

/** Escape a label value: backslash, double quote and newline. */
export function escapeLabel(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

/** Escape HELP text: backslash and newline. */
function escapeHelp(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
}

/** Sample value as the text format spells it (integers plain, special floats by name). */
export function formatValue(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (v === Infinity) return "+Inf";
  if (v === -Infinity) return "-Inf";
  return String(v);
}

function labelText(l: Labels | undefined): string {
  if (!l) return "";
  const keys = Object.keys(l);
  if (keys.length === 0) return "";
  return "{" + keys.map((k) => `${k}="${escapeLabel(String(l[k]))}"`).join(",") + "}";
}

const NAME_RE = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;

/** Cumulative histogram with fixed upper bounds (seconds or any unit); +Inf is implicit. */
export class Histogram {
  readonly counts: number[];
  sum = 0;
  count = 0;
  constructor(readonly bounds: readonly number[]) {
    this.counts = new Array(bounds.length).fill(0);
  }
  observe(v: number): void {
    for (let i = 0; i < this.bounds.length; i++) if (v <= this.bounds[i]) this.counts[i]++;
    this.sum += v;
    this.count++;
  }
}

/** Builds one exposition document. Each metric family is written once with HELP and TYPE. */
export class PromWriter {
  private out: string[] = [];
  private seen = new Set<string>();

  private head(name: string, type: MetricType, help: string): void {
    if (!NAME_RE.test(name)) throw new Error(`invalid metric name ${JSON.stringify(name)}`);
    if (this.seen.has(name)) throw new Error(`metric family ${name} written twice`);
    this.seen.add(name);
    this.out.push(`# HELP ${name} ${escapeHelp(help)}`, `# TYPE ${name} ${type}`);
  }

  /** One family with one unlabelled sample. */
  single(name: string, type: "counter" | "gauge", help: string, v: number): this {
    this.head(name, type, help);
    this.out.push(`${name} ${formatValue(v)}`);
    return this;
  }

  counter(name: string, help: string, v: number): this {
    return this.single(name, "counter", help, v);
  }

  gauge(name: string, help: string, v: number): this {
    return this.single(name, "gauge", help, v);
  }

  /** One family with labelled samples (HELP/TYPE are written even when `samples` is empty). */
  family(name: string, type: "counter" | "gauge", help: string, samples: Iterable<[Labels, number]>): this {
    this.head(name, type, help);
    for (const [l, v] of samples) this.out.push(`${name}${labelText(l)} ${formatValue(v)}`);
    return this;
  }

  /** A family keyed by one label, from a map (sorted by key for stable output). */
  byLabel(name: string, type: "counter" | "gauge", help: string, label: string, m: Map<string, number> | Record<string, number>): this {
    const entries = (m instanceof Map ? [...m] : Object.entries(m)).sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    return this.family(name, type, help, entries.map(([k, v]) => [{ [label]: k }, v] as [Labels, number]));
  }

  /** A histogram family: one series per labels entry (or one unlabelled series). */
  histogram(name: string, help: string, series: Iterable<[Labels, Histogram]>): this {
    this.head(name, "histogram", help);
    for (const [l, h] of series) {
      for (let i = 0; i < h.bounds.length; i++) this.out.push(`${name}_bucket${labelText({ ...l, le: formatValue(h.bounds[i]) })} ${h.counts[i]}`);
      this.out.push(`${name}_bucket${labelText({ ...l, le: "+Inf" })} ${h.count}`);
      this.out.push(`${name}_sum${labelText(l)} ${formatValue(h.sum)}`);
      this.out.push(`${name}_count${labelText(l)} ${h.count}`);
    }
    return this;
  }

  /** Append an already rendered exposition document (its families must not repeat ours). */
  raw(text: string): this {
    for (const line of text.split("\n")) {
      if (line === "") continue;
      const m = /^# TYPE (\S+) /.exec(line);
      if (m) {
        if (this.seen.has(m[1])) throw new Error(`metric family ${m[1]} written twice`);
        this.seen.add(m[1]);
      }
      this.out.push(line);
    }
    return this;
  }

  text(): string {
    return this.out.length ? this.out.join("\n") + "\n" : "";
  }
}
