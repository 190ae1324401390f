// requestOnce: one request and its reply on a fresh daemon connection (pilotctl info / peers /
// connections). A real Unix-socket server plays the daemon with scripted byte sequences; every
// answer must equal what the Driver gives for the same bytes.
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { requestOnce } from "../src/client/ipc-once.ts";
import { Driver } from "../src/client/driver.ts";
import { CMD_INFO, CMD_INFO_OK, encodeIpcFrame } from "../src/proto/ipc.ts";

const dir = mkdtempSync(join(tmpdir(), "pilot-ipc-once-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;

type Script = (write: (b: Uint8Array) => void, end: () => void) => void;

/** A Unix-socket server that, on the first request byte, runs `script`; records what it received. */
function serve(script: Script): { path: string; got: number[][]; stop(): void } {
  const path = join(dir, `s${n++}.sock`);
  const got: number[][] = [];
  const srv = Bun.listen<undefined>({
    unix: path,
    socket: {
      data(s, b) {
        got.push([...b]);
        script((x) => s.write(x), () => s.end());
      },
    },
  });
  return { path, got, stop: () => srv.stop(true) };
}

const info = { node_id: 7, address: "0:0000.0000.0007", hostname: "h<&>" };
const infoFrame = encodeIpcFrame({ cmd: "InfoOK", json: info });

async function both(path: string): Promise<[unknown, unknown]> {
  const once = await requestOnce(path, { cmd: "Info" }, CMD_INFO_OK, "info").then((m) => m, (e: Error & { code?: string }) => ({ code: e.code, message: e.message }));
  const drv = await (async () => {
    let d: Driver;
    try {
      d = await Driver.connect(path);
    } catch (e) {
      return { code: (e as { code?: string }).code, message: (e as Error).message };
    }
    try {
      return await d.request({ cmd: "Info" }, CMD_INFO_OK, "info");
    } catch (e) {
      return { code: (e as { code?: string }).code, message: (e as Error).message };
    } finally {
      d.close();
    }
  })();
  return [once, drv];
}

describe("requestOnce", () => {
  test("sends the request frame and returns the decoded reply", async () => {
    const s = serve((w) => w(infoFrame));
    try {
      const m = await requestOnce(s.path, { cmd: "Info" }, CMD_INFO_OK, "info");
      expect(m).toEqual({ cmd: "InfoOK", json: info });
      expect(s.got[0]).toEqual([0, 0, 0, 1, CMD_INFO]);
      const [a, b] = await both(s.path);
      expect(a).toEqual(b);
    } finally {
      s.stop();
    }
  });

  test("a reply split into single bytes, after an empty frame and an undecodable one", async () => {
    // Zero-length frames are skipped; an InfoOK whose body is not JSON is skipped like the Driver does.
    const bad = new Uint8Array([0, 0, 0, 3, CMD_INFO_OK, 0x7b, 0x7b]);
    const all = new Uint8Array([0, 0, 0, 0, ...bad, ...infoFrame]);
    const s = serve((w) => {
      let i = 0;
      const t = setInterval(() => {
        if (i >= all.length) return clearInterval(t);
        w(all.subarray(i, i + 1));
        i++;
      }, 0);
    });
    try {
      const [a, b] = await both(s.path);
      expect(a).toEqual({ cmd: "InfoOK", json: info });
      expect(a).toEqual(b);
    } finally {
      s.stop();
    }
  });

  test("an Error reply: connection_failed with the Driver's text", async () => {
    const s = serve((w) => w(encodeIpcFrame({ cmd: "Error", code: 1, message: "busy" })));
    try {
      const [a, b] = await both(s.path);
      expect(a).toEqual({ code: "connection_failed", message: "info: daemon: busy" });
      expect(a).toEqual(b);
    } finally {
      s.stop();
    }
  });

  test("the daemon closes before replying: daemon disconnected", async () => {
    const s = serve((_w, end) => end());
    try {
      const [a, b] = await both(s.path);
      expect(a).toEqual({ code: "connection_failed", message: "daemon disconnected" });
      expect(a).toEqual(b);
    } finally {
      s.stop();
    }
  });

  test("an oversized frame header ends the request", async () => {
    const s = serve((w) => w(new Uint8Array([0x7f, 0xff, 0xff, 0xff, CMD_INFO_OK])));
    try {
      const [a, b] = await both(s.path);
      expect((a as { code: string }).code).toBe("connection_failed");
      expect(a).toEqual(b);
    } finally {
      s.stop();
    }
  });

  test("no socket: not_running with the start hint", async () => {
    const p = join(dir, "missing.sock");
    const e = await requestOnce(p, { cmd: "Info" }, CMD_INFO_OK, "info").catch((x) => x as Error & { code: string; hint: string });
    expect((e as { code: string }).code).toBe("not_running");
    expect((e as { hint: string }).hint).toBe("start the daemon with: pilotctl daemon start");
    const [a, b] = await both(p);
    expect(a).toEqual(b);
  });
});
