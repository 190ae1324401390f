// The typed SDK: `connect()` returns a Pilot, one IPC connection to a local daemon, with a typed
// method for every daemon operation. Every method takes CallOptions (timeoutMs, signal) and fails
// with PilotError.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { formatAddr, parseAddr } from "../proto/addr.ts";
import { encodeFileNameHeader, MAX_FRAME_PAYLOAD, MESSAGE_TYPES } from "../proto/dataexchange.ts";
import { encodeEventMessage } from "../proto/eventstream.ts";
import { type Addr, PORT_DATAEXCHANGE, PORT_ECHO, PORT_EVENTSTREAM } from "../proto/types.ts";
import { Connection, Listener } from "./conn.ts";
import { DEFAULT_SOCKET, Driver, type DriverConn } from "./driver.ts";
import { abortError, arm, type CallOptions, PilotError } from "./errors.ts";
import { clearEntries, defaultDataDir, readInbox, readReceived, waitForInbox } from "./mailbox.ts";
import type {
  BenchResult, Datagram, FoundNode, HandshakeResult, HostnameResult, InboxMessage, MessageType, NodeInfo, PendingRequest,
  PingReply, PingResult, PublishResult, ReceivedFile, SendFileProgress, SendFileResult, SendMessageResult,
  TagsResult, Target, TaskExecResult, TrustedPeer, VisibilityResult,
} from "./types.ts";
import { bytesSource, type ByteDuplex, fileDigest, type FileProgress, type FileSource, openFileSource, sendFile as sendFileOver, sendMessage as sendMessageOver } from "./file-transfer.ts";
import { toFound, toHandshake, toInfo, toPending, toTrusted } from "./convert.ts";
import { Subscription } from "./subscription.ts";

export { Subscription };

const te = new TextEncoder();

export interface ConnectOptions extends CallOptions {
  /** Daemon IPC socket (default: $PILOT_SOCKET, else `socket` in ~/.pilot/config.json, else /tmp/pilot.sock). */
  socket?: string;
  /** The daemon's data directory, for inbox/received (default: ~/.pilot). */
  dataDir?: string;
}

/** Connect to the local daemon. Fails with code "not_running" when it is not there. */
export async function connect(opts: ConnectOptions = {}): Promise<Pilot> {
  const socket = opts.socket || process.env.PILOT_SOCKET || configuredSocket() || DEFAULT_SOCKET;
  const drv = await Driver.connect(socket, { timeoutMs: opts.timeoutMs ?? 10_000, signal: opts.signal });
  return new Pilot(drv, opts.dataDir ?? defaultDataDir());
}

/** `socket` from ~/.pilot/config.json (written by `pilotctl init`), if any. */
function configuredSocket(): string {
  try {
    const v = JSON.parse(readFileSync(join(defaultDataDir(), "config.json"), "utf8")) as { socket?: unknown };
    return typeof v?.socket === "string" ? v.socket : "";
  } catch {
    return "";
  }
}

const reach = (a: string) => `check that ${a} is reachable: ping it, and check mutual trust (handshake)`;

function checkPort(port: number): void {
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new PilotError("invalid_argument", `invalid port ${port}`, "ports are integers 0-65535");
}

/** A connection to one daemon. Close it when done (or use `await using`). */
export class Pilot {
  /** @internal */
  constructor(
    /** The low-level IPC driver (raw JSON replies), for operations not wrapped here. */
    readonly driver: Driver,
    /** Where the daemon stores inbox/ and received/. */
    readonly dataDir: string,
  ) {}

  get socket(): string {
    return this.driver.socketPath;
  }
  get closed(): boolean {
    return this.driver.closed;
  }

  private async wrap<T>(label: string, p: Promise<T>): Promise<T> {
    try {
      return await p;
    } catch (e) {
      if (e instanceof PilotError) throw e;
      throw new PilotError("connection_failed", `${label}: ${(e as Error).message}`);
    }
  }

  // ---------- identity & discovery ----------
  async info(o?: CallOptions): Promise<NodeInfo> {
    return toInfo(await this.wrap("info", this.driver.info(o)));
  }

  /** Resolve a hostname through the registry (needs mutual trust unless the node is public). */
  async find(hostname: string, o?: CallOptions): Promise<FoundNode> {
    try {
      return toFound(hostname, await this.driver.resolveHostname(hostname, o));
    } catch (e) {
      if (e instanceof PilotError && (e.code === "aborted" || e.code === "timeout" || e.message.endsWith("daemon disconnected"))) throw e;
      throw new PilotError("not_found", `cannot find ${JSON.stringify(hostname)}: hostname not found or no mutual trust`, `establish trust first: handshake with ${hostname}`);
    }
  }

  /** Turn a Target into an address (hostnames are resolved through the daemon). */
  async resolve(target: Target, o?: CallOptions): Promise<Addr> {
    if (typeof target === "object") return target;
    if (typeof target === "number") {
      if (!Number.isInteger(target) || target < 0 || target > 0xffffffff) throw new PilotError("invalid_argument", `invalid node ID ${target}`);
      return { network: 0, node: target };
    }
    try {
      return parseAddr(target);
    } catch {}
    if (/^\d+$/.test(target) && Number(target) <= 0xffffffff) return { network: 0, node: Number(target) };
    if (target === "") throw new PilotError("invalid_argument", "empty target", "pass an address, a node ID or a hostname");
    return parseAddr((await this.find(target, o)).address);
  }

  async setHostname(hostname: string, o?: CallOptions): Promise<HostnameResult> {
    const r = await this.wrap("set_hostname", this.driver.setHostname(hostname, o));
    return { nodeId: Number(r.node_id ?? 0), hostname: String(r.hostname ?? hostname) };
  }
  async setTags(tags: string[], o?: CallOptions): Promise<TagsResult> {
    const r = await this.wrap("set_tags", this.driver.setTags(tags, o));
    return { nodeId: Number(r.node_id ?? 0), tags: Array.isArray(r.tags) ? r.tags.map(String) : [] };
  }
  async setVisibility(isPublic: boolean, o?: CallOptions): Promise<VisibilityResult> {
    const r = await this.wrap("set_visibility", this.driver.setVisibility(isPublic, o));
    return { nodeId: Number(r.node_id ?? 0), public: r.visibility === undefined ? isPublic : r.visibility === "public" };
  }
  async setTaskExec(enabled: boolean, o?: CallOptions): Promise<TaskExecResult> {
    const r = await this.wrap("set_task_exec", this.driver.setTaskExec(enabled, o));
    return { nodeId: Number(r.node_id ?? 0), taskExec: r.task_exec === undefined ? enabled : r.task_exec === true };
  }
  async setWebhook(url: string, o?: CallOptions): Promise<void> {
    await this.wrap("set_webhook", this.driver.setWebhook(url, o));
  }
  async deregister(o?: CallOptions): Promise<void> {
    await this.wrap("deregister", this.driver.deregister(o));
  }

  // ---------- trust ----------
  private async nodeOf(target: Target, o?: CallOptions): Promise<number> {
    return (await this.resolve(target, o)).node;
  }
  /** Ask a node for mutual trust (it must approve, or send a handshake back). */
  async handshake(target: Target, justification = "", o?: CallOptions): Promise<HandshakeResult> {
    const n = await this.nodeOf(target, o);
    return toHandshake(n, await this.wrap("handshake", this.driver.handshake(n, justification, o)));
  }
  async approve(nodeId: number, o?: CallOptions): Promise<HandshakeResult> {
    return toHandshake(nodeId, await this.wrap("approve", this.driver.approve(nodeId, o)));
  }
  async reject(nodeId: number, reason = "", o?: CallOptions): Promise<HandshakeResult> {
    return toHandshake(nodeId, await this.wrap("reject", this.driver.reject(nodeId, reason, o)));
  }
  async untrust(nodeId: number, o?: CallOptions): Promise<HandshakeResult> {
    return toHandshake(nodeId, await this.wrap("untrust", this.driver.untrust(nodeId, o)));
  }
  async pending(o?: CallOptions): Promise<PendingRequest[]> {
    return toPending(await this.wrap("pending", this.driver.pending(o)));
  }
  async trusted(o?: CallOptions): Promise<TrustedPeer[]> {
    return toTrusted(await this.wrap("trust", this.driver.trusted(o)));
  }

  // ---------- streams ----------
  private async dialRaw(target: Target, port: number, o: CallOptions | undefined, what: string): Promise<{ c: DriverConn; a: string }> {
    checkPort(port);
    const addr = await this.resolve(target, o);
    const a = formatAddr(addr);
    try {
      return { c: await this.driver.dial(addr, port, o), a };
    } catch (e) {
      if (e instanceof PilotError && (e.code === "aborted" || e.code === "timeout")) throw e;
      throw new PilotError("connection_failed", `cannot connect to ${a} ${what}: ${(e as Error).message}`, reach(a));
    }
  }

  /** Open a stream to a port of a node. */
  async dial(target: Target, port: number, o?: CallOptions): Promise<Connection> {
    return new Connection((await this.dialRaw(target, port, o, `port ${port}`)).c);
  }

  /** Bind a port; the Listener is an async iterable of inbound connections. `signal` closes it. */
  async listen(port: number, o?: CallOptions): Promise<Listener> {
    checkPort(port);
    const l = await this.wrap("listen", this.driver.listen(port, o));
    return new Listener(l, o?.signal);
  }

  /** Disconnect any connection by ID (waits for the daemon's confirmation). */
  async disconnect(connId: number, o?: CallOptions): Promise<void> {
    await this.wrap("disconnect", this.driver.disconnect(connId, o));
  }

  // ---------- data exchange (port 1001) ----------
  /**
   * Run `fn` over a fresh connection to the target's data-exchange port. The signal closes the
   * connection; anything but a PilotError is reported as connection_failed.
   */
  private async overDataExchange<T>(target: Target, o: CallOptions, fn: (c: ByteDuplex, a: string) => Promise<T>): Promise<T> {
    const { c, a } = await this.dialRaw(target, PORT_DATAEXCHANGE, o, "(data exchange port 1001)");
    const onAbort = () => c.close();
    o.signal?.addEventListener("abort", onAbort, { once: true });
    try {
      return await fn(c, a);
    } catch (e) {
      if (o.signal?.aborted) throw abortError("send", o.signal);
      if (e instanceof PilotError) throw e;
      throw new PilotError("connection_failed", `send to ${a}: ${(e as Error).message}`, reach(a));
    } finally {
      o.signal?.removeEventListener("abort", onAbort);
      c.close();
    }
  }

  /**
   * Send a message to a node's inbox (an object is sent as JSON, at most 16 MiB). Resolves once the
   * receiver acknowledged it; fails with `timeout` when no acknowledgement came within `timeoutMs`
   * (default 30 s), `refused` when the receiver could not store it.
   */
  async sendMessage(target: Target, data: string | Uint8Array | object, o: CallOptions & { type?: MessageType } = {}): Promise<SendMessageResult> {
    const type: MessageType = o.type ?? (data instanceof Uint8Array ? "binary" : typeof data === "string" ? "text" : "json");
    if (!Object.hasOwn(MESSAGE_TYPES, type)) throw new PilotError("invalid_argument", `unknown type ${JSON.stringify(type)} (use text, json, or binary)`);
    const b = data instanceof Uint8Array ? data : te.encode(typeof data === "string" ? data : JSON.stringify(data));
    if (b.length > MAX_FRAME_PAYLOAD) throw new PilotError("invalid_argument", `message too large: ${b.length} bytes (max ${MAX_FRAME_PAYLOAD})`, "send large data with sendFile");
    if (o.signal?.aborted) throw abortError("send_message", o.signal);
    return this.overDataExchange(target, o, async (c, a) => {
      const r = await sendMessageOver(c, type, b, o.timeoutMs ?? 30_000, o.signal);
      return { target: a, type, bytes: r.bytes, ack: r.ack };
    });
  }

  /**
   * Send a file (a path on this machine, or a name and its bytes) to a node's received/ directory.
   * Any size toward pilot-ts receivers, resuming where an interrupted send of the same file stopped;
   * toward receivers without that extension at most 16 MiB (larger: code `unsupported`, nothing
   * sent). Resolves only after the receiver acknowledged the stored file. The file is hashed
   * (SHA-256) before connecting. `timeoutMs` (default 60 s) bounds the dial and each wait for the
   * receiver, not the whole transfer; `signal` stops it (code `aborted`; a later send resumes).
   */
  async sendFile(
    target: Target,
    file: string | { name: string; data: Uint8Array },
    o: CallOptions & {
      onProgress?: (p: SendFileProgress) => void;
      /** @deprecated ignored: the receiver chooses the chunk size */
      chunkBytes?: number;
    } = {},
  ): Promise<SendFileResult> {
    if (o.signal?.aborted) throw abortError("send_file", o.signal);
    const src: FileSource = typeof file === "string" ? await openFileSource(file) : bytesSource(file.name, file.data);
    const timeoutMs = o.timeoutMs ?? 60_000;
    const onProgress = o.onProgress && progressOf(o.onProgress);
    try {
      try {
        encodeFileNameHeader(src.name); // a name the frame cannot carry fails before the file is hashed
      } catch (e) {
        throw new PilotError("invalid_argument", (e as Error).message, (e as { hint?: string }).hint);
      }
      onProgress?.({ phase: "hashing", done: 0, acked: 0, total: src.size });
      let sha256: string;
      try {
        sha256 = await fileDigest(src, (done, total) => onProgress?.({ phase: "hashing", done, acked: 0, total }), o.signal);
      } catch (e) {
        if (o.signal?.aborted) throw abortError("send_file", o.signal);
        throw e;
      }
      return await this.overDataExchange(target, { ...o, timeoutMs }, async (c, a) => {
        const r = await sendFileOver(c, src, { sha256, replyTimeoutMs: timeoutMs, signal: o.signal, onProgress });
        return { filename: src.name, bytes: r.bytes, destination: a, sha256: r.sha256, ack: r.ack, mode: r.mode, resumedFrom: r.resumedFrom };
      });
    } finally {
      await src.close();
    }
  }

  /** Messages in this node's inbox, oldest first. */
  async inbox(o?: CallOptions): Promise<InboxMessage[]> {
    if (o?.signal?.aborted) throw abortError("inbox", o.signal);
    return readInbox(this.dataDir);
  }
  /** Files in this node's received/ directory. */
  async received(o?: CallOptions): Promise<ReceivedFile[]> {
    if (o?.signal?.aborted) throw abortError("received", o.signal);
    return readReceived(this.dataDir);
  }
  /** Delete inbox messages (all, or by ID). Returns how many were removed. */
  async clearInbox(ids?: string[], o?: CallOptions): Promise<number> {
    if (o?.signal?.aborted) throw abortError("clear_inbox", o.signal);
    return clearEntries(this.dataDir, "inbox", ids);
  }
  /** Delete received files (all, or by name). */
  async clearReceived(names?: string[], o?: CallOptions): Promise<number> {
    if (o?.signal?.aborted) throw abortError("clear_received", o.signal);
    return clearEntries(this.dataDir, "received", names);
  }
  /**
   * Wait for an inbox message: the oldest one whose ID is not in `seen`, or, without `seen`, the
   * first one that arrives after the call. Resolves null when `timeoutMs` passes without one.
   */
  waitForMessage(o: CallOptions & { seen?: ReadonlySet<string> | Iterable<string>; from?: string } = {}): Promise<InboxMessage | null> {
    const seen = o.seen === undefined ? undefined : o.seen instanceof Set ? (o.seen as Set<string>) : new Set(o.seen);
    return waitForInbox(this.dataDir, { ...o, seen });
  }

  // ---------- event stream (port 1002) ----------
  /** Publish an event on a topic of a node's broker (topics up to 1024 bytes, payloads up to 16 MiB). */
  async publish(target: Target, topic: string, data: string | Uint8Array, o?: CallOptions): Promise<PublishResult> {
    const b = typeof data === "string" ? te.encode(data) : data;
    // The first event on a connection is its subscription, every later one a publication.
    const sub = encodeEvent(() => encodeEventMessage({ kind: "subscribe", topic }));
    const pub = encodeEvent(() => encodeEventMessage({ kind: "publish", topic, payload: b }));
    const { c, a } = await this.dialRaw(target, PORT_EVENTSTREAM, o, "(event stream port 1002)");
    try {
      await this.wrap("publish", c.write(sub));
      await this.wrap("publish", c.write(pub));
    } finally {
      c.close();
    }
    return { target: a, topic, bytes: b.length };
  }

  /** Subscribe to a topic ("*" = all) on a node's broker; iterate the result with `for await`. */
  async subscribe(target: Target, topic: string, o?: CallOptions): Promise<Subscription> {
    const sub = encodeEvent(() => encodeEventMessage({ kind: "subscribe", topic }));
    const { c, a } = await this.dialRaw(target, PORT_EVENTSTREAM, o, "(event stream port 1002)");
    try {
      await c.write(sub);
    } catch (e) {
      c.close();
      throw new PilotError("connection_failed", `subscribe on ${a}: ${(e as Error).message}`, reach(a));
    }
    return new Subscription(c, a, topic, o?.signal);
  }

  // ---------- diagnostics ----------
  /** Round trips to the node's echo port (one connection per ping, like pilotctl ping). */
  async ping(target: Target, o: CallOptions & { count?: number; intervalMs?: number } = {}): Promise<PingResult> {
    const addr = await this.resolve(target, o);
    const a = formatAddr(addr);
    const count = o.count ?? 1;
    const results: PingReply[] = [];
    for (let i = 0; i < count; i++) {
      if (i > 0 && o.intervalMs) await sleep(o.intervalMs, o.signal);
      const t0 = performance.now();
      const rtt = () => Math.round((performance.now() - t0) * 1000) / 1000;
      let c: DriverConn;
      try {
        c = await this.driver.dial(addr, PORT_ECHO, o);
      } catch (e) {
        if ((e as PilotError).code === "aborted") throw e;
        results.push({ seq: i, bytes: 0, rttMs: rtt(), error: (e as Error).message });
        continue;
      }
      try {
        await c.write(`ping-${i}`);
        const r = await c.read(o);
        results.push({ seq: i, bytes: r ? r.length : 0, rttMs: rtt() });
      } catch (e) {
        if ((e as PilotError).code === "aborted") throw e;
        results.push({ seq: i, bytes: 0, rttMs: rtt(), error: (e as Error).message });
      } finally {
        c.close();
      }
    }
    return { target: a, results };
  }

  /** Throughput through the node's echo port: send `bytes` (default 1 MiB), count the echo. */
  async bench(target: Target, o: CallOptions & { bytes?: number } = {}): Promise<BenchResult> {
    const total = Math.max(0, Math.floor(o.bytes ?? 1 << 20));
    const { c, a } = await this.dialRaw(target, PORT_ECHO, o, "echo port");
    let got = 0;
    const t0 = performance.now();
    let fail: (e: Error) => void = () => {};
    const done = new Promise<boolean>((res, rej) => {
      fail = rej;
      c.onData = (ch) => {
        got += ch.length;
        if (got >= total) res(false);
      };
      c.onEnd = () => res(false);
      if (total === 0) res(false);
    });
    const disarm = arm({ timeoutMs: o.timeoutMs ?? 120_000, signal: o.signal }, "bench", (e) => fail(e));
    try {
      const chunk = new Uint8Array(64 * 1024).map((_, i) => i & 255);
      for (let off = 0; off < total; off += chunk.length) await this.wrap("write", c.write(chunk.subarray(0, Math.min(chunk.length, total - off))));
      const sendMs = performance.now() - t0;
      let timedOut = false;
      try {
        await done;
      } catch (e) {
        if ((e as PilotError).code !== "timeout") throw e;
        timedOut = true;
      }
      const totalMs = performance.now() - t0;
      return { target: a, sentBytes: total, recvBytes: got, sendMs, totalMs, totalMbps: totalMs > 0 ? got / (totalMs / 1000) / 1048576 : 0, timedOut };
    } finally {
      disarm();
      c.close();
    }
  }

  // ---------- datagrams ----------
  /** Send one unreliable datagram to a port of a node. */
  async sendDatagram(target: Target, port: number, data: string | Uint8Array, o?: CallOptions): Promise<void> {
    checkPort(port);
    const addr = await this.resolve(target, o);
    await this.wrap("sendto", this.driver.sendTo(addr, port, data));
  }

  /** Datagrams arriving at this node (optionally only those for `port`), as an async iterable. */
  async *datagrams(o: CallOptions & { port?: number } = {}): AsyncGenerator<Datagram, void, undefined> {
    for (;;) {
      let d;
      try {
        d = await this.driver.recvFrom({ signal: o.signal, timeoutMs: o.timeoutMs });
      } catch (e) {
        if ((e as PilotError).code === "aborted" || (e as PilotError).code === "timeout") return;
        throw e;
      }
      if (o.port !== undefined && d.dstPort !== o.port) continue;
      yield { src: formatAddr(d.src), srcPort: d.srcPort, dstPort: d.dstPort, data: d.data };
    }
  }

  /** Close the IPC connection; the daemon releases this client's ports and connections. */
  close(): void {
    if (!this.driver.closed) this.driver.close();
  }
  [Symbol.asyncDispose](): Promise<void> {
    this.close();
    return Promise.resolve();
  }
}

/** An event the protocol cannot carry (topic above 1024 bytes, payload above 16 MiB) is a usage error. */
function encodeEvent(enc: () => Uint8Array): Uint8Array {
  try {
    return enc();
  } catch (e) {
    throw new PilotError("invalid_argument", (e as Error).message, (e as { hint?: string }).hint);
  }
}

/** The transfer's progress in the SDK's shape. */
function progressOf(cb: (p: SendFileProgress) => void): (p: FileProgress) => void {
  return (p) => cb({
    phase: p.phase,
    sentBytes: p.phase === "hashing" ? 0 : p.done,
    totalBytes: p.total,
    hashedBytes: p.phase === "hashing" ? p.done : p.total,
    ackedBytes: p.acked,
  });
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((res, rej) => {
    const disarm = arm({ signal }, "sleep", rej);
    setTimeout(() => {
      disarm();
      res();
    }, ms);
  });
}
