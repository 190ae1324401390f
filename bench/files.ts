// File transfer over the data-exchange extension (docs/file-transfer.md) between two real daemons,
// next to the limits it is made of, all measured in this run: a plain stream through the same
// IPC + tunnel path with nothing on either end (limit "stream.ipc") and SHA-256 on one core
// (limit "sha256"; the sender hashes the file once, the receiver hashes while writing).
import { createHash, randomBytes } from "node:crypto";
import { closeSync, openSync, writeSync } from "node:fs";
import { join } from "node:path";
import { sendFile } from "../src/client/file-transfer.ts";
import { Driver } from "../src/client/driver.ts";
import { parseAddr } from "../src/proto/addr.ts";
import { BUN, Cluster, MAIN, REPO } from "../test/helpers/cluster.ts";
import { rssMiB } from "./lib/proc.ts";
import type { Reporter } from "./run.ts";

const MiB = 1 << 20;
const MB = 1e6;
const SIZE_MIB = 256;

export default async function files(r: Reporter): Promise<void> {
  const block = randomBytes(MiB);
  let t0 = performance.now();
  const h = createHash("sha256");
  for (let i = 0; i < SIZE_MIB; i++) h.update(block);
  h.digest();
  r.add("SHA-256 1 core", (SIZE_MIB * MiB) / MB / ((performance.now() - t0) / 1000), "MB/s", "node:crypto, 1 MiB updates", { limit: "sha256" });

  const cl = new Cluster("pilot-bench-files-");
  const drivers: Driver[] = [];
  try {
    await cl.startRendezvous();
    const [A, B] = await Promise.all([cl.startDaemon("a", ["-public"]), cl.startDaemon("b", ["-public"])]);
    const da = await Driver.connect(A.socket);
    const db = await Driver.connect(B.socket);
    drivers.push(da, db);
    const to = parseAddr(B.address);

    // The path alone: driver write → daemon → tunnel → daemon → driver read, nothing stored.
    const l = await db.listen(5000);
    const accepted = l.accept({ timeoutMs: 30000 });
    const c = await da.dial(to, 5000, { timeoutMs: 30000 });
    const s = await accepted;
    let got = 0;
    const total = SIZE_MIB * MiB;
    const done = new Promise<void>((res) => (s.onData = (x) => ((got += x.length), got >= total && res())));
    t0 = performance.now();
    for (let i = 0; i < SIZE_MIB; i++) await c.write(block.slice());
    await done;
    r.add("stream 256MiB via IPC, nothing stored", total / MB / ((performance.now() - t0) / 1000), "MB/s", "same path as send-file without disk or hashing", { limit: "stream.ipc" });
    c.close();
    s.close();

    const path = join(cl.dir, "bench.bin");
    const fd = openSync(path, "w");
    for (let i = 0; i < SIZE_MIB; i++) {
      block.writeUInt32BE(i, 0);
      writeSync(fd, block);
    }
    closeSync(fd);

    // SDK sender over a driver connection: hash, offer, stream, digest check, fsync, rename.
    const fc = await da.dial(to, 1001, { timeoutMs: 30000 });
    let hashedAt = 0;
    t0 = performance.now();
    await sendFile(fc, path, { onProgress: (p) => { if (p.phase === "sending" && !hashedAt) hashedAt = performance.now(); } });
    const ms = performance.now() - t0;
    fc.close();
    r.add("send-file 256MiB (SDK), whole", total / MB / (ms / 1000), "MB/s", `offer → ACK FILE; hashing took ${((hashedAt - t0) / 1000).toFixed(1)} s`, { vs: ["stream.ipc", "sha256"] });
    r.add("send-file 256MiB (SDK), after hashing", total / MB / ((performance.now() - hashedAt) / 1000), "MB/s", "first DATA frame → ACK FILE (receiver hashes, writes, fsyncs)", { vs: ["stream.ipc"] });

    // pilotctl as a separate process (what an agent runs), with its peak memory.
    const env = { ...process.env as Record<string, string>, PILOT_SOCKET: A.socket, HOME: A.home, PILOT_REGISTRY: cl.registry };
    t0 = performance.now();
    const p = Bun.spawn([BUN, MAIN, "pilotctl", "--json", "send-file", B.address, path], { cwd: REPO, env, stdout: "pipe", stderr: "pipe" });
    let peak = 0;
    const iv = setInterval(() => (peak = Math.max(peak, rssMiB(p.pid) || 0)), 50);
    const code = await p.exited;
    clearInterval(iv);
    if (code !== 0) throw new Error(`pilotctl send-file exited ${code}: ${await new Response(p.stderr).text()}`);
    r.add("pilotctl send-file 256MiB", total / MB / ((performance.now() - t0) / 1000), "MB/s", "process start → exit 0 after ACK", { vs: ["stream.ipc"] });
    r.add("pilotctl send-file RSS (max)", peak, "MiB", "256 MiB file; memory does not grow with the file");
  } finally {
    for (const d of drivers) d.close();
    await cl.stop();
  }
}
