// The one logger (src/sys/log.ts): consola underneath, the reference's exact line shapes on top.
import { describe, expect, test } from "bun:test";
import { formatRecord, Logger, makeLogger, parseFormat } from "../src/sys/log.ts";

const at = new Date(2025, 0, 15, 12, 34, 56, 789); // local time

describe("sys logger", () => {
  test("identical records are all printed (consola's repeat folding is off)", () => {
    const lines: string[] = [];
    const l = new Logger("info", "text", (s) => lines.push(s));
    for (let i = 0; i < 12; i++) l.warn("heartbeat failed", { failures: 1 });
    expect(lines.length).toBe(12);
    expect(lines.every((x) => x.includes("level=WARN msg=\"heartbeat failed\" failures=1"))).toBe(true);
  });

  test("child attributes come first, levels shared with the parent", () => {
    const lines: string[] = [];
    const l = new Logger("info", "json", (s) => lines.push(s));
    const c = l.child({ svc: "dx" });
    c.info("file saved", { path: "/x", bytes: 3 });
    c.debug("hidden");
    l.setLevel("debug");
    expect(c.enabled("debug")).toBe(true);
    c.debug("shown");
    expect(lines.length).toBe(2);
    const o = JSON.parse(lines[0]);
    expect(Object.keys(o)).toEqual(["time", "level", "msg", "svc", "path", "bytes"]);
    expect(o.time).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}(Z|[+-]\d\d:\d\d)$/);
    expect(JSON.parse(lines[1]).level).toBe("DEBUG");
  });

  test("fn: callback form takes either case; error is never filtered", () => {
    const lines: string[] = [];
    const l = makeLogger("ERROR", "text", (s) => lines.push(s));
    l.fn("WARN", "dropped");
    l.fn("error", "kept", { err: new Error("boom") });
    expect(lines.length).toBe(1);
    expect(lines[0]).toMatch(/ level=ERROR msg=kept err=boom\n$/);
  });

  test("go default-logger format (pilotctl library lines)", () => {
    const line = formatRecord("go", "info", at, "gateway connected", { subnet: "10.4.0.0/16", note: "a b" });
    expect(line).toBe('2025/01/15 12:34:56 INFO gateway connected subnet=10.4.0.0/16 note="a b"\n');
  });

  test("text quoting: empty, spaces, '=', quotes, controls; bigint and objects never throw", () => {
    const line = formatRecord("text", "info", at, "m", { a: "", b: "x=y", c: 'q"', d: "\n", e: 10n, f: { g: 1n }, u: undefined });
    expect(line).toMatch(/^time=2025-01-15T12:34:56\.789(Z|[+-]\d\d:\d\d) level=INFO msg=m a="" b="x=y" c="q\\"" d="\\n" e=10 f="{\\"g\\":\\"1\\"}" u=<nil>\n$/);
    expect(() => JSON.parse(formatRecord("json", "info", at, "m", { e: 10n }))).not.toThrow();
    expect(formatRecord("text", "info", at, "m", { path: "C:\\x" })).toEndWith(" path=C:\\x\n");
  });

  test("a sink that throws never reaches the caller", () => {
    const l = new Logger("info", "text", () => {
      throw new Error("disk full");
    });
    expect(() => l.error("x")).not.toThrow();
  });

  test("-log-format: json case-insensitive, anything else text", () => {
    expect(parseFormat("JSON")).toBe("json");
    expect(parseFormat("go")).toBe("text");
    expect(parseFormat(undefined)).toBe("text");
  });
});

describe("local time without the time-zone database on UTC hosts", () => {
  const LOG = new URL("../src/sys/log.ts", import.meta.url).pathname;
  // A fresh process per TZ value: the UTC decision is made once per process.
  function inZone(tz: string | undefined): { utc: boolean; text: string; go: string } {
    const env: Record<string, string | undefined> = { ...process.env, TZ: tz };
    if (tz === undefined) delete env.TZ;
    const code = `import { hostIsUtc, localTime, formatRecord } from ${JSON.stringify(LOG)};
const d = new Date(Date.UTC(2025, 0, 15, 23, 34, 56, 789));
console.log(JSON.stringify({ utc: hostIsUtc(), text: localTime(d, false), go: formatRecord("go", "info", d, "m", {}) }));`;
    const r = Bun.spawnSync([process.execPath, "-e", code], { env, stdout: "pipe", stderr: "pipe" });
    if (r.exitCode !== 0) throw new Error(r.stderr.toString());
    return JSON.parse(r.stdout.toString());
  }

  test("UTC zones take the UTC fields; other zones keep their offset", () => {
    for (const tz of ["UTC", "Etc/UTC", ":UTC", "", "UTC0", "/usr/share/zoneinfo/Etc/UTC"]) {
      expect(inZone(tz)).toEqual({ utc: true, text: "2025-01-15T23:34:56.789Z", go: "2025/01/15 23:34:56 INFO m\n" });
    }
    expect(inZone("Europe/Paris")).toEqual({ utc: false, text: "2025-01-16T00:34:56.789+01:00", go: "2025/01/16 00:34:56 INFO m\n" });
    expect(inZone("America/New_York")).toEqual({ utc: false, text: "2025-01-15T18:34:56.789-05:00", go: "2025/01/15 18:34:56 INFO m\n" });
  });

  test("with TZ unset, the answer agrees with the Date API", () => {
    const r = inZone(undefined);
    const off = new Date(Date.UTC(2025, 0, 15, 23, 34, 56, 789)).getTimezoneOffset();
    if (r.utc) expect(off).toBe(0);
    expect(r.text.endsWith("Z")).toBe(off === 0);
  });
});
