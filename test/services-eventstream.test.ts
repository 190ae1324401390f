import { afterAll, describe, expect, test } from "bun:test";
import { ProtoError } from "../src/proto/types.ts";
import { MemNet } from "./helpers/memconn.ts";
import { EventClient, EventReader, decodeEvent, encodeEvent, startEventStream, MAX_TOPIC } from "../src/daemon/services/eventstream.ts";
import { FakeRegistry, makeNode, rmDir, until } from "./helpers/services-ctx.ts";

const dirs: string[] = [];
afterAll(() => dirs.forEach(rmDir));
const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const txt = (b: Uint8Array) => new TextDecoder().decode(b);

describe("event codec (docs/protocol.md §10.4)", () => {
  test("spec examples", () => {
    expect(hex(encodeEvent("status"))).toBe("0006" + hex(new TextEncoder().encode("status")) + "00000000");
    expect(hex(encodeEvent("status", new TextEncoder().encode("online")))).toBe("0006737461747573" + "00000006" + "6f6e6c696e65");
    const e = decodeEvent(encodeEvent("a", new Uint8Array([1, 2])));
    expect(txt(e.topic)).toBe("a");
    expect([...e.payload]).toEqual([1, 2]);
  });
  test("limits are typed errors", () => {
    expect(() => encodeEvent("x".repeat(MAX_TOPIC + 1))).toThrow(ProtoError);
    encodeEvent("x".repeat(MAX_TOPIC));
    const r = new EventReader(() => {});
    try { r.push(new Uint8Array([0x04, 0x01])); throw new Error("no"); } catch (e) { expect((e as ProtoError).code).toBe("topic_too_long"); }
    const r2 = new EventReader(() => {});
    try { r2.push(new Uint8Array([0, 1, 65, 1, 0, 0, 1])); throw new Error("no"); } catch (e) { expect((e as ProtoError).code).toBe("event_too_large"); }
  });
  test("every split point", () => {
    const all = Buffer.concat([encodeEvent("t1", new Uint8Array([9])), encodeEvent(""), encodeEvent("long-topic", new Uint8Array(300))]);
    for (let cut = 0; cut <= all.length; cut++) {
      const out: string[] = [];
      const r = new EventReader((e, raw) => { out.push(txt(e.topic) + ":" + e.payload.length); expect(raw.length).toBe(6 + e.topic.length + e.payload.length); });
      r.push(all.subarray(0, cut));
      r.push(all.subarray(cut));
      expect(out).toEqual(["t1:1", ":0", "long-topic:300"]);
    }
  });
  test("fuzz: random bytes only ever produce ProtoError", () => {
    let seed = 777;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
    let events = 0;
    for (let i = 0; i < 3000; i++) {
      const len = Math.floor(rnd() * 48);
      const b = new Uint8Array(len);
      for (let j = 0; j < len; j++) b[j] = rnd() < 0.7 ? 0 : Math.floor(rnd() * 256);
      try { decodeEvent(b); events++; } catch (e) { expect(e).toBeInstanceOf(ProtoError); }
      const r = new EventReader(() => events++);
      try {
        for (let o = 0; o < len; o += 3) r.push(b.subarray(o, o + 3));
      } catch (e) { expect(e).toBeInstanceOf(ProtoError); }
    }
    expect(events).toBeGreaterThan(0);
  });
});

describe("broker (docs/protocol.md §10.4)", () => {
  const net = new MemNet();
  const reg = new FakeRegistry();
  const srv = makeNode(net, reg, 7);
  const cli = makeNode(net, reg, 4);
  dirs.push(srv.dir, cli.dir);
  const broker = startEventStream(srv.ctx, { maxQueuedBytes: 64 * 1024 });
  const client = async (topic: string) => {
    const c = new EventClient(await cli.ctx.dial(srv.addr, 1002));
    c.subscribe(topic);
    return c;
  };

  test("exact topic, * wildcard, no echo to the publisher, order preserved", async () => {
    const a = await client("status");
    const b = await client("status");
    const star = await client("*");
    const other = await client("other");
    await until(() => broker.stats().subscribers === 4, 5000, "subscriptions");
    for (let i = 0; i < 5; i++) a.publish("status", "m" + i);
    a.publish("*", "to-star-only");
    for (let i = 0; i < 5; i++) {
      const e = await b.recv(5000);
      expect(txt(e.topic)).toBe("status");
      expect(txt(e.payload)).toBe("m" + i);
    }
    for (let i = 0; i < 5; i++) expect(txt((await star.recv(5000)).payload)).toBe("m" + i);
    expect(txt((await star.recv(5000)).payload)).toBe("to-star-only");
    // publisher itself (subscribed to status) received nothing; "other" received nothing:
    other.publish("status", "from-other");
    expect(txt((await a.recv(5000)).payload)).toBe("from-other");
    expect(txt((await b.recv(5000)).payload)).toBe("from-other");
    expect(txt((await star.recv(5000)).payload)).toBe("from-other");
    const st = broker.stats();
    expect(st.published).toBe(7);
    expect(srv.hooks.some((h) => h.event === "pubsub.subscribed" && h.data?.topic === "status" && /^0:0000\.0000\.0004:\d+$/.test(String(h.data?.remote)))).toBe(true);
    expect(srv.hooks.filter((h) => h.event === "pubsub.published").length).toBe(7);
    a.close();
    await until(() => broker.stats().subscribers === 3, 5000, "unsubscribe");
    expect(srv.hooks.some((h) => h.event === "pubsub.unsubscribed" && h.data?.topic === "status")).toBe(true);
    b.close(); star.close(); other.close();
    await until(() => broker.stats().subscribers === 0, 5000, "all gone");
  });

  test("slow subscriber is bounded: publisher and fast subscriber unaffected, drops counted", async () => {
    const slow = await client("load");
    const fast = await client("load");
    const pub = await client("pub-only");
    await until(() => broker.stats().subscribers === 3, 5000, "subscriptions");
    slow.conn.pause(); // stops reading: its stream backs up
    const payload = new Uint8Array(8192);
    const N = 400; // ~3.2 MiB total, far above the 64 KiB + transport buffer of the slow subscriber
    let fastGot = 0;
    fast.onEvent = () => fastGot++;
    for (let i = 0; i < N; i++) {
      if (!pub.publish("load", payload)) await new Promise<void>((r) => (pub.conn.onDrain = () => r()));
    }
    await until(() => fastGot === N, 20000, "fast subscriber");
    const st = broker.stats();
    expect(st.dropped).toBeGreaterThan(0);
    // the slow subscriber gets everything that was not dropped, once it reads again
    let slowGot = 0;
    slow.onEvent = () => slowGot++;
    slow.conn.resume();
    await until(() => slowGot === N - st.dropped, 20000, "slow subscriber drains");
    slow.close(); fast.close(); pub.close();
  });

  test("bad event drops the connection", async () => {
    const c = new EventClient(await cli.ctx.dial(srv.addr, 1002));
    c.conn.write(new Uint8Array([0xff, 0xff]));
    await expect(c.recv()).rejects.toBeDefined();
  });
});
