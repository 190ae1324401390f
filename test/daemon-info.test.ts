// The Info reply builder: the reference's keys, and a reply that always fits one IPC frame (the
// reference driver refuses anything over 1 MiB) whatever the number of peers and connections.
import { describe, expect, test } from "bun:test";
import { buildInfo, type InfoInput, type InfoPeer } from "../src/daemon/info.ts";
import { MAX_FRAME } from "../src/proto/framing.ts";
import { encodeIpcFrame } from "../src/proto/ipc.ts";
import type { ConnInfo } from "../src/transport/api.ts";

function peer(i: number): InfoPeer {
  return { authenticated: i % 2 === 0, encrypted: true, endpoint: `[2001:db8::${(i % 65535).toString(16)}]:${1024 + (i % 60000)}`, node_id: 1_000_000 + i, path: "direct" };
}
function conn(i: number): ConnInfo {
  return {
    id: i,
    localPort: 49152 + (i % 16000),
    remoteAddr: { network: 0, node: 4_000_000_000 + i },
    remotePort: 1000,
    state: i % 3 === 0 ? "TIME_WAIT" : "ESTABLISHED",
    stats: {
      bytesSent: 1e12, bytesRecv: 1e12, segsSent: 1e9, segsRecv: 1e9, retransmits: 1e6, fastRetransmits: 1e6, srttMs: 12.7,
      rttvarMs: 3.2, rtoMs: 200, cwnd: 1 << 20, ssthresh: 1 << 20, inFlight: 65536, peerWindow: 512, sendBuffered: 0, recvBuffered: 0,
    },
  };
}
function input(peers: number, conns: number, over: Partial<InfoInput> = {}): InfoInput {
  return {
    address: "0:0000.0000.0005", nodeId: 5, hostname: "agent", owner: "", identity: true, encrypt: true,
    publicKey: "q".repeat(43) + "=", uptimeSecs: 3, ports: 5, tunnel: { bytesRecv: 1, bytesSent: 2, pktsRecv: 3, pktsSent: 4 },
    peers: Array.from({ length: peers }, (_, i) => peer(i)),
    conns: Array.from({ length: conns }, (_, i) => conn(i)),
    ...over,
  };
}
const REFERENCE_KEYS = [
  "address", "authenticated_peers", "bytes_recv", "bytes_sent", "conn_list", "connections", "encrypt", "encrypted_peers", "hostname",
  "identity", "node_id", "owner", "peer_list", "peers", "pkts_recv", "pkts_sent", "ports", "public_key", "uptime_secs",
];

describe("Info reply", () => {
  test("small daemon: exactly the reference's keys, complete lists, exact counts", () => {
    const j = buildInfo(input(3, 4));
    expect(Object.keys(j).sort()).toEqual(REFERENCE_KEYS);
    expect((j.peer_list as unknown[]).length).toBe(3);
    expect((j.conn_list as unknown[]).length).toBe(4);
    expect(j.peers).toBe(3);
    expect(j.authenticated_peers).toBe(2);
    expect(j.connections).toBe(2); // TIME_WAIT is listed but not counted
  });

  test.each([
    [12_000, 0],
    [0, 4096],
    [12_000, 4096],
    [100_000, 10_000],
  ])("%i peers and %i connections: the encoded reply fits 1 MiB, counts stay exact, the cut is announced", (np, nc) => {
    const long = "h".repeat(63);
    const j = buildInfo(input(np, nc, { hostname: long, owner: "o\u00e9<>&".repeat(40) }));
    const frame = encodeIpcFrame({ cmd: "InfoOK", json: j }, MAX_FRAME); // throws when over 1 MiB
    expect(frame.length - 4).toBeLessThanOrEqual(MAX_FRAME);
    expect(j.peers).toBe(np);
    const pl = (j.peer_list as unknown[]).length;
    const cl = (j.conn_list as unknown[]).length;
    expect(pl + Number(j.peer_list_omitted ?? 0)).toBe(np);
    expect(cl + Number(j.conn_list_omitted ?? 0)).toBe(nc);
    if (np > 0) expect(pl).toBeGreaterThan(0); // peers are still shown when connections are many
    if (np >= 12_000) expect(j.peer_list_omitted).toBeGreaterThan(0);
    // Still most of the frame is used: the cut is not wildly conservative.
    if (np >= 12_000) expect(frame.length).toBeGreaterThan(MAX_FRAME / 2);
  });
});
