// Sending side of the data-exchange service (port 1001) over any byte stream to the peer: messages
// with a mandatory ACK, and files of any size (docs/file-transfer.md).
//
// A file is first offered with the extension's OFFER frame. A pilot-ts receiver answers ACCEPT with
// the offset to resume from; the file is then streamed from disk in DATA frames and finished with
// END, and only the receiver's final `ACK FILE <n> bytes` (sent after the SHA-256 matched and the
// file was renamed into place) counts as success. A reference receiver answers the unknown OFFER
// type with a harmless `ACK UNKNOWN(…)` text: the file then goes as one classic FILE frame if it
// fits in one (16 MiB), otherwise nothing more is sent and the call fails with `unsupported`.
// Memory stays bounded by one chunk whatever the file size. The bytes come from a FileSource: a
// file on disk (openFileSource) or a buffer in memory (bytesSource).
import { type ErrorCode, PilotError } from "./errors.ts";
import { createHash } from "node:crypto";
import { open, type FileHandle } from "node:fs/promises";
import { basename } from "node:path";
import { AsyncQueue } from "../sys/queue.ts";
import {
  type Ack, DATA_HEADER, decodeMessage, type DxMessage, encodeDataHeader, encodeFileNameHeader, encodeFrame, encodeFrameHeader, encodeMessage,
  type Frame, FrameReader, frameText, maxLegacyFileBytes, MAX_FRAME_PAYLOAD, MESSAGE_TYPES, parseAck, TYPE_FILE, TYPE_TEXT, XFER_VERSION,
} from "../proto/dataexchange.ts";

/** What the transfer needs from a connection to the peer's port 1001 (the SDK's conn fits). */
export interface ByteDuplex {
  /** Resolves when the bytes were accepted (backpressure); the buffer is not reused afterwards. */
  write(data: Uint8Array): Promise<void>;
  /** Next chunk, or null at end of stream. */
  read(): Promise<Uint8Array | null>;
  close(): void;
}

/** Where the bytes of a file come from (a file on disk, or memory). */
export interface FileSource {
  /** Name offered to the receiver. */
  readonly name: string;
  readonly size: number;
  /** Read up to `len` bytes at offset `pos` into `buf` at index `at`; resolves how many (0: no more). */
  read(buf: Uint8Array, at: number, len: number, pos: number): Promise<number>;
  /** Release it (never fails). */
  close(): Promise<void>;
}

/**
 * Codes: `unsupported` (the receiver cannot take the file; nothing of it was sent), `refused`
 * (the receiver refused or failed to store it; `detail` has its reason code), `timeout` and
 * `connection_failed` (no acknowledgement: the data may not have arrived), `not_found` /
 * `internal` (local file errors), `invalid_argument` (a file name above 65535 bytes), `aborted` (the
 * caller's AbortSignal fired).
 */
export class FileTransferError extends PilotError {
  constructor(code: ErrorCode, message: string, hint?: string, readonly detail?: string) {
    super(code, message, hint);
    this.name = "FileTransferError";
  }
}

export interface FileProgress {
  phase: "hashing" | "sending" | "finishing";
  /** Bytes of the file hashed / handed to the connection (including a resumed prefix). */
  done: number;
  /** Bytes the receiver reported as written (resumable transfers only). */
  acked: number;
  total: number;
}

export interface SendFileOptions {
  /** Name sent to the receiver (default: the path's base name). */
  name?: string;
  /** SHA-256 (hex) of the file when already known (see fileDigest): the file is then read only once. */
  sha256?: string;
  /** Longest wait for any reply from the receiver (default 60 s). */
  replyTimeoutMs?: number;
  onProgress?: (p: FileProgress) => void;
  /** Stops the transfer: the call then fails with code `aborted` (the caller closes the connection). */
  signal?: AbortSignal;
}

export interface SendFileResult {
  /** The receiver's final acknowledgement, e.g. `ACK FILE 1234 bytes`. */
  ack: string;
  bytes: number;
  sha256: string;
  /** "resumable" (extension) or "single-frame" (reference receiver). */
  mode: "resumable" | "single-frame";
  /** Offset the receiver asked to resume from (0 = fresh transfer). */
  resumedFrom: number;
  /** File bytes sent over this connection. */
  sentBytes: number;
}

const DEFAULT_REPLY_TIMEOUT = 60_000;
/** A receiver never needs more than this in one reply frame. */
const MAX_REPLY_FRAME = 1 << 20;
const MAX_QUEUED_REPLIES = 4096;
const HASH_CHUNK = 1 << 20;
const mayNotHaveArrived = "the receiver did not acknowledge it, so the data may not have arrived";

/** Replies from the receiver, read concurrently with our writes. */
class Replies {
  private frames = new AsyncQueue<Frame>();
  private readonly reader: FrameReader;

  constructor(private readonly conn: ByteDuplex, private readonly signal?: AbortSignal) {
    this.reader = new FrameReader((f) => {
      if (this.frames.length >= MAX_QUEUED_REPLIES) throw new Error("receiver floods replies");
      this.frames.push(f);
    }, MAX_REPLY_FRAME);
    void this.pump();
  }

  private async pump(): Promise<void> {
    try {
      for (;;) {
        const c = await this.conn.read();
        if (c === null) return this.fail(new FileTransferError("connection_failed", "connection closed by the receiver"));
        this.reader.push(c);
      }
    } catch (e) {
      this.fail(new FileTransferError("connection_failed", `receive: ${(e as Error).message}`));
    }
  }

  private fail(e: FileTransferError): void {
    this.frames.fail(e);
  }

  /** A frame already received, if any (never waits). */
  poll(): Frame | undefined {
    return this.frames.poll();
  }

  /** Next frame; fails with `timeout` after `timeoutMs` of silence or when the stream ends. */
  next(timeoutMs: number, what: string): Promise<Frame> {
    const signal = this.signal;
    return this.frames.take((cancel) => {
      if (signal?.aborted) {
        cancel(abortedError(signal));
        return () => {};
      }
      const t = setTimeout(() => cancel(new FileTransferError("timeout", `no ${what} from the receiver within ${Math.round(timeoutMs / 1000)} s`)), timeoutMs);
      const onAbort = () => cancel(abortedError(signal!));
      signal?.addEventListener("abort", onAbort, { once: true });
      return () => {
        clearTimeout(t);
        signal?.removeEventListener("abort", onAbort);
      };
    });
  }
}

function abortedError(signal: AbortSignal): PilotError {
  const r = signal.reason;
  if (r instanceof PilotError) return r;
  const why = r instanceof Error && r.name !== "AbortError" ? `: ${r.message}` : "";
  return new FileTransferError("aborted", `transfer aborted${why}`);
}

function checkAbort(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw abortedError(signal);
}

/** A malformed reply is a broken conversation, reported like a lost connection. */
function decodeReply(f: Frame): DxMessage {
  try {
    return decodeMessage(f);
  } catch (e) {
    throw new FileTransferError("connection_failed", `bad reply from the receiver: ${(e as Error).message}`);
  }
}

function ackResult(text: string, expectBytes: number): Ack {
  const a = parseAck(text);
  if (a.ok && a.bytes !== expectBytes) return { ok: false, type: a.type, error: `acknowledged ${a.bytes} of ${expectBytes} bytes` };
  return a;
}

function noAck(e: unknown, what: string): FileTransferError {
  if (e instanceof FileTransferError) {
    if (e.code === "timeout" || e.code === "connection_failed") {
      return new FileTransferError(e.code, `${what}: ${e.message}; ${mayNotHaveArrived}`, "check the peer and send again (file transfers resume where they stopped)");
    }
    return e;
  }
  return new FileTransferError("connection_failed", `${what}: ${(e as Error).message}; ${mayNotHaveArrived}`);
}

/** SHA-256 of a source, read in 1 MiB pieces. */
async function hashSource(src: FileSource, onProgress?: (done: number) => void, signal?: AbortSignal): Promise<string> {
  const h = createHash("sha256");
  const buf = new Uint8Array(Math.min(HASH_CHUNK, Math.max(1, src.size)));
  let pos = 0;
  while (pos < src.size) {
    checkAbort(signal);
    const len = Math.min(buf.length, src.size - pos);
    await readExact(src, buf, 0, len, pos);
    h.update(buf.subarray(0, len));
    pos += len;
    onProgress?.(pos);
  }
  return h.digest("hex");
}

/** Read exactly `len` bytes at `pos` into `buf` at `at`. */
async function readExact(src: FileSource, buf: Uint8Array, at: number, len: number, pos: number): Promise<void> {
  let got = 0;
  while (got < len) {
    const n = await src.read(buf, at + got, len - got, pos + got);
    if (n <= 0) throw new FileTransferError("internal", `file shrank while reading it (at ${pos + got} of ${src.size} bytes)`);
    got += n;
  }
}

/** A regular file on disk; its name is the path's base name. Close it when done. */
export async function openFileSource(path: string): Promise<FileSource> {
  let fh: FileHandle;
  try {
    fh = await open(path, "r");
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT") throw new FileTransferError("not_found", `file not found: ${path}`, "check the file path");
    if (code === "EACCES") throw new FileTransferError("internal", `permission denied: ${path}`);
    throw new FileTransferError("internal", `read file: ${(e as Error).message}`);
  }
  const st = await fh.stat();
  if (!st.isFile()) {
    await fh.close();
    throw new FileTransferError("internal", `read file: ${path} is not a regular file`);
  }
  return {
    name: basename(path),
    size: st.size,
    read: async (buf, at, len, pos) => {
      try {
        return (await fh.read(buf, at, len, pos)).bytesRead;
      } catch (e) {
        throw new FileTransferError("internal", `read ${path}: ${(e as Error).message}`);
      }
    },
    close: () => fh.close().catch(() => {}),
  };
}

/** Bytes in memory, sent as a file called `name` (the buffer must not change during the transfer). */
export function bytesSource(name: string, data: Uint8Array): FileSource {
  return {
    name,
    size: data.length,
    read: async (buf, at, len, pos) => {
      const part = data.subarray(pos, Math.min(data.length, pos + len));
      buf.set(part, at);
      return part.length;
    },
    close: async () => {},
  };
}

/**
 * SHA-256 (hex) of a file (a path or a source), read in 1 MiB pieces. Lets a caller hash before it
 * connects and pass the digest to sendFile, so that no connection idles while a large file is hashed.
 */
export async function fileDigest(file: string | FileSource, onProgress?: (done: number, total: number) => void, signal?: AbortSignal): Promise<string> {
  const src = typeof file === "string" ? await openFileSource(file) : file;
  try {
    return await hashSource(src, (d) => onProgress?.(d, src.size), signal);
  } finally {
    if (typeof file === "string") await src.close();
  }
}

/** A name the FILE frame cannot carry is the caller's mistake, found before anything is sent. */
function nameHeader(name: string): Uint8Array {
  try {
    return encodeFileNameHeader(name);
  } catch (e) {
    throw new FileTransferError("invalid_argument", (e as Error).message, (e as { hint?: string }).hint);
  }
}

/**
 * Send a file (a path, or a source such as bytesSource) over `conn`, a fresh connection to the
 * peer's port 1001. Closes neither the connection nor a source it was given (it closes a file it
 * opened itself).
 */
export async function sendFile(conn: ByteDuplex, file: string | FileSource, opts: SendFileOptions = {}): Promise<SendFileResult> {
  const name = opts.name ?? (typeof file === "string" ? basename(file) : file.name);
  const header = nameHeader(name); // refuses names ≥ 64 KiB before anything is read or sent
  checkAbort(opts.signal);
  const src = typeof file === "string" ? await openFileSource(file) : file;
  try {
    return await offer(conn, src, name, header, opts);
  } catch (e) {
    if (opts.signal?.aborted) throw abortedError(opts.signal);
    throw e;
  } finally {
    if (typeof file === "string") await src.close();
  }
}

/** One transfer: offer, then the resumable or the single-frame form, depending on the answer. */
interface Xfer {
  conn: ByteDuplex;
  replies: Replies;
  src: FileSource;
  size: number;
  sha256: string;
  timeout: number;
  signal?: AbortSignal;
  progress: (phase: FileProgress["phase"], done: number, acked: number) => void;
}

async function offer(conn: ByteDuplex, src: FileSource, name: string, header: Uint8Array, opts: SendFileOptions): Promise<SendFileResult> {
  const size = src.size;
  const progress = (phase: FileProgress["phase"], done: number, acked: number) => opts.onProgress?.({ phase, done, acked, total: size });
  const sha256 = opts.sha256 ?? (await hashSource(src, (d) => progress("hashing", d, 0), opts.signal));
  const replies = new Replies(conn, opts.signal);
  const x: Xfer = { conn, replies, src, size, sha256, timeout: opts.replyTimeoutMs ?? DEFAULT_REPLY_TIMEOUT, signal: opts.signal, progress };
  checkAbort(opts.signal);
  try {
    await conn.write(encodeMessage({ kind: "offer", name, size, sha256, v: XFER_VERSION }));
  } catch (e) {
    throw new FileTransferError("connection_failed", `send failed: ${(e as Error).message}`);
  }
  let first: Frame;
  let m: DxMessage;
  for (;;) {
    try {
      first = await replies.next(x.timeout, "answer to the file offer");
    } catch (e) {
      throw noAck(e, "file offer");
    }
    m = decodeReply(first);
    // While it re-reads a large partial file to resume, the receiver reports its progress.
    if (m.kind !== "progress") break;
    progress("hashing", m.bytes, 0);
  }
  if (m.kind === "text") {
    // A receiver without the extension acknowledged the offer as an unknown frame type.
    if (size > maxLegacyFileBytes(header.length - 2)) {
      throw new FileTransferError("unsupported",
        `the receiver cannot take a file of ${size} bytes: it does not support transfers above 16 MiB (nothing was sent)`,
        "the receiving node runs an implementation without resumable file transfer; split the file into parts of at most 16 MiB, or upgrade the receiver to pilot-ts");
    }
    return await sendSingleFrame(x, header);
  }
  if (m.kind === "refuse") throw new FileTransferError("refused", `the receiver refused the file: ${m.error}`, undefined, m.code);
  if (m.kind !== "accept") throw new FileTransferError("connection_failed", `unexpected answer to the file offer (frame type ${first.type}); ${mayNotHaveArrived}`);
  if (m.offset > size) throw new FileTransferError("connection_failed", `the receiver asked to resume at ${m.offset}, beyond the file's ${size} bytes`);
  return await sendResumable(x, m.offset, m.chunk);
}

async function sendResumable(x: Xfer, from: number, chunk: number): Promise<SendFileResult> {
  const { conn, replies, size, progress } = x;
  let acked = from;
  const check = () => {
    checkAbort(x.signal);
    // Handle what the receiver said meanwhile without waiting: progress, or an early refusal.
    for (let f = replies.poll(); f; f = replies.poll()) {
      const m = decodeReply(f);
      if (m.kind === "progress") acked = Math.max(acked, m.bytes);
      else if (m.kind === "refuse") throw new FileTransferError("refused", `the receiver stopped the transfer: ${m.error}`, undefined, m.code);
    }
  };
  let pos = from;
  try {
    while (pos < size) {
      const len = Math.min(chunk, size - pos);
      const frame = new Uint8Array(DATA_HEADER + len);
      frame.set(encodeDataHeader(pos, len));
      await readExact(x.src, frame, DATA_HEADER, len, pos);
      check();
      await conn.write(frame);
      pos += len;
      progress("sending", pos, acked);
    }
    check();
    await conn.write(encodeMessage({ kind: "end" }));
  } catch (e) {
    if (e instanceof FileTransferError) throw noAck(e, "send");
    throw noAck(new FileTransferError("connection_failed", (e as Error).message), "send");
  }
  progress("finishing", pos, acked);
  for (;;) {
    let f: Frame;
    try {
      f = await replies.next(x.timeout, "acknowledgement");
    } catch (e) {
      throw noAck(e, `sent ${size - from} bytes`);
    }
    const m = decodeReply(f);
    if (m.kind === "progress") {
      acked = Math.max(acked, m.bytes);
      progress("finishing", pos, acked);
      continue;
    }
    if (m.kind === "refuse") throw new FileTransferError("refused", `the receiver rejected the file: ${m.error}`, "send the file again", m.code);
    if (m.kind !== "text") continue;
    const text = frameText(f);
    const a = ackResult(text, size);
    if (!a.ok) throw new FileTransferError("refused", `the receiver did not store the file: ${a.error}`, undefined, "save_failed");
    return { ack: text, bytes: size, sha256: x.sha256, mode: "resumable", resumedFrom: from, sentBytes: size - from };
  }
}

async function sendSingleFrame(x: Xfer, nameHeader: Uint8Array): Promise<SendFileResult> {
  const { conn, size, progress } = x;
  const total = nameHeader.length + size;
  try {
    if (total <= 64 * 1024) {
      // Small file: header, name and data in one write (one segment for single-read receivers).
      const out = new Uint8Array(8 + total);
      out.set(encodeFrameHeader(TYPE_FILE, total));
      out.set(nameHeader, 8);
      await readExact(x.src, out, 8 + nameHeader.length, size, 0);
      await conn.write(out);
    } else {
      const head = new Uint8Array(8 + nameHeader.length);
      head.set(encodeFrameHeader(TYPE_FILE, total));
      head.set(nameHeader, 8);
      await conn.write(head);
      for (let pos = 0; pos < size;) {
        checkAbort(x.signal);
        const len = Math.min(HASH_CHUNK, size - pos);
        const b = new Uint8Array(len);
        await readExact(x.src, b, 0, len, pos);
        await conn.write(b);
        pos += len;
        progress("sending", pos, 0);
      }
    }
  } catch (e) {
    if (e instanceof FileTransferError && e.code === "internal") throw e;
    throw noAck(e instanceof FileTransferError ? e : new FileTransferError("connection_failed", (e as Error).message), "send");
  }
  progress("finishing", size, 0);
  let f: Frame;
  try {
    f = await x.replies.next(x.timeout, "acknowledgement");
  } catch (e) {
    throw noAck(e, `sent ${size} bytes`);
  }
  const text = f.type === TYPE_TEXT ? frameText(f) : "";
  const a = ackResult(text, size);
  if (!a.ok) throw new FileTransferError("refused", `the receiver did not store the file: ${a.error}`, undefined, "save_failed");
  return { ack: text, bytes: size, sha256: x.sha256, mode: "single-frame", resumedFrom: 0, sentBytes: size };
}

export interface SendMessageResult {
  ack: string;
  bytes: number;
}

/**
 * Send one TEXT/JSON/BINARY message (`type` as in `pilotctl send-message --type`) and wait for the
 * receiver's ACK. Anything else than a matching ACK within the timeout is an error; `signal` stops
 * the wait (code `aborted`).
 */
export async function sendMessage(conn: ByteDuplex, type: keyof typeof MESSAGE_TYPES | string, data: Uint8Array, replyTimeoutMs = 30_000, signal?: AbortSignal): Promise<SendMessageResult> {
  try {
    return await message(conn, type, data, replyTimeoutMs, signal);
  } catch (e) {
    if (signal?.aborted) throw abortedError(signal);
    throw e;
  }
}

async function message(conn: ByteDuplex, type: string, data: Uint8Array, replyTimeoutMs: number, signal?: AbortSignal): Promise<SendMessageResult> {
  const code = Object.hasOwn(MESSAGE_TYPES, type) ? MESSAGE_TYPES[type] : undefined;
  if (!code) throw new FileTransferError("invalid_argument", `unknown type ${JSON.stringify(type)} (use text, json, or binary)`);
  if (data.length > MAX_FRAME_PAYLOAD) throw new FileTransferError("invalid_argument", `message too large: ${data.length} bytes (max ${MAX_FRAME_PAYLOAD})`, "send large data as a file");
  checkAbort(signal);
  const replies = new Replies(conn, signal);
  try {
    await conn.write(encodeFrame(code, data));
  } catch (e) {
    throw new FileTransferError("connection_failed", `send: ${(e as Error).message}`);
  }
  let f: Frame;
  try {
    f = await replies.next(replyTimeoutMs, "acknowledgement");
  } catch (e) {
    throw noAck(e, "message");
  }
  const text = f.type === TYPE_TEXT ? frameText(f) : "";
  const a = ackResult(text, data.length);
  if (!a.ok) throw new FileTransferError("refused", `the receiver did not store the message: ${a.error}`, undefined, "save_failed");
  return { ack: text, bytes: data.length };
}
