import { afterAll, describe, expect, test } from "bun:test";
import { gcm } from "@noble/ciphers/aes.js";
import { MemNet, memConnPair } from "./helpers/memconn.ts";
import { rfc3339NanoUtc, startWebhooks, webhookBody, WEBHOOK_QUEUE } from "../src/daemon/services/webhooks.ts";
import { TransportError } from "../src/transport/api.ts";
import { ProtoError } from "../src/proto/types.ts";
import { FakeRegistry, makeNode, rmDir, until } from "./helpers/services-ctx.ts";

const dirs: string[] = [];
afterAll(() => dirs.forEach(rmDir));
const A = { addr: { network: 0, node: 1 }, port: 49152 };
const B = { addr: { network: 0, node: 2 }, port: 7 };

describe("memconn (test double for StreamConn)", () => {
  test("segments ≤ 4096, order, backpressure, no half-close", async () => {
    const [x, y] = memConnPair(A, B, { highWater: 10_000, lowWater: 2_000 });
    const segs: number[] = [];
    y.onData = (c) => segs.push(c.length);
    y.pause();
    expect(x.write(new Uint8Array(9000))).toBe(true);
    expect(x.write(new Uint8Array(5000))).toBe(false);
    let drained = false;
    x.onDrain = () => (drained = true);
    y.resume();
    await until(() => segs.reduce((a, b) => a + b, 0) === 14000);
    expect(segs).toEqual([4096, 4096, 808, 4096, 904]);
    expect(drained).toBe(true);
    let ended = false, closedX = false;
    y.onEnd = () => (ended = true);
    x.onClose = () => (closedX = true);
    x.end();
    expect(() => x.write(new Uint8Array(1))).toThrow(TransportError);
    await until(() => ended && closedX);
    expect(() => y.write(new Uint8Array(1))).toThrow(TransportError); // no half-close
  });
});

describe("webhooks (docs/protocol.md §10.6)", () => {
  test("body format", () => {
    expect(rfc3339NanoUtc(Date.UTC(2026, 0, 15, 12, 34, 56, 120))).toBe("2026-01-15T12:34:56.12Z");
    expect(rfc3339NanoUtc(Date.UTC(2026, 0, 15, 12, 34, 56, 0))).toBe("2026-01-15T12:34:56Z");
    expect(webhookBody("file.received", 7, Date.UTC(2026, 0, 1), { size: 3, filename: "a<b" }))
      .toBe('{"event":"file.received","node_id":7,"timestamp":"2026-01-01T00:00:00Z","data":{"filename":"a\\u003cb","size":3}}');
    expect(webhookBody("node.deregistered", 7, 0)).toBe('{"event":"node.deregistered","node_id":7,"timestamp":"1970-01-01T00:00:00Z"}');
  });

  test("POSTs JSON in order to a local HTTP server; failures dropped; queue bounded", async () => {
    const bodies: string[] = [];
    let fail = false;
    const server = Bun.serve({
      hostname: "127.0.0.1", port: 0,
      async fetch(req) {
        expect(req.method).toBe("POST");
        expect(req.headers.get("content-type")).toBe("application/json");
        bodies.push(await req.text());
        return new Response("", { status: fail ? 500 : 200 });
      },
    });
    try {
      const wh = startWebhooks({ nodeId: () => 9, log: { debug() {}, info() {}, warn() {} } }, "");
      wh.emit("ignored"); // disabled: nothing queued
      expect(wh.stats().queued).toBe(0);
      wh.setUrl(`http://127.0.0.1:${server.port}/hook`);
      for (let i = 0; i < 5; i++) wh.emit("message.received", { size: i });
      await wh.idle();
      expect(bodies.map((b) => JSON.parse(b).data.size)).toEqual([0, 1, 2, 3, 4]);
      expect(JSON.parse(bodies[0]!)).toMatchObject({ event: "message.received", node_id: 9 });
      fail = true;
      wh.emit("x");
      await wh.idle();
      expect(wh.stats().failed).toBe(1);
      // overflow: emit more than the queue holds synchronously
      for (let i = 0; i < WEBHOOK_QUEUE + 50; i++) wh.emit("flood");
      expect(wh.stats().dropped).toBeGreaterThanOrEqual(49);
      wh.stop();
      wh.emit("after-stop");
      expect(wh.stats().queued).toBe(0);
    } finally {
      server.stop(true);
    }
  });
});
