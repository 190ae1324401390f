// A fake pilot daemon for tests: a real Unix-socket server speaking the IPC protocol (docs/protocol.md §9) with
// canned replies. Reusable by other test files.
import { mkdtempSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FrameDecoder } from "../src/proto/framing.ts";
import { decodeIpc, encodeIpcFrame, type IpcMsg } from "../src/proto/ipc.ts";
import { ProtoError } from "../src/proto/types.ts";

export interface FakeDaemonOptions {
  info?: Record<string, unknown>;
  pending?: unknown[];
  trusted?: unknown[];
  hostnames?: Record<string, number>; // resolvable hostnames → node id
  /** Node IDs whose dial is refused. */
  refuse?: number[];
  /** Node IDs whose dial never answers. */
  blackhole?: number[];
  /** If true, never reply to anything (a hung daemon). */
  silent?: boolean;
}

export interface FakeDaemon {
  path: string;
  dir: string;
  requests: IpcMsg[];
  /** Push a datagram to every client. */
  pushDatagram(src: { network: number; node: number }, srcPort: number, dstPort: number, data: string): void;
  /** Open an inbound connection on a bound port and send data on it. */
  inbound(port: number, data: string, remoteNode?: number): boolean;
  close(): Promise<void>;
}

export const DEFAULT_INFO = {
  address: "0:0000.0000.0005", authenticated_peers: 1, bytes_recv: 5120, bytes_sent: 1258291, conn_list: [
    { bytes_recv: 5, bytes_sent: 5, cong_win: 40960, dup_acks: 0, fast_retx: 0, id: 1, in_flight: 0, in_recovery: false, local_port: 49152, ooo_buf: 0, peer_recv_win: 524288, recv_win: 524288, remote_addr: "0:0000.0000.0004", remote_port: 1000, retransmits: 0, rttvar_ms: 3, sack_recv: 0, sack_sent: 0, segs_recv: 1, segs_sent: 1, srtt_ms: 12, ssthresh: 65535, state: "ESTABLISHED", unacked: 0 },
  ], connections: 1, encrypt: true, encrypted_peers: 1, hostname: "my-agent", identity: true, node_id: 5, owner: "",
  peer_list: [{ authenticated: true, encrypted: true, endpoint: "127.0.0.1:4000", node_id: 7 }],
  peers: 1, pkts_recv: 40, pkts_sent: 38, ports: 5, public_key: "q3V2abcdEFGH1234abcdEFGH1234abcdEFGH1234abc=", uptime_secs: 3723,
};

export async function startFakeDaemon(opts: FakeDaemonOptions = {}): Promise<FakeDaemon> {
  const dir = mkdtempSync(join(tmpdir(), "pilot-fake-"));
  const path = join(dir, "pilot.sock");
  const requests: IpcMsg[] = [];
  const clients = new Set<Socket>();
  const bound = new Map<number, Socket>(); // port → owner
  const conns = new Map<number, { sock: Socket; echo: boolean; remote: number; port?: number }>();
  let nextConn = 1;
  let hostname = String((opts.info ?? DEFAULT_INFO).hostname ?? "");
  const send = (s: Socket, m: IpcMsg) => { if (!s.destroyed) s.write(encodeIpcFrame(m)); };

  const server: Server = createServer((s) => {
    clients.add(s);
    const dec = new FrameDecoder(16 << 20);
    s.on("close", () => {
      clients.delete(s);
      for (const [p, o] of bound) if (o === s) bound.delete(p);
    });
    s.on("error", () => {});
    s.on("data", (b) => {
      let frames: Uint8Array[];
      try { frames = dec.push(new Uint8Array(b as Buffer)); } catch { s.destroy(); return; }
      for (const f of frames) {
        let m: IpcMsg;
        try { m = decodeIpc(f); } catch (e) {
          if (e instanceof ProtoError) { send(s, { cmd: "Error", code: 1, message: e.message }); continue; }
          throw e;
        }
        requests.push(m);
        if (opts.silent) continue;
        handle(s, m);
      }
    });
  });

  function handle(s: Socket, m: IpcMsg): void {
    switch (m.cmd) {
      case "Info":
        return send(s, { cmd: "InfoOK", json: { ...(opts.info ?? DEFAULT_INFO), hostname } });
      case "Bind":
        if (m.port === 7 || bound.has(m.port)) return send(s, { cmd: "Error", code: 1, message: `port ${m.port} already bound` });
        bound.set(m.port, s);
        return send(s, { cmd: "BindOK", port: m.port });
      case "Dial": {
        if (opts.blackhole?.includes(m.addr.node)) return;
        if (opts.refuse?.includes(m.addr.node)) return send(s, { cmd: "Error", code: 1, message: "connection refused" });
        const id = nextConn++;
        conns.set(id, { sock: s, echo: m.port === 7 || m.port === 1000, remote: m.addr.node, port: m.port });
        return send(s, { cmd: "DialOK", connId: id });
      }
      case "Send": {
        const c = conns.get(m.connId);
        if (!c) return send(s, { cmd: "Error", code: 1, message: `connection ${m.connId} not found` });
        const port = (c as { port?: number }).port;
        if (port === 1001) {
          // data exchange: reply with an ACK frame per frame (assume one frame per Send run)
          const d = m.data;
          if (d.length >= 8) {
            const type = new DataView(d.buffer, d.byteOffset).getUint32(0);
            let n = new DataView(d.buffer, d.byteOffset).getUint32(4);
            const names = ["", "TEXT", "BINARY", "JSON", "FILE"];
            if (type === 4) n -= 2 + new DataView(d.buffer, d.byteOffset).getUint16(8);
            const ack = new TextEncoder().encode(`ACK ${names[type]} ${n} bytes`);
            const fr = new Uint8Array(8 + ack.length);
            new DataView(fr.buffer).setUint32(0, 1);
            new DataView(fr.buffer).setUint32(4, ack.length);
            fr.set(ack, 8);
            send(s, { cmd: "Recv", connId: m.connId, data: fr });
          }
          return;
        }
        if (c.echo) send(s, { cmd: "Recv", connId: m.connId, data: new Uint8Array(m.data) });
        else { send(s, { cmd: "Recv", connId: m.connId, data: new TextEncoder().encode("pong") }); }
        return;
      }
      case "Close":
        send(s, { cmd: "CloseOK", connId: m.connId });
        if (conns.delete(m.connId)) send(s, { cmd: "CloseOK", connId: m.connId });
        return;
      case "SendTo":
        return;
      case "Handshake":
        switch (m.sub) {
          case "request": return send(s, { cmd: "HandshakeOK", json: { node_id: m.nodeId, status: "sent" } });
          case "approve": return send(s, { cmd: "HandshakeOK", json: { node_id: m.nodeId, status: "approved" } });
          case "reject": return send(s, { cmd: "HandshakeOK", json: { node_id: m.nodeId, status: "rejected" } });
          case "pending": return send(s, { cmd: "HandshakeOK", json: { pending: opts.pending ?? [] } });
          case "trusted": return send(s, { cmd: "HandshakeOK", json: { trusted: opts.trusted ?? [] } });
          case "revoke":
            if (!(opts.trusted ?? []).some((t) => (t as { node_id: number }).node_id === m.nodeId)) {
              return send(s, { cmd: "Error", code: 1, message: `handshake revoke: node ${m.nodeId} was not trusted` });
            }
            return send(s, { cmd: "HandshakeOK", json: { node_id: m.nodeId, status: "revoked" } });
        }
        return;
      case "ResolveHostname": {
        const id = (opts.hostnames ?? {})[m.hostname];
        if (id === undefined) return send(s, { cmd: "Error", code: 1, message: "resolve_hostname: registry: request failed" });
        const a = `0:0000.${(id >>> 16).toString(16).toUpperCase().padStart(4, "0")}.${(id & 0xffff).toString(16).toUpperCase().padStart(4, "0")}`;
        return send(s, { cmd: "ResolveHostnameOK", json: { address: a, hostname: m.hostname, node_id: id, public: false, type: "resolve_hostname_ok" } });
      }
      case "SetHostname":
        if (m.hostname.length > 63 || /[^a-z0-9-]/.test(m.hostname)) return send(s, { cmd: "Error", code: 1, message: "set_hostname: registry: request failed" });
        hostname = m.hostname;
        return send(s, { cmd: "SetHostnameOK", json: { hostname: m.hostname, node_id: 5, type: "set_hostname_ok" } });
      case "SetVisibility":
        return send(s, { cmd: "SetVisibilityOK", json: { node_id: 5, type: "set_visibility_ok", visibility: m.public ? "public" : "private" } });
      case "Deregister":
        return send(s, { cmd: "DeregisterOK", json: { type: "deregister_ok" } });
      case "SetTags":
        if ((m.tags ?? []).length > 3) return send(s, { cmd: "Error", code: 1, message: "set_tags: maximum 3 tags allowed" });
        return send(s, { cmd: "SetTagsOK", json: { node_id: 5, tags: m.tags && m.tags.length ? m.tags.map((t) => t.replace(/^#/, "")) : null, type: "set_tags_ok" } });
      case "SetWebhook":
        return send(s, { cmd: "SetWebhookOK", json: { webhook: m.url } });
      case "SetTaskExec":
        return send(s, { cmd: "SetTaskExecOK", json: { node_id: 5, task_exec: m.enabled, type: "set_task_exec_ok" } });
      default:
        return send(s, { cmd: "Error", code: 1, message: `unknown command: 0x${encodeIpcFrame(m)[4].toString(16).toUpperCase().padStart(2, "0")}` });
    }
  }

  await new Promise<void>((r) => server.listen(path, () => r()));
  return {
    path, dir, requests,
    pushDatagram(src, srcPort, dstPort, data) {
      for (const c of clients) send(c, { cmd: "RecvFrom", src, srcPort, dstPort, data: new TextEncoder().encode(data) });
    },
    inbound(port, data, remoteNode = 4) {
      const s = bound.get(port);
      if (!s) return false;
      const id = nextConn++;
      conns.set(id, { sock: s, echo: false, remote: remoteNode });
      send(s, { cmd: "Accept", localPort: port, connId: id, remote: { network: 0, node: remoteNode }, remotePort: 49152 });
      send(s, { cmd: "Recv", connId: id, data: new TextEncoder().encode(data) });
      return true;
    },
    close: () => new Promise<void>((r) => { for (const c of clients) c.destroy(); server.close(() => r()); }),
  };
}
