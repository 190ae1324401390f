// The one async queue (src/sys/queue.ts).
import { describe, expect, test } from "bun:test";
import { AsyncQueue, timeoutArm } from "../src/sys/queue.ts";

describe("AsyncQueue", () => {
  test("in order; waiters served before queuing; bounded with oldest dropped", async () => {
    const q = new AsyncQueue<number>(2);
    const first = q.take();
    q.push(1);
    q.push(2);
    q.push(3);
    q.push(4);
    expect(await first).toBe(1);
    expect(q.dropped).toBe(1);
    expect(q.poll()).toBe(3);
    expect(await q.take()).toBe(4);
    expect(q.poll()).toBeUndefined();
  });

  test("end: queued items first, then the end value for every take", async () => {
    const q = new AsyncQueue<string | null>();
    q.push("a");
    const late = new AsyncQueue<string | null>();
    const pending = late.take();
    late.end(null);
    q.end(null);
    expect(await pending).toBeNull();
    expect(await q.take()).toBe("a");
    expect(await q.take()).toBeNull();
    expect(await q.take()).toBeNull();
  });

  test("fail: pending and later takes reject with the first error, after queued items", async () => {
    const q = new AsyncQueue<number>();
    const pending = q.take();
    q.fail(new Error("first"));
    q.fail(new Error("second"));
    await expect(pending).rejects.toThrow("first");
    const q2 = new AsyncQueue<number>();
    q2.push(7);
    q2.fail(new Error("gone"));
    expect(await q2.take()).toBe(7);
    await expect(q2.take()).rejects.toThrow("gone");
  });

  test("timeout cancels one take; the next item goes to the next take", async () => {
    const q = new AsyncQueue<number>();
    await expect(q.take(timeoutArm(5, () => new Error("no item")))).rejects.toThrow("no item");
    q.push(9);
    expect(await q.take(timeoutArm(1000, () => new Error("x")))).toBe(9);
    expect(timeoutArm(0, () => new Error("x"))).toBeUndefined();
  });

  test("abort via a custom arm; disarm runs when the take settles", async () => {
    const q = new AsyncQueue<number>();
    const ac = new AbortController();
    let disarmed = 0;
    const arm = (cancel: (e: Error) => void) => {
      const on = () => cancel(new Error("aborted"));
      ac.signal.addEventListener("abort", on);
      return () => {
        disarmed++;
        ac.signal.removeEventListener("abort", on);
      };
    };
    const a = q.take(arm);
    ac.abort();
    await expect(a).rejects.toThrow("aborted");
    const b = q.take(arm);
    q.push(1);
    expect(await b).toBe(1);
    expect(disarmed).toBe(2);
  });
});

describe("withTimeout", () => {
  test("value in time; error after the deadline; a late value goes to `late`", async () => {
    const { withTimeout } = await import("../src/sys/queue.ts");
    expect(await withTimeout(Promise.resolve(3), 1000)).toBe(3);
    await expect(withTimeout(Promise.reject(new Error("own")), 1000)).rejects.toThrow("own");
    let release!: (v: string) => void;
    const slow = new Promise<string>((r) => (release = r));
    const got: string[] = [];
    await expect(withTimeout(slow, 5, () => new Error("deadline"), (v) => got.push(v))).rejects.toThrow("deadline");
    release("conn");
    await slow;
    await Promise.resolve();
    expect(got).toEqual(["conn"]);
  });
});
