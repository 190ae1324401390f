// Data exchange, port 1001 (services.md §4): typed frames, the built-in server that stores files in
// <dataDir>/received/ and messages in <dataDir>/inbox/, and client helpers.
import { mkdir, open, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { formatAddr } from "../../proto/addr.ts";
import { goJson } from "../../proto/gojson.ts";
import { PORT_DATAEXCHANGE, ProtoError } from "../../proto/types.ts";
import { TransportError, type StreamConn } from "../../transport/api.ts";
import { nowMs, type ServiceContext, type ServiceHandle } from "./context.ts";
import { errText, fileStamp, rfc3339Local, utf8, utf8Lossy } from "./util.ts";

// ---------------------------------------------------------------------------------------------
// Codec (MUST-match, services.md §4.1)

export const TYPE_TEXT = 1;
export const TYPE_BINARY = 2;
export const TYPE_JSON = 3;
export const TYPE_FILE = 4;
/** Largest payload length accepted (equal allowed). */
export const MAX_FRAME_PAYLOAD = 1 << 24;
export const FRAME_HEADER = 8;

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

/** Header + payload in one buffer (one write keeps small frames in one segment). */
export function encodeFrame(type: number, payload: Uint8Array): Uint8Array {
  if (payload.length > MAX_FRAME_PAYLOAD) {
    throw new ProtoError("frame_too_large", `frame payload too large: ${payload.length} bytes`,
      `data-exchange frames carry at most ${MAX_FRAME_PAYLOAD} bytes`);
  }
  const out = new Uint8Array(FRAME_HEADER + payload.length);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, type >>> 0);
  dv.setUint32(4, payload.length);
  out.set(payload, FRAME_HEADER);
  return out;
}

/** FILE payload: u16 name_len, name, data. Refuses names ≥ 65536 bytes (§13.2-6). */
export function encodeFilePayload(name: string, data: Uint8Array): Uint8Array {
  const nb = utf8.encode(name);
  if (nb.length > 0xffff) {
    throw new ProtoError("file_name_too_long", `file name too long: ${nb.length} bytes`,
      "file names are limited to 65535 bytes of UTF-8");
  }
  const out = new Uint8Array(2 + nb.length + data.length);
  out[0] = nb.length >>> 8;
  out[1] = nb.length & 0xff;
  out.set(nb, 2);
  out.set(data, 2 + nb.length);
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

function tooLarge(len: number, max: number): ProtoError {
  return new ProtoError("frame_too_large", `frame too large: ${len} bytes (max ${max})`,
    `data-exchange frames carry at most ${max} bytes; send large files in several frames`);
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
// Storage (services.md §4.3-4.4)

const MAX_STEM_BYTES = 120;
const MAX_EXT_CHARS = 16;

function truncUtf8(s: string, maxBytes: number): string {
  if (utf8.encode(s).length <= maxBytes) return s;
  let out = "";
  let n = 0;
  for (const ch of s) {
    const b = utf8.encode(ch).length;
    if (n + b > maxBytes) break;
    out += ch;
    n += b;
  }
  return out;
}

/**
 * Reference shape: base name split at the last `.`, stored as `<stem>-<stamp><ext>`.
 * Fixes (services.md §13.2-1), all keeping that shape: `\` is also a separator, control characters
 * and leading dots are removed (no hidden files, no `.`/`..`), the stem is capped at 120 bytes and
 * the extension at 16 characters, and an empty stem becomes `file`.
 */
export function splitReceivedName(sent: string): { base: string; stem: string; ext: string } {
  let s = sent.replace(/[\/\\]+$/, "");
  const slash = Math.max(s.lastIndexOf("/"), s.lastIndexOf("\\"));
  const base = slash >= 0 ? s.slice(slash + 1) : s;
  s = base.replace(/[\u0000-\u001f\u007f]/g, "");
  const dot = s.lastIndexOf(".");
  let stem = dot >= 0 ? s.slice(0, dot) : s;
  let ext = dot >= 0 ? s.slice(dot) : "";
  if (ext === "." || ext.length > MAX_EXT_CHARS) {
    if (ext.length > 1) stem = stem + ext; // keep an over-long "extension" as part of the stem
    ext = "";
  }
  stem = truncUtf8(stem.replace(/^\.+/, ""), MAX_STEM_BYTES);
  if (stem === "") stem = "file";
  return { base, stem, ext };
}

/**
 * Create a new file exclusively (O_EXCL, mode 0600); on a same-millisecond collision add `-1`,
 * `-2`, … before the extension instead of overwriting (fix of services.md §13.2-2).
 */
async function writeUnique(dir: string, stem: string, ext: string, data: Uint8Array): Promise<string> {
  for (let i = 0; i < 10000; i++) {
    const name = i === 0 ? `${stem}${ext}` : `${stem}-${i}${ext}`;
    const path = join(dir, name);
    let fh;
    try {
      fh = await open(path, "wx", 0o600);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "EEXIST") continue;
      throw e;
    }
    try {
      await fh.writeFile(data);
    } finally {
      await fh.close();
    }
    return path;
  }
  throw new Error(`open ${join(dir, stem + ext)}: too many files with the same name`);
}

export async function saveReceivedFile(dataDir: string, sentName: string, data: Uint8Array, ms: number): Promise<{ path: string; base: string }> {
  const dir = join(dataDir, "received");
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const { base, stem, ext } = splitReceivedName(sentName);
  const path = await writeUnique(dir, `${stem}-${fileStamp(ms)}`, ext, data);
  return { path, base };
}

/** Inbox JSON, Go-sorted: {"bytes","data","from","received_at","type"}. */
export function inboxRecord(type: number, payload: Uint8Array, from: string, ms: number): string {
  return goJson({
    bytes: payload.length,
    data: utf8Lossy.decode(payload),
    from,
    received_at: rfc3339Local(ms),
    type: typeName(type),
  });
}

export async function saveInboxMessage(dataDir: string, type: number, payload: Uint8Array, from: string, ms: number): Promise<string> {
  const dir = join(dataDir, "inbox");
  await mkdir(dir, { recursive: true, mode: 0o700 });
  return writeUnique(dir, `${typeName(type)}-${fileStamp(ms)}`, ".json", utf8.encode(inboxRecord(type, payload, from, ms)));
}

// ---------------------------------------------------------------------------------------------
// Server (services.md §4.2)

export interface DataExchangeOptions {
  port?: number;
  /** Per-frame payload limit (default and maximum 16 MiB, the wire limit). */
  maxFramePayload?: number;
}

export function startDataExchange(ctx: ServiceContext, opts: DataExchangeOptions = {}): ServiceHandle {
  const conns = new Set<StreamConn>();
  const max = Math.min(opts.maxFramePayload ?? MAX_FRAME_PAYLOAD, MAX_FRAME_PAYLOAD);
  const l = ctx.listen(opts.port ?? PORT_DATAEXCHANGE, (conn) => {
    conns.add(conn);
    handleDataExchangeConn(ctx, conn, max, () => conns.delete(conn));
  });
  return {
    stop() {
      l.close();
      for (const c of conns) c.abort();
      conns.clear();
    },
  };
}

/** Handle one frame: store it, return the ACK/ERR text. */
async function storeFrame(ctx: ServiceContext, conn: StreamConn, f: Frame): Promise<string> {
  const name = typeName(f.type);
  const ms = nowMs(ctx);
  let n = f.payload.length;
  try {
    if (f.type === TYPE_FILE) {
      const { name: fname, data } = decodeFilePayload(f.payload);
      n = data.length;
      if (fname !== "") {
        const { path, base } = await saveReceivedFile(ctx.dataDir, fname, data, ms);
        ctx.log.info("file received", { path, bytes: data.length });
        ctx.webhook("file.received", { filename: base, size: data.length, path });
      }
    } else if (f.type === TYPE_TEXT || f.type === TYPE_JSON || f.type === TYPE_BINARY) {
      const from = formatAddr(conn.remoteAddr);
      const path = await saveInboxMessage(ctx.dataDir, f.type, f.payload, from, ms);
      ctx.log.info("inbox message saved", { path, type: name, bytes: f.payload.length });
      ctx.webhook("message.received", { type: name, from, size: f.payload.length });
    }
  } catch (e) {
    return `ERR ${name} save failed: ${errText(e)}`;
  }
  return `ACK ${name} ${n} bytes`;
}

function handleDataExchangeConn(ctx: ServiceContext, conn: StreamConn, max: number, done: () => void): void {
  const queue: Frame[] = [];
  let busy = false;
  let ended = false; // peer FIN: store what arrived, but no ACK can be sent any more
  let closed = false;

  const close = () => {
    if (closed) return;
    closed = true;
    done();
    conn.end();
  };

  const run = async () => {
    if (busy) return;
    busy = true;
    while (queue.length > 0) {
      const f = queue.shift()!;
      const reply = await storeFrame(ctx, conn, f);
      if (!ended && !closed) {
        try {
          conn.write(encodeFrame(TYPE_TEXT, utf8.encode(reply)));
        } catch {
          close();
        }
      }
    }
    busy = false;
    if (ended) close();
    else if (!closed) conn.resume();
  };

  const reader = new FrameReader((f) => {
    queue.push(f);
    // Bound memory (§13.2-3): stop reading while frames are being written to disk.
    conn.pause();
  }, max);

  conn.onData = (chunk) => {
    if (closed) return;
    try {
      reader.push(chunk);
    } catch (e) {
      // Oversize frame: protocol error, close without replying (reference behaviour).
      ctx.log.warn("dataexchange: bad frame", { error: errText(e), from: formatAddr(conn.remoteAddr) });
      queue.length = 0;
      close();
      return;
    }
    void run();
  };
  conn.onEnd = () => {
    ended = true;
    if (!busy) close();
  };
  conn.onClose = () => {
    ended = true;
    if (!closed) { closed = true; done(); }
  };
}

// ---------------------------------------------------------------------------------------------
// Client helpers

/** Write a large buffer in 64 KiB slices, honouring write()'s backpressure. */
export async function writeAll(conn: StreamConn, data: Uint8Array, slice = 64 * 1024): Promise<void> {
  for (let off = 0; off < data.length; off += slice) {
    const ok = conn.write(data.subarray(off, Math.min(off + slice, data.length)));
    if (!ok) {
      await new Promise<void>((resolve, reject) => {
        conn.onDrain = () => { conn.onDrain = null; resolve(); };
        const prev = conn.onClose;
        conn.onClose = (err) => { prev?.(err); reject(err ?? new TransportError("closed", "connection closed")); };
      });
    }
  }
}

/** Frame-level client over an established connection to port 1001. */
export class DataExchangeClient {
  private frames: Frame[] = [];
  private waiters: { resolve: (f: Frame) => void; reject: (e: Error) => void }[] = [];
  private error: Error | null = null;
  private reader: FrameReader;

  constructor(readonly conn: StreamConn, maxPayload = MAX_FRAME_PAYLOAD) {
    this.reader = new FrameReader((f) => {
      const w = this.waiters.shift();
      if (w) w.resolve(f);
      else this.frames.push(f);
    }, maxPayload);
    conn.onData = (chunk) => {
      try {
        this.reader.push(chunk);
      } catch (e) {
        this.fail(e as Error);
        conn.abort();
      }
    };
    conn.onEnd = () => this.fail(new TransportError("closed", "connection closed by peer"));
    conn.onClose = (err) => this.fail(err ?? new TransportError("closed", "connection closed"));
  }

  private fail(e: Error): void {
    if (!this.error) this.error = e;
    for (const w of this.waiters.splice(0)) w.reject(this.error);
  }

  async send(type: number, payload: Uint8Array): Promise<void> {
    await writeAll(this.conn, encodeFrame(type, payload));
  }

  recv(timeoutMs = 0): Promise<Frame> {
    const f = this.frames.shift();
    if (f) return Promise.resolve(f);
    if (this.error) return Promise.reject(this.error);
    return new Promise((resolve, reject) => {
      let t: ReturnType<typeof setTimeout> | undefined;
      const w = {
        resolve: (fr: Frame) => { if (t) clearTimeout(t); resolve(fr); },
        reject: (e: Error) => { if (t) clearTimeout(t); reject(e); },
      };
      this.waiters.push(w);
      if (timeoutMs > 0) {
        t = setTimeout(() => {
          const i = this.waiters.indexOf(w);
          if (i >= 0) this.waiters.splice(i, 1);
          reject(new TransportError("timeout", `no reply within ${timeoutMs} ms`));
        }, timeoutMs);
      }
    });
  }

  /** Send one frame and wait for the server's ACK/ERR frame; returns its text. */
  async request(type: number, payload: Uint8Array, timeoutMs = 0): Promise<string> {
    const p = this.recv(timeoutMs);
    await this.send(type, payload);
    const f = await p;
    return utf8Lossy.decode(f.payload);
  }

  sendMessage(text: string, timeoutMs = 0): Promise<string> {
    return this.request(TYPE_TEXT, utf8.encode(text), timeoutMs);
  }
  /** `value` is sent verbatim when it is a string, else as compact JSON. */
  sendJSON(value: unknown, timeoutMs = 0): Promise<string> {
    const s = typeof value === "string" ? value : JSON.stringify(value);
    return this.request(TYPE_JSON, utf8.encode(s), timeoutMs);
  }
  sendBinary(data: Uint8Array, timeoutMs = 0): Promise<string> {
    return this.request(TYPE_BINARY, data, timeoutMs);
  }
  sendFile(name: string, data: Uint8Array, timeoutMs = 0): Promise<string> {
    return this.request(TYPE_FILE, encodeFilePayload(name, data), timeoutMs);
  }
  close(): void {
    this.conn.end();
  }
}

/** Result of an ACK/ERR text: ok, type name and byte count (for ACK). */
export function parseAck(text: string): { ok: boolean; type: string; bytes?: number; error?: string } {
  const m = /^ACK (\S+) (\d+) bytes$/.exec(text);
  if (m) return { ok: true, type: m[1]!, bytes: Number(m[2]) };
  const e = /^ERR (\S+) (.*)$/.exec(text);
  if (e) return { ok: false, type: e[1]!, error: e[2]! };
  return { ok: false, type: "", error: text };
}
