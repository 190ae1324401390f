// Drives the transport's timers from the event loop: one setTimeout armed at the transport's next
// deadline, re-armed after every event (coalesced per microtask turn).

/** What the clock drives (the transport). */
export interface Timed {
  nextDeadline(): number;
  tick(): void;
}

export class TransportClock {
  private timer: ReturnType<typeof setTimeout> | null = null;
  private timerAt = Infinity;
  private kickScheduled = false;
  private stopped = false;

  /** `target` returns the transport once it exists; `now` is the transport's clock (ms). */
  constructor(
    private readonly target: () => Timed | undefined,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** Re-arm the timer after any event that may have changed the next deadline. */
  kick(): void {
    if (this.kickScheduled) return;
    this.kickScheduled = true;
    queueMicrotask(() => {
      this.kickScheduled = false;
      this.arm();
    });
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.timerAt = Infinity;
  }

  private arm(): void {
    const t = this.target();
    if (!t || this.stopped) return;
    const d = t.nextDeadline();
    if (d >= this.timerAt && this.timer) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.timerAt = Infinity;
    if (d === Infinity) return;
    const delay = Math.max(0, d - this.now());
    this.timerAt = d;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.timerAt = Infinity;
      t.tick();
      this.arm();
    }, delay);
  }
}
