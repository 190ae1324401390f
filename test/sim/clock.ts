// Virtual clock for the tunnel simulator: timers fire in time order (ties in creation order) only
// when the test advances time, so a run is deterministic and takes no wall-clock time.
import type { Clock, TimerHandle } from "../../src/daemon/net/packet-conn.ts";

interface Timer {
  at: number;
  seq: number;
  fn: () => void;
}

/** Let pending promise continuations (e.g. an awaited key lookup) run. */
export const settle = (): Promise<void> => new Promise((r) => setImmediate(r));

export class VirtualClock implements Clock {
  private t = 0;
  private seq = 0;
  private timers = new Map<number, Timer>();
  /** timer callbacks that threw (a test asserts this stays empty) */
  readonly errors: Error[] = [];

  now(): number {
    return this.t;
  }

  setTimeout(fn: () => void, ms: number): TimerHandle {
    const id = ++this.seq;
    this.timers.set(id, { at: this.t + Math.max(0, ms), seq: id, fn });
    return id;
  }

  clearTimeout(h: TimerHandle): void {
    this.timers.delete(h as number);
  }

  private next(limit: number): [number, Timer] | null {
    let best: [number, Timer] | null = null;
    for (const e of this.timers) {
      const t = e[1];
      if (t.at > limit) continue;
      if (!best || t.at < best[1].at || (t.at === best[1].at && t.seq < best[1].seq)) best = e;
    }
    return best;
  }

  /** Run one due timer (at or before `limit`); false when none is due. */
  private async step(limit: number): Promise<boolean> {
    await settle();
    const n = this.next(limit);
    if (!n) return false;
    this.timers.delete(n[0]);
    this.t = Math.max(this.t, n[1].at);
    try {
      n[1].fn();
    } catch (e) {
      this.errors.push(e as Error);
    }
    await settle();
    return true;
  }

  /** Advance virtual time by `ms`, firing every timer due on the way. */
  async advance(ms: number): Promise<void> {
    const end = this.t + ms;
    while (await this.step(end)) {
      /* keep going */
    }
    this.t = end;
    await settle();
  }

  /**
   * Advance until `cond()` holds; fails after `maxMs` of virtual time. Returns the virtual time
   * it took.
   */
  async until(cond: () => boolean, what: string, maxMs = 60_000): Promise<number> {
    const start = this.t;
    const end = start + maxMs;
    await settle();
    while (!cond()) {
      if (!(await this.step(end))) {
        if (this.t >= end) throw new Error(`virtual timeout after ${maxMs} ms: ${what}`);
        this.t = end;
        await settle();
        if (!cond()) throw new Error(`virtual timeout after ${maxMs} ms: ${what}`);
      }
    }
    return this.t - start;
  }
}
