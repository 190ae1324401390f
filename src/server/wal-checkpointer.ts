// Background WAL checkpoints for the SQLite store. A checkpoint copies committed pages from the
// write-ahead log into the database file and syncs it; run inline (SQLite's autocheckpoint) it
// happens inside the COMMIT of whichever request group crosses the threshold, on the thread that
// serves every request. Here a worker thread with its own connection runs PASSIVE checkpoints
// periodically instead: they never block the writer and never touch uncommitted data, so
// durability is exactly that of the inline form (a commit is durable once its WAL frames are
// written, before any checkpoint), while the copying and syncing leave the request path. The
// store keeps its autocheckpoint threshold: under continuous writes a background checkpoint
// rarely finds the log fully copied at a moment without a commit in between, so the log would
// not restart from its beginning; once it passes the threshold, the inline checkpoint after a
// commit copies the few remaining frames and the next transaction restarts the log. The log
// file therefore stays near that threshold, and a worker that falls behind costs only what
// inline checkpoints cost without it.

/** Worker body (a Blob URL, so it needs no separate file in a compiled executable). */
const WORKER_SRC = `
const { Database } = require("bun:sqlite");
let db = null, timer = null;
self.onmessage = (e) => {
  const m = e.data;
  if (m.op === "start") {
    db = new Database(m.path);
    db.exec("PRAGMA busy_timeout=0");
    const q = db.query("PRAGMA wal_checkpoint(PASSIVE)");
    timer = setInterval(() => {
      try { const r = q.get(); if (r && r.checkpointed > 0) postMessage({ op: "ckpt", frames: r.checkpointed }); } catch {}
    }, m.everyMs);
  } else if (m.op === "stop") {
    if (timer) clearInterval(timer);
    try { db && db.close(); } catch {}
    postMessage({ op: "stopped" });
  }
};
`;

let workerUrl: string | null = null;

export class WalCheckpointer {
  private w: Worker | null = null;
  /** WAL frames copied into the database file by the worker (tests, benchmarks). */
  frames = 0;

  constructor(private path: string, private everyMs = 100) {}

  get running(): boolean {
    return this.w !== null;
  }

  start(): void {
    if (this.w) return;
    workerUrl ??= URL.createObjectURL(new Blob([WORKER_SRC], { type: "application/javascript" }));
    const w = new Worker(workerUrl);
    w.onmessage = (e: MessageEvent) => {
      if (e.data?.op === "ckpt") this.frames += Number(e.data.frames) || 0;
    };
    w.unref(); // never keeps the process alive
    w.postMessage({ op: "start", path: this.path, everyMs: this.everyMs });
    this.w = w;
  }

  /** Stop the worker after its current checkpoint (its connection is closed first). */
  async stop(): Promise<void> {
    const w = this.w;
    if (!w) return;
    this.w = null;
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, 2000);
      w.onmessage = (e: MessageEvent) => {
        if (e.data?.op === "stopped") { clearTimeout(t); resolve(); }
      };
      w.postMessage({ op: "stop" });
    });
    w.terminate();
  }
}
