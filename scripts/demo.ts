// `npm run demo`: the whole product on one machine, narrated. A local rendezvous (registry +
// beacon on an embedded SQLite file), two daemons (alice, bob) with their own identities, mutual
// trust, messages, a file, pub/sub and a benchmark — every step through the real `pilotctl`.
import { createHash, randomBytes } from "node:crypto";
import { writeFileSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { Cluster, type DaemonHandle, type RunResult } from "../test/helpers/cluster.ts";

const c = (code: number) => (s: string) => (process.stdout.isTTY ? `\x1b[${code}m${s}\x1b[0m` : s);
const bold = c(1);
const dim = c(2);
const green = c(32);
const red = c(31);

let step = 0;
function say(title: string, text?: string): void {
  step++;
  process.stdout.write(`\n${bold(`${step}. ${title}`)}\n`);
  if (text) process.stdout.write(dim(`   ${text}\n`));
}

function show(cmd: string, r: RunResult): void {
  process.stdout.write(`   $ pilotctl ${cmd}\n`);
  const out = (r.stdout.trim() || r.stderr.trim()).split("\n");
  for (const l of out.slice(0, 12)) process.stdout.write(`   ${l}\n`);
  if (out.length > 12) process.stdout.write(dim(`   … (${out.length - 12} more lines)\n`));
  if (r.code !== 0) process.stdout.write(red(`   (exit ${r.code})\n`));
}

async function ctl(cl: Cluster, d: DaemonHandle, args: string[], json = false): Promise<RunResult> {
  const r = await cl.ctl(d, args, { json });
  show(`${json ? "--json " : ""}${args.map((a) => (/\s/.test(a) ? JSON.stringify(a) : a)).join(" ")}`, r);
  return r;
}

function must(r: RunResult, what: string): void {
  if (r.code !== 0) throw new Error(`${what} failed (exit ${r.code}): ${r.stderr || r.stdout}`);
}

async function main(): Promise<number> {
  const cl = new Cluster("pilot-demo-");
  const started = performance.now();
  try {
    say("Start a rendezvous", "registry (TCP) + beacon (UDP) on loopback, state in an embedded SQLite file");
    await cl.startRendezvous();
    process.stdout.write(`   registry ${cl.registry}   beacon ${cl.beacon}   store ${join(cl.dir, "registry.db")}\n`);

    say("Start two daemons", "each gets an Ed25519 identity and a permanent 48-bit virtual address");
    const alice = await cl.startDaemon("alice", ["-hostname", "alice"]);
    const bob = await cl.startDaemon("bob", ["-hostname", "bob"]);
    process.stdout.write(`   alice = ${alice.address} (node ${alice.nodeId})\n   bob   = ${bob.address} (node ${bob.nodeId})\n`);
    await ctl(cl, alice, ["info"]);

    say("Discovery before trust", "both nodes are private: bob's endpoint is not revealed to alice yet");
    await ctl(cl, alice, ["find", "bob"]);

    say("Mutual trust", "alice asks, bob approves; signed with Ed25519 and relayed by the registry when needed");
    must(await ctl(cl, alice, ["handshake", String(bob.nodeId), "demo: let's talk"]), "handshake");
    // Wait until bob sees the request (direct on port 444, or via the registry relay).
    for (let i = 0; i < 40; i++) {
      const r = await cl.ctl(bob, ["pending"]);
      if (JSON.stringify(r.json ?? {}).includes(`"node_id":${alice.nodeId}`)) break;
      await Bun.sleep(250);
    }
    await ctl(cl, bob, ["pending"]);
    must(await ctl(cl, bob, ["approve", String(alice.nodeId)]), "approve");
    for (let i = 0; i < 40; i++) {
      const r = await cl.ctl(alice, ["trust"]);
      if (JSON.stringify(r.json ?? {}).includes(`"node_id":${bob.nodeId}`)) break;
      await Bun.sleep(250);
    }
    await ctl(cl, alice, ["trust"]);

    say("Ping over the encrypted tunnel", "echo service on port 7; X25519 key exchange + AES-256-GCM");
    await ctl(cl, alice, ["ping", "bob", "--count", "3"]);

    say("Messages", "data exchange service (port 1001) drops them into bob's inbox");
    must(await ctl(cl, alice, ["send-message", "bob", "--data", "hello from alice"]), "send-message");
    await Bun.sleep(300);
    await ctl(cl, bob, ["inbox"]);

    say("A file", "1 MiB of random bytes, verified by SHA-256 on arrival");
    const file = join(cl.dir, "payload.bin");
    const data = randomBytes(1 << 20);
    writeFileSync(file, data);
    const want = createHash("sha256").update(data).digest("hex");
    must(await ctl(cl, alice, ["send-file", "bob", file]), "send-file");
    await Bun.sleep(300);
    const recvDir = join(bob.home, ".pilot", "received");
    const got = readdirSync(recvDir).map((f) => createHash("sha256").update(readFileSync(join(recvDir, f))).digest("hex"));
    process.stdout.write(got.includes(want) ? green(`   ✓ bob received payload.bin, sha256 ${want.slice(0, 16)}…\n`) : red(`   ✗ file not found or corrupted\n`));

    say("Publish / subscribe", "event stream broker on bob (port 1002): one connection subscribes, another publishes");
    const sub = cl.ctl(alice, ["subscribe", "bob", "news", "--count", "1", "--timeout", "10s"], { json: false });
    await Bun.sleep(1500);
    await ctl(cl, alice, ["publish", "bob", "news", "--data", "pilot-ts is up"]);
    show("subscribe bob news --count 1 (started earlier)", await sub);

    say("Benchmark", "throughput through the echo service over the encrypted tunnel");
    await ctl(cl, alice, ["bench", "bob", "4"]);

    say("Connections and peers");
    await ctl(cl, alice, ["peers"]);

    const secs = ((performance.now() - started) / 1000).toFixed(1);
    process.stdout.write(`\n${green(bold(`Demo finished in ${secs}s.`))} Run the tests with: npm test\n`);
    return 0;
  } catch (e) {
    process.stdout.write(red(`\nDemo failed: ${(e as Error).message}\n`));
    for (const d of cl.daemons) process.stdout.write(dim(`--- ${d.name} log (last 15 lines) ---\n${d.proc.log.slice(-15).join("\n")}\n`));
    return 1;
  } finally {
    await cl.stop();
  }
}

process.exit(await main());
