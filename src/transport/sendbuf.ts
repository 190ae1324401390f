// The write queue: bytes accepted by write() and not yet cut into segments. Chunks are queued
// as handed over (no copy here); segments are cut from the head, zero-copy when a segment lies
// within one chunk.

const EMPTY = new Uint8Array(0);

export class SendBuffer {
  private wq: Uint8Array[] = [];
  private head = 0;
  private off = 0;
  /** Queued bytes. */
  bytes = 0;

  push(chunk: Uint8Array): void {
    this.wq.push(chunk);
    this.bytes += chunk.length;
  }

  /** The byte `k` positions past the head, -1 beyond the end. */
  peek(k: number): number {
    let i = this.head, off = this.off + k;
    const wq = this.wq;
    while (i < wq.length) {
      const c = wq[i];
      if (off < c.length) return c[off];
      off -= c.length;
      i++;
    }
    return -1;
  }

  /** Remove n (<= bytes) bytes from the head. */
  cut(n: number): Uint8Array {
    const c = this.wq[this.head];
    let out: Uint8Array;
    if (c.length - this.off >= n) {
      out = c.subarray(this.off, this.off + n);
      this.off += n;
      if (this.off === c.length) {
        this.wq[this.head++] = EMPTY;
        this.off = 0;
      }
    } else {
      out = new Uint8Array(n);
      let o = 0;
      while (o < n) {
        const h = this.wq[this.head];
        const take = Math.min(h.length - this.off, n - o);
        out.set(h.subarray(this.off, this.off + take), o);
        o += take;
        this.off += take;
        if (this.off === h.length) {
          this.wq[this.head++] = EMPTY;
          this.off = 0;
        }
      }
    }
    this.bytes -= n;
    if (this.head === this.wq.length) {
      this.wq.length = 0;
      this.head = 0;
    } else if (this.head > 256 && this.head * 2 > this.wq.length) {
      this.wq = this.wq.slice(this.head);
      this.head = 0;
    }
    return out;
  }

  clear(): void {
    this.wq.length = 0;
    this.head = this.off = this.bytes = 0;
  }
}
