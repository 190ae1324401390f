// Daemon command line, -config files (docs/protocol.md §13.4) and slog-shaped logging (docs/protocol.md §13.4).
import { describe, expect, test } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FlagError, parseDuration, parseFlags } from "../src/sys/flags.ts";
import { DAEMON_FLAGS } from "../src/daemon/main.ts";
import { Logger, parseLevel } from "../src/sys/log.ts";

describe("flags", () => {
  test("Go flag forms: -x v, -x=v, --x v, bare booleans, -b=false", () => {
    const { values } = parseFlags(["-registry", "r:1", "--socket=/s", "-public", "-encrypt=false", "-keepalive", "2s"], DAEMON_FLAGS);
    expect(values.registry).toBe("r:1");
    expect(values.socket).toBe("/s");
    expect(values.public).toBe(true);
    expect(values.encrypt).toBe(false);
    expect(values.keepalive).toBe(2000);
    expect(values.beacon).toBe("34.71.57.205:9001"); // reference default kept
  });

  test("unknown flag, missing value and bad value are typed errors", () => {
    expect(() => parseFlags(["-nope"], DAEMON_FLAGS)).toThrow(FlagError);
    expect(() => parseFlags(["-registry"], DAEMON_FLAGS)).toThrow(/needs an argument/);
    expect(() => parseFlags(["-keepalive", "30"], DAEMON_FLAGS)).toThrow(/invalid value/);
    expect(() => parseFlags(["-max-conns-total", "x"], DAEMON_FLAGS)).toThrow(/invalid value/);
  });

  test("durations", () => {
    expect(parseDuration("1m30s")).toBe(90_000);
    expect(parseDuration("250ms")).toBe(250);
    expect(parseDuration("0")).toBe(0);
    expect(parseDuration("30")).toBeNull();
    expect(parseDuration("")).toBeNull();
  });

  test("-config fills only flags not given; hyphen beats underscore; bad values ignored", () => {
    const dir = mkdtempSync(join(tmpdir(), "pilot-flags-"));
    const f = join(dir, "daemon.json");
    writeFileSync(
      f,
      JSON.stringify({ registry: "cfg:9000", "log-level": "debug", log_level: "error", keepalive: 30, "idle-timeout": "90s", encrypt: "yes", hostname: "cfg-host", "max-conns-total": 1e6 }),
    );
    const { values } = parseFlags(["-config", f, "-hostname", "cli-host"], DAEMON_FLAGS);
    expect(values.registry).toBe("cfg:9000");
    expect(values["log-level"]).toBe("debug");
    expect(values.keepalive).toBe(0); // number without unit: silently ignored (reference)
    expect(values["idle-timeout"]).toBe(90_000);
    expect(values.encrypt).toBe(true); // "yes" cannot parse: default kept
    expect(values.hostname).toBe("cli-host"); // explicit flag wins
    expect(values["max-conns-total"]).toBe(0); // 1e+06 text fails integer parsing (reference)
  });

  test("-config with a missing or invalid file is a load error", () => {
    expect(() => parseFlags(["-config", "/nonexistent/x.json"], DAEMON_FLAGS)).toThrow(/load config/);
    const dir = mkdtempSync(join(tmpdir(), "pilot-flags-"));
    writeFileSync(join(dir, "bad.json"), "{nope");
    expect(() => parseFlags(["-config", join(dir, "bad.json")], DAEMON_FLAGS)).toThrow(/load config/);
  });
});

describe("logging", () => {
  test("text format: time, level, quoted msg, attrs quoted when needed", () => {
    const lines: string[] = [];
    const l = new Logger("info", "text", (s) => lines.push(s));
    l.info("daemon registered", { node_id: 5, addr: "0:0000.0000.0005", note: "has space", empty: "" });
    l.debug("hidden");
    expect(lines.length).toBe(1);
    expect(lines[0]).toMatch(/^time=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}(Z|[+-]\d\d:\d\d) level=INFO msg="daemon registered" node_id=5 addr=0:0000.0000.0005 note="has space" empty=""\n$/);
  });

  test("json format: keys time, level, msg, then attributes in call order", () => {
    const lines: string[] = [];
    const l = new Logger("debug", "json", (s) => lines.push(s));
    l.warn("heartbeat failed", { err: new Error("boom"), failures: 2 });
    const o = JSON.parse(lines[0]);
    expect(Object.keys(o)).toEqual(["time", "level", "msg", "err", "failures"]);
    expect(o.level).toBe("WARN");
    expect(o.err).toBe("boom");
  });

  test("levels: case-insensitive, warning alias, anything else = info", () => {
    expect(parseLevel("DEBUG")).toBe("debug");
    expect(parseLevel("warning")).toBe("warn");
    expect(parseLevel("Error")).toBe("error");
    expect(parseLevel("loud")).toBe("info");
  });
});
