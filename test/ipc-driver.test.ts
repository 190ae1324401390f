import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { Driver, DriverError } from "../src/client/driver.ts";
import { type FakeDaemon, startFakeDaemon } from "./ipc-fake-daemon.ts";

let fd: FakeDaemon;
beforeAll(async () => {
  fd = await startFakeDaemon({ hostnames: { "other-agent": 3 }, refuse: [99], blackhole: [98], trusted: [{ node_id: 7 }] });
});
afterAll(async () => { await fd.close(); });

describe("driver", () => {
  test("not_running when the socket is missing", async () => {
    let err: unknown;
    try { await Driver.connect(join(fd.dir, "nope.sock")); } catch (e) { err = e; }
    expect(err).toBeInstanceOf(DriverError);
    expect((err as DriverError).code).toBe("not_running");
  });
  test("info, concurrent requests keep order", async () => {
    const d = await Driver.connect(fd.path);
    const [a, b, c] = await Promise.all([d.info(), d.resolveHostname("other-agent"), d.info()]);
    expect(a.node_id).toBe(5);
    expect(b.node_id).toBe(3);
    expect(c.address).toBe("0:0000.0000.0005");
    await expect(d.resolveHostname("nobody")).rejects.toThrow("resolve_hostname: daemon: resolve_hostname: registry: request failed");
    d.close();
  });
  test("dial + echo + close; disconnect returns (CloseOK waiter)", async () => {
    const d = await Driver.connect(fd.path);
    const c = await d.dial({ network: 0, node: 7 }, 7);
    await c.write("ping-0");
    const got = await c.read();
    expect(new TextDecoder().decode(got!)).toBe("ping-0");
    await d.disconnect(c.id);
    expect(await c.read()).toBeNull();
    await expect(d.dial({ network: 0, node: 99 }, 7)).rejects.toThrow("dial: daemon: connection refused");
    d.close();
  });
  test("large writes are chunked below 1 MiB frames", async () => {
    const d = await Driver.connect(fd.path);
    const c = await d.dial({ network: 0, node: 7 }, 7);
    const before = fd.requests.length;
    const big = new Uint8Array(3 * 1024 * 1024 + 5);
    for (let i = 0; i < big.length; i++) big[i] = (i * 2654435761) >>> 24;
    await c.write(big);
    const got = new Uint8Array(big.length);
    let total = 0;
    while (total < big.length) {
      const ch = (await c.read())!;
      got.set(ch, total);
      total += ch.length;
    }
    expect(total).toBe(big.length);
    expect(Buffer.from(got).equals(Buffer.from(big))).toBe(true); // the echo came back byte for byte, in order
    const sends = fd.requests.slice(before).filter((m) => m.cmd === "Send");
    expect(sends.length).toBe(Math.ceil(big.length / 65536));
    d.close();
  });
  test("large and small writes on two connections at once stay whole frames (head + data written back to back)", async () => {
    const d = await Driver.connect(fd.path);
    const [a, b] = await Promise.all([d.dial({ network: 0, node: 7 }, 7), d.dial({ network: 0, node: 7 }, 7)]);
    const bigA = new Uint8Array(1024 * 1024 + 17).map((_, i) => i & 0xff);
    const small: string[] = [];
    const writes: Promise<void>[] = [a.write(bigA)];
    for (let i = 0; i < 50; i++) {
      small.push(`m${i};`);
      writes.push(b.write(small[i]));
    }
    await Promise.all(writes);
    const readAll = async (c: typeof a, n: number) => {
      const out = new Uint8Array(n);
      let t = 0;
      while (t < n) {
        const ch = (await c.read())!;
        out.set(ch, t);
        t += ch.length;
      }
      return out;
    };
    const smallBytes = new TextEncoder().encode(small.join(""));
    const [ga, gb] = await Promise.all([readAll(a, bigA.length), readAll(b, smallBytes.length)]);
    expect(Buffer.from(ga).equals(Buffer.from(bigA))).toBe(true);
    expect(new TextDecoder().decode(gb)).toBe(small.join(""));
    d.close();
  });
  test("listen/accept receives inbound data; bind conflict is an error", async () => {
    const d = await Driver.connect(fd.path);
    const l = await d.listen(1000);
    expect(fd.inbound(1000, "hello")).toBe(true);
    const c = await l.accept({ timeoutMs: 5000 });
    expect(new TextDecoder().decode((await c.read())!)).toBe("hello");
    await expect(d.listen(7)).rejects.toThrow("bind: daemon: port 7 already bound");
    d.close();
  });
  test("datagrams fan out; timeouts are typed", async () => {
    const d = await Driver.connect(fd.path);
    await d.info();
    fd.pushDatagram({ network: 0, node: 4 }, 49152, 5000, "hi");
    const dg = await d.recvFrom({ timeoutMs: 5000 });
    expect(dg.dstPort).toBe(5000);
    expect(new TextDecoder().decode(dg.data)).toBe("hi");
    await expect(d.recvFrom({ timeoutMs: 20 })).rejects.toMatchObject({ code: "timeout" });
    await expect(d.dial({ network: 0, node: 98 }, 7, { timeoutMs: 30 })).rejects.toMatchObject({ code: "timeout" });
    // a later request still gets the right reply after the abandoned one
    expect((await d.info()).node_id).toBe(5);
    d.close();
  });
  test("trust sub-commands and settings", async () => {
    const d = await Driver.connect(fd.path);
    expect(await d.handshake(7, "hi")).toEqual({ node_id: 7, status: "sent" });
    expect((await d.approve(7)).status).toBe("approved");
    expect((await d.reject(7, "no")).status).toBe("rejected");
    expect(await d.pending()).toEqual({ pending: [] });
    expect((await d.untrust(7)).status).toBe("revoked");
    await expect(d.untrust(8)).rejects.toThrow("revoke: daemon: handshake revoke: node 8 was not trusted");
    expect((await d.setVisibility(true)).visibility).toBe("public");
    expect((await d.setTags(["a", "b"])).tags).toEqual(["a", "b"]);
    expect((await d.setTaskExec(true)).task_exec).toBe(true);
    expect((await d.setWebhook("http://x")).webhook).toBe("http://x");
    expect((await d.deregister()).type).toBe("deregister_ok");
    d.close();
  });
  test("AbortSignal: requests, reads, accepts and datagram reads reject with code aborted; correlation survives", async () => {
    const d = await Driver.connect(fd.path);
    const ac = new AbortController();
    const c = await d.dial({ network: 0, node: 7 }, 7);
    const l = await d.listen(1500);
    // (this fake daemon never answers a black-holed dial, so no other dial is queued behind it)
    const dial = d.dial({ network: 0, node: 98 }, 7, { signal: ac.signal });
    const acc = l.accept({ signal: ac.signal });
    const dg = d.recvFrom({ signal: ac.signal });
    const rd = c.read({ signal: ac.signal });
    ac.abort();
    for (const p of [dial, acc, dg, rd]) {
      const e = await (p as Promise<unknown>).then(() => null, (x) => x);
      expect(e).toBeInstanceOf(DriverError);
      expect(e.code).toBe("aborted");
    }
    await expect(d.info({ signal: AbortSignal.abort() })).rejects.toMatchObject({ code: "aborted" });
    // the abandoned waiters stay queued, so the next replies still reach the right callers
    const [i, r] = await Promise.all([d.info(), d.resolveHostname("other-agent")]);
    expect([i.node_id, r.node_id]).toEqual([5, 3]);
    await c.write("after-abort");
    expect(new TextDecoder().decode((await c.read({ timeoutMs: 5000 }))!)).toBe("after-abort");
    d.close();
  });
  test("a listener whose daemon goes away fails with the disconnect error", async () => {
    const fd2 = await startFakeDaemon();
    const d = await Driver.connect(fd2.path);
    const l = await d.listen(1000);
    const p = l.accept();
    await fd2.close();
    await expect(p).rejects.toThrow("daemon disconnected");
    await expect(l.accept()).rejects.toThrow("daemon disconnected");
  });
  test("pending calls fail with daemon disconnected when the daemon goes away", async () => {
    const fd2 = await startFakeDaemon({ silent: true });
    const d = await Driver.connect(fd2.path);
    const p = d.info();
    await fd2.close();
    await expect(p).rejects.toThrow("daemon disconnected");
  });
});
