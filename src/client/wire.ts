// Client side of the built-in services' stream formats: data exchange (port 1001: 8-byte header
// type u32 + length u32, then the payload; a file payload is name-length u16 + name + bytes) and
// event stream (port 1002: topic-length u16 + topic + payload-length u32 + payload).
import { PilotError } from "./errors.ts";
import type { DriverConn } from "./driver.ts";

export const PORT_ECHO = 7;
export const PORT_DATAEXCHANGE = 1001;
export const PORT_EVENTSTREAM = 1002;

export const DX_TYPES = { text: 1, binary: 2, json: 3, file: 4 } as const;
/** Largest data-exchange frame payload a daemon accepts. */
export const DX_MAX_PAYLOAD = 1 << 24;
/** Largest event payload a subscription accepts before failing (bounds memory). */
export const EV_MAX_PAYLOAD = 1 << 24;

const te = new TextEncoder();
const td = new TextDecoder();

export function dxFrame(type: number, payload: Uint8Array): Uint8Array {
  const f = new Uint8Array(8 + payload.length);
  const v = new DataView(f.buffer);
  v.setUint32(0, type);
  v.setUint32(4, payload.length);
  f.set(payload, 8);
  return f;
}

/** Header + name of a file frame; the file bytes follow it on the stream. */
export function dxFileHeader(name: string, size: number): Uint8Array {
  const n = te.encode(name).subarray(0, 65535);
  const payloadLen = 2 + n.length + size;
  if (payloadLen > DX_MAX_PAYLOAD) {
    throw new PilotError("invalid_argument", `file too large: ${size} bytes (a data-exchange frame carries at most ${DX_MAX_PAYLOAD - 2 - n.length} file bytes)`, "split the file or use a stream connection (dial) for large transfers");
  }
  const h = new Uint8Array(8 + 2 + n.length);
  const v = new DataView(h.buffer);
  v.setUint32(0, DX_TYPES.file);
  v.setUint32(4, payloadLen);
  v.setUint16(8, n.length);
  h.set(n, 10);
  return h;
}

/** Read one data-exchange frame (the receiver's ACK) and return its text; null on EOF/timeout. */
export async function readDxAck(c: DriverConn, timeoutMs: number, signal?: AbortSignal): Promise<string | null> {
  let buf = new Uint8Array(0);
  const end = Date.now() + timeoutMs;
  try {
    for (;;) {
      if (buf.length >= 8) {
        const n = new DataView(buf.buffer, buf.byteOffset).getUint32(4);
        if (n > 65536) return null;
        if (buf.length >= 8 + n) return td.decode(buf.subarray(8, 8 + n));
      }
      const r = await c.read({ timeoutMs: Math.max(0, end - Date.now()), signal });
      if (!r) return null;
      const nb = new Uint8Array(buf.length + r.length);
      nb.set(buf);
      nb.set(r, buf.length);
      buf = nb;
    }
  } catch (e) {
    if ((e as PilotError).code === "aborted") throw e;
    return null;
  }
}

export function evFrame(topic: string, payload: Uint8Array): Uint8Array {
  const t = te.encode(topic);
  if (t.length > 65535) throw new PilotError("invalid_argument", "topic longer than 65535 bytes");
  const f = new Uint8Array(6 + t.length + payload.length);
  const v = new DataView(f.buffer);
  v.setUint16(0, t.length);
  f.set(t, 2);
  v.setUint32(2 + t.length, payload.length);
  f.set(payload, 6 + t.length);
  return f;
}

/** Incremental event-stream parser with a payload bound. */
export class EventParser {
  private buf = new Uint8Array(0);
  push(chunk: Uint8Array): { topic: string; data: Uint8Array }[] {
    const nb = new Uint8Array(this.buf.length + chunk.length);
    nb.set(this.buf);
    nb.set(chunk, this.buf.length);
    this.buf = nb;
    const out: { topic: string; data: Uint8Array }[] = [];
    for (;;) {
      const b = this.buf;
      if (b.length < 2) break;
      const v = new DataView(b.buffer, b.byteOffset, b.length);
      const tl = v.getUint16(0);
      if (b.length < 6 + tl) break;
      const pl = v.getUint32(2 + tl);
      if (pl > EV_MAX_PAYLOAD) throw new PilotError("connection_failed", `event payload too large: ${pl} bytes (max ${EV_MAX_PAYLOAD})`);
      if (b.length < 6 + tl + pl) break;
      out.push({ topic: td.decode(b.subarray(2, 2 + tl)), data: b.slice(6 + tl, 6 + tl + pl) });
      this.buf = b.subarray(6 + tl + pl);
    }
    return out;
  }
}
