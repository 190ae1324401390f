// The SDK against pilotctl for the same operations, in one run on one testnet (real rendezvous and
// two real daemons): `info`, and a 1 KiB message round trip (a stream to a port that answers, and
// a data-exchange message with its ACK). SDK calls reuse one IPC connection (the way a program
// uses it); pilotctl pays for a process per call. Medians; the note gives the pilotctl/SDK ratio.
import { dirname, join, resolve } from "node:path";
import { createTestnet } from "../src/client/testnet.ts";

const main = join(resolve(import.meta.dir, ".."), "src/main.ts");
const KIB = "x".repeat(1024);

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return Math.round(s[Math.floor(s.length / 2)] * 1000) / 1000;
}
async function timeEach(n: number, fn: () => Promise<unknown>): Promise<number> {
  const t: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await fn();
    t.push(performance.now() - t0);
  }
  return median(t);
}
async function ctl(env: Record<string, string>, args: string[]): Promise<void> {
  const p = Bun.spawn([process.execPath, main, "pilotctl", "--json", ...args], { env: { ...process.env, ...env }, stdout: "pipe", stderr: "pipe" });
  await new Response(p.stdout).text();
  if ((await p.exited) !== 0) throw new Error(`pilotctl ${args[0]} failed: ${await new Response(p.stderr).text()}`);
}

export default async function (r: { add: (name: string, value: number, unit: string, note?: string) => void }): Promise<void> {
  const net = await createTestnet({ nodes: 2 });
  const stop = new AbortController();
  try {
    const [a, b] = net.nodes;
    const envA = { PILOT_SOCKET: a.socket, HOME: dirname(a.dataDir) };
    // B answers every connection on port 5000 with the bytes it received.
    const l = await b.pilot.listen(5000, { signal: stop.signal });
    void (async () => {
      for await (const c of l) {
        void (async () => {
          const m = await c.read().catch(() => null);
          if (m) await c.write(m).catch(() => {});
          await c.read({ timeoutMs: 5000 }).catch(() => null);
          c.close();
        })();
      }
    })();
    const roundTrip = async () => {
      const c = await a.pilot.dial(b.address, 5000);
      await c.write(KIB);
      let got = 0;
      while (got < 1024) {
        const x = await c.read({ timeoutMs: 10_000 });
        if (!x) throw new Error("round trip: EOF");
        got += x.length;
      }
      c.close();
    };
    await roundTrip(); // warm the tunnel

    const sdkInfo = await timeEach(200, () => a.pilot.info());
    const sdkConnectInfo = await timeEach(50, async () => {
      const p = await a.connect();
      await p.info();
      p.close();
    });
    const ctlInfo = await timeEach(11, () => ctl(envA, ["info"]));
    r.add("SDK info (open connection)", sdkInfo, "ms", `median of 200; pilotctl/SDK = ${(ctlInfo / sdkInfo).toFixed(0)}x`);
    r.add("SDK connect+info+close", sdkConnectInfo, "ms", "median of 50");
    r.add("pilotctl --json info", ctlInfo, "ms", "process per call, median of 11");

    const sdkRt = await timeEach(100, roundTrip);
    const ctlRt = await timeEach(11, () => ctl(envA, ["send", b.address, "5000", "--data", KIB]));
    r.add("SDK 1 KiB round trip (dial, send, reply)", sdkRt, "ms", `median of 100; pilotctl/SDK = ${(ctlRt / sdkRt).toFixed(1)}x`);
    r.add("pilotctl send 1 KiB (reply read)", ctlRt, "ms", "median of 11");

    const sdkMsg = await timeEach(50, () => a.pilot.sendMessage(b.address, KIB));
    const ctlMsg = await timeEach(11, () => ctl(envA, ["send-message", b.address, "--data", KIB]));
    r.add("SDK sendMessage 1 KiB (until ACK)", sdkMsg, "ms", `median of 50; pilotctl/SDK = ${(ctlMsg / sdkMsg).toFixed(1)}x`);
    r.add("pilotctl send-message 1 KiB", ctlMsg, "ms", "median of 11");
  } finally {
    stop.abort();
    await net.close();
  }
}
