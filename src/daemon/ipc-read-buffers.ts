// The IPC server's socket read buffers, given back to the allocator as soon as nothing views them.
//
// Bun hands every read of a client's socket over in a fresh buffer (about 200 KiB each on a bulk
// stream), the request frames decoded from it are views into it, and a Send's data then waits in
// the transport until the peer acknowledges it. Left to the collector, one 64 MiB transfer left
// tens of MiB of these buffers, and the allocator pages under them, behind: most of the sending
// daemon's peak memory (docs/performance.md, "Sixth round").
//
// Each buffer is counted: one hold per frame not yet handled and one per Send chunk the transport
// has not yet reported acknowledged (StreamConn.onAcked). At zero it is freed at once
// (`ArrayBuffer.prototype.transfer(0)` detaches it and releases its memory). A frame of any other
// kind, or one whose handling failed, may leave views behind elsewhere (a queued datagram, a
// pending reply): its buffer is then left to the collector, as is one whose hold is never
// released (a connection closed with data unacknowledged).

import { freeBuffer } from "../sys/free-buffer.ts";

interface Hold {
  n: number;
  keep: boolean;
}

export class ReadBuffers {
  private holds = new WeakMap<ArrayBufferLike, Hold>();
  /** Buffers freed so far. */
  freed = 0;

  /** Frames just decoded from `chunk`, a socket read handed over whole. */
  track(chunk: Uint8Array, frames: Uint8Array[]): void {
    const chunkWhole = whole(chunk);
    for (const f of frames) {
      const ab = f.buffer;
      // Only buffers wholly ours: the read itself, or a frame the decoder assembled in a copy.
      if (ab === chunk.buffer ? !chunkWhole : !whole(f)) continue;
      const h = this.holds.get(ab);
      if (h) h.n++;
      else this.holds.set(ab, { n: 1, keep: false });
    }
  }

  /** One more view of `view`'s buffer lives on (Send data queued in the transport). */
  hold(view: Uint8Array): void {
    const h = this.holds.get(view.buffer);
    if (h) h.n++;
  }

  /** A frame was handled. `clean`: no view of it is kept beyond the holds taken. */
  done(frame: Uint8Array, clean: boolean): void {
    if (!clean) {
      const h = this.holds.get(frame.buffer);
      if (h) h.keep = true;
    }
    this.release(frame);
  }

  /** A view taken with hold() is gone (StreamConn.onAcked). */
  readonly release = (view: Uint8Array): void => {
    const h = this.holds.get(view.buffer);
    if (h && --h.n === 0) this.free(view.buffer, h);
  };

  private free(ab: ArrayBufferLike, h: Hold): void {
    this.holds.delete(ab);
    if (h.keep) return;
    freeBuffer(ab);
    this.freed++;
  }
}

function whole(v: Uint8Array): boolean {
  return v.byteOffset === 0 && v.byteLength === v.buffer.byteLength && v.buffer instanceof ArrayBuffer;
}
