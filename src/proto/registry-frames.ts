// Framing of registry connections: each message is a u32 big-endian body length followed by that
// many bytes of JSON, at most 1 MiB (exactly 1 MiB is allowed). Unlike the IPC socket, where
// empty frames are ignored, a registry frame of length 0 is malformed: the registry closes the
// connection without replying, as it does for an oversized frame or a body that is not a JSON
// object.
import type { FrameCodec, MessageDecoder } from "../sys/framed-conn.ts";
import { MAX_FRAME, encodeFrame } from "./framing.ts";
import { goJsonBytes } from "./gojson.ts";
import { ProtoError } from "./types.ts";

export { MAX_FRAME, encodeFrame } from "./framing.ts";

/**
 * Incremental registry frame decoder: push() arbitrary chunks, get whole bodies back. Throws
 * ProtoError `frame_too_large` or `empty_frame`; the caller must then drop the connection.
 * A partially received body is buffered at most once in full (≤ 1 MiB + 4 bytes).
 */
export class RegistryFrameDecoder {
  private buf = new Uint8Array(0);
  private len = 0;

  constructor(private readonly max = MAX_FRAME) {}

  /** Bytes buffered (not yet returned as frames). */
  get pending(): number {
    return this.len;
  }

  push(chunk: Uint8Array): Uint8Array[] {
    const frames: Uint8Array[] = [];
    let src: Uint8Array;
    if (this.len === 0) {
      src = chunk; // common case: nothing pending, parse straight from the chunk
    } else {
      this.append(chunk);
      src = this.buf.subarray(0, this.len);
    }
    let off = 0;
    while (src.length - off >= 4) {
      const n = ((src[off] << 24) >>> 0) + (src[off + 1] << 16) + (src[off + 2] << 8) + src[off + 3];
      if (n === 0) throw new ProtoError("empty_frame", "registry frame of length 0", "every registry message is a non-empty JSON object");
      if (n > this.max) throw new ProtoError("frame_too_large", `message too large: ${n} bytes (max ${this.max})`, "the peer sent an oversized frame; reconnect");
      if (src.length - off < 4 + n) break;
      frames.push(src.slice(off + 4, off + 4 + n));
      off += 4 + n;
    }
    const rest = src.length - off;
    if (src === chunk) {
      if (rest) { this.len = 0; this.append(chunk.subarray(off)); }
    } else if (rest === 0) {
      this.len = 0;
    } else if (off > 0) {
      this.buf.copyWithin(0, off, this.len);
      this.len = rest;
    }
    return frames;
  }

  private append(chunk: Uint8Array): void {
    if (this.len + chunk.length > this.buf.length) {
      const nb = new Uint8Array(Math.max(this.len + chunk.length, this.buf.length * 2, 4096));
      nb.set(this.buf.subarray(0, this.len));
      this.buf = nb;
    }
    this.buf.set(chunk, this.len);
    this.len += chunk.length;
  }
}

const td = new TextDecoder();

/**
 * Registry frames carrying JSON: bytes in, parsed JSON values out. Throws the frame errors of
 * RegistryFrameDecoder and ProtoError `malformed_json` for a body that is not JSON. Any JSON
 * value is returned; whether it must be an object is the caller's rule.
 */
export class RegistryJsonDecoder implements MessageDecoder {
  private readonly frames: RegistryFrameDecoder;
  constructor(max = MAX_FRAME) {
    this.frames = new RegistryFrameDecoder(max);
  }
  get pending(): number {
    return this.frames.pending;
  }
  /** Set when a frame failed after the messages before it were returned; the stream is dead. */
  error: ProtoError | null = null;

  push(chunk: Uint8Array): unknown[] {
    if (this.error) throw this.error;
    const out: unknown[] = [];
    for (const f of this.frames.push(chunk)) {
      try {
        out.push(JSON.parse(td.decode(f)));
      } catch {
        this.error = new ProtoError("malformed_json", "registry frame body is not JSON", "every registry message is a JSON object");
        if (!out.length) throw this.error;
        break; // deliver the messages before the bad frame first
      }
    }
    return out;
  }
}

/**
 * The registry protocol's codec for FramedConn: messages encoded as Go's encoding/json would
 * (sorted keys, HTML escapes), framed with the u32 length; ProtoError `frame_too_large` above 1 MiB.
 */
export const registryJsonCodec: FrameCodec = {
  encode: (msg) => encodeFrame(goJsonBytes(msg)),
  decoder: () => new RegistryJsonDecoder(),
};
