// The one atomic file replace (src/sys/atomic-write.ts).
import { describe, expect, test } from "bun:test";
import { mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { atomicWriteFile } from "../src/sys/atomic-write.ts";

describe("atomicWriteFile", () => {
  test("creates parents 0700, file with the exact mode, replaces, leaves no temp file", () => {
    const dir = mkdtempSync(join(tmpdir(), "pilot-aw-"));
    const p = join(dir, "a", "b", "state.json");
    atomicWriteFile(p, "one\n", 0o640);
    expect(readFileSync(p, "utf8")).toBe("one\n");
    expect(statSync(p).mode & 0o777).toBe(0o640);
    expect(statSync(join(dir, "a")).mode & 0o777).toBe(0o700);
    atomicWriteFile(p, new Uint8Array([1, 2, 3]));
    expect([...readFileSync(p)]).toEqual([1, 2, 3]);
    expect(statSync(p).mode & 0o777).toBe(0o600);
    expect(readdirSync(join(dir, "a", "b"))).toEqual(["state.json"]);
  });

  test("a failed write keeps the old content and removes its temp file", () => {
    const dir = mkdtempSync(join(tmpdir(), "pilot-aw-"));
    const p = join(dir, "x");
    writeFileSync(p, "old");
    // Renaming a file over a non-empty directory fails after the temp file was written.
    const target = join(dir, "sub");
    atomicWriteFile(join(target, "keep"), "k");
    expect(() => atomicWriteFile(target, "new")).toThrow();
    expect(readdirSync(dir).sort()).toEqual(["sub", "x"]);
    expect(readFileSync(p, "utf8")).toBe("old");
  });
});
