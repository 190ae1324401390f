// Data-exchange protocol (port 1001): frame codec shared by the daemon's service, pilotctl and the
// SDK. A frame is `u32 type, u32 length, payload` (big-endian, length ≤ 16 MiB).
//
// Reference frame types: 1 TEXT, 2 BINARY, 3 JSON, 4 FILE (payload `u16 name_len, name, data`).
// The receiver answers every frame with one TEXT frame `ACK <NAME> <n> bytes` (or `ERR <NAME> …`);
// the reference receiver answers a frame of any other type with `ACK UNKNOWN(<type>) <n> bytes` and
// stores nothing.
//
// pilot-ts extension (docs/file-transfer.md): resumable, digest-checked file transfer of any size in
// frame types 0x50540001… ("PT" + n). A reference receiver treats them as unknown types, which is
// what makes the offer a safe capability probe.
import { ProtoError } from "./types.ts";

const utf8 = new TextEncoder();
const utf8Lossy = new TextDecoder("utf-8", { fatal: false, ignoreBOM: true });

export const TYPE_TEXT = 1;
export const TYPE_BINARY = 2;
export const TYPE_JSON = 3;
export const TYPE_FILE = 4;

/** Extension: sender → receiver, JSON {name, sha256, size, v}; also the capability probe. */
export const TYPE_XFER_OFFER = 0x50540001;
/** Extension: receiver → sender, JSON {chunk, offset, v}: send from `offset`, DATA ≤ `chunk` bytes. */
export const TYPE_XFER_ACCEPT = 0x50540002;
/** Extension: sender → receiver, `u64 offset` + file bytes. */
export const TYPE_XFER_DATA = 0x50540003;
/** Extension: receiver → sender, `u64 bytes written` (progress; no reply expected). */
export const TYPE_XFER_PROGRESS = 0x50540004;
/** Extension: sender → receiver, empty: all bytes sent; the receiver checks and answers with the FILE ACK. */
export const TYPE_XFER_END = 0x50540005;
/** Extension: receiver → sender, JSON {code, error}: the transfer is refused or failed. */
export const TYPE_XFER_REFUSE = 0x50540006;

/** Version of the extension carried in OFFER/ACCEPT. */
export const XFER_VERSION = 1;
/** Largest data part of one DATA frame a receiver may grant. */
export const XFER_MAX_CHUNK = 1 << 20;

/** Largest payload length accepted (equal allowed). */
export const MAX_FRAME_PAYLOAD = 1 << 24;
export const FRAME_HEADER = 8;
/** Largest file a reference receiver can take: one FILE frame holds name header + name + data. */
export const maxLegacyFileBytes = (nameBytes: number) => MAX_FRAME_PAYLOAD - 2 - nameBytes;

export interface Frame {
  type: number;
  payload: Uint8Array;
}

export function typeName(t: number): string {
  switch (t) {
    case TYPE_TEXT: return "TEXT";
    case TYPE_BINARY: return "BINARY";
    case TYPE_JSON: return "JSON";
    case TYPE_FILE: return "FILE";
    default: return `UNKNOWN(${t >>> 0})`;
  }
}

/** Message type names used by `pilotctl send-message --type`. */
export const MESSAGE_TYPES: Readonly<Record<string, number>> = { text: TYPE_TEXT, json: TYPE_JSON, binary: TYPE_BINARY };

function tooLarge(len: number, max: number): ProtoError {
  return new ProtoError("frame_too_large", `frame too large: ${len} bytes (max ${max})`,
    `data-exchange frames carry at most ${max} bytes; send large files in several frames`);
}

/** The 8-byte header alone (a streamed payload follows it). */
export function encodeFrameHeader(type: number, length: number): Uint8Array {
  if (length > MAX_FRAME_PAYLOAD) throw tooLarge(length, MAX_FRAME_PAYLOAD);
  const out = new Uint8Array(FRAME_HEADER);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, type >>> 0);
  dv.setUint32(4, length);
  return out;
}

/** Header + payload in one buffer (one write keeps small frames in one segment). */
export function encodeFrame(type: number, payload: Uint8Array): Uint8Array {
  if (payload.length > MAX_FRAME_PAYLOAD) throw tooLarge(payload.length, MAX_FRAME_PAYLOAD);
  const out = new Uint8Array(FRAME_HEADER + payload.length);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, type >>> 0);
  dv.setUint32(4, payload.length);
  out.set(payload, FRAME_HEADER);
  return out;
}

/** Encoded FILE name header (`u16 name_len, name`). Names ≥ 65536 bytes are refused (the reference writer would corrupt the frame). */
export function encodeFileNameHeader(name: string): Uint8Array {
  const nb = utf8.encode(name);
  if (nb.length > 0xffff) {
    throw new ProtoError("file_name_too_long", `file name too long: ${nb.length} bytes`,
      "file names are limited to 65535 bytes of UTF-8");
  }
  const out = new Uint8Array(2 + nb.length);
  out[0] = nb.length >>> 8;
  out[1] = nb.length & 0xff;
  out.set(nb, 2);
  return out;
}

/** FILE payload: u16 name_len, name, data. */
export function encodeFilePayload(name: string, data: Uint8Array): Uint8Array {
  const h = encodeFileNameHeader(name);
  const out = new Uint8Array(h.length + data.length);
  out.set(h);
  out.set(data, h.length);
  return out;
}

/** Split a FILE payload; a payload too short for its name header is all data, name "". */
export function decodeFilePayload(p: Uint8Array): { name: string; data: Uint8Array } {
  if (p.length >= 2) {
    const n = (p[0]! << 8) | p[1]!;
    if (2 + n <= p.length) {
      return { name: utf8Lossy.decode(p.subarray(2, 2 + n)), data: p.subarray(2 + n) };
    }
  }
  return { name: "", data: p };
}

/** Decode exactly one frame from a complete buffer. */
export function decodeFrame(buf: Uint8Array, maxPayload = MAX_FRAME_PAYLOAD): Frame {
  if (buf.length < FRAME_HEADER) throw new ProtoError("truncated_frame", `frame header truncated: ${buf.length} bytes`, "a frame starts with an 8-byte header");
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.length);
  const type = dv.getUint32(0);
  const len = dv.getUint32(4);
  if (len > maxPayload) throw tooLarge(len, maxPayload);
  if (buf.length < FRAME_HEADER + len) throw new ProtoError("truncated_frame", `frame payload truncated: ${buf.length - FRAME_HEADER} of ${len} bytes`, "the connection ended mid-frame");
  if (buf.length > FRAME_HEADER + len) throw new ProtoError("trailing_bytes", `${buf.length - FRAME_HEADER - len} bytes after the frame`, "decodeFrame takes exactly one frame");
  return { type, payload: buf.slice(FRAME_HEADER) };
}

/**
 * Incremental decoder: feed stream chunks with arbitrary boundaries; complete frames are passed to
 * onFrame in order. The payload buffer is allocated once per frame at its final size. A length
 * above the limit throws ProtoError("frame_too_large") and the decoder stays failed.
 */
export class FrameReader {
  private hdr = new Uint8Array(FRAME_HEADER);
  private hdrLen = 0;
  private type = 0;
  private payload: Uint8Array | null = null;
  private got = 0;
  private failed: ProtoError | null = null;

  constructor(private readonly onFrame: (f: Frame) => void, private readonly maxPayload = MAX_FRAME_PAYLOAD) {}

  /** true while a frame is partially received (EOF now would truncate it). */
  get midFrame(): boolean {
    return this.hdrLen > 0 || this.payload !== null;
  }

  push(chunk: Uint8Array): void {
    if (this.failed) throw this.failed;
    let off = 0;
    const n = chunk.length;
    while (off < n) {
      if (this.payload === null) {
        const take = Math.min(FRAME_HEADER - this.hdrLen, n - off);
        this.hdr.set(chunk.subarray(off, off + take), this.hdrLen);
        this.hdrLen += take;
        off += take;
        if (this.hdrLen < FRAME_HEADER) return;
        const h = this.hdr;
        this.type = ((h[0]! << 24) | (h[1]! << 16) | (h[2]! << 8) | h[3]!) >>> 0;
        const len = ((h[4]! << 24) | (h[5]! << 16) | (h[6]! << 8) | h[7]!) >>> 0;
        if (len > this.maxPayload) {
          this.failed = tooLarge(len, this.maxPayload);
          throw this.failed;
        }
        this.hdrLen = 0;
        this.payload = new Uint8Array(len);
        this.got = 0;
      }
      const p = this.payload;
      const take = Math.min(p.length - this.got, n - off);
      if (take > 0) {
        p.set(chunk.subarray(off, off + take), this.got);
        this.got += take;
        off += take;
      }
      if (this.got === p.length) {
        this.payload = null;
        this.onFrame({ type: this.type, payload: p });
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// ACK / ERR replies (TEXT frames)

export function formatAck(type: number, bytes: number): string {
  return `ACK ${typeName(type)} ${bytes} bytes`;
}
export function formatSaveError(type: number, error: string): string {
  return `ERR ${typeName(type)} save failed: ${error}`;
}

export type Ack = { ok: true; type: string; bytes: number } | { ok: false; type: string; error: string };

/** Result of an ACK/ERR text: ok, type name and byte count (for ACK). */
export function parseAck(text: string): Ack {
  const m = /^ACK (\S+) (\d+) bytes$/.exec(text);
  if (m) return { ok: true, type: m[1]!, bytes: Number(m[2]) };
  const e = /^ERR (\S+) (.*)$/s.exec(text);
  if (e) return { ok: false, type: e[1]!, error: e[2]! };
  return { ok: false, type: "", error: text };
}

// ---------------------------------------------------------------------------------------------
// Typed messages: every frame a data-exchange connection carries, as a discriminated union.

export interface XferOffer { kind: "offer"; name: string; size: number; sha256: string; v: number }
export interface XferAccept { kind: "accept"; offset: number; chunk: number; v: number }
export interface XferData { kind: "data"; offset: number; data: Uint8Array }
export interface XferProgress { kind: "progress"; bytes: number }
export interface XferEnd { kind: "end" }
export interface XferRefuse { kind: "refuse"; code: string; error: string }

export type DxMessage =
  | { kind: "text" | "json" | "binary"; type: number; payload: Uint8Array }
  | { kind: "file"; name: string; data: Uint8Array }
  | XferOffer | XferAccept | XferData | XferProgress | XferEnd | XferRefuse
  | { kind: "unknown"; type: number; payload: Uint8Array };

const SHA256_HEX = /^[0-9a-f]{64}$/;
const MAX_SAFE = Number.MAX_SAFE_INTEGER;

function badMsg(what: string, why: string): ProtoError {
  return new ProtoError("bad_message", `bad ${what} frame: ${why}`, "the peer speaks a different version of the file-transfer extension");
}

function parseJsonObject(p: Uint8Array, what: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(utf8Lossy.decode(p));
  } catch {
    throw badMsg(what, "payload is not JSON");
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw badMsg(what, "payload is not a JSON object");
  return v as Record<string, unknown>;
}

const isCount = (x: unknown): x is number => typeof x === "number" && Number.isInteger(x) && x >= 0 && x <= MAX_SAFE;

function readU64(p: Uint8Array, what: string): number {
  if (p.length < 8) throw badMsg(what, `payload of ${p.length} bytes is shorter than its 8-byte offset`);
  const dv = new DataView(p.buffer, p.byteOffset, 8);
  const hi = dv.getUint32(0);
  const lo = dv.getUint32(4);
  if (hi > 0x1fffff) throw badMsg(what, "offset beyond 2^53");
  return hi * 0x100000000 + lo;
}
function u64(n: number): Uint8Array {
  const out = new Uint8Array(8);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, Math.floor(n / 0x100000000));
  dv.setUint32(4, n >>> 0);
  return out;
}

/** Bytes before the file data in a DATA frame: frame header + u64 offset. */
export const DATA_HEADER = FRAME_HEADER + 8;

/** Frame header + offset of a DATA frame (lets a sender read file bytes straight behind it). */
export function encodeDataHeader(offset: number, dataLen: number): Uint8Array {
  const out = new Uint8Array(DATA_HEADER);
  out.set(encodeFrameHeader(TYPE_XFER_DATA, 8 + dataLen));
  out.set(u64(offset), FRAME_HEADER);
  return out;
}

/** Interpret a frame. Throws ProtoError("bad_message") for a malformed extension frame. */
export function decodeMessage(f: Frame): DxMessage {
  switch (f.type) {
    case TYPE_TEXT: return { kind: "text", type: f.type, payload: f.payload };
    case TYPE_JSON: return { kind: "json", type: f.type, payload: f.payload };
    case TYPE_BINARY: return { kind: "binary", type: f.type, payload: f.payload };
    case TYPE_FILE: return { kind: "file", ...decodeFilePayload(f.payload) };
    case TYPE_XFER_OFFER: {
      const o = parseJsonObject(f.payload, "offer");
      if (typeof o.name !== "string" || o.name === "") throw badMsg("offer", "missing name");
      if (utf8.encode(o.name).length > 0xffff) throw badMsg("offer", "name longer than 65535 bytes");
      if (!isCount(o.size)) throw badMsg("offer", "size is not a non-negative integer");
      if (typeof o.sha256 !== "string" || !SHA256_HEX.test(o.sha256)) throw badMsg("offer", "sha256 is not 64 lower-case hex digits");
      return { kind: "offer", name: o.name, size: o.size, sha256: o.sha256, v: isCount(o.v) ? o.v : 0 };
    }
    case TYPE_XFER_ACCEPT: {
      const o = parseJsonObject(f.payload, "accept");
      if (!isCount(o.offset)) throw badMsg("accept", "offset is not a non-negative integer");
      if (!isCount(o.chunk) || o.chunk < 1 || o.chunk > XFER_MAX_CHUNK) throw badMsg("accept", `chunk must be 1…${XFER_MAX_CHUNK}`);
      return { kind: "accept", offset: o.offset, chunk: o.chunk, v: isCount(o.v) ? o.v : 0 };
    }
    case TYPE_XFER_DATA:
      return { kind: "data", offset: readU64(f.payload, "data"), data: f.payload.subarray(8) };
    case TYPE_XFER_PROGRESS:
      if (f.payload.length !== 8) throw badMsg("progress", `payload is ${f.payload.length} bytes, not 8`);
      return { kind: "progress", bytes: readU64(f.payload, "progress") };
    case TYPE_XFER_END:
      return { kind: "end" };
    case TYPE_XFER_REFUSE: {
      const o = parseJsonObject(f.payload, "refuse");
      return { kind: "refuse", code: typeof o.code === "string" ? o.code : "refused", error: typeof o.error === "string" ? o.error : "" };
    }
    default:
      return { kind: "unknown", type: f.type, payload: f.payload };
  }
}

/** Encode one message as a complete frame. */
export function encodeMessage(m: DxMessage): Uint8Array {
  switch (m.kind) {
    case "text": case "json": case "binary": case "unknown":
      return encodeFrame(m.type, m.payload);
    case "file":
      return encodeFrame(TYPE_FILE, encodeFilePayload(m.name, m.data));
    case "offer":
      // Keys in ascending order (Go-sorted JSON), values are plain strings/integers.
      return encodeFrame(TYPE_XFER_OFFER, utf8.encode(JSON.stringify({ name: m.name, sha256: m.sha256, size: m.size, v: m.v })));
    case "accept":
      return encodeFrame(TYPE_XFER_ACCEPT, utf8.encode(JSON.stringify({ chunk: m.chunk, offset: m.offset, v: m.v })));
    case "data": {
      const out = new Uint8Array(DATA_HEADER + m.data.length);
      out.set(encodeDataHeader(m.offset, m.data.length));
      out.set(m.data, DATA_HEADER);
      return out;
    }
    case "progress":
      return encodeFrame(TYPE_XFER_PROGRESS, u64(m.bytes));
    case "end":
      return encodeFrame(TYPE_XFER_END, new Uint8Array(0));
    case "refuse":
      return encodeFrame(TYPE_XFER_REFUSE, utf8.encode(JSON.stringify({ code: m.code, error: m.error })));
  }
}

/** TEXT frame carrying `text` (ACK/ERR replies). */
export function encodeText(text: string): Uint8Array {
  return encodeFrame(TYPE_TEXT, utf8.encode(text));
}
export function frameText(f: Frame): string {
  return utf8Lossy.decode(f.payload);
}
