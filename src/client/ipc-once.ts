// One request and its reply on a fresh connection to the daemon's socket, then the connection is
// dropped: what a short-lived caller (pilotctl info / peers / connections) needs. It answers like
// Driver.connect + Driver.request + Driver.close, with the same errors, but without the Driver's
// multiplexing state (waiter queues, connection and listener tables, datagram queue, write
// buffering): in a freshly started process every distinct kind of object and every function run
// for the first time costs start-up time, and one request needs none of that.
//
// Errors: the socket cannot be reached → "not_running" (as Driver.connect); an Error reply →
// "connection_failed" `<label>: daemon: <message>` (as Driver.request); the daemon closes the
// connection or sends an oversized frame first → "connection_failed" (as the Driver). A message
// that does not decode is skipped, as the Driver skips it; replies of other kinds are ignored.
// Under Node (no Bun global) it is the Driver itself.
import { FrameDecoder } from "../proto/framing.ts";
import { CMD_ERROR, decodeIpc, encodeIpcFrame, type IpcMsg } from "../proto/ipc.ts";
import { ProtoError } from "../proto/types.ts";
import { PilotError } from "./errors.ts";

interface BunSocket {
  write(b: Uint8Array): number;
  terminate(): void;
}
interface BunConnect {
  connect(o: unknown): Promise<BunSocket>;
}

const notRunning = () => new PilotError("not_running", "daemon is not running", "start the daemon with: pilotctl daemon start");

/** Send `msg` on a new connection to `socketPath` and resolve with the first reply whose command byte is `reply`. */
export async function requestOnce(socketPath: string, msg: IpcMsg, reply: number, label: string): Promise<IpcMsg> {
  const bun = (globalThis as { Bun?: BunConnect }).Bun;
  if (!bun) return viaDriver(socketPath, msg, reply, label);
  const frame = encodeIpcFrame(msg);
  // The outcome is awaited through a thenable rather than `new Promise`: the first Promise
  // constructor call of a process compiles that builtin (≈0.1 ms, a tenth of this whole request).
  let outcome: { m: IpcMsg | null; err: Error | null } | null = null;
  let waiter: { resolve: (m: IpcMsg) => void; reject: (e: Error) => void } | null = null;
  const answer: PromiseLike<IpcMsg> = {
    then(resolve, reject) {
      waiter = { resolve: resolve as (m: IpcMsg) => void, reject: reject as (e: Error) => void };
      if (outcome) deliver();
      return undefined as never;
    },
  };
  const deliver = () => {
    if (!waiter || !outcome) return;
    if (outcome.err) waiter.reject(outcome.err);
    else waiter.resolve(outcome.m!);
  };
  const dec = new FrameDecoder();
  let done = false;
  let sock: BunSocket | null = null;
  let unsent: Uint8Array | null = null;
  const finish = (m: IpcMsg | null, err: Error | null) => {
    if (done) return;
    done = true;
    sock?.terminate();
    outcome = { m, err };
    deliver();
  };
  const onData = (b: Uint8Array) => {
    let frames: Uint8Array[];
    try {
      frames = dec.push(b);
    } catch (e) {
      return finish(null, new PilotError("connection_failed", (e as Error).message));
    }
    for (const f of frames) {
      let m: IpcMsg;
      try {
        m = decodeIpc(f);
      } catch (e) {
        if (e instanceof ProtoError) continue;
        throw e;
      }
      if (f[0] === CMD_ERROR && m.cmd === "Error") return finish(null, new PilotError("connection_failed", `${label}: daemon: ${m.message}`));
      if (f[0] === reply) return finish(m, null);
    }
  };
  try {
    sock = await bun.connect({
      unix: socketPath,
      socket: {
        data: (_s: unknown, b: Uint8Array) => onData(b),
        drain: (s: BunSocket) => {
          if (!unsent || done) return;
          const n = s.write(unsent);
          if (n >= 0) unsent = n < unsent.length ? unsent.subarray(n) : null;
        },
        close: () => finish(null, new PilotError("connection_failed", "daemon disconnected")),
        error: () => {},
        connectError: () => {},
      },
    });
  } catch {
    throw notRunning();
  }
  if (done) sock.terminate();
  else {
    const n = sock.write(frame);
    // The kernel took part of the frame (a large message): the rest goes out on drain.
    if (n >= 0 && n < frame.length) unsent = frame.subarray(n);
  }
  return await answer;
}

async function viaDriver(socketPath: string, msg: IpcMsg, reply: number, label: string): Promise<IpcMsg> {
  const { Driver } = await import("./driver.ts");
  const d = await Driver.connect(socketPath);
  try {
    return await d.request(msg, reply, label);
  } finally {
    d.close();
  }
}
