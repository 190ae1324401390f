// PilotStream over the IPC driver (src/client/driver.ts). Each bridged TCP connection gets its own
// Driver (its own Unix-socket connection to the daemon): the IPC protocol has no per-connection
// flow control, so pausing one shared socket would stall every bridge; with one socket per bridge,
// pausing it makes the daemon pause exactly that stream (its receive window then closes).
import { Driver } from "../client/driver.ts";
import type { Addr } from "../proto/types.ts";
import type { PilotStream } from "./proxy.ts";

export async function dialPilot(socketPath: string, addr: Addr, port: number, timeoutMs = 30_000): Promise<PilotStream> {
  const drv = await Driver.connect(socketPath, { timeoutMs: Math.min(timeoutMs, 5_000) });
  let conn;
  try {
    conn = await drv.dial(addr, port, { timeoutMs });
  } catch (e) {
    drv.close();
    throw e;
  }
  const c = conn;
  let closed = false;
  return {
    write: (b) => c.write(b),
    read: () => c.read(),
    close() {
      if (closed) return;
      closed = true;
      c.close();
      // Give the Close frame a moment to leave; closing the driver also makes the daemon drop
      // anything this client still owned.
      setTimeout(() => drv.close(), 50);
    },
    pause() {
      drv.pause();
    },
    resume() {
      drv.resume();
    },
  };
}
