// Webhooks (docs/protocol.md §10.6): each event is POSTed as JSON to the configured URL by one background
// worker, in emission order, 5 s timeout per request, no retries; bounded queue (1024) with drop
// on overflow and a counter. emit() never blocks and never throws.
//
// Fixes (docs/differences.md): changing the URL does not block the caller while the old
// queue drains — each queued event remembers the URL it was emitted for; emit after stop() is a
// no-op (no closed-queue panic); the daemon routes every service's events through this one
// dispatcher at emit time, so a runtime set-webhook also applies to pub/sub events.
import type { ServiceContext, ServiceHandle } from "./context.ts";
import { goJson } from "../../proto/gojson.ts";
import { errText, goString } from "./util.ts";

export const WEBHOOK_QUEUE = 1024;
export const WEBHOOK_TIMEOUT_MS = 5000;

/** UTC RFC 3339 with fractional seconds, trailing zeros trimmed (Go RFC3339Nano). */
export function rfc3339NanoUtc(ms: number): string {
  const iso = new Date(ms).toISOString(); // 2026-01-15T12:34:56.123Z
  const base = iso.slice(0, 19);
  const frac = iso.slice(20, 23).replace(/0+$/, "");
  return base + (frac ? "." + frac : "") + "Z";
}

/** Struct-order body: {"event","node_id","timestamp","data"?}; data Go-sorted, omitted when absent. */
export function webhookBody(event: string, nodeId: number, ms: number, data?: Record<string, unknown>): string {
  let s = '{"event":' + goString(event) + ',"node_id":' + (nodeId >>> 0) + ',"timestamp":' + goString(rfc3339NanoUtc(ms));
  if (data && Object.keys(data).length > 0) s += ',"data":' + goJson(data);
  return s + "}";
}

export interface WebhookStats {
  queued: number;
  delivered: number;
  failed: number;
  dropped: number;
}

export interface WebhookHandle extends ServiceHandle {
  setUrl(url: string): void;
  url(): string;
  emit(event: string, data?: Record<string, unknown>): void;
  stats(): WebhookStats;
  /** Resolves when the queue is empty (tests, shutdown). */
  idle(): Promise<void>;
}

export function startWebhooks(ctx: Pick<ServiceContext, "nodeId" | "log" | "now">, initialUrl = ""): WebhookHandle {
  let url = initialUrl;
  let stopped = false;
  let running = false;
  const q: { url: string; body: string }[] = [];
  let head = 0;
  const stats: WebhookStats = { queued: 0, delivered: 0, failed: 0, dropped: 0 };
  let idleWaiters: (() => void)[] = [];

  const worker = async () => {
    if (running) return;
    running = true;
    while (head < q.length && !stopped) {
      const item = q[head]!;
      q[head++] = undefined as unknown as { url: string; body: string };
      stats.queued--;
      try {
        const res = await fetch(item.url, {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: item.body,
          signal: AbortSignal.timeout(WEBHOOK_TIMEOUT_MS),
        });
        await res.arrayBuffer().catch(() => {});
        if (res.status >= 400) {
          stats.failed++;
          ctx.log.warn("webhook delivery failed", { status: res.status });
        } else stats.delivered++;
      } catch (e) {
        stats.failed++;
        ctx.log.warn("webhook delivery failed", { error: errText(e) });
      }
    }
    if (head >= q.length) { q.length = 0; head = 0; }
    running = false;
    const w = idleWaiters;
    idleWaiters = [];
    for (const f of w) f();
  };

  return {
    setUrl(u: string) { url = u; },
    url: () => url,
    emit(event, data) {
      if (url === "" || stopped) return;
      if (stats.queued >= WEBHOOK_QUEUE) {
        stats.dropped++;
        ctx.log.warn("webhook queue full, dropping event", { event });
        return;
      }
      try {
        q.push({ url, body: webhookBody(event, ctx.nodeId(), ctx.now ? ctx.now() : Date.now(), data) });
      } catch {
        return;
      }
      stats.queued++;
      void worker();
    },
    stats: () => ({ ...stats }),
    idle: () => (running || head < q.length ? new Promise<void>((r) => idleWaiters.push(r)) : Promise.resolve()),
    stop() {
      stopped = true;
      q.length = 0;
      head = 0;
      stats.queued = 0;
    },
  };
}
