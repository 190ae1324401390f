// A Bun socket (Bun.listen / Bun.connect) with exact write backpressure, shared by the daemon's
// IPC server and the IPC driver. Bun's socket.write() reports how many bytes the kernel took;
// unsent bytes are queued here, so `writableLength` is the true backlog. (Through node:net, Bun
// buffers a non-reading peer's data natively while reporting an empty buffer, so a stalled peer
// could grow the writer's memory without bound and backpressure never engaged.)

export interface RawSocket {
  write(data: Uint8Array): number;
  pause(): void;
  resume(): void;
  end(): void;
  terminate(): void;
}

export class BufferedSocket {
  private out: Uint8Array[] = [];
  private outHead = 0;
  writableLength = 0;
  /** Total bytes handed to the kernel so far (progress marker for stall detection). */
  written = 0;
  destroyed = false;
  /** Reading is paused (pause() called without a resume() since). */
  paused = false;
  private drainFns: (() => void)[] = [];
  private onceDrain: (() => void)[] = [];

  constructor(readonly raw: RawSocket) {}

  /** Persistent 'drain' listener: called whenever the queue has been fully written. */
  on(_ev: "drain", fn: () => void): void {
    this.drainFns.push(fn);
  }

  /** Resolves once everything queued so far has been handed to the kernel. */
  waitDrain(): Promise<void> {
    if (this.writableLength === 0 || this.destroyed) return Promise.resolve();
    return new Promise((resolve) => this.onceDrain.push(resolve));
  }

  /** Write or queue `buf`; false when (part of) it had to be queued (wait for 'drain'). */
  write(buf: Uint8Array): boolean {
    if (this.destroyed) return false;
    if (this.writableLength === 0) {
      const n = this.raw.write(buf);
      if (n > 0) this.written += n;
      if (n === buf.length) return true;
      if (n < 0) return false;
      buf = buf.subarray(n);
    }
    this.out.push(buf);
    this.writableLength += buf.length;
    return false;
  }

  /** The socket is writable again (Bun's drain callback): flush, then notify once empty. */
  onWritable(): void {
    while (this.outHead < this.out.length) {
      const b = this.out[this.outHead];
      const n = this.raw.write(b);
      if (n < 0) return;
      this.writableLength -= n;
      this.written += n;
      if (n < b.length) {
        this.out[this.outHead] = b.subarray(n);
        return;
      }
      this.outHead++;
    }
    this.out = [];
    this.outHead = 0;
    this.writableLength = 0;
    for (const fn of this.onceDrain.splice(0)) fn();
    for (const fn of this.drainFns) fn();
  }

  pause(): void {
    this.paused = true;
    this.raw.pause();
  }
  resume(): void {
    this.paused = false;
    this.raw.resume();
  }
  /** Graceful close after the queued bytes (best effort). */
  end(): void {
    if (this.destroyed) return;
    if (this.writableLength === 0) this.raw.end();
    else void this.waitDrain().then(() => this.raw.end());
  }
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    for (const fn of this.onceDrain.splice(0)) fn();
    this.raw.terminate();
  }
}
