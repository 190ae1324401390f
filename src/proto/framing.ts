// Length-prefixed framing shared by the IPC socket (docs/protocol.md §9.1) and the registry TCP protocol
// (docs/protocol.md §8.1): u32 big-endian body length, then the body. Max body 1 MiB (inclusive).
import { ProtoError } from "./types.ts";

export const MAX_FRAME = 1 << 20;
/** Frames at least this large are assembled in their own buffer as they arrive. */
const BIG_FRAME = 32 * 1024;

/** Encode one frame (prefix + body) into a single buffer so one write emits it atomically. */
export function encodeFrame(body: Uint8Array): Uint8Array {
  if (body.length > MAX_FRAME) {
    throw new ProtoError("frame_too_large", `frame too large: ${body.length} bytes (max ${MAX_FRAME})`, "split the message into smaller parts");
  }
  const out = new Uint8Array(4 + body.length);
  new DataView(out.buffer).setUint32(0, body.length, false);
  out.set(body, 4);
  return out;
}

/**
 * Incremental decoder: push() arbitrary chunks, get whole frames back. A length above `max`
 * raises ProtoError("frame_too_large") without buffering the body; the caller must then drop
 * the connection (the reference treats the stream as dead). Zero-length frames are skipped
 * (docs/protocol.md §9.1: ignored by both sides).
 */
export class FrameDecoder {
  private buf: Uint8Array = new Uint8Array(0);
  private len = 0; // valid bytes in buf
  private off = 0; // read offset
  constructor(private readonly max: number = MAX_FRAME) {}

  /** Bytes currently buffered (not yet returned as frames). */
  get pending(): number {
    return this.len - this.off + (this.big ? this.bigFill : 0);
  }

  /**
   * Declared body length of the frame being assembled (known once its 4-byte prefix has arrived),
   * 0 between frames. Lets a caller budget a large frame before its body is buffered.
   */
  get partialFrame(): number {
    if (this.big) return this.big.length;
    if (this.len - this.off < 4) return 0;
    const b = this.buf;
    const o = this.off;
    return ((b[o] << 24) >>> 0) + (b[o + 1] << 16) + (b[o + 2] << 8) + b[o + 3];
  }

  /** Large frame being filled directly from incoming chunks (one copy per byte, not two). */
  private big: Uint8Array | null = null;
  private bigFill = 0;

  /**
   * `owned`: the caller hands `chunk` over (it is never reused or modified afterwards), so frames
   * lying wholly inside it are returned as views of it instead of copies.
   */
  push(chunk: Uint8Array, owned = false): Uint8Array[] {
    const frames: Uint8Array[] = [];
    if (this.big) {
      const take = Math.min(this.big.length - this.bigFill, chunk.length);
      this.big.set(take === chunk.length ? chunk : chunk.subarray(0, take), this.bigFill);
      this.bigFill += take;
      if (this.bigFill < this.big.length) return frames;
      frames.push(this.big);
      this.big = null;
      chunk = chunk.subarray(take);
      if (chunk.length === 0) return frames;
    }
    if (owned && this.off === this.len) chunk = this.viewFrames(chunk, frames);
    if (chunk.length === 0) return frames;
    this.append(chunk);
    for (;;) {
      const avail = this.len - this.off;
      if (avail < 4) break;
      const n =
        ((this.buf[this.off] << 24) >>> 0) +
        (this.buf[this.off + 1] << 16) +
        (this.buf[this.off + 2] << 8) +
        this.buf[this.off + 3];
      if (n > this.max) {
        throw new ProtoError("frame_too_large", `message too large: ${n} bytes (max ${this.max})`, "the peer sent an oversized frame; reconnect");
      }
      if (avail < 4 + n) {
        if (n >= BIG_FRAME) {
          // Switch to direct fill: later chunks are copied once, straight into the frame.
          this.big = new Uint8Array(n);
          this.bigFill = avail - 4;
          this.big.set(this.buf.subarray(this.off + 4, this.len), 0);
          this.off = this.len = 0;
        }
        break;
      }
      const start = this.off + 4;
      this.off = start + n;
      if (n > 0) frames.push(this.buf.slice(start, start + n));
    }
    if (this.off === this.len) {
      this.off = 0;
      this.len = 0;
    }
    return frames;
  }

  /** Whole frames at the head of an owned chunk, as views; returns the incomplete rest. */
  private viewFrames(chunk: Uint8Array, frames: Uint8Array[]): Uint8Array {
    let o = 0;
    while (chunk.length - o >= 4) {
      const n = ((chunk[o] << 24) >>> 0) + (chunk[o + 1] << 16) + (chunk[o + 2] << 8) + chunk[o + 3];
      if (n > this.max) {
        throw new ProtoError("frame_too_large", `message too large: ${n} bytes (max ${this.max})`, "the peer sent an oversized frame; reconnect");
      }
      if (chunk.length - o < 4 + n) break;
      if (n > 0) frames.push(chunk.subarray(o + 4, o + 4 + n));
      o += 4 + n;
    }
    return o === 0 ? chunk : chunk.subarray(o);
  }

  private append(chunk: Uint8Array): void {
    if (this.len + chunk.length > this.buf.length) {
      const live = this.len - this.off;
      if (live + chunk.length <= this.buf.length) {
        this.buf.copyWithin(0, this.off, this.len); // compact in place
      } else {
        const nb = new Uint8Array(Math.max(live + chunk.length, this.buf.length * 2, 4096));
        nb.set(this.buf.subarray(this.off, this.len), 0);
        this.buf = nb;
      }
      this.len = live;
      this.off = 0;
    }
    this.buf.set(chunk, this.len);
    this.len += chunk.length;
  }
}
