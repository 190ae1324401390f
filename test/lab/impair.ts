// User-space impairing UDP pipe for the network lab (the kernel here has no netem).
//
//   bun test/lab/impair.ts --a 198.18.0.50:5001=198.18.0.10:4000 --b 198.18.0.50:5002=198.18.0.11:4000 \
//       [--delay 50] [--jitter 0] [--loss 0.03] [--dup 0.02] [--reorder 0.05] [--seed 1]
//
// Two sockets: whatever arrives on side A's socket is sent, impaired, from side B's socket to B's
// target, and vice versa. Each daemon's namespace DNATs its UDP towards the other daemon's tunnel
// port to its side's socket (see Lab.impairLink), so every direct tunnel frame between the two
// crosses the pipe in both directions, whoever sends first. Impairments per packet and
// direction: loss (dropped), duplication (a second copy 1-10 ms later), delay (fixed + uniform
// jitter) and reordering (a packet held 20-80 ms longer than its neighbours).
// Prints `impair listening` when ready and a JSON stats line on SIGTERM / every 5 s.
import { mulberry32 } from "../../src/sys/prng.ts";
import { createSocket, type Socket } from "node:dgram";

interface Side {
  bind: { ip: string; port: number };
  target: { ip: string; port: number };
  sock?: Socket;
}

function ep(s: string): { ip: string; port: number } {
  const i = s.lastIndexOf(":");
  const port = Number(s.slice(i + 1));
  if (i <= 0 || !Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`impair: bad endpoint ${s}`);
  return { ip: s.slice(0, i), port };
}

const args = process.argv.slice(2);
const opt = (name: string, def: number): number => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : def;
};
const sideArg = (name: string): Side => {
  const i = args.indexOf(`--${name}`);
  if (i < 0) throw new Error(`impair: --${name} LISTEN=TARGET required`);
  const [l, t] = args[i + 1].split("=");
  return { bind: ep(l), target: ep(t) };
};

const cfg = {
  delay: opt("delay", 50),
  jitter: opt("jitter", 0),
  loss: opt("loss", 0),
  dup: opt("dup", 0),
  reorder: opt("reorder", 0),
};
// Small deterministic PRNG (mulberry32) so a failing run can be replayed with its seed.
const seed = opt("seed", Date.now() & 0xffffffff) >>> 0;
const rand = mulberry32(seed);

const stats = { forwarded: 0, dropped: 0, duplicated: 0, reordered: 0, bytes: 0 };
const A = sideArg("a");
const B = sideArg("b");

function forward(msg: Buffer, out: Side): void {
  if (rand() < cfg.loss) {
    stats.dropped++;
    return;
  }
  let d = cfg.delay + rand() * cfg.jitter;
  if (rand() < cfg.reorder) {
    d += 20 + rand() * 60;
    stats.reordered++;
  }
  const send = () => out.sock!.send(msg, out.target.port, out.target.ip);
  setTimeout(send, d);
  stats.forwarded++;
  stats.bytes += msg.length;
  if (rand() < cfg.dup) {
    stats.duplicated++;
    setTimeout(send, d + 1 + rand() * 9);
  }
}

async function open(s: Side, other: () => Side): Promise<void> {
  const sock = createSocket("udp4");
  sock.on("message", (msg) => forward(msg, other()));
  sock.on("error", () => {}); // ICMP errors from a restarting daemon: keep going
  await new Promise<void>((res) => sock.bind(s.bind.port, s.bind.ip, () => res()));
  try {
    sock.setRecvBufferSize(4 << 20);
    sock.setSendBufferSize(4 << 20);
  } catch {}
  s.sock = sock;
}

await open(A, () => B);
await open(B, () => A);
console.log(`impair listening a=${A.bind.ip}:${A.bind.port} b=${B.bind.ip}:${B.bind.port} ${JSON.stringify(cfg)} seed=${seed}`);
const report = () => console.log(`impair stats ${JSON.stringify(stats)}`);
const iv = setInterval(report, 5000);
process.on("SIGTERM", () => {
  clearInterval(iv);
  report();
  process.exit(0);
});
