// Structured logging on stderr in the reference's slog shapes (cli.md §7.3):
//   text: time=2025-01-15T12:34:56.789+01:00 level=INFO msg="daemon registered" node_id=5
//   json: {"time":"...","level":"INFO","msg":"...","node_id":5}
// Shared by the daemon, rendezvous and gateway binaries.

export type Level = "debug" | "info" | "warn" | "error";
const RANK: Record<Level, number> = { debug: 0, info: 1, warn: 2, error: 3 };
const NAME: Record<Level, string> = { debug: "DEBUG", info: "INFO", warn: "WARN", error: "ERROR" };

export function parseLevel(s: string | undefined): Level {
  switch ((s ?? "").toLowerCase()) {
    case "debug":
      return "debug";
    case "warn":
    case "warning":
      return "warn";
    case "error":
      return "error";
    default:
      return "info";
  }
}

function pad(n: number, w = 2): string {
  return String(n).padStart(w, "0");
}

/** RFC 3339 local time with milliseconds (text) or nanosecond-width fraction (json). */
function localTime(d: Date, nanos: boolean): string {
  const off = -d.getTimezoneOffset();
  const sign = off >= 0 ? "+" : "-";
  const tz = off === 0 ? "Z" : `${sign}${pad(Math.floor(Math.abs(off) / 60))}:${pad(Math.abs(off) % 60)}`;
  const frac = nanos ? pad(d.getMilliseconds(), 3) + "000000" : pad(d.getMilliseconds(), 3);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${frac}${tz}`;
}

function textValue(v: unknown): string {
  let s: string;
  if (v instanceof Error) s = v.message;
  else if (typeof v === "string") s = v;
  else if (v === undefined) s = "<nil>";
  else if (typeof v === "object" && v !== null) s = JSON.stringify(v);
  else s = String(v);
  if (s === "" || /[\s="\\\x00-\x1f\x7f]/.test(s)) return JSON.stringify(s);
  return s;
}

export type Attrs = Record<string, unknown>;

export class Logger {
  constructor(
    private level: Level = "info",
    private format: "text" | "json" = "text",
    private sink: (line: string) => void = (l) => process.stderr.write(l),
    private base: Attrs = {},
  ) {}

  child(attrs: Attrs): Logger {
    return new Logger(this.level, this.format, this.sink, { ...this.base, ...attrs });
  }
  setLevel(l: Level): void {
    this.level = l;
  }
  enabled(l: Level): boolean {
    return RANK[l] >= RANK[this.level];
  }
  debug(msg: string, attrs?: Attrs): void {
    if (RANK.debug >= RANK[this.level]) this.write("debug", msg, attrs);
  }
  info(msg: string, attrs?: Attrs): void {
    if (RANK.info >= RANK[this.level]) this.write("info", msg, attrs);
  }
  warn(msg: string, attrs?: Attrs): void {
    if (RANK.warn >= RANK[this.level]) this.write("warn", msg, attrs);
  }
  error(msg: string, attrs?: Attrs): void {
    this.write("error", msg, attrs);
  }

  private write(l: Level, msg: string, attrs?: Attrs): void {
    const all = attrs ? { ...this.base, ...attrs } : this.base;
    const now = new Date();
    let line: string;
    if (this.format === "json") {
      const o: Attrs = { time: localTime(now, true), level: NAME[l], msg };
      for (const [k, v] of Object.entries(all)) o[k] = v instanceof Error ? v.message : v;
      line = JSON.stringify(o) + "\n";
    } else {
      line = `time=${localTime(now, false)} level=${NAME[l]} msg=${textValue(msg)}`;
      for (const [k, v] of Object.entries(all)) line += ` ${k}=${textValue(v)}`;
      line += "\n";
    }
    try {
      this.sink(line);
    } catch {
      /* logging never crashes the process */
    }
  }
}

export function makeLogger(level?: string, format?: string): Logger {
  return new Logger(parseLevel(level), (format ?? "").toLowerCase() === "json" ? "json" : "text");
}
