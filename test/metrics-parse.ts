// A strict parser for the Prometheus text exposition format 0.0.4, for tests. Throws on anything
// a scraper could reject or misread: bad names or escapes, samples before their TYPE, a family
// split in two, duplicate series, negative counters, histograms whose buckets are not
// cumulative or whose +Inf bucket differs from _count.
export interface Family { name: string; type: string; help?: string; samples: Sample[] }
export interface Sample { name: string; labels: Record<string, string>; value: number }

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = new Set(["counter", "gauge", "histogram", "summary", "untyped"]);

function parseValue(s: string, line: number): number {
  if (s === "NaN") return NaN;
  if (s === "+Inf" || s === "Inf") return Infinity;
  if (s === "-Inf") return -Infinity;
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(s)) throw new Error(`line ${line}: bad value ${JSON.stringify(s)}`);
  return Number(s);
}

function parseLabels(s: string, line: number): { labels: Record<string, string>; rest: string } {
  const labels: Record<string, string> = {};
  let i = 0;
  for (;;) {
    while (s[i] === " ") i++;
    if (s[i] === "}") return { labels, rest: s.slice(i + 1) };
    const m = /^[a-zA-Z_][a-zA-Z0-9_]*/.exec(s.slice(i));
    if (!m) throw new Error(`line ${line}: bad label name at ${JSON.stringify(s.slice(i))}`);
    const name = m[0];
    i += name.length;
    if (s[i] !== "=" || s[i + 1] !== '"') throw new Error(`line ${line}: expected ="`);
    i += 2;
    let v = "";
    for (;;) {
      const c = s[i++];
      if (c === undefined) throw new Error(`line ${line}: unterminated label value`);
      if (c === '"') break;
      if (c === "\\") {
        const e = s[i++];
        if (e === "\\") v += "\\";
        else if (e === '"') v += '"';
        else if (e === "n") v += "\n";
        else throw new Error(`line ${line}: bad escape \\${e}`);
      } else v += c;
    }
    if (!LABEL.test(name)) throw new Error(`line ${line}: bad label name ${name}`);
    if (name in labels) throw new Error(`line ${line}: duplicate label ${name}`);
    labels[name] = v;
    if (s[i] === ",") i++;
    else if (s[i] !== "}") throw new Error(`line ${line}: expected , or } after label`);
  }
}

function familyOf(sample: string, fams: Map<string, Family>): Family | undefined {
  const f = fams.get(sample);
  if (f) return f;
  for (const suf of ["_bucket", "_sum", "_count"]) {
    if (sample.endsWith(suf)) {
      const h = fams.get(sample.slice(0, -suf.length));
      if (h && (h.type === "histogram" || (h.type === "summary" && suf !== "_bucket"))) return h;
    }
  }
  return undefined;
}

export function parseProm(text: string): Map<string, Family> {
  if (text.length && !text.endsWith("\n")) throw new Error("exposition must end with a newline");
  const fams = new Map<string, Family>();
  const closed = new Set<string>();
  let current: Family | null = null;
  const series = new Set<string>();
  const lines = text.split("\n");
  for (let n = 0; n < lines.length; n++) {
    const line = lines[n];
    const ln = n + 1;
    if (line === "") continue;
    if (line.startsWith("#")) {
      const m = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line);
      if (!m) continue; // plain comment
      const [, kind, name, rest] = m;
      if (!NAME.test(name)) throw new Error(`line ${ln}: bad metric name ${name}`);
      if (closed.has(name)) throw new Error(`line ${ln}: family ${name} appears twice`);
      let f = fams.get(name);
      if (f && f.samples.length) throw new Error(`line ${ln}: ${kind} for ${name} after its samples`);
      if (!f) fams.set(name, (f = { name, type: "untyped", samples: [] }));
      if (current && current !== f) closed.add(current.name);
      current = f;
      if (kind === "TYPE") {
        if (!TYPES.has(rest)) throw new Error(`line ${ln}: bad type ${rest}`);
        if (f.type !== "untyped" || (f as any).typed) throw new Error(`line ${ln}: second TYPE for ${name}`);
        f.type = rest;
        (f as any).typed = true;
      } else {
        if (f.help !== undefined) throw new Error(`line ${ln}: second HELP for ${name}`);
        f.help = rest;
      }
      continue;
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(.*)$/.exec(line);
    if (!m) throw new Error(`line ${ln}: bad sample ${JSON.stringify(line)}`);
    const name = m[1];
    let rest = m[2];
    let labels: Record<string, string> = {};
    if (rest.startsWith("{")) ({ labels, rest } = parseLabels(rest.slice(1), ln));
    const parts = rest.trim().split(/ +/);
    if (!rest.startsWith(" ") || parts.length < 1 || parts.length > 2) throw new Error(`line ${ln}: bad sample ${JSON.stringify(line)}`);
    const value = parseValue(parts[0], ln);
    if (parts.length === 2 && !/^-?\d+$/.test(parts[1])) throw new Error(`line ${ln}: bad timestamp`);
    const f = familyOf(name, fams);
    if (!f) throw new Error(`line ${ln}: sample ${name} without a TYPE line`);
    if (closed.has(f.name)) throw new Error(`line ${ln}: family ${f.name} is split`);
    if (current && current !== f) closed.add(current.name);
    current = f;
    if (f.type === "histogram" && name === f.name) throw new Error(`line ${ln}: histogram sample must be _bucket/_sum/_count`);
    if (name.endsWith("_bucket") && f.type === "histogram" && !("le" in labels)) throw new Error(`line ${ln}: bucket without le`);
    if (f.type === "counter" && !(value >= 0)) throw new Error(`line ${ln}: counter ${name} is ${value}`);
    const key = name + JSON.stringify(Object.entries(labels).sort());
    if (series.has(key)) throw new Error(`line ${ln}: duplicate series ${key}`);
    series.add(key);
    f.samples.push({ name, labels, value });
  }
  for (const f of fams.values()) if (f.type === "histogram") checkHistogram(f);
  return fams;
}

function checkHistogram(f: Family): void {
  const groups = new Map<string, Sample[]>();
  for (const s of f.samples) {
    const { le, ...rest } = s.labels;
    const k = JSON.stringify(Object.entries(rest).sort());
    if (!groups.has(k)) groups.set(k, []);
    groups.get(k)!.push(s);
  }
  for (const [k, ss] of groups) {
    const buckets = ss.filter((s) => s.name === `${f.name}_bucket`).map((s) => ({ le: parseValue(s.labels.le, 0), v: s.value }));
    const count = ss.find((s) => s.name === `${f.name}_count`);
    const sum = ss.find((s) => s.name === `${f.name}_sum`);
    if (!count || !sum) throw new Error(`histogram ${f.name}${k}: missing _sum or _count`);
    const inf = buckets.find((b) => b.le === Infinity);
    if (!inf) throw new Error(`histogram ${f.name}${k}: no +Inf bucket`);
    if (inf.v !== count.value) throw new Error(`histogram ${f.name}${k}: +Inf bucket ${inf.v} != count ${count.value}`);
    buckets.sort((a, b) => a.le - b.le);
    for (let i = 1; i < buckets.length; i++) if (buckets[i].v < buckets[i - 1].v) throw new Error(`histogram ${f.name}${k}: buckets not cumulative`);
  }
}

/** Value of one series (labels must match exactly), or undefined. */
export function sampleValue(fams: Map<string, Family>, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const f of fams.values()) {
    for (const s of f.samples) {
      if (s.name !== name) continue;
      const a = Object.entries(s.labels).sort(), b = Object.entries(labels).sort();
      if (JSON.stringify(a) === JSON.stringify(b)) return s.value;
    }
  }
  return undefined;
}
