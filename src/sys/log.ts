// The one logger of every program (pilot-daemon, pilotctl, pilot-gateway, rendezvous): structured
// records on stderr in the reference's Go log/slog shapes.
//   text: time=2025-01-15T12:34:56.789+01:00 level=INFO msg="daemon registered" node_id=5
//   json: {"time":"2025-01-15T12:34:56.789000000+01:00","level":"INFO","msg":"...","node_id":5}
//   go:   2025/01/15 12:34:56 INFO daemon registered node_id=5
// ("go" is Go's default logger, what pilotctl prints since it never configures logging.)
// consola does level filtering and dispatch; the reporters below print the exact line. consola's
// repeat folding ("(repeated N times)") is switched off: operators grep these lines, and a
// record must never be withheld or rewritten.
import { readlinkSync } from "node:fs";
import { createConsola, type ConsolaInstance, type ConsolaReporter, type LogObject } from "consola/core";

export type Level = "debug" | "info" | "warn" | "error";
export type Format = "text" | "json" | "go";
export type Attrs = Record<string, unknown>;
/** Function-style logging, for code that takes a plain callback (level in either case). */
export type LogFn = (level: Level | Uppercase<Level>, msg: string, attrs?: Attrs) => void;
export type Sink = (line: string) => void;

/** consola's numeric levels (error 0, warn 1, info 3, debug 4). */
const CONSOLA_LEVEL: Record<Level, number> = { debug: 4, info: 3, warn: 1, error: 0 };
const NAME: Record<string, string> = { debug: "DEBUG", info: "INFO", warn: "WARN", error: "ERROR" };

/** `-log-level`: case-insensitive, "warning" = warn, anything else = info. */
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

/** `-log-format`: "json" (case-insensitive) or anything else = text. */
export function parseFormat(s: string | undefined): Format {
  return (s ?? "").toLowerCase() === "json" ? "json" : "text";
}

function pad(n: number, w = 2): string {
  return String(n).padStart(w, "0");
}

// The first local-time call of the Date API in a process loads the time-zone database: ≈6 ms,
// most of a daemon's time to its first log line. Hosts and containers mostly run on UTC, which
// can be recognised without it: TZ names UTC (or is empty, which the C library reads as UTC),
// or TZ is unset and /etc/localtime is missing or links to a UTC zone file. Then the UTC fields
// are the local ones. Anything else (a zone, a copied zone file) takes the Date API.
const UTC_ZONE = /^:?(?:.*\/)?(?:Etc\/)?(?:UTC0?|UCT|Zulu|Universal|GMT0?|GMT[+-]0|Greenwich)?$/;
let utcHost: boolean | null = null;

/** Whether local time is UTC, decided from TZ and /etc/localtime (not from the Date API). */
export function hostIsUtc(): boolean {
  if (utcHost !== null) return utcHost;
  const tz = process.env.TZ;
  let zone: string | null = tz ?? null;
  if (tz === undefined) {
    try {
      zone = readlinkSync("/etc/localtime");
    } catch (e) {
      zone = (e as { code?: string }).code === "ENOENT" ? "" : null;
    }
  }
  return (utcHost = zone !== null && UTC_ZONE.test(zone));
}

/** RFC 3339 local time with milliseconds (text) or a nanosecond-width fraction (json). */
export function localTime(d: Date, nanos: boolean): string {
  if (hostIsUtc()) {
    const iso = d.toISOString(); // 2025-01-15T12:34:56.789Z
    return nanos ? iso.slice(0, 23) + "000000Z" : iso;
  }
  const off = -d.getTimezoneOffset();
  const sign = off >= 0 ? "+" : "-";
  const tz = off === 0 ? "Z" : `${sign}${pad(Math.floor(Math.abs(off) / 60))}:${pad(Math.abs(off) % 60)}`;
  const frac = nanos ? pad(d.getMilliseconds(), 3) + "000000" : pad(d.getMilliseconds(), 3);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${frac}${tz}`;
}

/**
 * A text value, quoted (Go-style escapes) when empty or holding spaces, '=', '"' or controls. A
 * backslash alone does not force quoting (as in Go's slog: `path=C:\x` stays bare).
 */
function textValue(v: unknown): string {
  let s: string;
  if (v instanceof Error) s = v.message;
  else if (typeof v === "string") s = v;
  else if (v === undefined) s = "<nil>";
  else if (typeof v === "bigint") s = v.toString();
  else if (typeof v === "object" && v !== null) s = safeJson(v);
  else s = String(v);
  if (s === "" || /[\s="\x00-\x1f\x7f]/.test(s)) return JSON.stringify(s);
  return s;
}

function safeJson(v: unknown): string {
  try {
    return JSON.stringify(v, (_k, x) => (typeof x === "bigint" ? x.toString() : x instanceof Error ? x.message : x)) ?? "null";
  } catch {
    return String(v);
  }
}

/** One record as a line (with its newline) in the given format. */
export function formatRecord(format: Format, level: Level, date: Date, msg: string, attrs: Attrs): string {
  if (format === "go") {
    let line: string;
    if (hostIsUtc()) {
      const iso = date.toISOString();
      line = `${iso.slice(0, 4)}/${iso.slice(5, 7)}/${iso.slice(8, 10)} ${iso.slice(11, 19)} ${NAME[level]} ${msg}`;
    } else line = `${date.getFullYear()}/${pad(date.getMonth() + 1)}/${pad(date.getDate())} ${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())} ${NAME[level]} ${msg}`;
    for (const [k, v] of Object.entries(attrs)) line += ` ${k}=${textValue(v)}`;
    return line + "\n";
  }
  if (format === "json") {
    const o: Attrs = { time: localTime(date, true), level: NAME[level], msg };
    for (const [k, v] of Object.entries(attrs)) o[k] = v instanceof Error ? v.message : v;
    return safeJson(o) + "\n";
  }
  let line = `time=${localTime(date, false)} level=${NAME[level]} msg=${textValue(msg)}`;
  for (const [k, v] of Object.entries(attrs)) line += ` ${k}=${textValue(v)}`;
  return line + "\n";
}

/** consola reporter printing the slog line; every call passes args = [msg, attrs]. */
function slogReporter(format: Format, sink: Sink): ConsolaReporter {
  return {
    log(o: LogObject) {
      try {
        const level = (o.type in NAME ? o.type : "info") as Level;
        sink(formatRecord(format, level, o.date, String(o.args[0] ?? ""), (o.args[1] as Attrs) ?? {}));
      } catch {
        /* logging never crashes the process */
      }
    },
  };
}

// Records go out through console.error, not process.stderr: Bun builds the Node stream behind
// process.stderr on first use (measured in the compiled executable: ≈10 ms in a program that had
// not loaded Node streams yet, ≈1.5 ms before the daemon's first log line). console.error prints one string argument verbatim (no format directives)
// and writes synchronously, so a record is never held in memory behind a slow reader (as Go's
// log/slog writes to os.Stderr). Every record ends in a newline, which console.error adds back.
const stderrSink: Sink = (l) => console.error(l.endsWith("\n") ? l.slice(0, -1) : l);

export class Logger {
  private readonly c: ConsolaInstance;

  /** `shared` is internal: children share their parent's consola instance (and so its level). */
  constructor(
    level: Level = "info",
    format: Format = "text",
    sink: Sink = stderrSink,
    private readonly base: Attrs = {},
    shared?: ConsolaInstance,
  ) {
    this.c = shared ?? createConsola({ level: CONSOLA_LEVEL[level], throttle: 0, reporters: [slogReporter(format, sink)] });
  }

  /** A logger adding `attrs` to every record (same level and destination). */
  child(attrs: Attrs): Logger {
    return new Logger("info", "text", stderrSink, { ...this.base, ...attrs }, this.c);
  }
  setLevel(l: Level): void {
    this.c.level = CONSOLA_LEVEL[l];
  }
  enabled(l: Level): boolean {
    return CONSOLA_LEVEL[l] <= this.c.level;
  }
  debug(msg: string, attrs?: Attrs): void {
    this.log("debug", msg, attrs);
  }
  info(msg: string, attrs?: Attrs): void {
    this.log("info", msg, attrs);
  }
  warn(msg: string, attrs?: Attrs): void {
    this.log("warn", msg, attrs);
  }
  error(msg: string, attrs?: Attrs): void {
    this.log("error", msg, attrs);
  }
  log(level: Level | Uppercase<Level>, msg: string, attrs?: Attrs): void {
    const l = level.toLowerCase() as Level;
    if (!(CONSOLA_LEVEL[l] <= this.c.level)) return;
    // Always two arguments: a lone object argument would be taken by consola as a log object.
    this.c[l](msg, attrs ? { ...this.base, ...attrs } : this.base);
  }
  /** The same logger as a plain callback. */
  get fn(): LogFn {
    return (level, msg, attrs) => this.log(level, msg, attrs);
  }
}

/** Logger for the `-log-level` / `-log-format` flag values (defaults: info, text). */
export function makeLogger(level?: string, format?: string, sink?: Sink): Logger {
  return new Logger(parseLevel(level), parseFormat(format), sink);
}

let library: Logger | null = null;
/** Logger of a program that configures none (pilotctl): Go default-logger lines, info and above. */
export function libraryLogger(): Logger {
  return (library ??= new Logger("info", "go"));
}

/** A logger that drops everything (tests, `-quiet`). */
export const noLogger: LogFn = () => {};
