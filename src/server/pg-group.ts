// Group commit for the PostgreSQL store. Transactions requested while a group is executing are
// collected and run back to back, in request order, inside ONE database transaction on one
// connection, then committed once; every caller's promise settles only after that COMMIT
// returned, so an acknowledged write is as durable as with one transaction per request, while
// BEGIN/COMMIT round trips, the commit record and its WAL flush are paid once per group.
//
// There are no savepoints (a subtransaction per request costs statements and, past 64 of them,
// slows every other session's snapshot checks). Instead, when anything in a group fails, the
// group's transaction is rolled back, the in-memory side effects its requests registered are
// reverted, and the requests are rerun in smaller groups: when one request failed on its own
// account (say, a bad signature), the ones before it as a group, it alone, the ones after it as
// a group; after a conflict with another transaction (serialization failure, deadlock, unique-key
// race with another process) or a failed COMMIT, the two halves, down to single requests, which
// get the store's usual retries. A failing request thus fails alone, the others succeed, and
// none is lost or answered twice. Requests always run one at a time in arrival order (reruns
// too, before the next group starts), so each sees the effects of the earlier ones.

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
  /** Run one entry in a transaction of its own (with the store's retries); reverts its undos if it fails. */
  alone(entry: GroupEntry<F>): Promise<unknown>;
  /** Is `e` a conflict with a concurrent transaction, worth rerunning? */
  retryable(e: unknown): boolean;
}

/** together() failed because entry `index` threw `cause` (its own error, or a write before it failed). */
export class EntryFailed {
  constructor(readonly index: number, readonly cause: unknown) {}
}

/**
 * Upper bound on requests per group. Besides bounding the latency a group adds to its first
 * member, it keeps conflicts between concurrent groups (other lanes, other processes) rare:
 * a serializable transaction's reads of index pages conflict with other transactions' inserts
 * into those pages, and past PostgreSQL's default threshold (32 pages of one relation,
 * max_pred_locks_per_transaction / 2) its read locks become one lock on the whole relation, so
 * that every concurrent insert conflicts. Measured with two processes: groups of ~64 were rolled
 * back so often that the combined rate halved; groups of 16 on 4 lanes were the best setting.
 */
export const PG_MAX_GROUP = 16;

interface Pending<F> extends GroupEntry<F> {
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
}

export class PgGroupCommit<F> {
  private queue: Pending<F>[] = [];
  private running = false;
  private scheduled = false;
  /** Groups run (a lone request counts as one), requests run in them, failed groups split (tests, benchmarks). */
  groups = 0;
  entries = 0;
  splits = 0;

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
    try {
      await this.exec(this.queue.splice(0, this.max));
    } finally {
      this.running = false;
      this.kick();
    }
  }

  /** Run `group` (in order) and settle every entry of it. */
  private async exec(group: Pending<F>[]): Promise<void> {
    if (!group.length) return;
    if (group.length === 1) {
      this.groups++;
      this.entries++;
      return settle(group[0], () => this.runner.alone(group[0]));
    }
    let out: unknown[];
    try {
      out = await this.runner.together(group);
    } catch (err) {
      for (let i = group.length - 1; i >= 0; i--) revert(group[i]);
      this.splits++;
      if (err instanceof EntryFailed && !this.runner.retryable(err.cause)) {
        // One request failed on its own account: the ones before it form a group again, it
        // runs alone (and fails alone, or succeeds if its failure came from an earlier one's
        // write), the rest follow as a group.
        await this.exec(group.slice(0, err.index));
        await settle(group[err.index], () => this.runner.alone(group[err.index]));
        return this.exec(group.slice(err.index + 1));
      }
      // A conflict with another transaction (serialization failure, deadlock, key race) or a
      // failed COMMIT: rerun as two halves, smaller groups conflict less; single requests get
      // the store's retries.
      const h = group.length >> 1;
      await this.exec(group.slice(0, h));
      return this.exec(group.slice(h));
    }
    this.groups++;
    this.entries += group.length;
    for (let i = 0; i < group.length; i++) group[i].resolve(out[i]);
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
