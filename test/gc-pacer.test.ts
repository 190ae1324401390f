// GcPacer: one full collection once the tunnel socket has gone quiet after bulk traffic.
import { expect, test } from "bun:test";
import { GcPacer } from "../src/daemon/net/gc-pacer.ts";
import { until } from "./helpers/until.ts";

test("collects once after traffic stops, not during it, not for small traffic", async () => {
  let n = 0;
  const p = new GcPacer(() => n++, 50);
  p.note(1 << 20); // below the threshold: nothing armed
  await Bun.sleep(300); // six idle periods
  expect(n).toBe(0);
  for (let i = 0; i < 40; i++) p.note(1 << 20);
  expect(n).toBe(0); // never from inside note()
  await until(async () => n === 1, "the collection after traffic stopped", 5000, 10);
  p.note(1 << 20);
  await Bun.sleep(300);
  expect(n).toBe(1); // the byte count restarted after the collection
  p.stop();
});

test("PILOT_GC_EVERY_MIB schedule: one periodic collection per `every` bytes, none when off", () => {
  let periodic = 0;
  const p = new GcPacer(null, 50, 4 << 20, () => periodic++);
  for (let i = 0; i < 10; i++) p.note(1 << 20);
  expect(periodic).toBe(2); // at 4 and 8 MiB
  expect(p.periodicCollections).toBe(2);
  p.note(3 << 20); // 2 MiB carried over + 3 ≥ 4
  expect(periodic).toBe(3);
  const off = new GcPacer(null, 50, 0, null);
  for (let i = 0; i < 100; i++) off.note(1 << 20);
  expect(off.periodicCollections).toBe(0);
  p.stop();
  off.stop();
});
