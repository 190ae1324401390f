#!/usr/bin/env bun
// Demo HTTP target for the IP gateway: binds a Pilot port through the local daemon and answers
// HTTP/1.1 requests arriving on Pilot streams.
//   GET / and /status  → {"status":"ok","protocol":"pilot","port":<port>}
//   GET /bytes/<N>     → N bytes, byte i = bytePattern(i) (deterministic; tests hash it)
// Keep-alive is supported (Content-Length on every response). The server never closes first
// unless the client asked for `Connection: close` (then after a short linger: Pilot streams have
// no half-close: a FIN ends both directions, so data still in flight towards the side that closed
// is lost; docs/protocol.md §6.10).
//
// Usage: bun examples/http-server.ts [-socket /tmp/pilot.sock] [port]   (default port 80)
// Prints "listening on pilot port <port>" on stdout once bound.
import { Driver, type DriverConn } from "../src/client/driver.ts";

export function bytePattern(i: number): number {
  return (i * 7 + (i >>> 8)) & 0xff;
}

/** The /bytes/<n> body as one buffer (tests use it to compute the expected hash). */
export function patternBody(n: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = bytePattern(i);
  return b;
}

const MAX_BYTES = 1 << 30;
const CHUNK = 256 * 1024;
const enc = new TextEncoder();

function head(status: string, type: string, len: number, close: boolean): Uint8Array {
  return enc.encode(`HTTP/1.1 ${status}\r\nContent-Type: ${type}\r\nContent-Length: ${len}\r\nConnection: ${close ? "close" : "keep-alive"}\r\n\r\n`);
}

async function respond(conn: DriverConn, port: number, method: string, path: string, close: boolean): Promise<void> {
  const p = path.split("?")[0];
  const noBody = method === "HEAD";
  if (p === "/" || p === "/status") {
    const body = enc.encode(JSON.stringify({ status: "ok", protocol: "pilot", port }));
    const h = head("200 OK", "application/json", body.length, close);
    const out = new Uint8Array(h.length + (noBody ? 0 : body.length));
    out.set(h);
    if (!noBody) out.set(body, h.length);
    await conn.write(out);
    return;
  }
  const m = /^\/bytes\/(\d{1,10})$/.exec(p);
  if (m && Number(m[1]) <= MAX_BYTES) {
    const n = Number(m[1]);
    await conn.write(head("200 OK", "application/octet-stream", n, close));
    if (noBody) return;
    const buf = new Uint8Array(Math.min(CHUNK, n));
    for (let off = 0; off < n; off += CHUNK) {
      const len = Math.min(CHUNK, n - off);
      for (let i = 0; i < len; i++) buf[i] = bytePattern(off + i);
      await conn.write(buf.subarray(0, len));
    }
    return;
  }
  const body = enc.encode(JSON.stringify({ error: "not found", path: p }));
  await conn.write(head("404 Not Found", "application/json", body.length, close));
  await conn.write(body);
}

async function serveConn(conn: DriverConn, port: number): Promise<void> {
  let buf: Uint8Array = new Uint8Array(0);
  const dec = new TextDecoder();
  try {
    for (;;) {
      let end: number;
      while ((end = findHeaderEnd(buf)) < 0) {
        if (buf.length > 64 * 1024) return conn.close();
        const c = await conn.read();
        if (c === null) return;
        const nb = new Uint8Array(buf.length + c.length);
        nb.set(buf);
        nb.set(c, buf.length);
        buf = nb;
      }
      const headText = dec.decode(buf.subarray(0, end));
      const lines = headText.split("\r\n");
      const [method, path, version] = lines[0].split(" ");
      const hdrs = new Map<string, string>();
      for (const l of lines.slice(1)) {
        const i = l.indexOf(":");
        if (i > 0) hdrs.set(l.slice(0, i).trim().toLowerCase(), l.slice(i + 1).trim());
      }
      // Skip a request body, if any (only Content-Length bodies are supported).
      let rest = buf.subarray(end + 4);
      let bodyLen = Number(hdrs.get("content-length") ?? 0) || 0;
      while (rest.length < bodyLen) {
        const c = await conn.read();
        if (c === null) return;
        bodyLen -= rest.length;
        rest = c;
      }
      buf = rest.subarray(bodyLen);
      const close = (hdrs.get("connection") ?? "").toLowerCase() === "close" || version === "HTTP/1.0";
      await respond(conn, port, method ?? "GET", path ?? "/", close);
      if (close) {
        // Wait for the client to close (it has the whole response by Content-Length), then close.
        const t = setTimeout(() => conn.close(), 5_000);
        while ((await conn.read()) !== null) { /* discard */ }
        clearTimeout(t);
        conn.close();
        return;
      }
    }
  } catch {
    conn.close();
  }
}

function findHeaderEnd(b: Uint8Array): number {
  for (let i = 0; i + 3 < b.length; i++) {
    if (b[i] === 13 && b[i + 1] === 10 && b[i + 2] === 13 && b[i + 3] === 10) return i;
  }
  return -1;
}

export async function main(args: string[]): Promise<number> {
  let socket = process.env.PILOT_SOCKET || "/tmp/pilot.sock";
  let port = 80;
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === "-socket" || a === "--socket") socket = args[++i];
    else if (/^\d+$/.test(a) && Number(a) <= 65535) port = Number(a);
    else {
      process.stderr.write(`usage: http-server.ts [-socket path] [port]\n`);
      return 2;
    }
  }
  const drv = await Driver.connect(socket);
  const l = await drv.listen(port);
  process.stdout.write(`listening on pilot port ${port}\n`);
  drv.onClose(() => process.exit(1));
  for (;;) {
    const c = await l.accept();
    void serveConn(c, port);
  }
}

if (import.meta.main) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e) => {
      process.stderr.write(`http-server: ${(e as Error).message}\n`);
      process.exit(1);
    },
  );
}
