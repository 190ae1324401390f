// The Info reply: the reference's JSON keys, built so the encoded reply always fits one IPC frame
// (1 MiB, which the reference driver enforces) whatever the number of connections or peers.
// `conn_list` and `peer_list` are cut to a byte budget measured on their exact JSON encoding; the
// counts (`connections`, `peers`) stay exact, and a cut list is announced by an extra key
// (`conn_list_omitted` / `peer_list_omitted`: entries left out) that only appears when non-zero,
// so a normal reply is byte-identical to the reference's.
import { formatAddr } from "../proto/addr.ts";
import { MAX_FRAME } from "../proto/framing.ts";
import { goJson } from "../proto/gojson.ts";
import type { JsonObject } from "../proto/ipc.ts";
import type { ConnInfo } from "../transport/api.ts";

/** One tunnel peer as Info reports it. */
export interface InfoPeer {
  authenticated: boolean;
  encrypted: boolean;
  endpoint: string;
  node_id: number;
  /** extension: which path the tunnel takes (direct / punched / relayed) */
  path: string | null;
}

export interface InfoInput {
  address: string;
  nodeId: number;
  hostname: string;
  owner: string;
  identity: boolean;
  encrypt: boolean;
  publicKey: string;
  uptimeSecs: number;
  ports: number;
  tunnel: { bytesRecv: number; bytesSent: number; pktsRecv: number; pktsSent: number };
  peers: InfoPeer[];
  conns: ConnInfo[];
}

/** Room kept for the fixed keys, the command byte and the omitted-counts. */
const FIXED_RESERVE = 16 * 1024;
/** Share of the frame `conn_list` may use; `peer_list` gets the rest. */
const CONN_LIST_BUDGET = 640 * 1024;

function connEntry(c: ConnInfo): JsonObject {
  const s = c.stats;
  return {
    bytes_recv: s.bytesRecv,
    bytes_sent: s.bytesSent,
    cong_win: s.cwnd,
    dup_acks: s.dupAcks ?? 0,
    fast_retx: s.fastRetransmits,
    id: c.id,
    in_flight: s.inFlight,
    in_recovery: s.inRecovery === true,
    local_port: c.localPort,
    ooo_buf: s.oooSegments ?? 0,
    peer_recv_win: s.peerWindow * 4096,
    recv_win: (s.recvWindow ?? 0) * 4096,
    remote_addr: formatAddr(c.remoteAddr),
    remote_port: c.remotePort,
    retransmits: s.retransmits,
    rttvar_ms: Math.trunc(s.rttvarMs),
    sack_recv: s.sackRecv ?? 0,
    sack_sent: s.sackSent ?? 0,
    segs_recv: s.segsRecv,
    segs_sent: s.segsSent,
    srtt_ms: Math.trunc(s.srttMs),
    ssthresh: s.ssthresh,
    state: c.state,
    unacked: Math.ceil(s.inFlight / 4096),
  };
}

/** Map items while their JSON (plus a comma each) fits `budget` bytes; returns the list and its size. */
function fit<T>(items: T[], budget: number, map: (x: T) => JsonObject): { list: JsonObject[]; bytes: number } {
  const list: JsonObject[] = [];
  let bytes = 0;
  for (const it of items) {
    const e = map(it);
    const n = goJson(e).length + 1; // ASCII only: string length = bytes
    if (bytes + n > budget) break;
    bytes += n;
    list.push(e);
  }
  return { list, bytes };
}

export function buildInfo(i: InfoInput): JsonObject {
  const conns = fit(i.conns, CONN_LIST_BUDGET, connEntry);
  const peerBudget = MAX_FRAME - FIXED_RESERVE - conns.bytes - i.hostname.length * 6 - i.owner.length * 6;
  const peers = fit(i.peers, Math.max(0, peerBudget), (p) => ({ ...p }));
  const out: JsonObject = {
    address: i.address,
    authenticated_peers: i.peers.filter((p) => p.authenticated).length,
    bytes_recv: i.tunnel.bytesRecv,
    bytes_sent: i.tunnel.bytesSent,
    conn_list: conns.list,
    connections: i.conns.filter((c) => c.state === "ESTABLISHED" || c.state === "SYN_SENT" || c.state === "SYN_RECV").length,
    encrypt: i.encrypt,
    encrypted_peers: i.peers.filter((p) => p.encrypted).length,
    hostname: i.hostname,
    identity: i.identity,
    node_id: i.nodeId,
    owner: i.owner,
    peer_list: peers.list,
    peers: i.peers.length,
    pkts_recv: i.tunnel.pktsRecv,
    pkts_sent: i.tunnel.pktsSent,
    ports: i.ports,
    public_key: i.publicKey,
    uptime_secs: i.uptimeSecs,
  };
  if (conns.list.length < i.conns.length) out.conn_list_omitted = i.conns.length - conns.list.length;
  if (peers.list.length < i.peers.length) out.peer_list_omitted = i.peers.length - peers.list.length;
  return out;
}
