// A bound port: hands accepted connections to the application, or queues them while paused.
import type { Listener, StreamConn } from "./api.ts";
import type { Conn } from "./conn.ts";

export class ListenerImpl implements Listener {
  closed = false;
  paused = false;
  pending: Conn[] = [];
  constructor(
    private readonly owner: { unbind(l: ListenerImpl): void },
    readonly port: number,
    public onAccept: (c: StreamConn) => void,
  ) {}
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.owner.unbind(this);
    // un-accepted connections have no owner any more
    const p = this.pending;
    this.pending = [];
    for (const c of p) if (!c.dead) c.abort();
  }
  /** Stop handing connections to onAccept; they queue (up to the backlog, then RST). */
  pause(): void {
    this.paused = true;
  }
  resume(): void {
    this.paused = false;
    while (!this.paused && !this.closed && this.pending.length > 0) {
      const c = this.pending.shift()!;
      if (!c.dead) this.onAccept(c);
    }
  }
  get queued(): number {
    return this.pending.length;
  }
}
