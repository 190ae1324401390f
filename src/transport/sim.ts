// Deterministic simulated link between two Transport instances: virtual clock, seeded PRNG,
// delay/jitter, loss, reordering, duplication, corruption (dropped, as the checksum would),
// optional bottleneck rate with a bounded queue. Used by tests and bench/transport.ts.
import type { Addr, Packet } from "../proto/types.ts";
import type { TransportHost } from "./api.ts";
import { Transport, type TransportOptions } from "./transport.ts";

import { mulberry32 } from "../sys/prng.ts";
export { mulberry32 };

export interface LinkOptions {
  seed?: number;
  delayMs?: number; // one-way base delay
  jitterMs?: number; // uniform extra delay (causes reordering when > packet spacing)
  loss?: number; // probability 0..1
  dup?: number; // probability a packet is delivered twice
  reorder?: number; // probability of an extra reorderMs delay
  reorderMs?: number;
  corrupt?: number; // probability of corruption (dropped by the checksum)
  /** Bottleneck in bytes per ms (0 = infinite). */
  rate?: number;
  /** Max queueing delay at the bottleneck before tail drop (ms). */
  queueMs?: number;
}

export const ADDR_A: Addr = { network: 1, node: 0xa };
export const ADDR_B: Addr = { network: 1, node: 0xb };

export class SimNet {
  now = 0;
  readonly rng: () => number;
  /** Side 0 and side 1; replaced by restart(). */
  a: Transport;
  b: Transport;
  private readonly optsAB: [Partial<TransportOptions>, Partial<TransportOptions>];
  /** Optional observer/filter: return false to drop the packet. `from` is 0 (a) or 1 (b). */
  tap: ((p: Packet, from: number) => boolean | void) | null = null;
  dropped = 0;
  /** Datagrams delivered to a (index 0) and b (index 1). */
  readonly datagrams: [Packet[], Packet[]] = [[], []];
  /** onSynTimeout calls per side; `relayAt` makes the host report a path change at that count. */
  readonly synTimeouts: [number[], number[]] = [[], []];
  relayAt = 0;
  delivered = 0;
  private et: number[] = [];
  private eo: number[] = []; // tie-break order
  private ep: Packet[] = [];
  private ed: number[] = []; // destination 0/1
  private order = 0;
  private busyUntil = [0, 0];
  readonly opts: Required<LinkOptions>;

  constructor(link: LinkOptions = {}, optsA: Partial<TransportOptions> = {}, optsB: Partial<TransportOptions> = {}) {
    this.opts = {
      seed: link.seed ?? 1,
      delayMs: link.delayMs ?? 5,
      jitterMs: link.jitterMs ?? 0,
      loss: link.loss ?? 0,
      dup: link.dup ?? 0,
      reorder: link.reorder ?? 0,
      reorderMs: link.reorderMs ?? 10,
      corrupt: link.corrupt ?? 0,
      rate: link.rate ?? 0,
      queueMs: link.queueMs ?? 50,
    };
    this.rng = mulberry32(this.opts.seed);
    this.optsAB = [optsA, optsB];
    this.a = new Transport(this.host(0), { localAddr: ADDR_A, ...optsA });
    this.b = new Transport(this.host(1), { localAddr: ADDR_B, ...optsB });
  }

  /**
   * Simulate a daemon restart on one side: a fresh Transport with the same address and no
   * state (no FIN/RST is sent for the old connections). Packets still in flight reach the new one.
   */
  restart(side: 0 | 1, opts: Partial<TransportOptions> = {}): Transport {
    const t = new Transport(this.host(side), { localAddr: side === 0 ? ADDR_A : ADDR_B, ...this.optsAB[side], ...opts });
    if (side === 0) this.a = t;
    else this.b = t;
    return t;
  }

  private host(side: number): TransportHost {
    return {
      now: () => this.now,
      output: (p) => this.send(p, side),
      random: this.rng,
      onDatagram: (p) => {
        this.datagrams[side].push({ ...p, payload: p.payload.slice() }); // valid during the call only
      },
      onSynTimeout: (_dst, n) => {
        this.synTimeouts[side].push(this.now);
        return this.relayAt > 0 && n === this.relayAt;
      },
    };
  }

  private send(p: Packet, from: number): void {
    if (this.tap && this.tap(p, from) === false) {
      this.dropped++;
      return;
    }
    const o = this.opts;
    const r = this.rng;
    if (o.loss > 0 && r() < o.loss) {
      this.dropped++;
      return;
    }
    if (o.corrupt > 0 && r() < o.corrupt) {
      this.dropped++; // a flipped bit fails the header checksum: the receiver never sees it
      return;
    }
    let t = this.now;
    if (o.rate > 0) {
      const start = Math.max(t, this.busyUntil[from]);
      if (start - t > o.queueMs) {
        this.dropped++;
        return;
      }
      this.busyUntil[from] = start + (34 + p.payload.length) / o.rate;
      t = this.busyUntil[from];
    }
    t += o.delayMs;
    if (o.jitterMs > 0) t += r() * o.jitterMs;
    if (o.reorder > 0 && r() < o.reorder) t += o.reorderMs;
    this.push(t, p, 1 - from);
    if (o.dup > 0 && r() < o.dup) this.push(t + r() * 2, p, 1 - from);
  }

  private push(t: number, p: Packet, dest: number): void {
    const et = this.et, eo = this.eo, ep = this.ep, ed = this.ed;
    const ord = this.order++;
    let i = et.length;
    et.push(t); eo.push(ord); ep.push(p); ed.push(dest);
    while (i > 0) {
      const q = (i - 1) >> 1;
      if (et[q] < t || (et[q] === t && eo[q] < ord)) break;
      et[i] = et[q]; eo[i] = eo[q]; ep[i] = ep[q]; ed[i] = ed[q];
      i = q;
    }
    et[i] = t; eo[i] = ord; ep[i] = p; ed[i] = dest;
  }

  private pop(): void {
    const et = this.et, eo = this.eo, ep = this.ep, ed = this.ed;
    const lt = et.pop()!, lo = eo.pop()!, lp = ep.pop()!, ld = ed.pop()!;
    const n = et.length;
    if (n === 0) return;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const rr = l + 1;
      const c = rr < n && (et[rr] < et[l] || (et[rr] === et[l] && eo[rr] < eo[l])) ? rr : l;
      if (et[c] > lt || (et[c] === lt && eo[c] > lo)) break;
      et[i] = et[c]; eo[i] = eo[c]; ep[i] = ep[c]; ed[i] = ed[c];
      i = c;
    }
    et[i] = lt; eo[i] = lo; ep[i] = lp; ed[i] = ld;
  }

  /** Advance to the next event; false when nothing at all is pending. */
  step(limit = Infinity): boolean {
    const te = this.et.length > 0 ? this.et[0] : Infinity;
    const ta = this.a.nextDeadline();
    const tb = this.b.nextDeadline();
    const t = Math.min(te, ta, tb);
    if (t === Infinity || t > limit) return false;
    if (t > this.now) this.now = t;
    if (te <= this.now) {
      const p = this.ep[0], d = this.ed[0];
      this.pop();
      this.delivered++;
      // The payload is only valid during handlePacket (as in the daemon, whose receive ring reuses
      // its memory): deliver a copy and overwrite it afterwards, so anything the transport keeps
      // without copying shows up as corrupted data.
      const payload = p.payload.slice();
      (d === 0 ? this.a : this.b).handlePacket(p.payload.length === 0 ? p : { ...p, payload });
      payload.fill(0xee);
      // End of an input batch (nothing else arrives at this instant): deferred ACKs go out,
      // as a daemon does at the end of an event-loop turn (Transport option batchAcks).
      if (this.et.length === 0 || this.et[0] > this.now) {
        this.a.flushAcks();
        this.b.flushAcks();
      }
    } else if (ta <= this.now) this.a.tick();
    else this.b.tick();
    return true;
  }

  /** Run until pred() holds (checked after every event) or virtual time passes `untilMs`. */
  run(pred: () => boolean, maxMs = 600_000): boolean {
    const limit = this.now + maxMs;
    while (!pred()) {
      if (!this.step(limit)) {
        if (pred()) return true;
        if (limit !== Infinity) this.now = limit;
        return false;
      }
    }
    return true;
  }

  /** Advance virtual time by ms, processing everything due. */
  advance(ms: number): void {
    const limit = this.now + ms;
    while (this.step(limit)) {}
    this.now = limit;
  }

  /** Let queued promise callbacks run (dial/ping resolution) — call from async tests. */
  async settle(): Promise<void> {
    for (let i = 0; i < 5; i++) await Promise.resolve();
  }
}
