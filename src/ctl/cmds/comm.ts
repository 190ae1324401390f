// Communication and diagnostics over streams/datagrams: connect, send, recv, send-file,
// send-message, subscribe, publish, ping, traceroute, bench, listen (docs/protocol.md §13).
import { accessSync, constants, readFileSync, statSync } from "node:fs";
import { basename } from "node:path";
import { formatAddr, parseAddr } from "../../proto/addr.ts";
import { goJson } from "../../proto/gojson.ts";
import { type Addr, PORT_DATAEXCHANGE, PORT_EVENTSTREAM } from "../../proto/types.ts";
import { MESSAGE_TYPES } from "../../proto/dataexchange.ts";
import { encodeEventMessage, EventReader } from "../../proto/eventstream.ts";
import { fileDigest, type FileProgress, FileTransferError, sendFile as sendFileOver, sendMessage as sendMessageOver } from "../../client/file-transfer.ts";
import type { Driver, DriverConn } from "../../client/driver.ts";
import { type Ctx, CtlError, flagDuration, flagInt, flagStr, formatBytes, goDuration, goQ, parseFlags, parsePort } from "../util.ts";
import { connectDaemon, resolveTarget, usage } from "./shared.ts";

const td = new TextDecoder();
const te = new TextEncoder();

async function dialOr(d: Driver, a: Addr, port: number, err: () => CtlError): Promise<DriverConn> {
  try { return await d.dial(a, port); } catch { throw err(); }
}
const reach = (a: string) => `check that ${a} is reachable: pilotctl ping ${a}`;

/** One read raced against a timeout; null = EOF. */
async function readOnce(c: DriverConn, timeoutMs?: number): Promise<Uint8Array | null> {
  return c.read(timeoutMs === undefined ? {} : { timeoutMs });
}

async function exchange(ctx: Ctx, d: Driver, target: Addr, port: number, msg: string, timeoutMs: number, wpre: string, rpre: string, hint: string): Promise<void> {
  const a = formatAddr(target);
  const c = await dialOr(d, target, port, () => new CtlError("connection_failed", `cannot connect to ${a} port ${port}`, reach(a)));
  try { await c.write(msg); } catch (e) { throw new CtlError("connection_failed", `${wpre}: ${(e as Error).message}`); }
  let resp = "";
  try {
    const r = await readOnce(c, timeoutMs);
    resp = r ? td.decode(r) : "";
  } catch (e) {
    if ((e as { code?: string }).code === "timeout") throw new CtlError("timeout", `no response within ${goDuration(timeoutMs)}`, hint);
    throw new CtlError("connection_failed", `${rpre}: ${(e as Error).message}`);
  } finally { c.close(); }
  ctx.ok({ port, response: resp, sent: msg, target: a }, () => {
    if (resp === "") { ctx.info(`sent ${te.encode(msg).length} bytes (no response)\n`); return; }
    return resp + "\n";
  });
}

export async function connect(ctx: Ctx, args: string[]): Promise<void> {
  const p = parseFlags(args);
  if (!p.pos.length) throw usage("pilotctl connect <address|hostname> [port] [--message <msg>] [--timeout <dur>]");
  const d = await connectDaemon();
  try {
    const t = await resolveTarget(ctx, d, p.pos[0]);
    const port = p.pos[1] !== undefined ? parsePort(p.pos[1]) : 1000;
    const timeout = flagDuration(p, "timeout", 30000);
    let msg = flagStr(p, "message");
    let wpre = "write", rpre = "read";
    if (!msg) {
      // Fix (docs/differences.md): only a real TTY counts as interactive, /dev/null is empty input.
      if (process.stdin.isTTY) throw new CtlError("invalid_argument", "--message is required (interactive mode not supported)", "use --message to send a single message, or pipe data via stdin");
      let data = "";
      try { data = readFileSync(0, "utf8"); } catch {}
      msg = data.split(/\r?\n/).join("\n").replace(/\n$/, "");
      if (!msg) throw new CtlError("invalid_argument", "no data on stdin — use --message or pipe data");
      wpre = "write failed"; rpre = "read failed";
    }
    await exchange(ctx, d, t, port, msg, timeout, wpre, rpre, "increase with --timeout, or check if the target is listening on that port");
  } finally { d.close(); }
}

export async function send(ctx: Ctx, args: string[]): Promise<void> {
  const p = parseFlags(args);
  if (p.pos.length < 2) throw usage("pilotctl send <address|hostname> <port> --data <msg> [--timeout <dur>]");
  const d = await connectDaemon();
  try {
    const t = await resolveTarget(ctx, d, p.pos[0]);
    const port = parsePort(p.pos[1]);
    const data = flagStr(p, "data");
    if (!data) throw new CtlError("invalid_argument", "--data is required");
    const timeout = flagDuration(p, "timeout", 30000);
    await exchange(ctx, d, t, port, data, timeout, "write failed", "read failed", `increase with --timeout, or check peer: pilotctl ping ${formatAddr(t)}`);
  } finally { d.close(); }
}

export async function recv(ctx: Ctx, args: string[]): Promise<void> {
  const p = parseFlags(args);
  if (!p.pos.length) throw usage("pilotctl recv <port> [--count <n>] [--timeout <dur>]");
  const port = parsePort(p.pos[0]);
  const count = flagInt(p, "count", 1);
  const timeout = flagDuration(p, "timeout", 30000);
  const d = await connectDaemon();
  try {
    if (count <= 0) return ctx.ok({ messages: null, timeout: false });
    let l;
    try { l = await d.listen(port); } catch (e) { throw new CtlError("connection_failed", `listen: ${(e as Error).message}`); }
    const deadline = Date.now() + timeout;
    const msgs: Record<string, unknown>[] = [];
    for (let seq = 0; seq < count; seq++) {
      let c: DriverConn;
      try { c = await l.accept({ timeoutMs: deadline - Date.now() }); } catch (e) {
        if ((e as { code?: string }).code === "timeout") {
          ctx.info("timeout\n");
          return ctx.ok({ messages: msgs.length ? msgs : null, timeout: true }, () => undefined);
        }
        throw new CtlError("connection_failed", "accept error");
      }
      try {
        // Fix (docs/differences.md): the read is bounded by the remaining deadline too.
        const r = await c.read({ timeoutMs: Math.max(0, deadline - Date.now()) });
        const s = r ? td.decode(r) : "";
        msgs.push({ bytes: r ? r.length : 0, data: s, port, seq });
        if (!ctx.json) ctx.out(s + "\n");
      } catch (e) {
        msgs.push({ error: (e as Error).message, port, seq });
        if (!ctx.json) ctx.err(`error: ${(e as Error).message}\n`);
      } finally { c.close(); }
    }
    ctx.ok({ messages: msgs, timeout: false }, () => undefined);
  } finally { d.close(); }
}

/** A send that was not acknowledged (or was refused) is an error: exit 1, never `ok`. */
function transferError(e: unknown): CtlError {
  if (e instanceof FileTransferError) return new CtlError(e.code, e.message, e.hint);
  return new CtlError("connection_failed", `send failed: ${(e as Error).message}`);
}

/** Progress on a terminal only (scripts and --json see the same output as before). */
function progressPrinter(ctx: Ctx): ((p: FileProgress) => void) | undefined {
  if (ctx.json || !process.stderr.isTTY) return undefined;
  let last = 0;
  return (p) => {
    const now = Date.now();
    if (now - last < 250 && p.done < p.total) return;
    last = now;
    const pct = p.total > 0 ? Math.floor((p.done / p.total) * 100) : 100;
    ctx.err(`\r  ${p.phase} ${pct}% (${formatBytes(p.done)} of ${formatBytes(p.total)})\x1b[K${p.phase === "finishing" ? "\n" : ""}`);
  };
}

export async function sendFile(ctx: Ctx, args: string[]): Promise<void> {
  if (args.length < 2) throw usage("pilotctl send-file <address|hostname> <filepath>");
  const d = await connectDaemon();
  try {
    const t = await resolveTarget(ctx, d, args[0], "invalid_argument");
    const path = args[1];
    let size: number;
    try {
      accessSync(path, constants.R_OK);
      size = statSync(path).size;
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === "ENOENT") throw new CtlError("not_found", `file not found: ${path}`, "check the file path");
      if (code === "EACCES") throw new CtlError("internal", `permission denied: ${path}`);
      throw new CtlError("internal", `read file: ${(e as Error).message}`);
    }
    const a = formatAddr(t);
    ctx.info(`sending ${basename(path)} (${formatBytes(size)}) to ${a}...\n`);
    const onProgress = progressPrinter(ctx);
    // Hash before connecting: no connection idles while a large file is read.
    let sha256: string;
    try { sha256 = await fileDigest(path, (done, total) => onProgress?.({ phase: "hashing", done, acked: 0, total })); } catch (e) { throw transferError(e); }
    const c = await dialOr(d, t, PORT_DATAEXCHANGE, () => new CtlError("connection_failed", `cannot connect to ${a} (data exchange port 1001)`, reach(a)));
    let r;
    try {
      r = await sendFileOver(c, path, { sha256, onProgress });
    } catch (e) { throw transferError(e); } finally { c.close(); }
    const out: Record<string, unknown> = { ack: r.ack, bytes: r.bytes, destination: a, filename: basename(path) };
    if (r.resumedFrom > 0) out.resumed_from = r.resumedFrom;
    ctx.ok(out);
  } finally { d.close(); }
}

export async function sendMessage(ctx: Ctx, args: string[]): Promise<void> {
  const p = parseFlags(args);
  if (!p.pos.length) throw usage("pilotctl send-message <address|hostname> --data <text> [--type text|json|binary]");
  const d = await connectDaemon();
  try {
    const t = await resolveTarget(ctx, d, p.pos[0]);
    const data = flagStr(p, "data");
    if (!data) throw new CtlError("invalid_argument", "--data is required");
    const type = flagStr(p, "type", "text");
    const timeout = flagDuration(p, "timeout", 30000);
    const a = formatAddr(t);
    const c = await dialOr(d, t, PORT_DATAEXCHANGE, () => new CtlError("connection_failed", `cannot connect to ${a} (data exchange port 1001)`, reach(a)));
    if (!Object.hasOwn(MESSAGE_TYPES, type)) { c.close(); throw new CtlError("invalid_argument", `unknown type ${goQ(type)} (use text, json, or binary)`); }
    let r;
    try { r = await sendMessageOver(c, type, te.encode(data), timeout); } catch (e) { throw transferError(e); } finally { c.close(); }
    ctx.ok({ ack: r.ack, bytes: r.bytes, target: a, type });
  } finally { d.close(); }
}

/** Encode an event; a topic above the protocol's limit is a usage error, not a network one. */
function eventBytes(enc: () => Uint8Array, c: DriverConn): Uint8Array {
  try { return enc(); } catch (e) {
    c.close();
    throw new CtlError("invalid_argument", (e as Error).message, (e as { hint?: string }).hint);
  }
}

export async function subscribe(ctx: Ctx, args: string[]): Promise<void> {
  const p = parseFlags(args);
  if (p.pos.length < 2) throw usage("pilotctl subscribe <address|hostname> <topic> [--count <n>] [--timeout <dur>]");
  const d = await connectDaemon();
  try {
    const t = await resolveTarget(ctx, d, p.pos[0]);
    const topic = p.pos[1];
    const count = flagInt(p, "count", 0);
    const timeout = flagDuration(p, "timeout", 0);
    const a = formatAddr(t);
    const err = () => new CtlError("connection_failed", `cannot subscribe on ${a} (event stream port 1002)`, reach(a));
    const c = await dialOr(d, t, PORT_EVENTSTREAM, err);
    const sub = eventBytes(() => encodeEventMessage({ kind: "subscribe", topic }), c);
    try { await c.write(sub); } catch { throw err(); }
    ctx.info(`subscribed to ${goQ(topic)} on ${a} — waiting for events...\n`);
    const events: Record<string, unknown>[] = [];
    const end = timeout > 0 || p.flags.has("timeout") ? Date.now() + timeout : Infinity;
    let done = false;
    const reader = new EventReader((e) => {
      if (done) return;
      const ev = { bytes: e.payload.length, data: td.decode(e.payload), topic: td.decode(e.topic) };
      if (count > 0) events.push(ev);
      if (ctx.json && count <= 0) ctx.out(goJson(ev) + "\n");
      else if (!ctx.json) ctx.out(`[${ev.topic}] ${ev.data}\n`);
      if (count > 0 && events.length >= count) done = true;
    });
    for (;;) {
      let r: Uint8Array | null;
      try { r = await c.read(end === Infinity ? {} : { timeoutMs: Math.max(0, end - Date.now()) }); } catch {
        ctx.info("timeout\n");
        c.close();
        if (ctx.json && count > 0) ctx.ok({ events: events.length ? events : null, timeout: true });
        return;
      }
      if (!r) {
        if (count > 0 && events.length) return ctx.ok({ error: "EOF", events, timeout: false }, () => undefined);
        throw new CtlError("connection_failed", "recv: EOF");
      }
      try { reader.push(r); } catch (e) {
        c.close();
        throw new CtlError("connection_failed", `recv: ${(e as Error).message}`);
      }
      if (done) { c.close(); return ctx.ok({ events, timeout: false }, () => undefined); }
    }
  } finally { d.close(); }
}

export async function publish(ctx: Ctx, args: string[]): Promise<void> {
  const p = parseFlags(args);
  if (p.pos.length < 2) throw usage("pilotctl publish <address|hostname> <topic> --data <message>");
  const d = await connectDaemon();
  try {
    const t = await resolveTarget(ctx, d, p.pos[0]);
    const topic = p.pos[1];
    const data = flagStr(p, "data");
    if (!data) throw new CtlError("invalid_argument", "--data is required");
    const a = formatAddr(t);
    const err = () => new CtlError("connection_failed", `cannot connect to ${a} (event stream port 1002)`, reach(a));
    const c = await dialOr(d, t, PORT_EVENTSTREAM, err);
    const sub = eventBytes(() => encodeEventMessage({ kind: "subscribe", topic }), c);
    try { await c.write(sub); } catch { throw err(); }
    const b = te.encode(data);
    const pub = eventBytes(() => encodeEventMessage({ kind: "publish", topic, payload: b }), c);
    try { await c.write(pub); } catch (e) { throw new CtlError("connection_failed", `publish failed: ${(e as Error).message}`); }
    c.close();
    ctx.ok({ bytes: b.length, target: a, topic });
  } finally { d.close(); }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const rttMs = (ms: number) => Math.round(ms * 1000) / 1000;

export async function ping(ctx: Ctx, args: string[]): Promise<void> {
  const p = parseFlags(args);
  if (!p.pos.length) throw usage("pilotctl ping <address|hostname> [--count <n>] [--timeout <dur>]");
  const count = flagInt(p, "count", 4);
  const timeout = flagDuration(p, "timeout", 30000);
  const d = await connectDaemon();
  try {
    const t = await resolveTarget(ctx, d, p.pos[0]);
    const a = formatAddr(t);
    if (!ctx.json) ctx.out(`PING ${a}\n`);
    const results: Record<string, unknown>[] = [];
    const end = Date.now() + timeout;
    for (let i = 0; i < count; i++) {
      if (Date.now() >= end) {
        if (!ctx.json) ctx.out("timeout\n");
        return ctx.ok({ results, target: a, timeout: true }, () => undefined);
      }
      const t0 = performance.now();
      let c: DriverConn;
      try { c = await d.dial(t, 7, { timeoutMs: Math.max(0, end - Date.now()) }); } catch (e) {
        results.push({ error: (e as Error).message, seq: i });
        if (!ctx.json) ctx.out(`seq=${i} error: ${(e as Error).message}\n`);
        if (i + 1 < count) await sleep(1000);
        continue;
      }
      try {
        await c.write(`ping-${i}`);
        const r = await c.read({ timeoutMs: Math.max(0, end - Date.now()) });
        const dt = performance.now() - t0;
        results.push({ bytes: r ? r.length : 0, rtt_ms: rttMs(dt), seq: i });
        if (!ctx.json) ctx.out(`seq=${i} bytes=${r ? r.length : 0} time=${goDuration(dt)}\n`);
      } catch (e) {
        const dt = performance.now() - t0;
        results.push({ error: (e as Error).message, rtt_ms: rttMs(dt), seq: i });
        if (!ctx.json) ctx.out(`seq=${i} error: ${(e as Error).message}\n`);
      } finally { c.close(); }
      if (i + 1 < count) await sleep(1000);
    }
    ctx.ok({ results: results.length ? results : null, target: a, timeout: false }, () => undefined);
  } finally { d.close(); }
}

export async function traceroute(ctx: Ctx, args: string[]): Promise<void> {
  const p = parseFlags(args);
  if (!p.pos.length) throw usage("pilotctl traceroute <address> [--timeout <dur>]");
  const timeout = flagDuration(p, "timeout", 30000);
  const d = await connectDaemon();
  try {
    let t: Addr;
    try { t = parseAddr(p.pos[0]); } catch (e) { throw new CtlError("invalid_argument", `parse address: ${(e as Error).message}`); }
    const a = formatAddr(t);
    if (!ctx.json) ctx.out(`TRACEROUTE ${a}\n`);
    const t0 = performance.now();
    let c: DriverConn;
    try { c = await d.dial(t, 7, { timeoutMs: timeout }); } catch (e) {
      if ((e as { code?: string }).code === "timeout") throw new CtlError("timeout", "dial timeout");
      const dt = performance.now() - t0;
      return ctx.ok({ error: (e as Error).message, setup_ms: rttMs(dt), target: a }, () => `  1  ${a}  connection failed: ${(e as Error).message}\n`);
    }
    const setup = performance.now() - t0;
    if (!ctx.json) ctx.out(`  1  ${a}  setup=${goDuration(setup)}\n`);
    const samples: Record<string, unknown>[] = [];
    for (let i = 0; i < 3; i++) {
      const s0 = performance.now();
      try {
        await c.write(`trace-${i}`);
        const r = await c.read({ timeoutMs: timeout });
        const dt = performance.now() - s0;
        samples.push({ bytes: r ? r.length : 0, rtt_ms: rttMs(dt) });
        if (!ctx.json) ctx.out(`     rtt=${goDuration(dt)} bytes=${r ? r.length : 0}\n`);
      } catch (e) {
        const dt = performance.now() - s0;
        samples.push({ error: (e as Error).message, rtt_ms: rttMs(dt) });
        if (!ctx.json) ctx.out(`     rtt=${goDuration(dt)} error: ${(e as Error).message}\n`);
      }
    }
    c.close();
    ctx.ok({ rtt_samples: samples, setup_ms: rttMs(setup), target: a }, () => "\nsetup includes: tunnel negotiation + SYN/ACK handshake\nrtt is: data round-trip over established connection\n");
  } finally { d.close(); }
}

export async function bench(ctx: Ctx, args: string[]): Promise<void> {
  const p = parseFlags(args);
  if (!p.pos.length) throw usage("pilotctl bench <address|hostname> [size_mb] [--timeout <dur>]");
  const timeout = flagDuration(p, "timeout", 120000);
  const d = await connectDaemon();
  try {
    const t = await resolveTarget(ctx, d, p.pos[0]);
    let size = 1;
    if (p.pos[1] !== undefined) {
      size = Number(p.pos[1]);
      if (p.pos[1].trim() === "" || !Number.isFinite(size)) throw new CtlError("invalid_argument", `invalid size: strconv.ParseFloat: parsing ${goQ(p.pos[1])}: invalid syntax`);
    }
    const total = Math.max(0, Math.floor(size * 1048576));
    const a = formatAddr(t);
    if (!ctx.json) ctx.out(`BENCH ${a} — sending ${formatBytes(total)} via echo port\n`);
    const c = await dialOr(d, t, 7, () => new CtlError("connection_failed", `cannot connect to ${a} echo port`, reach(a)));
    let got = 0;
    const t0 = performance.now();
    const done = new Promise<void>((res) => {
      c.onData = (ch) => { got += ch.length; if (got >= total) res(); };
      c.onEnd = () => res();
      if (total === 0) res();
    });
    const chunk = new Uint8Array(4096);
    for (let i = 0; i < 4096; i++) chunk[i] = i & 255;
    try {
      for (let off = 0; off < total; off += 4096) await c.write(off + 4096 <= total ? chunk : chunk.subarray(0, total - off));
    } catch (e) { throw new CtlError("connection_failed", `write: ${(e as Error).message}`); }
    const sendMs = performance.now() - t0;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timedOut = await Promise.race([done.then(() => false), new Promise<boolean>((r) => { timer = setTimeout(() => r(true), timeout); })]);
    clearTimeout(timer);
    const totalMs = performance.now() - t0;
    c.close();
    if (timedOut && !ctx.json) ctx.out(`warning: receive timed out (got ${formatBytes(got)} of ${formatBytes(total)})\n`);
    const mbps = (b: number, ms: number) => (ms > 0 ? b / (ms / 1000) / 1048576 : 0);
    ctx.ok({ recv_bytes: got, send_duration_ms: Math.round(sendMs), send_mbps: mbps(total, sendMs), sent_bytes: total, target: a, total_duration_ms: Math.round(totalMs), total_mbps: mbps(got, totalMs) },
      () => `  Sent:     ${formatBytes(total)} in ${goDuration(Math.round(sendMs))} (${mbps(total, sendMs).toFixed(1)} MB/s)\n  Echoed:   ${formatBytes(got)} in ${goDuration(Math.round(totalMs))} (${mbps(got, totalMs).toFixed(1)} MB/s round-trip)\n`);
  } finally { d.close(); }
}

export async function listen(ctx: Ctx, args: string[]): Promise<void> {
  const p = parseFlags(args);
  if (!p.pos.length) throw usage("pilotctl listen <port> [--count <n>] [--timeout <dur>]");
  const port = parsePort(p.pos[0]);
  const count = flagInt(p, "count", 0);
  const timeout = flagDuration(p, "timeout", 0);
  const d = await connectDaemon();
  try {
    ctx.info(`listening on port ${port} — waiting for datagrams...\n`);
    // Make the daemon aware of us (datagrams are pushed to every connected client).
    const end = p.flags.has("timeout") ? Date.now() + timeout : Infinity;
    const msgs: Record<string, unknown>[] = [];
    for (;;) {
      let dg;
      try { dg = await d.recvFrom(end === Infinity ? {} : { timeoutMs: Math.max(0, end - Date.now()) }); } catch (e) {
        if ((e as { code?: string }).code === "timeout") {
          ctx.info("timeout\n");
          if (ctx.json && count > 0) ctx.ok({ messages: msgs.length ? msgs : null, timeout: true });
          return;
        }
        throw new CtlError("connection_failed", `recv: ${(e as Error).message}`);
      }
      if (dg.dstPort !== port) continue;
      const m = { bytes: dg.data.length, data: td.decode(dg.data), src_addr: formatAddr(dg.src), src_port: dg.srcPort };
      if (count > 0) msgs.push(m);
      if (ctx.json && count <= 0) ctx.out(goJson(m) + "\n");
      else if (!ctx.json) ctx.out(`[${m.src_addr}:${m.src_port}] ${m.data}\n`);
      if (count > 0 && msgs.length >= count) return ctx.ok({ messages: msgs, timeout: false }, () => undefined);
    }
  } finally { d.close(); }
}
