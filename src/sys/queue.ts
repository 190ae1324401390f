// The one async queue: producers push(), consumers await take() with an optional timeout/abort.
// Items queued before an end or a failure are still delivered first.

/**
 * Arms a cancellation for one pending take: call `cancel(err)` to reject it (timer fired, signal
 * aborted). Returns the disarm function, called once the take settles either way.
 */
export type Arm = (cancel: (e: Error) => void) => () => void;

/** Cancellation after `ms` (none when ms <= 0 or undefined) with the error `make` builds. */
export function timeoutArm(ms: number | undefined, make: () => Error): Arm | undefined {
  if (!ms || ms <= 0) return undefined;
  return (cancel) => {
    const t = setTimeout(() => cancel(make()), ms);
    return () => clearTimeout(t);
  };
}

interface Waiter<T> {
  resolve(v: T): void;
  reject(e: Error): void;
}

export class AsyncQueue<T> {
  private items: T[] = [];
  private waiters: Waiter<T>[] = [];
  private error: Error | null = null;
  private done: { value: T } | null = null;
  /** Items dropped because the queue held `max` already (the oldest goes first). */
  dropped = 0;

  /** `max`: bound on queued items; beyond it the oldest is dropped. */
  constructor(public max = Infinity) {}

  get length(): number {
    return this.items.length;
  }
  /** The failure given to fail(), if any. */
  get failure(): Error | null {
    return this.error;
  }
  /** True once end() or fail() was called. */
  get closed(): boolean {
    return this.error !== null || this.done !== null;
  }

  push(v: T): void {
    const w = this.waiters.shift();
    if (w) return w.resolve(v);
    this.items.push(v);
    if (this.items.length > this.max) {
      this.items.shift();
      this.dropped++;
    }
  }

  /** End of input: once the queued items are taken, every take resolves to `value`. */
  end(value: T): void {
    if (this.closed) return;
    this.done = { value };
    for (const w of this.waiters.splice(0)) w.resolve(value);
  }

  /** Failure: once the queued items are taken, every take rejects with the first error given. */
  fail(e: Error): void {
    if (this.closed) return;
    this.error = e;
    for (const w of this.waiters.splice(0)) w.reject(e);
  }

  /** The next queued item without waiting (undefined when none is queued). */
  poll(): T | undefined {
    return this.items.shift();
  }

  /** Next item, in order. `arm` may cancel the wait (the item then stays for the next take). */
  take(arm?: Arm): Promise<T> {
    if (this.items.length) return Promise.resolve(this.items.shift() as T);
    if (this.done) return Promise.resolve(this.done.value);
    if (this.error) return Promise.reject(this.error);
    return new Promise<T>((resolve, reject) => {
      let disarm: () => void = () => {};
      const w: Waiter<T> = {
        resolve: (v) => {
          disarm();
          resolve(v);
        },
        reject: (e) => {
          disarm();
          reject(e);
        },
      };
      this.waiters.push(w);
      if (arm) {
        disarm = arm((e) => {
          const i = this.waiters.indexOf(w);
          if (i < 0) return; // already settled
          this.waiters.splice(i, 1);
          w.reject(e);
        });
      }
    });
  }
}

/**
 * `p`, or the error `make` builds if it has not settled within `ms`. A value that arrives after
 * the deadline goes to `late` (e.g. to close a connection nobody will use).
 */
export function withTimeout<T>(p: Promise<T>, ms: number, make: () => Error = () => new Error("timeout"), late?: (v: T) => void): Promise<T> {
  return new Promise((resolve, reject) => {
    let expired = false;
    const t = setTimeout(() => {
      expired = true;
      reject(make());
    }, ms);
    p.then(
      (v) => {
        clearTimeout(t);
        if (expired) late?.(v);
        else resolve(v);
      },
      (e) => {
        clearTimeout(t);
        reject(e);
      },
    );
  });
}
