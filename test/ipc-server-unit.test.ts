// IpcServer (src/daemon/ipc-server.ts) against a FAKE DaemonApi over a REAL Unix socket, with raw
// frames: every command with its exact reply bytes, the reference's Error texts, malformed,
// zero-length and oversized frames, and the outgoing frame limit.
import { describe, expect, test } from "bun:test";
import { INFO_OK, addr, u16, Raw, api, cat, errBody, frame, fresh, hex, path, srv, td, te, u32, until, installHooks } from "./helpers/ipc-unit.ts";

installHooks();

describe("commands and exact reply bytes", () => {
  test("Bind → BindOK echoing the port; duplicate and built-in ports → Error (raw bytes as docs/protocol.md §9.2)", async () => {
    await fresh();
    const c = await Raw.open(path);
    c.send(Uint8Array.from([0, 0, 0, 3, 0x01, 0x03, 0xe8]));
    expect(await c.nextHex()).toBe("0203e8");
    expect(hex(c.raw.splice(0).reduce((a, b) => cat(a, b), new Uint8Array(0)))).toBe("000000030203e8");
    c.req([0x01, 0x03, 0xe8, 0xff]); // extra bytes ignored
    expect(hex(await c.next())).toBe(hex(errBody("port 1000 already bound")));
    c.raw = [];
    c.req([0x01, 0x00, 0x07]);
    await c.next();
    expect(hex(c.raw.splice(0).reduce((a, b) => cat(a, b), new Uint8Array(0)))).toBe(hex(frame(errBody("port 7 already bound"))));
    expect(hex(frame(errBody("port 7 already bound")).subarray(0, 4))).toBe("00000017");
    c.req([0x01, 0x00, 0x00]); // port 0 binds port 0
    expect(await c.nextHex()).toBe("020000");
    expect(api.calls).toEqual(["bind 1000", "bind 0"]);
  });

  test("Info → InfoOK with Go-sorted, Go-escaped JSON; payload ignored", async () => {
    await fresh();
    const c = await Raw.open(path);
    c.req([0x0d, 1, 2, 3]);
    expect(hex(await c.next())).toBe(hex(INFO_OK));
  });

  test("Dial → DialOK, Send (no reply) → peer, peer data → Recv push, Close → CloseOK reply + push", async () => {
    await fresh();
    const c = await Raw.open(path);
    c.send(frame([0x03, ...addr({ network: 0, node: 7 }), 0x00, 0x07]));
    const ok = await c.next();
    expect(ok[0]).toBe(0x04);
    expect(ok.length).toBe(5);
    const id = new DataView(ok.buffer, ok.byteOffset).getUint32(1);
    expect(api.calls).toEqual(["dial 7:7"]);
    const peer = api.remotes.get(id)!;
    const got: string[] = [];
    peer.onData = (d) => got.push(td.decode(d));
    c.req(cat([0x06, ...u32(id)], "ping-0"));
    c.req([0x06, ...u32(id)]); // empty Send: no-op, no reply
    await until(() => got.join("") === "ping-0", "peer receives ping-0");
    peer.write(te.encode("pong-0"));
    expect(await c.nextHex()).toBe(hex(cat([0x07, ...u32(id)], "pong-0")));
    c.req([0x08, ...u32(id)]);
    const a = await c.nextHex();
    const b = await c.nextHex();
    const closeOk = hex(Uint8Array.from([0x09, ...u32(id)]));
    expect([a, b]).toEqual([closeOk, closeOk]);
    expect(api.calls).toContain(`close ${id}`);
    await until(() => api.remoteEnded.has(id), "peer sees FIN");
    await c.sync(); // no stray replies (e.g. for the empty Send)
  });

  test("a socket read is freed once the Send data in it is acknowledged; one with another request is left to the collector", async () => {
    await fresh();
    const c = await Raw.open(path);
    c.req([0x03, ...addr({ network: 0, node: 7 }), 0x00, 0x07]);
    const id = new DataView((await c.next()).buffer).getUint32(1);
    const peer = api.remotes.get(id)!;
    let got = "";
    peer.onData = (d) => (got += td.decode(d));
    const rb = srv.readBuffers;
    const f0 = rb.freed;
    c.send(cat(frame(cat([0x06, ...u32(id)], "aaaa")), frame(cat([0x06, ...u32(id)], "bbbb")))); // one write, two Sends
    await until(() => got === "aaaabbbb", "peer receives both");
    await until(() => rb.freed > f0, "the read is freed"); // the fake connection acknowledges at once
    const f1 = rb.freed;
    c.send(cat(frame(cat([0x0b, ...addr({ network: 1, node: 7 }), ...u16(1234)], "dgram")), frame(cat([0x06, ...u32(id)], "cccc"))));
    await until(() => got.endsWith("cccc") && api.sendTos.length === 1, "SendTo and Send handled");
    c.req(cat([0x06, ...u32(id)], "dddd"));
    await until(() => got.endsWith("dddd"), "peer receives dddd");
    await until(() => rb.freed > f1, "the last read is freed");
    expect(rb.freed).toBe(f1 + 1); // the read holding a SendTo was not
    expect(api.sendTos[0].data).toBe("dgram");
  });

  test("Close of an unknown id still gets CloseOK; failing Dial → Error with the daemon's text", async () => {
    await fresh();
    const c = await Raw.open(path);
    c.req([0x08, ...u32(0xdeadbeef)]);
    expect(await c.nextHex()).toBe("09deadbeef");
    c.req([0x03, ...addr({ network: 0, node: 7 }), ...u16(9)]);
    expect(hex(await c.next())).toBe(hex(errBody("connection refused")));
  });

  test("Send on unknown conn and SendTo failures produce no reply (docs/differences.md); SendTo reaches the daemon", async () => {
    await fresh();
    const c = await Raw.open(path);
    c.req(cat([0x06, ...u32(424242)], "x"));
    c.req(cat([0x0b, ...addr({ network: 1, node: 7 }), ...u16(1234)], "dgram"));
    c.req(cat([0x0b, ...addr({ network: 0, node: 66 }), ...u16(1)], "fails"));
    c.req(cat([0x0b, ...addr({ network: 0, node: 0xffffffff }), ...u16(1)], "broadcast"));
    c.req([0x0d]);
    expect(hex(await c.next())).toBe(hex(INFO_OK)); // nothing before the InfoOK
    await until(() => api.sendTos.length === 2, "two datagrams handed to the daemon");
    expect(api.sendTos).toEqual([
      { addr: { network: 1, node: 7 }, port: 1234, data: "dgram" },
      { addr: { network: 0, node: 66 }, port: 1, data: "fails" },
    ]); // broadcast refused before reaching the daemon
  });

  test("JSON commands: Handshake subs, ResolveHostname, SetHostname, SetVisibility, Deregister, SetTags, SetWebhook, SetTaskExec", async () => {
    await fresh();
    const c = await Raw.open(path);
    const cases: [Uint8Array, Uint8Array][] = [
      [cat([0x0f, 0x01, ...u32(7)], "please"), cat([0x10], '{"node_id":7,"status":"sent"}')],
      [cat([0x0f, 0x02, ...u32(7)]), cat([0x10], '{"node_id":7,"status":"approved"}')],
      [cat([0x0f, 0x03, ...u32(8)], "no"), cat([0x10], '{"node_id":8,"status":"rejected"}')],
      [cat([0x0f, 0x04, 0xff]), cat([0x10], '{"pending":[]}')],
      [cat([0x0f, 0x05]), cat([0x10], '{"trusted":[]}')],
      [cat([0x0f, 0x06, ...u32(7)]), cat([0x10], '{"node_id":7,"status":"revoked"}')],
      [cat([0x0f, 0x06, ...u32(99)]), errBody("handshake revoke: node 99 was not trusted")],
      [cat([0x11], "other-agent"), cat([0x12], '{"address":"0:0000.0000.0003","hostname":"other-agent","node_id":3,"public":false,"type":"resolve_hostname_ok"}')],
      [cat([0x11], "nope"), errBody("resolve_hostname: registry: request failed")],
      [cat([0x13], "my-agent"), cat([0x14], '{"hostname":"my-agent","node_id":5,"type":"set_hostname_ok"}')],
      [cat([0x13]), cat([0x14], '{"hostname":"","node_id":5,"type":"set_hostname_ok"}')],
      [cat([0x15, 0x01]), cat([0x16], '{"node_id":5,"type":"set_visibility_ok","visibility":"public"}')],
      [cat([0x15, 0x02]), cat([0x16], '{"node_id":5,"type":"set_visibility_ok","visibility":"private"}')],
      [cat([0x17, 0x99]), cat([0x18], '{"type":"deregister_ok"}')],
      [cat([0x19], '["web","#api"]'), cat([0x1a], '{"node_id":5,"tags":["web","#api"],"type":"set_tags_ok"}')],
      [cat([0x19], "null"), cat([0x1a], '{"node_id":5,"tags":null,"type":"set_tags_ok"}')],
      [cat([0x1b], "http://127.0.0.1:9/h?a=1&b=2"), cat([0x1c], '{"webhook":"http://127.0.0.1:9/h?a=1\\u0026b=2"}')],
      [cat([0x1b]), cat([0x1c], '{"webhook":""}')],
      [cat([0x1d, 0x01]), cat([0x1e], '{"node_id":5,"task_exec":true,"type":"set_task_exec_ok"}')],
      [cat([0x1d, 0x00]), cat([0x1e], '{"node_id":5,"task_exec":false,"type":"set_task_exec_ok"}')],
    ];
    for (const [req] of cases) c.req(req); // pipelined: replies must come back in request order
    for (const [req, want] of cases) {
      expect(`${hex(req)} -> ${td.decode(await c.next())}`).toBe(`${hex(req)} -> ${td.decode(want)}`);
    }
    expect(api.calls).toContain('handshake {"sub":"request","nodeId":7,"justification":"please"}');
    expect(api.calls).toContain('handshake {"sub":"reject","nodeId":8,"reason":"no"}');
    expect(api.calls).toContain('set_hostname ""');
  });
});

describe("malformed requests → Error texts of docs/protocol.md §9.2", () => {
  test("missing fields per command, unknown command, reply bytes from a client, bad handshake sub, set_tags errors", async () => {
    await fresh();
    const c = await Raw.open(path);
    const cases: [number[] | Uint8Array, string][] = [
      [[0x01], "bind: missing port"],
      [[0x01, 0x03], "bind: missing port"],
      [[0x03, 0, 0, 0, 0, 0, 7, 0], "dial: missing address/port"],
      [[0x08, 0, 0, 1], "close: missing conn_id"],
      [[0x0f], "handshake: missing sub-command"],
      [[0x0f, 0x01, 0, 0, 7], "handshake request: missing node_id"],
      [[0x0f, 0x02], "handshake approve: missing node_id"],
      [[0x0f, 0x03, 0], "handshake reject: missing node_id"],
      [[0x0f, 0x06, 0, 0, 0], "handshake revoke: missing node_id"],
      [[0x0f, 0x09], "handshake: unknown sub-command 0x09"],
      [[0x0f, 0xab, 1, 2, 3, 4], "handshake: unknown sub-command 0xAB"],
      [[0x11], "resolve_hostname: missing hostname"],
      [[0x15], "set_visibility: missing value"],
      [[0x1d], "set_task_exec: missing value"],
      [[0x2a], "unknown command: 0x2A"],
      [[0x2a, 1, 2, 3], "unknown command: 0x2A"],
      [[0x00], "unknown command: 0x00"],
      [[0xff], "unknown command: 0xFF"],
      // reply / push bytes sent by a client, well-formed or not
      [[0x02, 0x03, 0xe8], "unknown command: 0x02"],
      [[0x04, 0, 0, 0, 1], "unknown command: 0x04"],
      [[0x05], "unknown command: 0x05"],
      [[0x07, 0, 0, 0, 1, 0x41], "unknown command: 0x07"],
      [[0x09, 0, 0, 0, 1], "unknown command: 0x09"],
      [[0x0a, 0, 1, 0x41], "unknown command: 0x0A"],
      [[0x0a], "unknown command: 0x0A"],
      [[0x0c, ...addr({ network: 0, node: 1 }), 0, 1, 0, 2, 0x41], "unknown command: 0x0C"],
      [cat([0x0e], '{"a":1}'), "unknown command: 0x0E"],
      [cat([0x0e], "not json"), "unknown command: 0x0E"],
      [cat([0x10], "{}"), "unknown command: 0x10"],
      [cat([0x1e], "{}"), "unknown command: 0x1E"],
      [cat([0x19], '["a","b","c","d"]'), "set_tags: maximum 3 tags allowed"],
    ];
    for (const [req] of cases) c.req(req);
    for (const [req, want] of cases) {
      const got = await c.next();
      expect(`${hex(Uint8Array.from(req))} -> ${hex(got.subarray(0, 3))} ${td.decode(got.subarray(3))}`).toBe(`${hex(Uint8Array.from(req))} -> 0a0001 ${want}`);
    }
    // invalid JSON tags: one "set_tags: invalid JSON: " prefix, then the decoder's message
    for (const bad of ["[", "{}", '["a",1]', '"x"', ""]) {
      c.req(cat([0x19], bad));
      const got = td.decode((await c.next()).subarray(3));
      expect(got.startsWith("set_tags: invalid JSON: ")).toBe(true);
      expect(got.slice("set_tags: invalid JSON: ".length)).not.toContain("set_tags");
      expect(got.length).toBeGreaterThan("set_tags: invalid JSON: ".length);
    }
    // Send / SendTo too short: no reply at all; zero-length frames ignored
    c.req([0x06, 0, 0, 1]);
    c.req([0x0b, 0, 0, 0, 0, 0, 7, 0]);
    c.send(Uint8Array.from([0, 0, 0, 0, 0, 0, 0, 0]));
    c.req([0x0d]);
    expect(hex(await c.next())).toBe(hex(INFO_OK));
    expect(api.calls).toEqual([]); // nothing reached the daemon
  });

  test("a DaemonApi that throws synchronously yields an Error reply, not a dead server", async () => {
    await fresh();
    const c = await Raw.open(path);
    api.infoThrows = true;
    c.req([0x0d]);
    expect(hex(await c.next())).toBe(hex(errBody("info exploded")));
    api.infoThrows = false;
    c.req([0x0d]);
    expect(hex(await c.next())).toBe(hex(INFO_OK));
  });

  test("a frame split across many writes (byte by byte) and many frames in one write", async () => {
    await fresh();
    const c = await Raw.open(path);
    const f = frame([0x01, 0x10, 0x00]);
    for (const b of f) {
      c.send(Uint8Array.of(b));
      await Bun.sleep(1); // pacing: each byte arrives in its own read
    }
    expect(await c.nextHex()).toBe("021000");
    c.send(cat(frame([0x0d]), frame([0x01, 0x10, 0x01]), frame([0x08, 0, 0, 0, 5])));
    expect(hex(await c.next())).toBe(hex(INFO_OK));
    expect(await c.nextHex()).toBe("021001");
    expect(await c.nextHex()).toBe("0900000005");
  });
});

describe("frame sizes", () => {
  test("2 MiB Send frame is accepted and delivered; 16 MiB + 64 frame accepted", async () => {
    await fresh();
    const c = await Raw.open(path);
    c.req([0x03, ...addr({ network: 0, node: 7 }), ...u16(1000)]);
    const ok = await c.next();
    const id = new DataView(ok.buffer, ok.byteOffset).getUint32(1);
    const peer = api.remotes.get(id)!;
    let got = 0;
    let sum = 0;
    peer.onData = (d) => {
      got += d.length;
      for (const x of d) sum = (sum + x) % 65521;
    };
    const data = new Uint8Array(2 * 1024 * 1024);
    for (let i = 0; i < data.length; i++) data[i] = (i * 31) & 255;
    let want = 0;
    for (const x of data) want = (want + x) % 65521;
    c.req(cat([0x06, ...u32(id)], data));
    await until(() => got === data.length, "peer receives 2 MiB");
    expect(sum).toBe(want);
    // exactly the maximum client frame: an unknown command padded to 16 MiB + 64 bytes
    const big = new Uint8Array(16 * 1024 * 1024 + 64);
    big[0] = 0x2a;
    c.req(big);
    expect(td.decode((await c.next()).subarray(3))).toBe("unknown command: 0x2A");
    await c.sync();
  });

  test("oversized frame (> 16 MiB + 64 announced) drops the client and cleans up its ports and conns; others unaffected", async () => {
    await fresh();
    const other = await Raw.open(path);
    const c = await Raw.open(path);
    c.req([0x01, ...u16(4000)]);
    expect(await c.nextHex()).toBe("020fa0");
    c.req([0x03, ...addr({ network: 0, node: 7 }), ...u16(1000)]);
    const ok = await c.next();
    const id = new DataView(ok.buffer, ok.byteOffset).getUint32(1);
    c.send(Uint8Array.from(u32(16 * 1024 * 1024 + 65))); // header only: body never read
    await c.waitClosed();
    await until(() => api.remoteEnded.has(id), "owned connection closed (peer sees FIN)");
    expect(api.ports.has(4000)).toBe(false);
    expect(api.calls).toContain("unbind 4000");
    expect(srv.clients.size).toBe(1);
    other.req([0x01, ...u16(4000)]);
    expect(await other.nextHex()).toBe("020fa0");
    await other.sync();
  });
});

describe("outgoing frame limit", () => {
  test("a received chunk larger than one frame is split into Recv pushes of at most 1 MiB", async () => {
    await fresh();
    api.mss = 3 << 20;
    const c = await Raw.open(path); // its FrameDecoder rejects anything above 1 MiB
    c.req([0x03, ...addr({ network: 0, node: 7 }), ...u16(1000)]);
    const ok = await c.next();
    const id = new DataView(ok.buffer, ok.byteOffset).getUint32(1);
    const big = new Uint8Array((5 << 19) + 3); // 2.5 MiB + 3 in ONE chunk
    for (let i = 0; i < big.length; i++) big[i] = (i >>> 10) & 255;
    api.remotes.get(id)!.write(big);
    const parts: Uint8Array[] = [];
    let got = 0;
    while (got < big.length) {
      const f = await c.next();
      expect(f[0]).toBe(0x07);
      expect(f.length).toBeLessThanOrEqual(1 << 20);
      parts.push(f.subarray(5));
      got += f.length - 5;
    }
    expect(parts.length).toBe(3);
    expect(Buffer.compare(Buffer.concat(parts), Buffer.from(big))).toBe(0);
    await c.sync();
  });
});
