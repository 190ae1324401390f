// The daemon's Unix socket as the driver sees it, on either runtime. Under Bun: Bun.connect with
// BufferedSocket (exact write backpressure, native read path). Under Node (client side of the
// SDK): node:net, whose write() return value and 'drain' event give the same backpressure.
import { BufferedSocket } from "../sys/buffered-socket.ts";
import { withTimeout } from "../sys/queue.ts";

export interface IpcSocket {
  /** false when (part of) the frame was queued: wait for waitDrain() before writing more. */
  write(frame: Uint8Array): boolean;
  waitDrain(): Promise<void>;
  readonly destroyed: boolean;
  pause(): void;
  resume(): void;
  end(): void;
  destroy(): void;
}

export interface IpcSocketEvents {
  data(b: Uint8Array): void;
  close(): void;
}

interface BunLike {
  connect<T>(o: unknown): Promise<{ write(b: Uint8Array): number; pause(): void; resume(): void; end(): void; terminate(): void }>;
}

/** Connect to a Unix socket; rejects (with any error) when it is missing or refused. */
export function connectIpcSocket(path: string, ev: IpcSocketEvents, timeoutMs?: number): Promise<IpcSocket> {
  const bun = (globalThis as { Bun?: BunLike }).Bun;
  const p = bun ? connectBun(bun, path, ev) : connectNode(path, ev);
  if (timeoutMs === undefined) return p;
  return withTimeout(p, timeoutMs, () => new Error("connect timeout"), (s) => s.destroy());
}

async function connectBun(bun: BunLike, path: string, ev: IpcSocketEvents): Promise<IpcSocket> {
  let bs: BufferedSocket | null = null;
  const raw = await bun.connect<undefined>({
    unix: path,
    socket: {
      data: (_s: unknown, b: Uint8Array) => {
        if (bs) ev.data(b);
      },
      drain: () => bs?.onWritable(),
      close: () => {
        if (!bs) return;
        bs.destroyed = true;
        ev.close();
      },
      error: () => {},
      connectError: () => {},
    },
  });
  bs = new BufferedSocket(raw);
  return bs;
}

async function connectNode(path: string, ev: IpcSocketEvents): Promise<IpcSocket> {
  const net = await import("node:net");
  return await new Promise<IpcSocket>((resolve, reject) => {
    const s = net.createConnection({ path });
    let up = false;
    s.once("connect", () => {
      up = true;
      resolve(wrap);
    });
    s.on("error", (e) => {
      if (!up) reject(e);
    });
    s.on("data", (b: Uint8Array) => ev.data(b));
    s.on("close", () => {
      if (up) ev.close();
    });
    const wrap: IpcSocket = {
      write: (b) => (s.destroyed ? false : s.write(b)),
      waitDrain: () =>
        !s.writableNeedDrain || s.destroyed
          ? Promise.resolve()
          : new Promise<void>((r) => {
              const done = () => {
                s.off("drain", done);
                s.off("close", done);
                r();
              };
              s.on("drain", done);
              s.on("close", done);
            }),
      get destroyed() {
        return s.destroyed;
      },
      pause: () => void s.pause(),
      resume: () => void s.resume(),
      end: () => void s.end(),
      destroy: () => void s.destroy(),
    };
  });
}
