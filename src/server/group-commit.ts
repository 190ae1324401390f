// Group commit for a single-connection SQL store: transactions (and reads) requested while a
// group is being executed are collected and run back to back inside ONE database transaction,
// each inside its own savepoint (a failing one is rolled back alone), then committed once. Every
// caller's promise settles only after that COMMIT returned, so an acknowledged write is as
// durable as with one transaction per request, while the per-commit cost (WAL append, locking)
// is paid once per group instead of once per request.
//
// Reads join the group too: they run between the writes, in arrival order, and see exactly the
// state their position implies; their answers are released after the commit, so no reply ever
// reflects a write that was later rolled back.

export interface SqlConn {
  exec(sql: string): void;
}

/** Observers of a store's cache: told when statements of the current group were undone, and when a group ended. */
export interface GroupHooks {
  /** A savepoint or the whole transaction was rolled back. */
  rolledBack(): void;
  /** The group's transaction ended (committed or rolled back); its callers are about to settle. */
  ended(): void;
}

interface Entry {
  fn: () => Promise<unknown>;
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
  write: boolean;
  /** In-memory side effects to revert if this entry's writes are undone (Tx.undo). */
  undos?: (() => void)[];
}

/** A lone write entry failed: the whole transaction is rolled back and the caller gets `cause`. */
class RolledBack {
  constructor(readonly cause: unknown) {}
}

/** Upper bound on requests per group: bounds the latency one group adds to its first member. */
export const MAX_GROUP = 256;

export class GroupCommit {
  private queue: Entry[] = [];
  /** The entry whose fn is executing (receives Tx.undo registrations). */
  private current: Entry | null = null;
  private running = false;
  private scheduled = false;
  /** Groups committed and entries executed (for tests and benchmarks). */
  groups = 0;
  entries = 0;

  constructor(private db: SqlConn, private hooks?: GroupHooks) {}

  /** No group is executing: a pure read may run at once against committed state. */
  get idle(): boolean {
    return !this.running;
  }

  /**
   * Register an in-memory side effect of the executing entry to revert if its writes are rolled
   * back (its savepoint, or the whole group's transaction when the COMMIT fails).
   */
  undo(fn: () => void): void {
    const e = this.current;
    if (e) (e.undos ??= []).push(fn);
  }

  run<T>(fn: () => Promise<T>, write: boolean): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ fn, resolve: resolve as (v: unknown) => void, reject, write });
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
    const group = this.queue.splice(0, MAX_GROUP);
    const out: { ok: boolean; v: unknown }[] = new Array(group.length);
    let commitErr: unknown = null;
    try {
      this.db.exec(group.some((e) => e.write) ? "BEGIN IMMEDIATE" : "BEGIN");
      // A savepoint per write entry, so that a failing one is undone alone. Reads need none:
      // their only write (Tx.touchNode) is a single self-contained statement.
      const alone = group.length === 1;
      for (let i = 0; i < group.length; i++) {
        const sp = group[i].write && !alone;
        if (sp) this.db.exec("SAVEPOINT g");
        this.current = group[i];
        try {
          out[i] = { ok: true, v: await group[i].fn() };
          this.current = null;
          if (sp) this.db.exec("RELEASE g");
        } catch (e) {
          this.current = null;
          if (sp) {
            this.db.exec("ROLLBACK TO g");
            this.db.exec("RELEASE g");
            revert(group[i]);
            this.hooks?.rolledBack();
          } else if (alone && group[i].write) {
            throw new RolledBack(e);
          }
          out[i] = { ok: false, v: e };
        }
      }
      this.db.exec("COMMIT");
    } catch (e) {
      this.current = null;
      commitErr = e instanceof RolledBack ? e.cause : e;
      try { this.db.exec("ROLLBACK"); } catch {}
      for (let i = group.length - 1; i >= 0; i--) revert(group[i]);
      this.hooks?.rolledBack();
    }
    this.hooks?.ended();
    this.groups++;
    this.entries += group.length;
    this.running = false;
    for (let i = 0; i < group.length; i++) {
      const r = out[i];
      if (commitErr !== null) group[i].reject(commitErr);
      else if (r.ok) group[i].resolve(r.v);
      else group[i].reject(r.v);
    }
    this.kick();
  }
}

/** Run an entry's registered undos, newest first (once). */
function revert(e: Entry): void {
  const u = e.undos;
  if (!u) return;
  e.undos = undefined;
  for (let i = u.length - 1; i >= 0; i--) u[i]();
}
