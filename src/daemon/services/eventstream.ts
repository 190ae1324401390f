// Event stream, port 1002: the built-in broker and client helpers.
import { formatSocketAddr } from "../../proto/addr.ts";
import { PORT_EVENTSTREAM } from "../../proto/types.ts";
import { encodeEvent, EventReader, MAX_EVENT_PAYLOAD, type StreamEvent, topicText } from "../../proto/eventstream.ts";
import { TransportError, type StreamConn } from "../../transport/api.ts";
import type { ServiceContext, ServiceHandle } from "./context.ts";
import { AsyncQueue, timeoutArm } from "../../sys/queue.ts";
import { errText, utf8, utf8Lossy } from "./util.ts";

// The codec lives in src/proto/eventstream.ts; re-exported for existing importers.
export * from "../../proto/eventstream.ts";

// ---------------------------------------------------------------------------------------------
// Broker (docs/protocol.md §10.4)

export interface BrokerOptions {
  port?: number;
  /**
   * Per-subscriber backlog bound (bytes) once its stream stops accepting data. Fix of
   * docs/differences.md: the reference blocks every publisher on a stalled subscriber; here each
   * subscriber has its own bounded queue and publishers never wait.
   */
  maxQueuedBytes?: number;
  /** "drop" (default): discard new events for a full subscriber and count them; "disconnect": close it. */
  overflow?: "drop" | "disconnect";
}

interface Sub {
  conn: StreamConn;
  remote: string;
  topicKey: string | null; // null until the first event (subscription) arrived
  topic: string; // display text
  congested: boolean;
  backlog: Uint8Array[];
  backlogBytes: number;
  dropped: number;
  dead: boolean;
}

export interface BrokerStats {
  subscribers: number;
  published: number;
  forwarded: number;
  /** events dropped because a subscriber's bounded queue was full */
  dropped: number;
}

export interface BrokerHandle extends ServiceHandle {
  stats(): BrokerStats;
}

const keyOf = (topic: Uint8Array) => Buffer.from(topic.buffer, topic.byteOffset, topic.length).toString("latin1");

export function startEventStream(ctx: ServiceContext, opts: BrokerOptions = {}): BrokerHandle {
  const maxQueued = opts.maxQueuedBytes ?? 4 * 1024 * 1024;
  const overflow = opts.overflow ?? "drop";
  const topics = new Map<string, Set<Sub>>(); // insertion order = subscription order
  const all = new Set<Sub>();
  const stats: BrokerStats = { subscribers: 0, published: 0, forwarded: 0, dropped: 0 };

  const remove = (s: Sub) => {
    if (s.dead) return;
    s.dead = true;
    all.delete(s);
    s.backlog = [];
    if (s.topicKey !== null) {
      const set = topics.get(s.topicKey);
      if (set) {
        set.delete(s);
        if (set.size === 0) topics.delete(s.topicKey);
      }
      stats.subscribers--;
      if (s.topicKey !== "") ctx.webhook("pubsub.unsubscribed", { topic: s.topic, remote: s.remote });
    }
    try { s.conn.end(); } catch {}
  };

  // Writes to one connection only ever happen from this function and the drain handler, on the
  // single JS thread: per-connection writes are serialized (a fix: docs/differences.md).
  const deliver = (s: Sub, raw: Uint8Array) => {
    if (s.dead) return;
    if (s.congested) {
      if (s.backlogBytes + raw.length > maxQueued) {
        s.dropped++;
        stats.dropped++;
        if (overflow === "disconnect") remove(s);
        return;
      }
      s.backlog.push(raw);
      s.backlogBytes += raw.length;
      return;
    }
    try {
      stats.forwarded++;
      if (!s.conn.write(raw)) s.congested = true;
    } catch {
      remove(s); // write error: subscriber gone (reference behaviour)
    }
  };

  const onDrain = (s: Sub) => {
    s.congested = false;
    while (s.backlog.length > 0 && !s.congested && !s.dead) {
      const raw = s.backlog.shift()!;
      s.backlogBytes -= raw.length;
      try {
        stats.forwarded++;
        if (!s.conn.write(raw)) s.congested = true;
      } catch {
        remove(s);
      }
    }
  };

  const l = ctx.listen(opts.port ?? PORT_EVENTSTREAM, (conn) => {
    const s: Sub = {
      conn, remote: formatSocketAddr(conn.remoteAddr, conn.remotePort), topicKey: null, topic: "",
      congested: false, backlog: [], backlogBytes: 0, dropped: 0, dead: false,
    };
    all.add(s);
    conn.onDrain = () => onDrain(s);
    const reader = new EventReader((ev, raw) => {
      if (s.dead) return;
      if (s.topicKey === null) {
        // First event = the connection's one subscription; payload ignored.
        s.topicKey = keyOf(ev.topic);
        s.topic = topicText(ev);
        let set = topics.get(s.topicKey);
        if (!set) topics.set(s.topicKey, (set = new Set()));
        set.add(s);
        stats.subscribers++;
        ctx.webhook("pubsub.subscribed", { topic: s.topic, remote: s.remote });
        return;
      }
      stats.published++;
      const k = keyOf(ev.topic);
      const exact = topics.get(k);
      if (exact) for (const t of exact) if (t !== s) deliver(t, raw);
      if (k !== "*") {
        const star = topics.get("*");
        if (star) for (const t of star) if (t !== s) deliver(t, raw);
      }
      ctx.webhook("pubsub.published", { topic: topicText(ev), size: ev.payload.length, from: s.remote });
    });
    conn.onData = (chunk) => {
      try {
        reader.push(chunk);
      } catch (e) {
        ctx.log.warn("eventstream: bad event", { error: errText(e), remote: s.remote });
        remove(s);
      }
    };
    conn.onEnd = () => remove(s);
    conn.onClose = () => remove(s);
  });

  return {
    stats: () => ({ ...stats }),
    stop() {
      l.close();
      for (const s of [...all]) {
        remove(s);
        try { s.conn.abort(); } catch {}
      }
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Client helpers (docs/protocol.md §10.4)

export class EventClient {
  private queue = new AsyncQueue<StreamEvent>();
  /** When set, events are delivered here instead of being queued for recv(). */
  onEvent: ((e: StreamEvent) => void) | null = null;

  constructor(readonly conn: StreamConn) {
    const reader = new EventReader((ev) => {
      const e = { topic: ev.topic.slice(), payload: ev.payload.slice() };
      if (this.onEvent) return this.onEvent(e);
      this.queue.push(e);
    });
    conn.onData = (chunk) => {
      try {
        reader.push(chunk);
      } catch (e) {
        this.fail(e as Error);
        conn.abort();
      }
    };
    conn.onEnd = () => this.fail(new TransportError("closed", "connection closed by peer"));
    conn.onClose = (err) => this.fail(err ?? new TransportError("closed", "connection closed"));
  }

  private fail(e: Error) {
    this.queue.fail(e);
  }

  /** First event on the connection: the subscription (empty payload). */
  subscribe(topic: string | Uint8Array): boolean {
    return this.conn.write(encodeEvent(topic));
  }

  publish(topic: string | Uint8Array, payload: Uint8Array | string): boolean {
    return this.conn.write(encodeEvent(topic, typeof payload === "string" ? utf8.encode(payload) : payload));
  }

  recv(timeoutMs = 0): Promise<StreamEvent> {
    return this.queue.take(timeoutArm(timeoutMs, () => new TransportError("timeout", `no event within ${timeoutMs} ms`)));
  }

  close(): void {
    this.conn.end();
  }
}
