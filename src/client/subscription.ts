// A topic subscription on a node's event broker (port 1002), read with the shared event codec.
import { EventReader, topicText } from "../proto/eventstream.ts";
import type { DriverConn } from "./driver.ts";
import { type CallOptions, PilotError } from "./errors.ts";
import type { StreamEvent } from "./types.ts";

const td = new TextDecoder();

/** Events of one topic subscription; `for await (const ev of sub)`; close() or the signal ends it. */
export class Subscription implements AsyncIterable<StreamEvent> {
  private queued: StreamEvent[] = [];
  private readonly reader = new EventReader((ev) => this.queued.push({ topic: topicText(ev), data: ev.payload, text: td.decode(ev.payload) }));
  /** @internal */
  constructor(private readonly c: DriverConn, readonly target: string, readonly topic: string, private readonly signal?: AbortSignal) {
    signal?.addEventListener("abort", () => c.close(), { once: true });
  }

  /** Next event; null when the subscription ended (closed, aborted, or the broker went away). */
  async next(o?: CallOptions): Promise<StreamEvent | null> {
    for (;;) {
      const q = this.queued.shift();
      if (q) return q;
      if (this.signal?.aborted) return null;
      const r = await this.c.read(o);
      if (r === null) return null;
      try {
        this.reader.push(r);
      } catch (e) {
        // A broker that breaks the format (or exceeds the 16 MiB bound) ends the subscription.
        this.c.close();
        throw new PilotError("connection_failed", `subscription to ${JSON.stringify(this.topic)} on ${this.target}: ${(e as Error).message}`);
      }
    }
  }

  close(): void {
    this.c.close();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<StreamEvent> {
    try {
      for (;;) {
        const ev = await this.next();
        if (ev === null) return;
        yield ev;
      }
    } finally {
      this.close();
    }
  }
}
