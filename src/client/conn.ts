// A stream connection and a listening port as the platform expects them: Web Streams
// (ReadableStream / WritableStream), async iteration, and an AbortSignal on every call.
import { formatAddr } from "../proto/addr.ts";
import type { CallOptions } from "./errors.ts";
import { abortError, PilotError } from "./errors.ts";
import type { DriverConn, DriverListener } from "./driver.ts";

const te = new TextEncoder();

/** One reliable, ordered byte stream to a remote port. */
export class Connection implements AsyncIterable<Uint8Array> {
  private rs: ReadableStream<Uint8Array> | null = null;
  private ws: WritableStream<Uint8Array> | null = null;
  /** @internal */
  constructor(private readonly c: DriverConn, private readonly onClose?: () => void) {}

  /** Daemon-assigned connection ID (see `Pilot.info().connList`). */
  get id(): number {
    return this.c.id;
  }
  /** Pilot address of the peer ("0:0000.0000.0005"). */
  get remote(): string {
    return formatAddr(this.c.remote);
  }
  get remotePort(): number {
    return this.c.remotePort;
  }
  get localPort(): number {
    return this.c.localPort;
  }
  /** true once the peer closed (or this side closed) the stream. */
  get ended(): boolean {
    return this.c.ended;
  }

  /** Next chunk of received bytes, or null at end of stream. */
  read(opts?: CallOptions): Promise<Uint8Array | null> {
    return this.c.read(opts);
  }

  /** Read until end of stream (bounded by `maxBytes`, default 64 MiB) and return the bytes. */
  async readAll(opts: CallOptions & { maxBytes?: number } = {}): Promise<Uint8Array> {
    const max = opts.maxBytes ?? 64 * 1024 * 1024;
    const parts: Uint8Array[] = [];
    let n = 0;
    for (;;) {
      const c = await this.read(opts);
      if (c === null) break;
      n += c.length;
      if (n > max) throw new PilotError("invalid_argument", `readAll: more than ${max} bytes`, "raise maxBytes or read the stream in chunks");
      parts.push(c);
    }
    const out = new Uint8Array(n);
    let off = 0;
    for (const p of parts) {
      out.set(p, off);
      off += p.length;
    }
    return out;
  }

  /** Write bytes (a string is sent as UTF-8). Resolves once handed to the daemon. */
  async write(data: Uint8Array | string, opts?: CallOptions): Promise<void> {
    if (opts?.signal?.aborted) throw abortError("write", opts.signal);
    await this.c.write(typeof data === "string" ? te.encode(data) : data);
  }

  /** Close the connection (both directions). Later reads return null. */
  close(): void {
    this.c.close();
    this.onClose?.();
  }

  /** Received bytes as a Web ReadableStream (cancelling it closes the connection). */
  get readable(): ReadableStream<Uint8Array> {
    if (!this.rs) {
      this.rs = new ReadableStream<Uint8Array>({
        pull: async (ctl) => {
          const c = await this.c.read();
          if (c === null) ctl.close();
          else ctl.enqueue(c);
        },
        cancel: () => this.close(),
      });
    }
    return this.rs;
  }

  /** A Web WritableStream into the connection (closing or aborting it closes the connection). */
  get writable(): WritableStream<Uint8Array> {
    if (!this.ws) {
      this.ws = new WritableStream<Uint8Array>({
        write: (chunk) => this.c.write(chunk),
        close: () => this.close(),
        abort: () => this.close(),
      });
    }
    return this.ws;
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    for (;;) {
      const c = await this.c.read();
      if (c === null) return;
      yield c;
    }
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/** A bound port; iterate it (`for await`) or call accept() to take inbound connections. */
export class Listener implements AsyncIterable<Connection> {
  /** @internal */
  constructor(private readonly l: DriverListener, private readonly signal?: AbortSignal) {
    signal?.addEventListener("abort", () => this.close(), { once: true });
  }

  get port(): number {
    return this.l.port;
  }

  /** Next inbound connection. */
  async accept(opts: CallOptions = {}): Promise<Connection> {
    try {
      return new Connection(await this.l.accept(opts));
    } catch (e) {
      if (this.signal?.aborted) throw abortError("accept", this.signal);
      throw e;
    }
  }

  /** Stop accepting. (The daemon keeps the port bound until this Pilot is closed.) */
  close(): void {
    this.l.close();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Connection> {
    for (;;) {
      let c: Connection;
      try {
        c = await this.accept();
      } catch (e) {
        // Ends quietly when this side stopped (close(), abort, Pilot.close()); a lost daemon throws.
        const m = (e as Error).message;
        if ((e as PilotError).code === "aborted" || m === "listener closed" || m === "driver closed") return;
        throw e;
      }
      yield c;
    }
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
