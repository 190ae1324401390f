// `pilotctl send-file` / `send-message` between real daemons on loopback: large files arrive
// intact, transfers resume after the sender is killed, nothing is reported as delivered without
// the receiver's ACK, and a receiver that only speaks the reference protocol never gets more than
// it can take.
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
setDefaultTimeout(120000);
import { createHash, randomBytes } from "node:crypto";
import { closeSync, existsSync, openSync, readdirSync, readFileSync, statSync, writeSync } from "node:fs";
import { join } from "node:path";
import { Driver, type DriverConn } from "../src/client/driver.ts";
import { encodeText, formatAck, FrameReader, TYPE_XFER_OFFER } from "../src/proto/dataexchange.ts";
import { BUN, Cluster, type DaemonHandle, MAIN, REPO } from "./helpers/cluster.ts";
import { until } from "./helpers/until.ts";

const cl = new Cluster("pilot-dx-e2e-");
let A: DaemonHandle, B: DaemonHandle, R: DaemonHandle;
let drv: Driver;
/** What the reference-only receiver on R got: frame types and payload lengths. */
const refGot: { type: number; len: number }[] = [];
let refSilent = false;

const ctl = (h: DaemonHandle, args: string[]) => cl.ctl(h, args, { json: true });

/** Write `mib` MiB of pseudo-random data to `path` in 1 MiB pieces; returns the SHA-256. */
function makeFile(path: string, mib: number): string {
  const h = createHash("sha256");
  const fd = openSync(path, "w");
  const block = randomBytes(1 << 20);
  for (let i = 0; i < mib; i++) {
    block.writeUInt32BE(i, 0); // every MiB differs
    h.update(block);
    writeSync(fd, block);
  }
  closeSync(fd);
  return h.digest("hex");
}
function hashFile(path: string): string {
  const h = createHash("sha256");
  const fd = openSync(path, "r");
  const buf = Buffer.allocUnsafe(1 << 20);
  try {
    for (let pos = 0; ;) {
      const n = require("node:fs").readSync(fd, buf, 0, buf.length, pos);
      if (n <= 0) break;
      h.update(buf.subarray(0, n));
      pos += n;
    }
  } finally { closeSync(fd); }
  return h.digest("hex");
}
const receivedDir = (h: DaemonHandle) => join(h.home, ".pilot/received");
const partialDir = (h: DaemonHandle) => join(h.home, ".pilot/partial");
function takeReceived(h: DaemonHandle, prefix: string): string {
  const names = readdirSync(receivedDir(h)).filter((n) => n.startsWith(prefix));
  expect(names.length).toBe(1);
  return join(receivedDir(h), names[0]!);
}

beforeAll(async () => {
  await cl.startRendezvous();
  [A, B, R] = await Promise.all([cl.startDaemon("a", ["-public"]), cl.startDaemon("b", ["-public"]), cl.startDaemon("r", ["-public", "-no-dataexchange"])]);
  // R's port 1001 is served by a minimal receiver speaking only the reference's frames.
  drv = await Driver.connect(R.socket);
  const l = await drv.listen(1001);
  void (async () => {
    for (;;) {
      let c: DriverConn;
      try { c = await l.accept(); } catch { return; }
      const rd = new FrameReader((f) => {
        refGot.push({ type: f.type, len: f.payload.length });
        if (refSilent) return;
        const n = f.type === 4 ? f.payload.length - 2 - ((f.payload[0]! << 8) | f.payload[1]!) : f.payload.length;
        void c.write(encodeText(formatAck(f.type, n)));
      });
      c.onData = (d) => { try { rd.push(d); } catch { c.close(); } };
    }
  })();
}, 60000);

afterAll(async () => {
  drv?.close();
  await cl.stop();
});

describe("send-file between pilot-ts daemons", () => {
  test("64 MiB arrives with the same SHA-256 (the reference limit is 16 MiB per frame)", async () => {
    const f = join(cl.dir, "f64.bin");
    const sum = makeFile(f, 64);
    const t0 = performance.now();
    const r = await ctl(A, ["send-file", B.address, f]);
    const ms = performance.now() - t0;
    expect(r.code).toBe(0);
    expect(r.json.data).toEqual({ ack: `ACK FILE ${64 << 20} bytes`, bytes: 64 << 20, destination: B.address, filename: "f64.bin" });
    expect(hashFile(takeReceived(B, "f64-"))).toBe(sum);
    expect(existsSync(partialDir(B)) ? readdirSync(partialDir(B)) : []).toEqual([]);
    console.log(`64 MiB send-file: ${(ms / 1000).toFixed(1)} s, ${(64 / (ms / 1000)).toFixed(0)} MiB/s`);
  });

  test("a killed sender resumes from the receiver's offset and re-sends fewer bytes", async () => {
    const f = join(cl.dir, "f128.bin");
    const size = 128 << 20;
    const sum = makeFile(f, 128);
    const env = { ...process.env as Record<string, string>, PILOT_SOCKET: A.socket, HOME: A.home, PILOT_REGISTRY: cl.registry };
    const p = Bun.spawn([BUN, MAIN, "pilotctl", "--json", "send-file", B.address, f], { cwd: REPO, env, stdout: "pipe", stderr: "pipe" });
    // Kill it once the receiver holds a partial file of at least 16 MiB.
    const part = await until(async () => {
      if (!existsSync(partialDir(B))) return null;
      const n = readdirSync(partialDir(B)).find((x) => x.endsWith(".part"));
      return n && statSync(join(partialDir(B), n)).size >= 16 << 20 ? n : null;
    }, "partial file at B", 60000, 10);
    p.kill("SIGKILL");
    expect(await p.exited).not.toBe(0);
    const kept = statSync(join(partialDir(B), part)).size;
    expect(kept).toBeLessThan(size);
    const r = await ctl(A, ["send-file", B.address, f]);
    expect(r.code).toBe(0);
    expect(r.json.data.ack).toBe(`ACK FILE ${size} bytes`);
    expect(r.json.data.resumed_from).toBeGreaterThanOrEqual(16 << 20);
    expect(r.json.data.resumed_from).toBeLessThan(size);
    expect(hashFile(takeReceived(B, "f128-"))).toBe(sum);
    expect(readdirSync(partialDir(B))).toEqual([]);
  });

  test("1 GiB arrives with the same SHA-256", async () => {
    const f = join(cl.dir, "f1g.bin");
    const sum = makeFile(f, 1024);
    const t0 = performance.now();
    const r = await ctl(A, ["send-file", B.address, f]);
    const ms = performance.now() - t0;
    expect(r.code).toBe(0);
    expect(r.json.data.ack).toBe(`ACK FILE ${1 << 30} bytes`);
    expect(hashFile(takeReceived(B, "f1g-"))).toBe(sum);
    console.log(`1 GiB send-file: ${(ms / 1000).toFixed(1)} s, ${(1024 / (ms / 1000)).toFixed(0)} MiB/s`);
  }, 600000);
});

describe("toward a receiver that speaks only the reference protocol", () => {
  test("a file above 16 MiB is refused before any byte of it is sent", async () => {
    refGot.length = 0;
    refSilent = false;
    const f = join(cl.dir, "f17.bin");
    makeFile(f, 17);
    const r = await ctl(A, ["send-file", R.address, f]);
    expect(r.code).toBe(1);
    const err = JSON.parse(r.stderr.trim().split("\n").pop()!);
    expect(err.code).toBe("unsupported");
    expect(err.message).toContain("nothing was sent");
    expect(err.hint).toContain("16 MiB");
    expect(refGot.filter((g) => g.type !== TYPE_XFER_OFFER)).toEqual([]);
  });

  test("a small file still arrives as one classic FILE frame", async () => {
    refGot.length = 0;
    const f = join(cl.dir, "small.txt");
    require("node:fs").writeFileSync(f, "hello reference");
    const r = await ctl(A, ["send-file", R.address, f]);
    expect(r.code).toBe(0);
    expect(r.json.data.ack).toBe("ACK FILE 15 bytes");
    expect(refGot.map((g) => g.type)).toEqual([TYPE_XFER_OFFER, 4]);
  });

  test("no ACK: send-message and send-file exit 1 with timeout and say the data may not have arrived", async () => {
    refSilent = true;
    try {
      const m = await ctl(A, ["send-message", R.address, "--data", "anyone?", "--timeout", "1s"]);
      expect(m.code).toBe(1);
      expect(m.stdout).toBe("");
      const e = JSON.parse(m.stderr.trim().split("\n").pop()!);
      expect(e.code).toBe("timeout");
      expect(e.message).toContain("may not have arrived");
    } finally { refSilent = false; }
  });
});
