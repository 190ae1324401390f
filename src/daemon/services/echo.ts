// Echo service, port 7 (docs/protocol.md §10.1): every received chunk is written back unchanged, in order.
// It never closes a connection itself; it stops when the peer closes or a write fails. When the
// peer reads slowly, the connection is paused until the send buffer drains (bounded memory).
import { PORT_ECHO } from "../../proto/types.ts";
import type { StreamConn } from "../../transport/api.ts";
import type { ServiceContext, ServiceHandle } from "./context.ts";

export function handleEchoConn(conn: StreamConn): void {
  conn.onDrain = () => conn.resume();
  conn.onData = (chunk) => {
    try {
      if (!conn.write(chunk)) conn.pause();
    } catch {
      conn.onData = null; // write failed (peer gone): stop echoing
    }
  };
  conn.onEnd = () => {
    conn.onData = null;
  };
}

export function startEcho(ctx: ServiceContext, port = PORT_ECHO): ServiceHandle {
  const conns = new Set<StreamConn>();
  const l = ctx.listen(port, (conn) => {
    conns.add(conn);
    conn.onClose = () => conns.delete(conn);
    handleEchoConn(conn);
  });
  return {
    stop() {
      l.close();
      for (const c of conns) c.abort();
      conns.clear();
    },
  };
}
