// Gateway unit tests (no root needed): mapping table, bridge against an in-memory Pilot side
// (both close orders, client half-close, backpressure both ways), the Gateway engine on a 127.x
// subnet (no alias needed on Linux), and the IPC driver path against the fake daemon.
import { afterEach, describe, expect, test } from "bun:test";
import { createServer, connect, type Server, type Socket } from "node:net";
import { MappingTable, parseSubnet } from "../src/gateway/mapping.ts";
import { GatewayError } from "../src/gateway/errors.ts";
import { bridge, type BridgeStats, type PilotStream } from "../src/gateway/proxy.ts";
import { Gateway } from "../src/gateway/gateway.ts";
import { NoAliases, needsAlias } from "../src/gateway/alias.ts";
import { parsePorts } from "../src/gateway/main.ts";
import { startFakeDaemon } from "./ipc-fake-daemon.ts";

const A4 = "0:0000.0000.0004";
const A5 = "0:0000.0000.0005";
const A6 = "0:0000.0000.0006";

function errOf(fn: () => unknown): GatewayError {
  try {
    fn();
  } catch (e) {
    return e as GatewayError;
  }
  throw new Error("expected an error");
}

async function until(cond: () => boolean, what: string, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(5);
  }
}

describe("mapping table", () => {
  test("first IP is 10.4.0.1, then consecutive; same address returns its IP", () => {
    const t = new MappingTable("10.4.0.0/16");
    expect(t.map(A4).mapping.localIp).toBe("10.4.0.1");
    expect(t.map(A5).mapping.localIp).toBe("10.4.0.2");
    const again = t.map(A4, "10.4.0.9");
    expect(again.created).toBe(false);
    expect(again.mapping.localIp).toBe("10.4.0.1");
    expect(t.list().map((m) => m.localIp)).toEqual(["10.4.0.1", "10.4.0.2"]);
  });

  test("explicit IP checks", () => {
    const t = new MappingTable("10.4.0.0/16");
    expect(errOf(() => t.map(A4, "x")).message).toBe("invalid IP: x");
    expect(errOf(() => t.map(A4, "192.168.1.5")).message).toBe("IP 192.168.1.5 not in subnet 10.4.0.0/16");
    expect(t.map(A4, "10.4.7.7").mapping.localIp).toBe("10.4.7.7");
    expect(errOf(() => t.map(A5, "10.4.7.7")).message).toBe("IP 10.4.7.7 already mapped");
  });

  test("exhaustion, unmap, re-map and reuse of freed IPs", () => {
    const t = new MappingTable("10.9.0.0/30"); // usable: .1 .2
    expect(t.map(A4).mapping.localIp).toBe("10.9.0.1");
    expect(t.map(A5).mapping.localIp).toBe("10.9.0.2");
    const e = errOf(() => t.map(A6));
    expect(e.message).toBe("subnet exhausted");
    expect(e.code).toBe("internal");
    expect(t.unmap("10.9.0.1").addr.node).toBe(4);
    expect(t.map(A6).mapping.localIp).toBe("10.9.0.1"); // wrapped: freed IP reused
    expect(t.unmap(A5).localIp).toBe("10.9.0.2"); // by address
    expect(t.map(A5).mapping.localIp).toBe("10.9.0.2");
    const nf = errOf(() => t.unmap("10.9.0.3"));
    expect(nf.code).toBe("not_found");
    expect(nf.message).toBe("no mapping for 10.9.0.3");
  });

  test("fresh IPs are preferred over freed ones; non-.0 bases work", () => {
    const t = new MappingTable("10.4.0.0/16");
    t.map(A4);
    t.unmap("10.4.0.1");
    expect(t.map(A5).mapping.localIp).toBe("10.4.0.2");
    const t2 = new MappingTable("10.4.0.128/25");
    expect(t2.map(A4).mapping.localIp).toBe("10.4.0.129");
  });

  test("subnet parsing and port lists", () => {
    expect(parseSubnet("10.4.3.2/16").cidr).toBe("10.4.0.0/16");
    expect(errOf(() => parseSubnet("nope")).message).toBe("parse subnet: invalid CIDR address: nope");
    expect(errOf(() => parseSubnet("fd00::/64")).message).toContain("IPv6");
    expect(parsePorts("")).toEqual([80, 443, 1000, 1001, 1002, 7, 8080, 8443]);
    expect(parsePorts(" 80, 3000")).toEqual([80, 3000]);
    const e = errOf(() => parsePorts("80,x"));
    expect(e.code).toBe("invalid_argument");
    expect(e.message).toBe('invalid port "x": strconv.ParseUint: parsing "x": invalid syntax');
    expect(errOf(() => parsePorts("70000")).message).toContain("value out of range");
    expect(needsAlias("127.3.0.1", "linux")).toBe(false);
    expect(needsAlias("10.4.0.1", "linux")).toBe(true);
  });
});

/** In-memory Pilot side. */
class FakePilot implements PilotStream {
  received: Uint8Array[] = [];
  queue: (Uint8Array | null)[] = [];
  readers: ((c: Uint8Array | null) => void)[] = [];
  closed = false;
  pauses = 0;
  resumes = 0;
  reads = 0;
  holdWrites = false;
  held: (() => void)[] = [];
  write(d: Uint8Array): Promise<void> {
    this.received.push(new Uint8Array(d));
    if (!this.holdWrites) return Promise.resolve();
    return new Promise((r) => this.held.push(r));
  }
  releaseWrites(): void {
    this.holdWrites = false;
    for (const r of this.held.splice(0)) r();
  }
  read(): Promise<Uint8Array | null> {
    this.reads++;
    if (this.closed) return Promise.resolve(null);
    if (this.queue.length) return Promise.resolve(this.queue.shift()!);
    return new Promise((r) => this.readers.push(r));
  }
  push(c: Uint8Array | null): void {
    const r = this.readers.shift();
    if (r) r(c);
    else this.queue.push(c);
  }
  close(): void {
    this.closed = true;
    for (const r of this.readers.splice(0)) r(null);
  }
  pause(): void {
    this.pauses++;
  }
  resume(): void {
    this.resumes++;
  }
  get receivedBytes(): number {
    return this.received.reduce((n, c) => n + c.length, 0);
  }
}

interface Rig {
  client: Socket;
  pilot: FakePilot;
  done: Promise<BridgeStats>;
  server: Server;
}

const servers: Server[] = [];
afterEach(() => {
  for (const s of servers.splice(0)) s.close();
});

async function rig(pilot = new FakePilot(), lingerMs = 200): Promise<Rig> {
  let done!: Promise<BridgeStats>;
  const got = new Promise<void>((r) => {
    const server = createServer({ allowHalfOpen: true }, (s) => {
      done = bridge(s, pilot, { lingerMs, closeGraceMs: 2_000 });
      r();
    });
    servers.push(server);
  });
  const server = servers[servers.length - 1];
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const port = (server.address() as { port: number }).port;
  const client = connect({ host: "127.0.0.1", port, allowHalfOpen: true });
  client.on("error", () => {});
  await got;
  return { client, pilot, done, server };
}

function collect(s: Socket): { data: () => Buffer; ended: Promise<void> } {
  const chunks: Buffer[] = [];
  s.on("data", (c: Buffer) => chunks.push(c));
  const ended = new Promise<void>((r) => {
    s.on("end", () => r());
    s.on("close", () => r());
  });
  return { data: () => Buffer.concat(chunks), ended };
}

describe("bridge", () => {
  test("bytes both ways; Pilot side closes first → TCP gets everything then FIN, nothing leaks", async () => {
    const { client, pilot, done } = await rig();
    const got = collect(client);
    client.write("hello pilot");
    await until(() => pilot.receivedBytes === 11, "upstream bytes");
    expect(Buffer.concat(pilot.received).toString()).toBe("hello pilot");
    pilot.push(new TextEncoder().encode("hello tcp"));
    pilot.push(null);
    await got.ended;
    expect(got.data().toString()).toBe("hello tcp");
    client.destroy();
    const st = await done;
    expect(st.reason).toBe("pilot end");
    expect(pilot.closed).toBe(true);
    expect(st.bytesUp).toBe(11);
    expect(st.bytesDown).toBe(9);
  });

  test("TCP side closes first → Pilot side closed, pending read released", async () => {
    const { client, pilot, done } = await rig();
    client.write("x");
    await until(() => pilot.receivedBytes === 1, "upstream byte");
    client.destroy();
    const st = await done;
    expect(pilot.closed).toBe(true);
    // a FIN right after a request looks like a half-close: released after the linger
    expect(st.reason).toBe("linger");
    expect(pilot.readers.length).toBe(0);
  });

  test("client closes after reading the response → released at once (no linger)", async () => {
    const { client, pilot, done } = await rig(new FakePilot(), 600_000);
    const got = collect(client);
    client.write("req");
    await until(() => pilot.receivedBytes === 3, "request");
    pilot.push(new TextEncoder().encode("resp"));
    await until(() => got.data().length === 4, "response");
    client.end();
    const st = await done; // would hang for the 10-minute linger otherwise
    expect(st.reason).toBe("tcp end");
    expect(pilot.closed).toBe(true);
  });

  test("client reset while Pilot data is pending → everything released", async () => {
    const { client, pilot, done } = await rig(new FakePilot(), 600_000);
    client.write("req");
    await until(() => pilot.receivedBytes === 3, "request");
    client.resetAndDestroy();
    for (let i = 0; i < 64; i++) pilot.push(new Uint8Array(64 * 1024));
    const st = await done;
    expect(pilot.closed).toBe(true);
    expect(st.reason).toBe("tcp close");
  });

  test("client half-close still receives the response (reference loses it)", async () => {
    const { client, pilot, done } = await rig(new FakePilot(), 5_000);
    const got = collect(client);
    client.end("GET / HTTP/1.0\r\n\r\n");
    await until(() => pilot.receivedBytes > 0, "request");
    expect(pilot.closed).toBe(false);
    pilot.push(new TextEncoder().encode("HTTP/1.0 200 OK\r\n\r\nbody"));
    pilot.push(null);
    await got.ended;
    expect(got.data().toString()).toBe("HTTP/1.0 200 OK\r\n\r\nbody");
    await done;
    expect(pilot.closed).toBe(true);
  });

  test("client FIN with a silent Pilot side ends after the linger", async () => {
    const { client, pilot, done } = await rig(new FakePilot(), 100);
    const got = collect(client);
    client.end();
    await got.ended;
    const st = await done;
    expect(st.reason).toBe("linger");
    expect(pilot.closed).toBe(true);
  });

  test("backpressure TCP → Pilot: a stalled Pilot side stops the socket reads", async () => {
    const pilot = new FakePilot();
    pilot.holdWrites = true;
    const { client, done } = await rig(pilot);
    const total = 8 << 20;
    const payload = Buffer.alloc(total, 0x61);
    client.write(payload);
    await until(() => pilot.received.length >= 4, "4 pending writes");
    await Bun.sleep(100); // give the socket every chance to deliver more (it must not)
    expect(pilot.received.length).toBe(4);
    expect(pilot.receivedBytes).toBeLessThan(total);
    pilot.releaseWrites();
    await until(() => pilot.receivedBytes === total, "all bytes after release");
    client.destroy();
    await done;
  });

  test("backpressure Pilot → TCP: a client that does not read pauses the Pilot side", async () => {
    const pilot = new FakePilot();
    const chunk = new Uint8Array(64 * 1024);
    const n = 256; // 16 MiB
    for (let i = 0; i < n; i++) pilot.queue.push(chunk.map((_, j) => (i + j) & 0xff));
    pilot.queue.push(null);
    const { client, done } = await rig(pilot);
    client.pause();
    await until(() => pilot.pauses >= 1, "pilot pause");
    const consumed = pilot.reads;
    expect(consumed).toBeLessThan(n);
    let bytes = 0;
    let ok = true;
    let idx = 0;
    client.on("data", (c: Buffer) => {
      for (let k = 0; k < c.length; k++, idx++) {
        const i = Math.floor(idx / 65536), j = idx % 65536;
        if (c[k] !== ((i + j) & 0xff)) ok = false;
      }
      bytes += c.length;
    });
    const ended = new Promise<void>((r) => client.on("end", () => r()));
    client.resume();
    await ended;
    expect(bytes).toBe(n * 65536);
    expect(ok).toBe(true);
    expect(pilot.resumes).toBeGreaterThanOrEqual(1);
    client.destroy();
    await done;
  });
});

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", () => r()));
  const p = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return p;
}

function tcpRoundTrip(host: string, port: number, send: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect({ host, port });
    let out = "";
    s.on("error", reject);
    s.on("connect", () => s.write(send));
    s.on("data", (c) => {
      out += c.toString();
      if (out.length >= send.length) {
        s.destroy();
        resolve(out);
      }
    });
  });
}

describe("gateway engine (127.x subnet, no alias needed)", () => {
  test("map → listen → bridge; unmap closes; list; stop", async () => {
    const port = await freePort();
    const pilots: FakePilot[] = [];
    const gw = new Gateway({
      socket: "/nonexistent",
      subnet: "127.77.0.0/16",
      ports: [port],
      aliases: new NoAliases(),
      log: () => {},
      dial: async (addr, p) => {
        expect(p).toBe(port);
        const f = new FakePilot();
        // echo
        f.write = (d) => {
          f.push(new Uint8Array(d));
          return Promise.resolve();
        };
        pilots.push(f);
        void addr;
        return f;
      },
    });
    await gw.start();
    const m = await gw.map(A4);
    expect(m).toEqual({ local_ip: "127.77.0.1", pilot_addr: A4, listening: [port] });
    expect(await tcpRoundTrip("127.77.0.1", port, "ping-through-gateway")).toBe("ping-through-gateway");
    expect((await gw.map(A5, "127.77.0.9")).local_ip).toBe("127.77.0.9");
    expect(gw.list().map((x) => x.local_ip)).toEqual(["127.77.0.1", "127.77.0.9"]);
    await until(() => gw.activeBridges === 0, "bridge released");
    expect(pilots.every((p) => p.closed)).toBe(true);
    expect(await gw.unmap("127.77.0.1")).toEqual({ unmapped: "127.77.0.1", pilot_addr: A4 });
    await expect(tcpRoundTrip("127.77.0.1", port, "x")).rejects.toThrow();
    await gw.stop();
    await expect(tcpRoundTrip("127.77.0.9", port, "x")).rejects.toThrow();
    expect(gw.list()).toEqual([]);
  });

  test("listener failure is an error, not silent success", async () => {
    const port = await freePort();
    const blocker = createServer();
    await new Promise<void>((r) => blocker.listen(port, "127.78.0.1", () => r()));
    const gw = new Gateway({ socket: "/x", subnet: "127.78.0.0/16", ports: [port], aliases: new NoAliases(), log: () => {}, dial: async () => new FakePilot() });
    await gw.start();
    const e = await gw.map(A4).catch((x) => x as GatewayError);
    expect(e).toBeInstanceOf(GatewayError);
    expect((e as GatewayError).message).toContain("address already in use");
    expect(gw.list()).toEqual([]);
    blocker.close();
    await gw.stop();
  });

  test("through the IPC driver against the fake daemon", async () => {
    const fd = await startFakeDaemon();
    const port = await freePort();
    const gw = new Gateway({ socket: fd.path, subnet: "127.79.0.0/16", ports: [port], aliases: new NoAliases(), log: () => {} });
    try {
      await gw.start();
      await gw.map(A4);
      // The fake daemon answers "pong" to anything sent on ports other than 7/1000.
      expect(await tcpRoundTrip("127.79.0.1", port, "ping")).toBe("pong");
      const dial = fd.requests.find((r) => r.cmd === "Dial") as { addr: { node: number }; port: number };
      expect(dial.addr.node).toBe(4);
      expect(dial.port).toBe(port);
      await until(() => gw.activeBridges === 0, "bridge released");
      await until(() => fd.requests.some((r) => r.cmd === "Close"), "Close sent to daemon");
    } finally {
      await gw.stop();
      await fd.close();
    }
  });

  test("start fails clearly when the daemon is not running", async () => {
    const gw = new Gateway({ socket: "/tmp/definitely-not-a-pilot.sock", ports: [1], log: () => {} });
    const e = (await gw.start().catch((x) => x)) as GatewayError;
    expect(e.code).toBe("internal");
    expect(e.message).toBe("start gateway: connect to daemon: daemon is not running");
  });
});
