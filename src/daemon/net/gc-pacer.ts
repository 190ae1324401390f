// Returns memory after bulk traffic. Every datagram leaves short-lived buffers behind (cipher
// output, plaintext, socket reads); after a bulk transfer the collector's own pace left a daemon
// 20-40 MiB above its idle size for a long time. One full collection once the tunnel socket has
// been quiet for about IDLE_FULL_MS, after at least FULL_AFTER bytes went through it, brings it back.
// (Collections paced during the transfer itself were measured too: they cost CPU and did not lower
// the peak, which is mostly allocator pages rather than live JS data.)
const IDLE_FULL_MS = 1500;
const FULL_AFTER = 32 << 20;

type Gc = () => void;
const bunGc: Gc | null = typeof Bun !== "undefined" && typeof Bun.gc === "function" ? () => Bun.gc(true) : null;

// Optional, for memory-constrained hosts (PILOT_GC_EVERY_MIB=N, default off): a JavaScriptCore full
// collection every N MiB of tunnel traffic, so the datagram and socket buffers a transfer leaves
// behind are reclaimed on a byte schedule instead of the collector's own. Measured with N = 32:
// peak RSS with 8 parallel streams 114-127 MiB instead of 144-164, a single stream's peak 98-103
// instead of 104-108, at about 5 % more CPU per MB (docs/performance.md).
const EVERY_BYTES = Math.max(0, Number(process.env.PILOT_GC_EVERY_MIB) || 0) * 1048576;
let jscFull: Gc | null | undefined;
function periodicGc(): Gc | null {
  if (jscFull === undefined) {
    try {
      const jsc = require("bun:jsc") as { fullGC?: () => unknown };
      jscFull = typeof jsc.fullGC === "function" ? () => void jsc.fullGC!() : null;
    } catch {
      jscFull = null;
    }
  }
  return jscFull;
}

export class GcPacer {
  private bytes = 0;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private seen = 0;
  collections = 0;

  private sincePeriodic = 0;
  /** Collections made on the byte schedule (PILOT_GC_EVERY_MIB). */
  periodicCollections = 0;

  constructor(
    private readonly gc: Gc | null = bunGc,
    private readonly idleMs = IDLE_FULL_MS,
    private readonly everyBytes = EVERY_BYTES,
    private readonly periodic: Gc | null = everyBytes > 0 ? periodicGc() : null,
  ) {}

  /** `n` bytes went through the socket. */
  note(n: number): void {
    if (this.periodic && (this.sincePeriodic += n) >= this.everyBytes) {
      this.sincePeriodic = 0;
      this.periodicCollections++;
      this.periodic();
    }
    if (!this.gc) return;
    this.bytes += n;
    if (this.bytes >= FULL_AFTER && !this.timer) this.arm();
  }

  /** Check every IDLE_FULL_MS; collect at the first check that saw no traffic since the last. */
  private arm(): void {
    this.seen = this.bytes;
    this.timer = setTimeout(() => {
      this.timer = null;
      if (this.bytes !== this.seen) return this.arm();
      this.bytes = 0;
      this.collections++;
      this.gc!();
    }, this.idleMs);
    (this.timer as { unref?: () => void }).unref?.();
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }
}
