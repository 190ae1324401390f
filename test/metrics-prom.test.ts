// src/sys/prom.ts (the exposition writer shared by the rendezvous and the daemon) against the
// strict test parser, and the parser against malformed input it must refuse.
import { describe, expect, test } from "bun:test";
import { Histogram, PromWriter, escapeLabel, formatValue } from "../src/sys/prom.ts";
import { parseProm, sampleValue } from "./metrics-parse.ts";

describe("PromWriter", () => {
  test("writes families the strict parser reads back exactly", () => {
    const h = new Histogram([0.01, 0.1, 1]);
    for (const v of [0.005, 0.05, 0.5, 5]) h.observe(v);
    const w = new PromWriter()
      .counter("x_total", "A counter.", 7)
      .gauge("y", "A gauge\nwith a newline and a \\ backslash.", -1.5)
      .byLabel("z_total", "counter", "By label.", "kind", new Map([["b", 2], ["a\"q\\\n", 1]]))
      .histogram("lat_seconds", "Latency.", [[{ op: "get" }, h]]);
    const text = w.text();
    expect(text).toContain('z_total{kind="a\\"q\\\\\\n"} 1\n');
    expect(text).toContain("# HELP y A gauge\\nwith a newline and a \\\\ backslash.\n");
    const f = parseProm(text);
    expect(sampleValue(f, "x_total")).toBe(7);
    expect(sampleValue(f, "y")).toBe(-1.5);
    expect(sampleValue(f, "z_total", { kind: 'a"q\\\n' })).toBe(1);
    expect(f.get("z_total")!.samples.map((s) => s.labels.kind)).toEqual(['a"q\\\n', "b"]); // sorted
    expect(sampleValue(f, "lat_seconds_bucket", { op: "get", le: "0.1" })).toBe(2);
    expect(sampleValue(f, "lat_seconds_bucket", { op: "get", le: "+Inf" })).toBe(4);
    expect(sampleValue(f, "lat_seconds_count", { op: "get" })).toBe(4);
    expect(sampleValue(f, "lat_seconds_sum", { op: "get" })).toBeCloseTo(5.555, 9);
  });

  test("refuses a family written twice and invalid names", () => {
    expect(() => new PromWriter().gauge("a", "x", 1).counter("a", "x", 1)).toThrow(/twice/);
    expect(() => new PromWriter().gauge("a", "x", 1).raw("# TYPE a gauge\na 1\n")).toThrow(/twice/);
    expect(() => new PromWriter().gauge("bad-name", "x", 1)).toThrow(/invalid metric name/);
  });

  test("value and label formatting", () => {
    expect([NaN, Infinity, -Infinity, 0, 12, 0.25].map(formatValue)).toEqual(["NaN", "+Inf", "-Inf", "0", "12", "0.25"]);
    expect(escapeLabel('a\\b"c\nd')).toBe('a\\\\b\\"c\\nd');
    expect(new PromWriter().text()).toBe("");
  });
});

describe("strict parser refuses", () => {
  const bad: [string, RegExp][] = [
    ["a 1\n", /without a TYPE/],
    ["# TYPE a gauge\na 1", /newline/],
    ["# TYPE a gauge\na{x=\"1\"} 1\n# TYPE b gauge\nb 1\na{x=\"2\"} 2\n", /split/],
    ["# TYPE a counter\na -1\n", /counter/],
    ["# TYPE a gauge\na{x=\"\\t\"} 1\n", /bad escape/],
    ["# TYPE a gauge\na 1\na 2\n", /duplicate series/],
    ["# TYPE a gauge\na one\n", /bad value/],
    ["# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n", /cumulative/],
    ["# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 1\n", /\+Inf bucket/],
    ["# TYPE a gauge\n# TYPE a gauge\na 1\n", /second TYPE/],
  ];
  for (const [text, re] of bad) test(JSON.stringify(text).slice(0, 60), () => expect(() => parseProm(text)).toThrow(re));
});
