// IpcServer against a FAKE DaemonApi over a REAL Unix socket: reply ordering under concurrency,
// pushes, ownership cleanup of vanishing clients, datagram fan-out with a stalled client, socket
// file handling.
import { describe, expect, test } from "bun:test";
import { existsSync, statSync } from "node:fs";
import { IpcServer } from "../src/daemon/ipc-server.ts";
import { FrameDecoder } from "../src/proto/framing.ts";
import type { MemConn } from "./helpers/memconn.ts";
import { FakeApi, INFO_OK, Raw, addr, api, cat, u16, u32, deferred, frame, fresh, hex, log, path, srv, td, te, until, installHooks, tempPath, type Deferred } from "./helpers/ipc-unit.ts";

installHooks();

describe("reply ordering under concurrency", () => {
  test("slow Dial then fast Info: DialOK first, then InfoOK", async () => {
    await fresh();
    const c = await Raw.open(path);
    const gate = deferred<void>();
    api.dialHook = () => gate.promise;
    c.req([0x03, ...addr({ network: 0, node: 7 }), ...u16(1000)]);
    c.req([0x0d]);
    await until(() => api.infoCalls === 1, "Info handled while Dial is pending");
    expect(c.frames.length).toBe(0);
    gate.resolve();
    const first = await c.next();
    expect(first[0]).toBe(0x04);
    expect(hex(await c.next())).toBe(hex(INFO_OK));
  });

  test("two Dials answered in request order even when the second completes first", async () => {
    await fresh();
    const c = await Raw.open(path);
    const gates = new Map<number, Deferred<void>>([[7, deferred()], [8, deferred()]]);
    api.dialHook = (a) => gates.get(a.node)!.promise;
    c.req([0x03, ...addr({ network: 0, node: 7 }), ...u16(1000)]);
    c.req([0x03, ...addr({ network: 0, node: 8 }), ...u16(1000)]);
    await until(() => api.calls.length === 2, "both dials started");
    gates.get(8)!.resolve();
    await until(() => api.conns.size === 1, "second dial completed");
    const secondId = [...api.conns.keys()][0];
    gates.get(7)!.resolve();
    const a = await c.next();
    const b = await c.next();
    const ida = new DataView(a.buffer, a.byteOffset).getUint32(1);
    const idb = new DataView(b.buffer, b.byteOffset).getUint32(1);
    expect(api.remotes.get(ida)!.localAddr.node).toBe(7);
    expect(api.remotes.get(idb)!.localAddr.node).toBe(8);
    expect(idb).toBe(secondId);
  });

  test("Accept for a port bound behind a slow Dial waits for the BindOK", async () => {
    await fresh();
    const c = await Raw.open(path);
    const gate = deferred<void>();
    api.dialHook = () => gate.promise;
    c.req([0x03, ...addr({ network: 0, node: 7 }), ...u16(1000)]);
    c.req([0x01, ...u16(3000)]);
    await until(() => api.ports.has(3000), "port bound");
    const peer = api.incoming(3000);
    peer.write(te.encode("early"));
    await Bun.sleep(20); // absence window: nothing reaches the client before its BindOK
    expect(c.frames.length).toBe(0);
    gate.resolve();
    expect((await c.next())[0]).toBe(0x04);
    expect(await c.nextHex()).toBe("020bb8");
    const acc = await c.next();
    expect(acc[0]).toBe(0x05);
    const recv = await c.next();
    expect(recv[0]).toBe(0x07);
    expect(td.decode(recv.subarray(5))).toBe("early");
  });
});

describe("pushes", () => {
  test("Accept push layout (15 bytes) before any Recv; CloseOK push after the last Recv", async () => {
    await fresh();
    const c = await Raw.open(path);
    c.req([0x01, ...u16(2000)]);
    expect(await c.nextHex()).toBe("0207d0");
    const from = { network: 3, node: 0x0a0b0c0d };
    const peer = api.incoming(2000, from, 0xc001);
    for (let i = 0; i < 20; i++) peer.write(te.encode(`chunk-${i};`));
    peer.end();
    const acc = await c.next();
    expect(acc.length).toBe(15);
    const id = new DataView(acc.buffer, acc.byteOffset).getUint32(3);
    expect(hex(acc)).toBe(hex(Uint8Array.from([0x05, ...u16(2000), ...u32(id), ...addr(from), ...u16(0xc001)])));
    let text = "";
    for (;;) {
      const f = await c.next();
      if (f[0] === 0x09) {
        expect(hex(f)).toBe(hex(Uint8Array.from([0x09, ...u32(id)])));
        break;
      }
      expect(f[0]).toBe(0x07);
      expect(new DataView(f.buffer, f.byteOffset).getUint32(1)).toBe(id);
      text += td.decode(f.subarray(5));
    }
    expect(text).toBe(Array.from({ length: 20 }, (_, i) => `chunk-${i};`).join(""));
  });

  test("datagrams go to every client; empty ones are dropped; a stalled client gets drops, others still receive", async () => {
    await fresh();
    const a = await Raw.open(path);
    const b = await Raw.open(path);
    await until(() => srv.clients.size === 2, "two clients");
    const src = { network: 0, node: 0x0102 };
    srv.pushDatagram(src, 1002, 1234, new Uint8Array(0));
    srv.pushDatagram(src, 1002, 1234, te.encode("hi"));
    const want = hex(cat([0x0c, ...addr(src), ...u16(1002), ...u16(1234)], "hi"));
    expect(await a.nextHex()).toBe(want);
    expect(await b.nextHex()).toBe(want);
    // a stops reading; b keeps reading
    a.sock.pause();
    const payload = new Uint8Array(60000);
    const N = 400; // 24 MB in total, well above the 8 MiB drop level
    let bGot = 0;
    for (let i = 0; i < N; i++) {
      payload[0] = i & 255;
      srv.pushDatagram(src, 1002, 1234, payload);
      if (i % 20 === 19) {
        // let b drain between bursts (a real packet loop interleaves with I/O)
        await until(() => {
          while (b.frames.length) {
            const f = b.frames.shift()!;
            expect(f[0]).toBe(0x0c);
            bGot++;
          }
          return bGot === i + 1;
        }, `b receives datagram ${i}`);
      }
    }
    expect(bGot).toBe(N);
    const stalled = [...srv.clients].find((x) => x.dgramDropped > 0);
    expect(stalled).toBeDefined();
    expect([...srv.clients].filter((x) => x.dgramDropped > 0).length).toBe(1);
    a.sock.resume();
    await a.sync(); // the stalled client is still served once it reads again
  });
});

describe("ownership and vanishing clients", () => {
  test("client destroyed while data is flowing: its conns get end(), its ports are unbound, a new client can bind", async () => {
    await fresh();
    const c = await Raw.open(path);
    c.req([0x01, ...u16(5000)]);
    expect(await c.nextHex()).toBe("021388");
    const peerIn = api.incoming(5000);
    c.req([0x03, ...addr({ network: 0, node: 7 }), ...u16(1000)]);
    let acc: Uint8Array | null = null;
    let dialId = 0;
    while (!acc || !dialId) {
      const f = await c.next();
      if (f[0] === 0x05) acc = f;
      if (f[0] === 0x04) dialId = new DataView(f.buffer, f.byteOffset).getUint32(1);
    }
    const accId = new DataView(acc.buffer, acc.byteOffset).getUint32(3);
    const peerOut = api.remotes.get(dialId)!;
    // stream data continuously towards the client from both peers
    let stop = false;
    const chunk = new Uint8Array(4096).fill(0x61);
    const pump = (p: MemConn) => {
      const go = () => {
        if (stop || p.state !== "ESTABLISHED") return;
        while (p.write(chunk)) {}
        p.onDrain = go;
      };
      go();
    };
    pump(peerIn);
    pump(peerOut);
    await until(() => c.frames.filter((f) => f[0] === 0x07).length > 10, "Recv pushes flowing");
    c.sock.destroy();
    await until(() => api.remoteEnded.has(accId) && api.remoteEnded.has(dialId), "both peers see FIN");
    stop = true;
    expect(api.ports.has(5000)).toBe(false);
    await until(() => srv.clients.size === 0, "client forgotten");
    const d = await Raw.open(path);
    d.req([0x01, ...u16(5000)]);
    expect(await d.nextHex()).toBe("021388");
    await d.sync();
  });

  test("client that stopped reading (conns paused by backpressure) then vanishes: its conns still close", async () => {
    await fresh();
    const c = await Raw.open(path);
    c.req([0x03, ...addr({ network: 0, node: 7 }), ...u16(1000)]);
    const ok = await c.next();
    const id = new DataView(ok.buffer, ok.byteOffset).getUint32(1);
    c.sock.pause();
    const peer = api.remotes.get(id)!;
    let blocked = false;
    const chunk = new Uint8Array(4096);
    for (let i = 0; i < 20000 && !blocked; i++) {
      if (!peer.write(chunk)) {
        // give the server time to push into the socket until it pauses the connection
        await Bun.sleep(1);
        if (peer.stats().sendBuffered > 200 * 1024) blocked = true;
      }
    }
    expect(blocked).toBe(true); // end-to-end backpressure reached the peer
    c.sock.destroy();
    await until(() => api.remoteEnded.has(id), "peer sees FIN after the client vanished");
    await until(() => api.conns.get(id)!.state === "CLOSED", "connection fully closed");
  });

  test("a listening client that stopped reading gets no more Accepts: new connections are reset (bounded accept queue)", async () => {
    await fresh();
    // A Bun socket whose pause() really stops reading at the kernel level.
    const got: Uint8Array[] = [];
    const dec = new FrameDecoder();
    const client = await Bun.connect({ unix: path, socket: { data(_s, d) { got.push(...dec.push(d)); } } });
    client.write(frame([0x01, ...u16(2222)]));
    await until(() => got.length >= 1, "BindOK");
    expect(hex(got[0])).toBe("0208ae");
    const first = api.incoming(2222, { network: 0, node: 9 }, 50001);
    await until(() => got.length >= 2, "Accept");
    expect(got[1][0]).toBe(0x05);
    const id = new DataView(got[1].buffer, got[1].byteOffset).getUint32(3);
    client.pause(); // the client stops reading: the daemon's writes to it back up
    const chunk = new Uint8Array(4096);
    for (let i = 0; i < 8000; i++) {
      if (!first.write(chunk)) await Bun.sleep(1);
      if (i % 64 === 0) await Bun.sleep(1);
      if (first.stats().sendBuffered > 1024 * 1024) break;
    }
    expect(first.stats().sendBuffered).toBeGreaterThan(1024 * 1024); // end-to-end backpressure reached the peer
    // 64 more connections are still queued for the congested client; the 65th is reset (RST)
    const queued: MemConn[] = [];
    for (let i = 0; i < 64; i++) queued.push(api.incoming(2222, { network: 0, node: 9 }, 50100 + i));
    const late = api.incoming(2222, { network: 0, node: 9 }, 50002);
    await until(() => late.state === "CLOSED", "65th connection reset");
    expect(queued.every((q) => q.state !== "CLOSED")).toBe(true);
    expect(api.conns.get(id)!.state).not.toBe("CLOSED"); // the accepted one is untouched
    client.terminate();
  }, 30000);

  test("Dial completing after its client vanished: the connection is closed, not leaked", async () => {
    await fresh();
    const c = await Raw.open(path);
    const gate = deferred<void>();
    api.dialHook = () => gate.promise;
    c.req([0x03, ...addr({ network: 0, node: 7 }), ...u16(1000)]);
    await until(() => api.calls.length === 1, "dial started");
    c.sock.destroy();
    await until(() => srv.clients.size === 0, "client gone");
    gate.resolve();
    await until(() => api.conns.size === 1, "dial completed");
    const id = [...api.conns.keys()][0];
    await until(() => api.remoteEnded.has(id), "late connection closed");
  });

  test("Send blocked by a full connection does not freeze the client when that connection dies", async () => {
    await fresh();
    const c = await Raw.open(path);
    c.req([0x03, ...addr({ network: 0, node: 7 }), ...u16(1000)]);
    const ok = await c.next();
    const id = new DataView(ok.buffer, ok.byteOffset).getUint32(1);
    const peer = api.remotes.get(id)!;
    peer.onData = () => {};
    peer.pause(); // the remote application stops reading: our write() returns false
    const data = new Uint8Array(64 * 1024);
    for (let i = 0; i < 16; i++) c.req(cat([0x06, ...u32(id)], data));
    await until(() => api.conns.get(id)!.stats().sendBuffered > 256 * 1024, "connection send buffer full");
    peer.abort(); // connection reset: it will never drain
    await c.sync(); // the client's later requests are read and answered again
  });
});

describe("socket file", () => {
  test("mode 0600, removed on close", async () => {
    await fresh();
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(statSync(path).isSocket()).toBe(true);
    srv.close();
    expect(existsSync(path)).toBe(false);
  });

  test("refuses to start when another live server owns the path; that server keeps working", async () => {
    await fresh();
    const second = new IpcServer(new FakeApi(), log);
    await expect(second.listen(path)).rejects.toThrow(`ipc start: another daemon is listening on ${path}`);
    const c = await Raw.open(path);
    await c.sync();
  });

  test("stale socket file (no listener) is replaced", async () => {
    const stale = tempPath("stale.sock");
    // a process that listens and dies without removing its socket file
    const p = Bun.spawn([process.execPath, "-e", `require("node:net").createServer().listen(${JSON.stringify(stale)}, () => console.log("up"))`], { stdout: "pipe" });
    const reader = p.stdout.getReader();
    await reader.read();
    p.kill("SIGKILL");
    await p.exited;
    expect(statSync(stale).isSocket()).toBe(true);
    await fresh(stale);
    expect(statSync(stale).mode & 0o777).toBe(0o600);
    const c = await Raw.open(stale);
    await c.sync();
  });
});
