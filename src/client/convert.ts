// Daemon/registry JSON replies -> the SDK's typed results (missing fields get neutral values).
import type { JsonObject } from "../proto/ipc.ts";
import type { ConnectionInfo, FoundNode, HandshakeResult, NodeInfo, PeerInfo, PendingRequest, TrustedPeer } from "./types.ts";

type J = Record<string, unknown>;
const num = (v: unknown) => (typeof v === "number" && Number.isFinite(v) ? v : Number(v ?? 0) || 0);
const str = (v: unknown) => (v === undefined || v === null ? "" : String(v));
const list = (v: unknown): J[] => (Array.isArray(v) ? (v.filter((x) => x && typeof x === "object") as J[]) : []);

export function toInfo(i: JsonObject): NodeInfo {
  const conn = (c: J): ConnectionInfo => ({
    id: num(c.id),
    localPort: num(c.local_port),
    remoteAddr: str(c.remote_addr),
    remotePort: num(c.remote_port),
    state: str(c.state),
    bytesSent: num(c.bytes_sent),
    bytesRecv: num(c.bytes_recv),
    congestionWindow: num(c.cong_win),
    inFlight: num(c.in_flight),
    srttMs: num(c.srtt_ms),
    retransmits: num(c.retransmits),
  });
  const peer = (p: J): PeerInfo => ({
    nodeId: num(p.node_id),
    endpoint: str(p.endpoint),
    encrypted: p.encrypted === true,
    authenticated: p.authenticated === true,
    path: str(p.path),
  });
  return {
    nodeId: num(i.node_id),
    address: str(i.address),
    hostname: str(i.hostname),
    uptimeSecs: num(i.uptime_secs),
    connections: num(i.connections),
    ports: num(i.ports),
    peers: num(i.peers),
    encrypt: i.encrypt === true,
    encryptedPeers: num(i.encrypted_peers),
    authenticatedPeers: num(i.authenticated_peers),
    identity: i.identity === true,
    publicKey: str(i.public_key),
    owner: str(i.owner),
    bytesSent: num(i.bytes_sent),
    bytesRecv: num(i.bytes_recv),
    pktsSent: num(i.pkts_sent),
    pktsRecv: num(i.pkts_recv),
    connList: list(i.conn_list).map(conn),
    peerList: list(i.peer_list).map(peer),
  };
}

export function toFound(hostname: string, r: JsonObject): FoundNode {
  return { hostname, nodeId: num(r.node_id), address: str(r.address), public: r.public === true };
}

export function toHandshake(nodeId: number, r: JsonObject): HandshakeResult {
  return { nodeId: r.node_id === undefined ? nodeId : num(r.node_id), status: str(r.status) as HandshakeResult["status"] };
}

export function toPending(r: JsonObject): PendingRequest[] {
  return list(r.pending).map((p) => ({
    nodeId: num(p.node_id),
    justification: str(p.justification),
    publicKey: str(p.public_key),
    receivedAt: num(p.received_at),
  }));
}

export function toTrusted(r: JsonObject): TrustedPeer[] {
  return list(r.trusted).map((t) => ({
    nodeId: num(t.node_id),
    mutual: t.mutual === true,
    network: num(t.network),
    publicKey: str(t.public_key),
    approvedAt: num(t.approved_at),
  }));
}
