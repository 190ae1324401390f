// The one host:port parser (src/sys/hostport.ts): Go net.SplitHostPort rules plus a numeric port.
import { describe, expect, test } from "bun:test";
import { joinHostPort, parseHostPort } from "../src/sys/hostport.ts";
import { parseEndpoint } from "../src/daemon/tunnel-types.ts";
import { splitHostPort } from "../src/server/server.ts";

describe("parseHostPort", () => {
  test("accepted forms", () => {
    expect(parseHostPort("127.0.0.1:9000")).toEqual({ host: "127.0.0.1", port: 9000 });
    expect(parseHostPort(":9001")).toEqual({ host: "", port: 9001 });
    expect(parseHostPort("[::1]:0")).toEqual({ host: "::1", port: 0 });
    expect(parseHostPort("[::]:65535")).toEqual({ host: "::", port: 65535 });
    expect(parseHostPort("localhost:080")).toEqual({ host: "localhost", port: 80 });
  });

  test("rejected forms", () => {
    for (const s of ["", "9000", "host", "host:", "host:x", "host:-1", "host:65536", "host:1e3", "::1:9000", "[::1:9000", "[::1]]:9000", "a]:1", "host: 80"]) {
      expect(parseHostPort(s)).toBeNull();
    }
  });

  test("joinHostPort brackets IPv6 and round-trips", () => {
    expect(joinHostPort("::1", 9000)).toBe("[::1]:9000");
    expect(joinHostPort("10.0.0.1", 1)).toBe("10.0.0.1:1");
    expect(parseHostPort(joinHostPort("fe80::1", 4000))).toEqual({ host: "fe80::1", port: 4000 });
  });

  test("users: tunnel endpoints and rendezvous listen addresses", () => {
    expect(parseEndpoint("[::1]:4000")).toEqual({ ip: "::1", port: 4000 });
    expect(parseEndpoint("1.2.3.4:99999")).toBeNull();
    expect(splitHostPort(":9000")).toEqual({ host: "", port: 9000 });
    expect(() => splitHostPort("9000")).toThrow(/invalid address/);
  });
});
