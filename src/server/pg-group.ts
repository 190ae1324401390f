// Group commit for the PostgreSQL store. Transactions requested while a group is executing are
// collected and run back to back, in request order, inside ONE database transaction on one
// connection, then committed once; every caller's promise settles only after that COMMIT
// returned, so an acknowledged write is as durable as with one transaction per request, while
// BEGIN/COMMIT round trips, the commit record and its WAL flush are paid once per group.
//
// There are no savepoints (a subtransaction per request costs statements and, past 64 of them,
// slows every other session's snapshot checks). Instead, when anything in a group fails (a
// request's own error, a serialization failure, a unique-key race with another process, a failed
// COMMIT), the group's transaction is rolled back, the in-memory side effects its requests
// registered are reverted, and its requests are rerun one by one, each in its own transaction
// (with the store's usual retries): a failing request then fails alone, the others succeed, and
// none is lost or answered twice. Requests are always run one at a time in arrival order (the
// fallback too, before the next group starts), so each sees the effects of the earlier ones.

/** One queued transaction. `undos` collects its in-memory side effects for the current attempt. */
export interface GroupEntry<T = unknown> {
  fn: T;
  undos: (() => void)[];
}

/** How a group runs on the database (PgStore provides it; tests use fakes). */
export interface GroupRunner<F> {
  /**
   * Run every entry's fn in order inside one transaction and commit; the results in entry order.
   * Rejects (after rolling back) if any entry or the COMMIT failed.
   */
  together(entries: GroupEntry<F>[]): Promise<unknown[]>;
  /** Run one entry in a transaction of its own (with the store's retries). */
  alone(entry: GroupEntry<F>): Promise<unknown>;
}

/** Upper bound on requests per group: bounds the latency one group adds to its first member. */
export const PG_MAX_GROUP = 128;

interface Pending<F> extends GroupEntry<F> {
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
}

export class PgGroupCommit<F> {
  private queue: Pending<F>[] = [];
  private running = false;
  private scheduled = false;
  /** Groups committed together, requests run in them, groups rerun one by one (tests, benchmarks). */
  groups = 0;
  entries = 0;
  fallbacks = 0;

  constructor(private runner: GroupRunner<F>, private max = PG_MAX_GROUP) {}

  run<T>(fn: F): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ fn, undos: [], resolve: resolve as (v: unknown) => void, reject });
      this.kick();
    });
  }

  private kick(): void {
    if (this.running || this.scheduled || !this.queue.length) return;
    this.scheduled = true;
    // Let the current I/O callbacks (other connections' requests) queue up first.
    setImmediate(() => {
      this.scheduled = false;
      void this.runGroup();
    });
  }

  private async runGroup(): Promise<void> {
    if (this.running || !this.queue.length) return;
    this.running = true;
    const group = this.queue.splice(0, this.max);
    try {
      if (group.length === 1) {
        await settle(group[0], () => this.runner.alone(group[0]));
      } else {
        let out: unknown[] | null = null;
        try {
          out = await this.runner.together(group);
        } catch {
          for (let i = group.length - 1; i >= 0; i--) revert(group[i]);
        }
        if (out) {
          this.groups++;
          this.entries += group.length;
          for (let i = 0; i < group.length; i++) group[i].resolve(out[i]);
        } else {
          this.fallbacks++;
          for (const e of group) await settle(e, () => this.runner.alone(e));
        }
      }
    } finally {
      this.running = false;
      this.kick();
    }
  }
}

async function settle<F>(e: Pending<F>, f: () => Promise<unknown>): Promise<void> {
  try {
    e.resolve(await f());
  } catch (err) {
    e.reject(err);
  }
}

/** Run an entry's registered undos, newest first, and forget them. */
function revert(e: GroupEntry<unknown>): void {
  const u = e.undos;
  e.undos = [];
  for (let i = u.length - 1; i >= 0; i--) u[i]();
}
