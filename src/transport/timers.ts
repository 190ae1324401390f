// One min-heap of deadlines for the whole Transport (no timer per segment or per connection).
//
// Lazy scheme: an object owns at most one *live* entry, the one whose time equals its
// `scheduled` field. Moving a deadline later costs nothing (the early entry fires, the owner
// recomputes and re-arms); moving it earlier pushes a new entry and the old one goes stale.

export interface Timed {
  /** Time of this object's live heap entry, Infinity when none. Owned by TimerHeap. */
  scheduled: number;
  onTimer(now: number): void;
}

export class TimerHeap {
  private t: number[] = [];
  private o: Timed[] = [];

  /** Ensure `obj` fires no later than `at`. */
  arm(obj: Timed, at: number): void {
    if (!(at < obj.scheduled)) return;
    obj.scheduled = at;
    const t = this.t, o = this.o;
    let i = t.length;
    t.push(at);
    o.push(obj);
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (t[p] <= at) break;
      t[i] = t[p];
      o[i] = o[p];
      i = p;
    }
    t[i] = at;
    o[i] = obj;
  }

  /** Forget `obj`'s live entry (it becomes stale). */
  disarm(obj: Timed): void {
    obj.scheduled = Infinity;
  }

  private pop(): void {
    const t = this.t, o = this.o;
    const lt = t.pop()!, lo = o.pop()!;
    const n = t.length;
    if (n === 0) return;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const c = r < n && t[r] < t[l] ? r : l;
      if (t[c] >= lt) break;
      t[i] = t[c];
      o[i] = o[c];
      i = c;
    }
    t[i] = lt;
    o[i] = lo;
  }

  /** Earliest live deadline (drops stale heads). */
  next(): number {
    const t = this.t, o = this.o;
    while (t.length > 0 && o[0].scheduled !== t[0]) this.pop();
    return t.length > 0 ? t[0] : Infinity;
  }

  /** Fire every live entry due at `now`. */
  run(now: number): void {
    const t = this.t, o = this.o;
    // bounded loop: objects re-arming at <= now would spin; they must arm strictly later.
    let guard = t.length + 4096;
    while (t.length > 0 && t[0] <= now && guard-- > 0) {
      const at = t[0], obj = o[0];
      this.pop();
      if (obj.scheduled !== at) continue;
      obj.scheduled = Infinity;
      obj.onTimer(now);
    }
  }

  get size(): number {
    return this.t.length;
  }
}
