// Load generator for bench/registry.ts, run as a child process so that client CPU does not count
// against the registry server (the server process measures its own CPU per phase).
//
//   bun bench/lib/registry-load.ts <port> <targets> <seconds> <rounds> <phases,comma-separated> [conns] [in-flight]
//
// Setup (not timed): C requester nodes and C×H heartbeat nodes with real Ed25519 keys are
// registered over the wire; every request of the timed phases is signed (plain, reference-form
// signatures) and encoded as a frame in advance, and the timed connections are raw sockets that
// keep W frames in flight and only check the reply's type, so the load generator costs far less
// CPU than the server it measures. Then, per phase and round, it prints
//   {"ev":"start","phase":P}  …runs C connections × W requests in flight for <seconds>…
//   {"ev":"end","phase":P,"ops":n,"ms":t,"failures":f}
// and finally {"ev":"done"}. Phases:
//   register     brand-new random keys (registration does not verify keys)
//   resolve      random public targets among 1..targets, P pre-signed requests per requester
//                reused round-robin (reference daemons repeat the same signature bytes)
//   resolve-cold every request carries a signature the server has never seen (distinct
//                requester/target pairs): a full Ed25519 verification per request
//   lookup       unauthenticated, random targets
//   heartbeat    C×H distinct nodes, plain signatures (as reference daemons send them)
import { generateKeyPairSync, randomBytes, sign as edSign, type KeyObject } from "node:crypto";
import type { Socket } from "bun";
import { RegistryClient } from "../../src/daemon/registry-client.ts";
import { RegistryFrameDecoder, encodeFrame } from "../../src/proto/registry-frames.ts";

const [port, targets, seconds, rounds] = process.argv.slice(2, 6).map(Number);
const phases = (process.argv[6] ?? "register,resolve,resolve-cold,lookup,heartbeat").split(",");
const C = Number(process.argv[7] || process.env.PILOT_BENCH_CONNS || 8);
const W = Number(process.argv[8] || process.env.PILOT_BENCH_INFLIGHT || 16);
const H = 64;
const P = 512;

const out = (o: Record<string, unknown>) => process.stdout.write(JSON.stringify(o) + "\n");

function edKey(): { pub: string; priv: KeyObject } {
  const { publicKey, privateKey } = generateKeyPairSync("ed25519");
  const x = publicKey.export({ format: "jwk" }).x!;
  return { pub: Buffer.from(x, "base64url").toString("base64"), priv: privateKey };
}
const sig = (k: KeyObject, text: string) => edSign(null, Buffer.from(text), k).toString("base64");
const rnd = () => 1 + Math.floor(Math.random() * targets);

const clients: RegistryClient[] = [];
const reqs = Array.from({ length: C }, () => edKey());
for (let c = 0; c < C; c++) {
  const cl = new RegistryClient(`127.0.0.1:${port}`, { sign: (m) => sig(reqs[c].priv, m), freshSignatures: false });
  await cl.connect();
  clients.push(cl);
}
const rid: number[] = [];
for (let c = 0; c < C; c++) rid.push((await clients[c].register(reqs[c].pub, "127.0.0.1:4000")).node_id as number);

const pool = reqs.map((k, c) => Array.from({ length: phases.includes("resolve") ? P : 0 }, () => {
  const t = rnd();
  return { type: "resolve", node_id: t, requester_id: rid[c], signature: sig(k.priv, `resolve:${rid[c]}:${t}`) };
}));
const COLD = phases.includes("resolve-cold") ? Math.ceil(80_000 * Math.max(1, seconds / 2) * Math.max(1, rounds / 3) / C) : 0;
const cold = reqs.map((k, c) => Array.from({ length: COLD }, (_, i) => {
  const t = 1 + ((i * C + c) % targets);
  return { type: "resolve", node_id: t, requester_id: rid[c], signature: sig(k.priv, `resolve:${rid[c]}:${t}`) };
}));
const coldNext = new Array(C).fill(0);
const hb: Record<string, unknown>[][] = [];
if (phases.includes("heartbeat")) {
  for (let c = 0; c < C; c++) {
    const row: Record<string, unknown>[] = [];
    for (let j = 0; j < H; j++) {
      const key = edKey();
      const id = (await clients[c].register(key.pub, "127.0.0.1:4000")).node_id as number;
      row.push({ type: "heartbeat", node_id: id, signature: sig(key.priv, `heartbeat:${id}`) });
    }
    hb.push(row);
  }
}
const newKeys: string[] = [];
if (phases.includes("register")) for (let i = 0; i < 250_000 * Math.max(1, seconds / 2); i++) newKeys.push(randomBytes(32).toString("base64"));
let nk = 0;

const te = new TextEncoder();
const frame = (o: unknown) => encodeFrame(te.encode(JSON.stringify(o)));
const tail = new TextDecoder();

/** A raw registry connection keeping up to W pre-encoded requests in flight. */
class RawConn {
  private dec = new RegistryFrameDecoder();
  private onFrame: (f: Uint8Array) => void = () => {};
  private constructor(private s: Socket<undefined>) {}
  static open(): Promise<RawConn> {
    return new Promise((res, rej) => {
      let c: RawConn;
      Bun.connect({
        hostname: "127.0.0.1", port,
        socket: {
          open(s) { c = new RawConn(s as Socket<undefined>); res(c); },
          data(_s, chunk) { for (const f of c.dec.push(chunk)) c.onFrame(f); },
          connectError(_s, e) { rej(e); },
        },
      }).catch(rej);
    });
  }
  /**
   * Until `end` (performance.now() ms): send frames from next() (null = exhausted) with W in
   * flight; resolves after the last reply with the replies counted and those not of `want`.
   */
  run(next: () => Uint8Array | null, want: string, end: number): Promise<{ ops: number; bad: number }> {
    const suffix = `"type":"${want}"}`;
    let inflight = 0, ops = 0, bad = 0;
    return new Promise((resolve) => {
      const out: Uint8Array[] = [];
      const fill = () => {
        while (inflight < W && performance.now() < end) {
          const f = next();
          if (!f) break;
          out.push(f);
          inflight++;
        }
        if (out.length) {
          let n = 0;
          for (const f of out) n += f.length;
          const buf = new Uint8Array(n);
          let o = 0;
          for (const f of out) { buf.set(f, o); o += f.length; }
          out.length = 0;
          this.s.write(buf);
        }
        if (inflight === 0) resolve({ ops, bad });
      };
      let pending = false;
      this.onFrame = (f) => {
        inflight--;
        ops++;
        if (!tail.decode(f.subarray(Math.max(0, f.length - suffix.length))).endsWith(suffix)) bad++;
        if (!pending) { pending = true; queueMicrotask(() => { pending = false; fill(); }); }
      };
      fill();
    });
  }
  close(): void { this.s.end(); }
}

const raws = await Promise.all(Array.from({ length: C }, () => RawConn.open()));
const regFrames = newKeys.map((k) => frame({ type: "register", public_key: k, listen_addr: "127.0.0.1:4000" }));
newKeys.length = 0;
const poolF = pool.map((row) => row.map(frame));
const coldF = cold.map((row) => row.map(frame));
const hbF = hb.map((row) => row.map(frame));
const LK = 65_536;
const lookF = Array.from({ length: LK }, () => frame({ type: "lookup", node_id: rnd() }));

const gens: Record<string, { want: string; next: (c: number) => () => Uint8Array | null }> = {
  register: { want: "register_ok", next: () => () => (nk < regFrames.length ? regFrames[nk++] : null) },
  resolve: { want: "resolve_ok", next: (c) => { let i = 0; return () => poolF[c][i++ % P]; } },
  "resolve-cold": { want: "resolve_ok", next: (c) => () => (coldNext[c] < COLD ? coldF[c][coldNext[c]++] : null) },
  lookup: { want: "lookup_ok", next: (c) => { let i = c * 8191; return () => lookF[i++ % LK]; } },
  heartbeat: { want: "heartbeat_ok", next: (c) => { let i = 0; return () => hbF[c][i++ % H]; } },
};

for (const phase of phases) {
  const g = gens[phase];
  if (!g) throw new Error(`unknown phase ${phase}`);
  for (let r = 0; r < rounds; r++) {
    out({ ev: "start", phase });
    const t0 = performance.now();
    const res = await Promise.all(raws.map((rc, c) => rc.run(g.next(c), g.want, t0 + seconds * 1000)));
    const ms = performance.now() - t0;
    out({ ev: "end", phase, ops: res.reduce((a, x) => a + x.ops, 0), ms, failures: res.reduce((a, x) => a + x.bad, 0) });
  }
}
for (const rc of raws) rc.close();
for (const c of clients) c.close();
out({ ev: "done" });
