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

export class GcPacer {
  private bytes = 0;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private seen = 0;
  collections = 0;

  constructor(
    private readonly gc: Gc | null = bunGc,
    private readonly idleMs = IDLE_FULL_MS,
  ) {}

  /** `n` bytes went through the socket. */
  note(n: number): void {
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
