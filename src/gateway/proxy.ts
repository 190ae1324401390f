// TCP ⇄ Pilot stream bridge (docs/gateway-control.md) with backpressure in both directions, client
// half-close support and no leaks whichever side closes first (fixes docs/differences.md).
//
// TCP → Pilot: every chunk read from the socket is handed to PilotStream.write(); while more than
//   MAX_PENDING writes are unresolved (the driver's IPC socket is full) the TCP socket is paused.
// Pilot → TCP: a read loop; when socket.write() returns false the Pilot side is paused (for the
//   IPC driver: its Unix socket stops being read, the daemon's writes block and it pauses the
//   stream, whose receive window then closes) until the socket drains.
// Pilot streams have no half-close (docs/protocol.md §10), so a TCP client's FIN cannot be forwarded.
// A FIN cannot tell a half-close from a full close. Heuristic: if Pilot data was delivered after
// the client's last bytes, the exchange looks complete and the FIN closes the bridge at once (the
// usual "read the response, then close"). Otherwise (request sent, then FIN: a half-closing
// client, which the reference leaves without its response) the Pilot → TCP direction stays open
// until the Pilot side ends or stays silent for `lingerMs`.
import type { Socket } from "node:net";

export interface PilotStream {
  /** Resolves when the data has been accepted (used for backpressure). */
  write(data: Uint8Array): Promise<void>;
  /** Next chunk, or null at end of stream (also after close()). */
  read(): Promise<Uint8Array | null>;
  /** Idempotent; releases everything the stream holds. */
  close(): void;
  /** Stop / restart inbound delivery (optional). */
  pause?(): void;
  resume?(): void;
}

export interface BridgeOptions {
  /** After the TCP client's FIN: close once the Pilot side has been silent this long (ms). */
  lingerMs?: number;
  /** After we ended the TCP side: destroy it if the client has not closed within this (ms). */
  closeGraceMs?: number;
}

export interface BridgeStats {
  bytesUp: number; // TCP → Pilot
  bytesDown: number; // Pilot → TCP
  reason: string;
}

const MAX_PENDING = 4;

/** Bridge `sock` and `pilot` until both are closed. Resolves after every resource is released. */
export function bridge(sock: Socket, pilot: PilotStream, opts: BridgeOptions = {}): Promise<BridgeStats> {
  const lingerMs = opts.lingerMs ?? 10_000;
  const closeGraceMs = opts.closeGraceMs ?? 5_000;
  const stats: BridgeStats = { bytesUp: 0, bytesDown: 0, reason: "" };
  let finished = false;
  let tcpEnded = false; // client sent FIN
  let lastDown = false; // the most recent data moved Pilot → TCP
  let pending = 0;
  let pausedTcp = false;
  let lingerTimer: ReturnType<typeof setTimeout> | undefined;
  let graceTimer: ReturnType<typeof setTimeout> | undefined;
  let drainWaiter: (() => void) | null = null;
  let resolveDone!: (s: BridgeStats) => void;
  const done = new Promise<BridgeStats>((r) => (resolveDone = r));
  let sockClosed = sock.destroyed;
  let loopDone = false;

  const maybeResolve = () => {
    if (sockClosed && loopDone) {
      if (lingerTimer) clearTimeout(lingerTimer);
      if (graceTimer) clearTimeout(graceTimer);
      lingerTimer = graceTimer = undefined;
      resolveDone(stats);
    }
  };

  const finish = (reason: string) => {
    if (finished) return;
    finished = true;
    stats.reason = reason;
    if (lingerTimer) clearTimeout(lingerTimer);
    lingerTimer = undefined;
    pilot.close();
    const w = drainWaiter;
    drainWaiter = null;
    w?.();
    if (!sock.destroyed) {
      if (reason === "pilot end" || reason === "linger" || reason === "tcp end") {
        // Let queued bytes reach the client, then FIN; destroy if the client never closes.
        sock.end();
        graceTimer = setTimeout(() => sock.destroy(), closeGraceMs);
      } else sock.destroy();
    }
  };

  const armLinger = () => {
    if (!tcpEnded || finished || pending > 0) return;
    if (lingerTimer) clearTimeout(lingerTimer);
    lingerTimer = setTimeout(() => finish("linger"), lingerMs);
  };

  sock.on("data", (chunk: Buffer) => {
    if (finished) return;
    stats.bytesUp += chunk.length;
    lastDown = false;
    pending++;
    if (pending >= MAX_PENDING && !pausedTcp) {
      pausedTcp = true;
      sock.pause();
    }
    pilot.write(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.length)).then(
      () => {
        pending--;
        if (finished) return;
        if (pausedTcp && pending < MAX_PENDING) {
          pausedTcp = false;
          sock.resume();
        }
        if (pending === 0) armLinger();
      },
      () => {
        pending--;
        finish("pilot write error");
      },
    );
  });
  sock.on("end", () => {
    tcpEnded = true;
    if (lastDown && pending === 0) finish("tcp end");
    else armLinger();
  });
  sock.on("error", () => {
    // 'close' follows; the error itself needs no further handling (ECONNRESET, EPIPE, ...).
  });
  sock.on("drain", () => {
    const w = drainWaiter;
    drainWaiter = null;
    w?.();
  });
  sock.on("close", () => {
    sockClosed = true;
    finish("tcp close");
    maybeResolve();
  });

  (async () => {
    try {
      for (;;) {
        const c = await pilot.read();
        if (c === null || finished) break;
        if (c.length === 0) continue;
        stats.bytesDown += c.length;
        lastDown = true;
        if (tcpEnded && lingerTimer) armLinger(); // activity: restart the linger window
        if (!sock.write(c)) {
          pilot.pause?.();
          await new Promise<void>((r) => {
            drainWaiter = r;
          });
          if (!finished) pilot.resume?.();
        }
      }
    } catch {
      // read failure = end of stream
    }
    loopDone = true;
    finish("pilot end");
    maybeResolve();
  })();

  if (sockClosed) finish("tcp close");
  return done;
}
