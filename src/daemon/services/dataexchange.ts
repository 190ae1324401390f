// Data exchange, port 1001: the built-in server that stores files in <dataDir>/received/ and
// messages in <dataDir>/inbox/ (one ACK frame per frame), the receiving side of the resumable
// file-transfer extension, and a frame-level client. The codec lives in src/proto/dataexchange.ts.
import { formatAddr } from "../../proto/addr.ts";
import {
  decodeMessage, type DxMessage, encodeFrame, encodeMessage, encodeText, encodeFilePayload, formatAck, formatSaveError,
  type Frame, FrameReader, MAX_FRAME_PAYLOAD, TYPE_BINARY, TYPE_FILE, TYPE_JSON, TYPE_TEXT,
} from "../../proto/dataexchange.ts";
import { PORT_DATAEXCHANGE, ProtoError } from "../../proto/types.ts";
import { TransportError, type StreamConn } from "../../transport/api.ts";
import { nowMs, type ServiceContext, type ServiceHandle } from "./context.ts";
import { saveInboxMessage, saveReceivedFile } from "./dx-storage.ts";
import { FileReceiver, type FileReceiverOptions, type ReceiverSession } from "./file-receiver.ts";
import { errText, utf8, utf8Lossy } from "./util.ts";
import { AsyncQueue, timeoutArm } from "../../sys/queue.ts";

// The codec and storage helpers are re-exported for existing importers.
export * from "../../proto/dataexchange.ts";
export { inboxRecord, saveInboxMessage, saveReceivedFile, splitReceivedName } from "./dx-storage.ts";

export interface DataExchangeOptions {
  port?: number;
  /** Per-frame payload limit (default and maximum 16 MiB, the wire limit). */
  maxFramePayload?: number;
  /** Limits of the resumable file-transfer extension. */
  files?: FileReceiverOptions;
}

export interface DataExchangeHandle extends ServiceHandle {
  readonly files: FileReceiver;
}

export function startDataExchange(ctx: ServiceContext, opts: DataExchangeOptions = {}): DataExchangeHandle {
  const conns = new Set<StreamConn>();
  const max = Math.min(opts.maxFramePayload ?? MAX_FRAME_PAYLOAD, MAX_FRAME_PAYLOAD);
  const files = new FileReceiver(ctx, opts.files);
  const l = ctx.listen(opts.port ?? PORT_DATAEXCHANGE, (conn) => {
    conns.add(conn);
    handleDataExchangeConn(ctx, conn, max, files.session(conn), () => conns.delete(conn));
  });
  return {
    files,
    stop() {
      l.close();
      for (const c of conns) c.abort();
      conns.clear();
      void files.stop();
    },
  };
}

/** Handle one reference frame: store it, return the ACK/ERR text. */
async function storeFrame(ctx: ServiceContext, conn: StreamConn, m: DxMessage & { kind: "text" | "json" | "binary" | "file" }): Promise<string> {
  const ms = nowMs(ctx);
  const type = m.kind === "file" ? TYPE_FILE : m.type;
  const n = m.kind === "file" ? m.data.length : m.payload.length;
  try {
    if (m.kind === "file") {
      if (m.name !== "") {
        const { path, base } = await saveReceivedFile(ctx.dataDir, m.name, m.data, ms);
        ctx.log.info("file received", { path, bytes: m.data.length });
        ctx.webhook("file.received", { filename: base, size: m.data.length, path });
      }
    } else {
      const from = formatAddr(conn.remoteAddr);
      const path = await saveInboxMessage(ctx.dataDir, m.type, m.payload, from, ms);
      ctx.log.info("inbox message saved", { path, type: m.kind.toUpperCase(), bytes: m.payload.length });
      ctx.webhook("message.received", { type: m.kind.toUpperCase(), from, size: m.payload.length });
    }
  } catch (e) {
    return formatSaveError(type, errText(e));
  }
  return formatAck(type, n);
}

/** The frames to send back for one received frame. */
async function reply(ctx: ServiceContext, conn: StreamConn, files: ReceiverSession, f: Frame): Promise<Uint8Array[]> {
  let m: DxMessage;
  try {
    m = decodeMessage(f);
  } catch (e) {
    const code = e instanceof ProtoError ? e.code : "bad_message";
    return [encodeMessage({ kind: "refuse", code, error: errText(e) })];
  }
  switch (m.kind) {
    case "text": case "json": case "binary": case "file":
      return [encodeText(await storeFrame(ctx, conn, m))];
    case "offer": case "data": case "end":
      return files.handle(m);
    default:
      // Any other type: nothing stored, acknowledged like the reference does.
      return [encodeText(formatAck(f.type, f.payload.length))];
  }
}

function handleDataExchangeConn(ctx: ServiceContext, conn: StreamConn, max: number, files: ReceiverSession, done: () => void): void {
  const queue: Frame[] = [];
  let busy = false;
  let ended = false; // peer FIN: store what arrived, but no ACK can be sent any more
  let closed = false;

  const close = () => {
    if (closed) return;
    closed = true;
    done();
    void files.close();
    conn.end();
  };

  const run = async () => {
    if (busy) return;
    busy = true;
    while (queue.length > 0) {
      const f = queue.shift()!;
      const out = await reply(ctx, conn, files, f);
      if (!ended && !closed) {
        try {
          for (const b of out) conn.write(b);
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
    // Bound memory: stop reading while frames are being written to disk.
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
    if (!closed) {
      closed = true;
      done();
      void files.close();
    }
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
  private frames = new AsyncQueue<Frame>();
  private reader: FrameReader;

  constructor(readonly conn: StreamConn, maxPayload = MAX_FRAME_PAYLOAD) {
    this.reader = new FrameReader((f) => this.frames.push(f), maxPayload);
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
    this.frames.fail(e);
  }

  async send(type: number, payload: Uint8Array): Promise<void> {
    await writeAll(this.conn, encodeFrame(type, payload));
  }

  recv(timeoutMs = 0): Promise<Frame> {
    return this.frames.take(timeoutArm(timeoutMs, () => new TransportError("timeout", `no reply within ${timeoutMs} ms`)));
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
