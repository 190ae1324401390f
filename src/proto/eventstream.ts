// Event-stream protocol (port 1002): the event codec shared by the daemon's broker, pilotctl and
// the SDK. An event is `u16 topic_len (≤ 1024), topic, u32 payload_len (≤ 16 MiB), payload`. The
// first event a client sends on a connection is its subscription (payload ignored, sent empty);
// every later one is a publication. The broker sends nothing but forwarded events.
import { ProtoError } from "./types.ts";

const utf8 = new TextEncoder();
const utf8Lossy = new TextDecoder("utf-8", { fatal: false, ignoreBOM: true });

export const MAX_TOPIC = 1024;
export const MAX_EVENT_PAYLOAD = 1 << 24;

export interface StreamEvent {
  /** raw topic bytes (compared byte-wise) */
  topic: Uint8Array;
  payload: Uint8Array;
}

export function topicText(e: StreamEvent): string {
  return utf8Lossy.decode(e.topic);
}

export function encodeEvent(topic: string | Uint8Array, payload: Uint8Array = new Uint8Array(0)): Uint8Array {
  const t = typeof topic === "string" ? utf8.encode(topic) : topic;
  if (t.length > MAX_TOPIC) {
    throw new ProtoError("topic_too_long", `topic too long: ${t.length} bytes`, `topics are limited to ${MAX_TOPIC} bytes`);
  }
  if (payload.length > MAX_EVENT_PAYLOAD) {
    throw new ProtoError("event_too_large", `event payload too large: ${payload.length} bytes`, `event payloads are limited to ${MAX_EVENT_PAYLOAD} bytes`);
  }
  const out = new Uint8Array(6 + t.length + payload.length);
  out[0] = t.length >>> 8;
  out[1] = t.length & 0xff;
  out.set(t, 2);
  const o = 2 + t.length;
  new DataView(out.buffer).setUint32(o, payload.length);
  out.set(payload, o + 4);
  return out;
}

function topicErr(n: number): ProtoError {
  return new ProtoError("topic_too_long", `topic too long: ${n} bytes (max ${MAX_TOPIC})`, `topics are limited to ${MAX_TOPIC} bytes`);
}
function payloadErr(n: number, max: number): ProtoError {
  return new ProtoError("event_too_large", `event payload too large: ${n} bytes (max ${max})`, `event payloads are limited to ${max} bytes`);
}

/** Decode exactly one event from a complete buffer. */
export function decodeEvent(buf: Uint8Array): StreamEvent {
  const trunc = () => new ProtoError("truncated_event", `event truncated at ${buf.length} bytes`, "the connection ended mid-event");
  if (buf.length < 2) throw trunc();
  const tl = (buf[0]! << 8) | buf[1]!;
  if (tl > MAX_TOPIC) throw topicErr(tl);
  if (buf.length < 6 + tl) throw trunc();
  const pl = new DataView(buf.buffer, buf.byteOffset, buf.length).getUint32(2 + tl);
  if (pl > MAX_EVENT_PAYLOAD) throw payloadErr(pl, MAX_EVENT_PAYLOAD);
  if (buf.length < 6 + tl + pl) throw trunc();
  if (buf.length > 6 + tl + pl) throw new ProtoError("trailing_bytes", `${buf.length - 6 - tl - pl} bytes after the event`, "decodeEvent takes exactly one event");
  return { topic: buf.slice(2, 2 + tl), payload: buf.slice(6 + tl) };
}

/**
 * Incremental event decoder for arbitrary chunk boundaries. Also hands out the raw encoded bytes
 * of each event so that the broker can forward them without re-encoding.
 */
export class EventReader {
  private head = new Uint8Array(6 + MAX_TOPIC);
  private headLen = 0;
  private need = 2; // bytes of head needed before the payload
  private topicLen = -1;
  private body: Uint8Array | null = null; // whole encoded event
  private got = 0;
  private failed: ProtoError | null = null;

  constructor(
    private readonly onEvent: (e: StreamEvent, raw: Uint8Array) => void,
    private readonly maxPayload = MAX_EVENT_PAYLOAD,
  ) {}

  push(chunk: Uint8Array): void {
    if (this.failed) throw this.failed;
    let off = 0;
    const n = chunk.length;
    while (off < n) {
      if (this.body === null) {
        const take = Math.min(this.need - this.headLen, n - off);
        this.head.set(chunk.subarray(off, off + take), this.headLen);
        this.headLen += take;
        off += take;
        if (this.headLen < this.need) return;
        if (this.topicLen < 0) {
          this.topicLen = (this.head[0]! << 8) | this.head[1]!;
          if (this.topicLen > MAX_TOPIC) throw (this.failed = topicErr(this.topicLen));
          this.need = 6 + this.topicLen;
          continue;
        }
        const h = this.head;
        const o = 2 + this.topicLen;
        const pl = ((h[o]! << 24) | (h[o + 1]! << 16) | (h[o + 2]! << 8) | h[o + 3]!) >>> 0;
        if (pl > this.maxPayload) throw (this.failed = payloadErr(pl, this.maxPayload));
        const body = new Uint8Array(this.need + pl);
        body.set(h.subarray(0, this.need));
        this.body = body;
        this.got = this.need;
      }
      const b = this.body;
      const take = Math.min(b.length - this.got, n - off);
      if (take > 0) {
        b.set(chunk.subarray(off, off + take), this.got);
        this.got += take;
        off += take;
      }
      if (this.got === b.length) {
        const tl = this.topicLen;
        this.body = null;
        this.headLen = 0;
        this.need = 2;
        this.topicLen = -1;
        this.onEvent({ topic: b.subarray(2, 2 + tl), payload: b.subarray(6 + tl) }, b);
      }
    }
  }
}


/** What a client sends: its subscription first, then publications (positional on the connection). */
export type EventMessage = { kind: "subscribe"; topic: string | Uint8Array } | { kind: "publish"; topic: string | Uint8Array; payload: Uint8Array };

export function encodeEventMessage(m: EventMessage): Uint8Array {
  return m.kind === "subscribe" ? encodeEvent(m.topic) : encodeEvent(m.topic, m.payload);
}
