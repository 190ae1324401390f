// What one IPC client (and all clients together) can make the daemon hold: a client that writes
// requests and never reads its replies stops being read once its unsent replies pass a limit
// (measured as the server process's RSS), gets every reply in order once it reads again, and is
// closed with a logged reason if it stays stuck; large request frames share a cross-client budget.
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { IpcServer, type DaemonApi } from "../src/daemon/ipc-server.ts";
import { Logger } from "../src/sys/log.ts";
import { FrameDecoder } from "../src/proto/framing.ts";
import type { JsonObject } from "../src/proto/ipc.ts";
import type { Addr } from "../src/proto/types.ts";
import { until } from "./helpers/until.ts";

const INFO_REQ = Uint8Array.from([0, 0, 0, 1, 0x0d]);

function infoRequests(n: number): Uint8Array {
  const out = new Uint8Array(n * INFO_REQ.length);
  for (let i = 0; i < n; i++) out.set(INFO_REQ, i * INFO_REQ.length);
  return out;
}

async function open(path: string): Promise<Socket> {
  const s = connect(path);
  await new Promise<void>((res, rej) => {
    s.once("connect", () => res());
    s.once("error", rej);
  });
  s.on("error", () => {});
  return s;
}

interface ProcReport {
  rss: number;
  infoCalls: number;
  sendTos: number;
  stats: { pausedClients: number; peakBufferedBytes: number };
}

/** The IPC server in its own process (test/helpers/ipc-server-proc.ts), reporting every 100 ms. */
function serverProcess(path: string) {
  const proc = Bun.spawn(["./node_modules/.bin/bun", "test/helpers/ipc-server-proc.ts", path], { stdout: "pipe", stderr: "pipe" });
  const st = { path, last: null as ProcReport | null, peakRss: 0, stop: async () => {} };
  const lines = (async () => {
    const dec = new TextDecoder();
    let buf = "";
    for await (const chunk of proc.stdout) {
      buf += dec.decode(chunk);
      let i: number;
      while ((i = buf.indexOf("\n")) >= 0) {
        st.last = JSON.parse(buf.slice(0, i)) as ProcReport;
        st.peakRss = Math.max(st.peakRss, st.last.rss);
        buf = buf.slice(i + 1);
      }
    }
  })();
  st.stop = async () => {
    proc.kill();
    await proc.exited;
    await lines.catch(() => {});
  };
  return st;
}

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "pilot-ipcbound-"));
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true, maxRetries: 5 });
});

describe("a client that never reads its replies", () => {
  test("200k Info requests leave the server's RSS under +100 MB; it stops reading, then answers all in order", async () => {
    const server = serverProcess(join(dir, "rss.sock"));
    const { path } = server;
    const last = () => server.last!;
    let sock: Socket | null = null;
    try {
      await until(async () => server.last, "server process ready", 20000);
      // Baseline after some warm-up traffic, so the JIT and socket buffers are counted.
      const warm = await open(path);
      warm.write(infoRequests(1000));
      let got = 0;
      const wdec = new FrameDecoder();
      warm.on("data", (b: Buffer) => (got += wdec.push(b).length));
      await until(async () => got === 1000, "warm-up replies");
      warm.destroy();
      await until(async () => last().infoCalls >= 1000 && last(), "warm-up reported");
      const base = last().rss;

      const N = 200_000;
      sock = await open(path);
      sock.pause(); // never read
      sock.write(infoRequests(N));
      await until(async () => last().stats.pausedClients >= 1 && last(), "server stops reading the client", 30000);
      // Stopped means stopped: the count of handled requests no longer moves.
      const stoppedAt = last().infoCalls;
      await until(async () => last().infoCalls === stoppedAt && last().stats.pausedClients >= 1 && last(), "stable while paused");
      const grown = last().rss - base;
      console.log(`server RSS +${(grown / 1048576).toFixed(1)} MB with the client stopped after ${stoppedAt - 1000} of ${N} requests`);
      expect(stoppedAt - 1000).toBeLessThan(N);
      expect(grown).toBeLessThan(100 * 1024 * 1024);

      // Reading again releases everything: all N replies arrive, each an InfoOK, none lost.
      const dec = new FrameDecoder(2 << 20);
      let replies = 0;
      let bad = 0;
      sock.on("data", (b: Buffer) => {
        for (const f of dec.push(b)) {
          replies++;
          if (f[0] !== 0x0e) bad++;
        }
      });
      sock.resume();
      await until(async () => replies === N, `all ${N} replies`, 120000);
      expect(bad).toBe(0);
      // The server process reports its counters periodically: wait for a report made after the
      // last reply (the replies themselves were all counted above).
      await until(async () => last().infoCalls >= 1000 + N && last(), "server reports every request handled", 20000);
      expect(last().infoCalls).toBeGreaterThanOrEqual(1000 + N);
    } finally {
      sock?.destroy();
      await server.stop();
    }
  }, 180000);

  test("a client stuck past the stall timeout is closed with a logged reason; others keep working", async () => {
    const logs: string[] = [];
    const log = new Logger("warn", "text", (l) => void logs.push(l));
    let infoCalls = 0;
    const api = {
      info: (): JsonObject => {
        infoCalls++;
        return { node_id: 5, pad: "x".repeat(1000) };
      },
    } as unknown as DaemonApi;
    const srv = new IpcServer(api, log, { stallTimeoutMs: 300, replyHighWater: 64 * 1024 });
    const path = join(dir, "stall.sock");
    await srv.listen(path);
    try {
      const stuck = await open(path);
      let closed = false;
      stuck.on("close", () => (closed = true));
      stuck.pause();
      stuck.write(infoRequests(50_000));
      await until(async () => srv.stats().pausedClients === 1, "client paused");
      const handled = infoCalls;
      expect(handled).toBeLessThan(50_000);
      await until(async () => srv.stats().stalledDropped === 1, "stuck client dropped", 10000);
      expect(logs.some((l) => l.includes("ipc client closed: not reading its replies") && l.includes("unsent_bytes="))).toBe(true);
      await until(async () => srv.stats().clients === 0, "client forgotten");
      // Its socket is really closed (a paused node socket sees the end once it reads again).
      stuck.resume();
      await until(async () => closed, "client socket closed");

      // A reading client is never dropped, whatever its volume.
      const ok = await open(path);
      const dec = new FrameDecoder(2 << 20);
      let replies = 0;
      ok.on("data", (b: Buffer) => (replies += dec.push(b).length));
      ok.write(infoRequests(20_000));
      await until(async () => replies === 20_000, "reading client answered");
      expect(srv.stats().stalledDropped).toBe(1);
      ok.destroy();
    } finally {
      srv.close();
    }
  }, 60000);
});

describe("a client that pauses its reading (flow control)", () => {
  test("stream data backed up: its requests are still served (uploads go on), it is never dropped", async () => {
    const { memConnPair } = await import("./helpers/memconn.ts");
    const self = { network: 0, node: 5 };
    const peer = { network: 0, node: 9 };
    let local: import("./helpers/memconn.ts").MemConn | null = null;
    let remote: import("./helpers/memconn.ts").MemConn | null = null;
    let infoCalls = 0;
    const api = {
      dial: async () => {
        [local, remote] = memConnPair({ addr: self, port: 49152 }, { addr: peer, port: 7 }, { highWater: 64 << 20 });
        return local;
      },
      conn: (id: number) => (local && local.id === id ? local : undefined),
      info: (): JsonObject => {
        infoCalls++;
        return { node_id: 5 };
      },
    } as unknown as DaemonApi;
    const srv = new IpcServer(api, new Logger("error", "text", () => {}), { stallTimeoutMs: 100 });
    const path = join(dir, "flow.sock");
    await srv.listen(path);
    try {
      const s = await open(path);
      const dec = new FrameDecoder(2 << 20);
      let recvBytes = 0;
      let connId = -1;
      let infoOk = 0;
      s.on("data", (b: Buffer) => {
        for (const f of dec.push(b)) {
          if (f[0] === 0x04) connId = new DataView(f.buffer, f.byteOffset).getUint32(1);
          if (f[0] === 0x07) recvBytes += f.length - 5;
          if (f[0] === 0x0e) infoOk++;
        }
      });
      s.write(Uint8Array.from([0, 0, 0, 9, 0x03, 0, 0, 0, 0, 0, 9, 0, 7]));
      await until(async () => connId >= 0, "DialOK");
      let uploaded = 0;
      remote!.onData = (chunk) => (uploaded += chunk.length);
      s.pause(); // the application stops consuming what the peer sends
      const TOTAL = 12 * 1024 * 1024;
      remote!.write(new Uint8Array(TOTAL).fill(0x62));
      await until(async () => srv.stats().unsentBytes > 0, "stream data backs up in the client's socket");
      // It keeps uploading and asking while not reading: both are served.
      const UP = 256 * 1024;
      const send = new Uint8Array(4 + 5 + UP);
      new DataView(send.buffer).setUint32(0, 5 + UP);
      send[4] = 0x06;
      new DataView(send.buffer).setUint32(5, connId);
      for (let i = 0; i < 4; i++) s.write(send);
      s.write(INFO_REQ);
      await until(async () => uploaded === 4 * UP && infoCalls === 1, "upload delivered and Info handled while the client is not reading");
      // Many stall periods pass: unread stream data is not a stuck client (the wait is the subject).
      await Bun.sleep(500);
      expect(srv.stats().stalledDropped).toBe(0);
      expect(srv.stats().clients).toBe(1);
      s.resume();
      await until(async () => recvBytes === TOTAL && infoOk === 1, "all stream data and the InfoOK delivered", 30000);
      s.destroy();
    } finally {
      srv.close();
    }
  }, 60000);
});

describe("replies still being computed", () => {
  test("past maxPendingReplies reading stops, but a client that reads is never dropped as stuck", async () => {
    const waiting: (() => void)[] = [];
    const api = {
      dial: (_a: Addr, _p: number) =>
        new Promise((_res, rej) => {
          waiting.push(() => rej(new Error("dial timeout")));
        }),
      info: (): JsonObject => ({ node_id: 5 }),
    } as unknown as DaemonApi;
    const srv = new IpcServer(api, new Logger("error", "text", () => {}), { maxPendingReplies: 10, stallTimeoutMs: 100 });
    const path = join(dir, "pending.sock");
    await srv.listen(path);
    try {
      const s = await open(path);
      const dec = new FrameDecoder();
      const got: number[] = [];
      s.on("data", (b: Buffer) => {
        for (const f of dec.push(b)) got.push(f[0]);
      });
      // 20 Dials (cmd 0x03: addr 6 bytes + port 2), then one Info.
      const dial = Uint8Array.from([0, 0, 0, 9, 0x03, 0, 0, 0, 0, 0, 9, 0, 7]);
      for (let i = 0; i < 20; i++) s.write(dial);
      s.write(INFO_REQ);
      await until(async () => waiting.length === 10 && srv.stats().pausedClients === 1, "ten dials in flight, reading stopped");
      // Several stall periods pass with nothing to send: not a stuck client (the wait is the subject).
      await Bun.sleep(500);
      expect(srv.stats().stalledDropped).toBe(0);
      expect(waiting.length).toBe(10);
      await until(async () => {
        for (const w of waiting.splice(0)) w();
        return got.length >= 21;
      }, "all 21 replies");
      expect(got).toEqual([...Array(20).fill(0x0a), 0x0e]); // 20 Errors in order, then InfoOK
      s.destroy();
    } finally {
      srv.close();
    }
  }, 30000);
});

describe("cross-client budget for large request frames", () => {
  test("ten clients sending 8 MiB frames at once: buffered bytes stay under the cap and every frame is handled", async () => {
    const CAP = 20 * 1024 * 1024;
    const FRAME = 8 * 1024 * 1024;
    const got: number[] = [];
    const api = {
      sendTo: async (_a: Addr, port: number, data: Uint8Array) => {
        got.push(port);
        expect(data.length).toBe(FRAME);
      },
    } as unknown as DaemonApi;
    const srv = new IpcServer(api, new Logger("error", "text", () => {}), { maxBufferedBytes: CAP });
    const path = join(dir, "budget.sock");
    await srv.listen(path);
    const socks: Socket[] = [];
    try {
      // SendTo: cmd 0x0b, addr (2+4), port (2), data; no reply.
      for (let i = 0; i < 10; i++) {
        const body = new Uint8Array(1 + 6 + 2 + FRAME);
        body[0] = 0x0b;
        body[6] = 9; // node 9
        body[7] = 0;
        body[8] = 100 + i; // port
        body.fill(0x61, 9);
        const f = new Uint8Array(4 + body.length);
        new DataView(f.buffer).setUint32(0, body.length);
        f.set(body, 4);
        const s = await open(path);
        socks.push(s);
        s.write(f);
      }
      await until(async () => got.length === 10, "all ten frames handled", 60000);
      expect(got.sort((a, b) => a - b)).toEqual(Array.from({ length: 10 }, (_, i) => 100 + i));
      const st = srv.stats();
      expect(st.peakBufferedBytes).toBeGreaterThan(0);
      expect(st.peakBufferedBytes).toBeLessThanOrEqual(CAP);
      await until(async () => srv.stats().bufferedBytes === 0, "budget released");
    } finally {
      for (const s of socks) s.destroy();
      srv.close();
    }
  }, 90000);

  test("ten clients sending 16 MiB frames at once: the server process grows well under what ten frames would take", async () => {
    const server = serverProcess(join(dir, "budget-rss.sock"));
    const socks: Socket[] = [];
    try {
      await until(async () => server.last, "server process ready", 20000);
      await until(async () => server.last!.rss > 0 && server.last, "first report");
      const base = server.last!.rss;
      server.peakRss = base;
      const FRAME = 16 * 1024 * 1024;
      for (let i = 0; i < 10; i++) {
        const body = new Uint8Array(1 + 6 + 2 + FRAME);
        body[0] = 0x0b;
        body[6] = 9;
        body[8] = 100 + i;
        body.fill(0x61, 9);
        const f = new Uint8Array(4 + body.length);
        new DataView(f.buffer).setUint32(0, body.length);
        f.set(body, 4);
        const s = await open(server.path);
        socks.push(s);
        s.write(f);
      }
      await until(async () => server.last!.sendTos === 10 && server.last, "all ten frames handled", 60000);
      const grown = server.peakRss - base;
      console.log(`server peak RSS +${(grown / 1048576).toFixed(1)} MB for 10 x 16 MiB frames (budget peak ${(server.last!.stats.peakBufferedBytes / 1048576).toFixed(0)} MiB)`);
      expect(server.last!.stats.peakBufferedBytes).toBeLessThanOrEqual(64 * 1024 * 1024);
      // Ten frames held at once (plus the chunks they were assembled from) took about 220 MB.
      expect(grown).toBeLessThan(150 * 1024 * 1024);
    } finally {
      for (const s of socks) s.destroy();
      await server.stop();
    }
  }, 90000);
});
