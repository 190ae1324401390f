// Test contexts for the built-in services: in-memory network, fake registry, real Ed25519.
import { ed25519 } from "@noble/curves/ed25519.js";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Addr } from "../../src/proto/types.ts";
import type { RegistryLookup, RegistryPoll, ServiceContext, TrustRegistry } from "../../src/daemon/services/context.ts";
import { MemNet } from "./memconn.ts";

export const b64 = (b: Uint8Array) => Buffer.from(b).toString("base64");

export function edVerify(pub: string, challenge: string, sig: string): boolean {
  try {
    return ed25519.verify(Buffer.from(sig, "base64"), new TextEncoder().encode(challenge), Buffer.from(pub, "base64"));
  } catch {
    return false;
  }
}

export class Keypair {
  readonly secret = ed25519.utils.randomSecretKey();
  readonly pub = ed25519.getPublicKey(this.secret);
  readonly publicKey = b64(this.pub);
  sign(challenge: string): string {
    return b64(ed25519.sign(new TextEncoder().encode(challenge), this.secret));
  }
}

/** A registry shared by all test nodes: keys, networks, relay inboxes, trust pairs. */
export class FakeRegistry {
  keys = new Map<number, string>();
  networks = new Map<number, number[]>();
  inbox = new Map<number, RegistryPoll>();
  pairs = new Set<string>();
  calls: string[] = [];
  down = false;

  private box(n: number): RegistryPoll {
    let b = this.inbox.get(n);
    if (!b) this.inbox.set(n, (b = { requests: [], responses: [] }));
    return b;
  }
  private check(node: number, challenge: string, sig: string) {
    const k = this.keys.get(node);
    if (k && !edVerify(k, challenge, sig)) throw new Error("invalid signature");
  }
  pair(a: number, b: number) {
    return `${Math.min(a, b)}:${Math.max(a, b)}`;
  }

  /** The adapter of node `self`: like the daemon's, it signs each request once with the node's key. */
  forNode(self: number, kp?: Keypair): TrustRegistry {
    const r = this;
    const signed = (challenge: string) => r.check(self, challenge, kp ? kp.sign(challenge) : "");
    const up = () => { if (r.down) throw new Error("registry unreachable"); };
    return {
      async lookup(id): Promise<RegistryLookup> {
        up();
        r.calls.push(`lookup ${id}`);
        if (!r.keys.has(id)) throw new Error("node not found");
        return { node_id: id, public_key: r.keys.get(id)!, networks: r.networks.get(id) ?? [0] };
      },
      async requestHandshake(to, justification) {
        up();
        signed(`handshake:${self}:${to}`);
        const b = r.box(to);
        if (b.requests.some((q) => q.from_node_id === self)) throw new Error("handshake request already pending");
        b.requests.push({ from_node_id: self, justification, timestamp: Math.floor(Date.now() / 1000) });
        r.calls.push(`request_handshake ${self}->${to}`);
      },
      async respondHandshake(peer, accept) {
        up();
        signed(`respond:${self}:${peer}`);
        if (accept) r.pairs.add(r.pair(self, peer));
        r.box(peer).responses.push({ from_node_id: self, accept, timestamp: Math.floor(Date.now() / 1000) });
        r.calls.push(`respond_handshake ${self}->${peer} ${accept}`);
      },
      async pollHandshakes() {
        up();
        signed(`poll_handshakes:${self}`);
        const b = r.box(self);
        r.inbox.delete(self);
        return b;
      },
      async reportTrust(peer) {
        up();
        signed(`report_trust:${self}:${peer}`);
        r.pairs.add(r.pair(self, peer));
        r.calls.push(`report_trust ${self}->${peer}`);
      },
      async revokeTrust(peer) {
        up();
        signed(`revoke_trust:${self}:${peer}`);
        if (!r.pairs.delete(r.pair(self, peer))) throw new Error("no trust pair");
        r.calls.push(`revoke_trust ${self}->${peer}`);
      },
    };
  }
}

export interface TestNode {
  ctx: ServiceContext;
  kp: Keypair;
  addr: Addr;
  dir: string;
  hooks: { event: string; data?: Record<string, unknown> }[];
  /** links that are "down": dials to these nodes fail */
  unreachable: Set<number>;
}

export function tempDir(prefix = "pilot-svc-"): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export function rmDir(d: string) {
  rmSync(d, { recursive: true, force: true, maxRetries: 5 });
}

export function makeNode(net: MemNet, reg: FakeRegistry, node: number, opts: { dir?: string; trust?: boolean; now?: () => number } = {}): TestNode {
  const kp = new Keypair();
  const addr: Addr = { network: 0, node };
  const dir = opts.dir ?? tempDir();
  reg.keys.set(node, kp.publicKey);
  const hooks: TestNode["hooks"] = [];
  const unreachable = new Set<number>();
  const ctx: ServiceContext = {
    nodeId: () => node,
    localAddr: () => addr,
    dataDir: dir,
    trustPath: opts.trust === false ? null : join(dir, "trust.json"),
    listen: (port, onAccept) => net.listen(addr, port, onAccept),
    dial: async (to, port) => {
      if (unreachable.has(to.node)) {
        const { TransportError } = await import("../../src/transport/api.ts");
        throw new TransportError("dial_timeout", "dial timeout");
      }
      return net.dial(addr, to, port);
    },
    identity: { publicKey: kp.publicKey, sign: (c) => kp.sign(c) },
    verify: edVerify,
    registry: reg.forNode(node, kp),
    webhook: (event, data) => { hooks.push({ event, data }); },
    log: { debug() {}, info() {}, warn() {} },
    now: opts.now,
  };
  return { ctx, kp, addr, dir, hooks, unreachable };
}

export function until(cond: () => boolean, timeoutMs = 5000, what = "condition"): Promise<void> {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const tick = () => {
      if (cond()) return resolve();
      if (Date.now() - t0 > timeoutMs) return reject(new Error(`timed out waiting for ${what}`));
      setTimeout(tick, 2);
    };
    tick();
  });
}
