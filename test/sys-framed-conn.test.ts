// FramedConn with the registry codec, against a real loopback TCP server: messages both ways,
// batching, close reasons (peer close, local close, idle deadline) and the codec's typed errors
// (oversized, empty and non-JSON frames close the connection with that code).
import { afterEach, describe, expect, test } from "bun:test";
import type { Socket, TCPSocketListener } from "bun";
import { RegistryFrameDecoder, encodeFrame, registryJsonCodec } from "../src/proto/registry-frames.ts";
import { type CloseReason, type FramedConn, FramedConnError, dialFramed } from "../src/sys/framed-conn.ts";

const te = new TextEncoder();
const frame = (v: unknown) => encodeFrame(te.encode(JSON.stringify(v)));
const cat = (...parts: Uint8Array[]) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) { out.set(p, o); o += p.length; }
  return out;
};

interface Srv {
  port: number;
  /** Frames the server received, parsed. */
  got: unknown[];
  /** Socket chunks the server received (counts writes). */
  chunks: number;
  conn: Promise<Socket<undefined>>;
  stop(): void;
}

let servers: TCPSocketListener<undefined>[] = [];
afterEach(() => {
  for (const s of servers) s.stop(true);
  servers = [];
});

/** A loopback server; `onOpen` may write to the accepted socket. */
function server(onOpen: (s: Socket<undefined>) => void = () => {}, endAfter = 0): Srv {
  const dec = new RegistryFrameDecoder();
  let accepted!: (s: Socket<undefined>) => void;
  const srv: Srv = { port: 0, got: [], chunks: 0, conn: new Promise((r) => (accepted = r)), stop: () => l.stop(true) };
  const l = Bun.listen<undefined>({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      open(s) { accepted(s); onOpen(s); },
      data(s, chunk) {
        srv.chunks++;
        for (const f of dec.push(chunk)) srv.got.push(JSON.parse(new TextDecoder().decode(f)));
        if (endAfter && srv.got.length >= endAfter) s.end();
      },
    },
  });
  servers.push(l);
  srv.port = l.port;
  return srv;
}

const dial = (port: number, extra: Partial<Parameters<typeof dialFramed>[0]> = {}) =>
  dialFramed({ host: "127.0.0.1", port, timeoutMs: 5000, codec: registryJsonCodec, ...extra });

async function until(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 500 && !cond(); i++) await Bun.sleep(10);
  if (!cond()) throw new Error(`timed out: ${what}`);
}

describe("FramedConn", () => {
  test("messages both ways; sends of one turn leave in one write; peer close ends the iterator with eof", async () => {
    const srv = server((s) => s.write(cat(frame({ n: 1 }), frame({ n: 2 }))), 2);
    const c = await dial(srv.port);
    c.send({ type: "a" });
    c.send({ type: "b", x: "<&>" });
    const seen: unknown[] = [];
    const it = c.messages();
    let r = await it.next();
    while (!r.done) { seen.push(r.value); r = await it.next(); }
    expect(seen).toEqual([{ n: 1 }, { n: 2 }]);
    expect((r.value as CloseReason).code).toBe("eof");
    expect((await c.closed).code).toBe("eof");
    expect(srv.got).toEqual([{ type: "a" }, { type: "b", x: "<&>" }]);
    expect(srv.chunks).toBe(1);
    expect(() => c.send({ type: "late" })).toThrow(FramedConnError);
  });

  test("a slow consumer in iterator mode gets every message in order (reading pauses and resumes); callback mode", async () => {
    const N = 3000;
    const srv = server((s) => {
      const parts: Uint8Array[] = [];
      for (let i = 0; i < N; i++) parts.push(frame({ i, pad: "x".repeat(100) }));
      s.write(cat(...parts));
    });
    const c = await dial(srv.port, { maxQueued: 16 });
    let n = 0;
    for await (const m of c.messages()) {
      expect((m as { i: number }).i).toBe(n);
      if (++n % 100 === 0) await Bun.sleep(1);
      if (n === N) break;
    }
    expect(n).toBe(N);
    c.close();
    expect((await c.closed).code).toBe("closed");

    const srv2 = server((s) => s.write(cat(frame({ k: 1 }), frame({ k: 2 }))));
    const got: unknown[] = [];
    const closed: CloseReason[] = [];
    const c2 = await dial(srv2.port, { onMessage: (m) => got.push(m), onClose: (r) => closed.push(r) });
    await until(() => got.length === 2, "callback messages");
    expect(got).toEqual([{ k: 1 }, { k: 2 }]);
    c2.close("bye", "test done");
    await until(() => closed.length === 1, "onClose");
    expect(closed[0]).toEqual({ code: "bye", message: "test done" });
  });

  test("oversized frame: closed with frame_too_large before the body is buffered", async () => {
    const big = new Uint8Array(4);
    new DataView(big.buffer).setUint32(0, (1 << 20) + 1);
    const srv = server((s) => s.write(big));
    const c = await dial(srv.port);
    const it = c.messages();
    const r = await it.next();
    expect(r.done).toBe(true);
    expect((r.value as CloseReason).code).toBe("frame_too_large");
    expect(c.pendingBytes).toBeLessThanOrEqual(4);
  });

  test("a non-JSON frame after a good one in the same chunk: the good one is delivered, then malformed_json", async () => {
    const bad = encodeFrame(te.encode("{nope"));
    const srv = server((s) => s.write(cat(frame({ ok: true }), bad, frame({ after: 1 }))));
    const got: unknown[] = [];
    const c = await dial(srv.port, { onMessage: (m) => got.push(m) });
    const reason = await c.closed;
    expect(reason.code).toBe("malformed_json");
    expect(got).toEqual([{ ok: true }]);
  });

  test("an empty frame closes with empty_frame", async () => {
    const srv = server((s) => s.write(new Uint8Array(4)));
    const c = await dial(srv.port, { onMessage: () => {} });
    expect((await c.closed).code).toBe("empty_frame");
  });

  test("an oversized send throws ProtoError frame_too_large and the connection stays usable", async () => {
    const srv = server();
    const c: FramedConn = await dial(srv.port);
    expect(() => c.send({ blob: "x".repeat(1 << 20) })).toThrow(expect.objectContaining({ code: "frame_too_large" }));
    c.send({ type: "small" });
    await until(() => srv.got.length === 1, "small frame arrives");
    expect(srv.got).toEqual([{ type: "small" }]);
    c.close();
  });

  test("idle deadline: no inbound bytes closes with idle_timeout", async () => {
    const srv = server();
    const c = await dial(srv.port, { idleTimeoutS: 1, onMessage: () => {} });
    expect((await c.closed).code).toBe("idle_timeout");
    expect(c.isClosed).toBe(true);
    void srv;
  });

  test("dial failures are DialErrors", async () => {
    const l = Bun.listen<undefined>({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    const port = l.port;
    l.stop(true);
    await expect(dial(port)).rejects.toMatchObject({ name: "DialError", code: "connect_failed" });
  });
});
