// The daemon-status commands (info, peers, connections). Kept apart from the other command groups
// because scripts and agents run them most, so their module loads nothing but the IPC codec and
// a one-shot request (no Driver, no node:fs, no crypto).
import { requestOnce } from "../../client/ipc-once.ts";
import { CMD_INFO_OK, type JsonObject } from "../../proto/ipc.ts";
import { type Ctx, daemonErr, E_DAEMON, formatBytes, formatUptime, getSocket, goQ, pad, parseFlags } from "../util.ts";

type J = Record<string, unknown>;

/** The daemon's Info reply (errors as the Driver-based daemonCall("info", …) reports them). */
async function daemonInfo(): Promise<JsonObject> {
  try {
    return ((await requestOnce(getSocket(), { cmd: "Info" }, CMD_INFO_OK, "info")) as { json: JsonObject }).json;
  } catch (e) {
    throw (e as { code?: string }).code === "not_running" ? E_DAEMON() : daemonErr("info", e);
  }
}

// ---------- info / peers / connections ----------
function connHeader(indent: string): string {
  return `${indent}${pad("ID", 4)}  ${pad("LOCAL", 6)}  ${pad("REMOTE ADDR", 22)}  ${pad("RPORT", 6)}  ${pad("STATE", 11)}  ${pad("CWND", 8)}  ${pad("FLIGHT", 8)}  ${pad("SRTT", 6)}`;
}

export async function info(ctx: Ctx): Promise<void> {
  const i = await daemonInfo();
  ctx.ok(i, () => {
    const n = (k: string) => Number(i[k] ?? 0);
    let s = "Pilot Protocol Daemon\n";
    s += `  Node ID:     ${i.node_id}\n  Address:     ${i.address}\n`;
    if (i.hostname) s += `  Hostname:    ${i.hostname}\n`;
    s += `  Uptime:      ${formatUptime(n("uptime_secs"))}\n  Connections: ${n("connections")}\n  Ports:       ${n("ports")}\n  Peers:       ${n("peers")}\n`;
    s += i.encrypt ? `  Encryption:  enabled (X25519 + AES-256-GCM), ${n("encrypted_peers")}/${n("peers")} peers encrypted, ${n("authenticated_peers")} authenticated\n` : "  Encryption:  disabled\n";
    const pk = String(i.public_key ?? "");
    s += i.identity ? `  Identity:    persistent (Ed25519 ${pk.length > 16 ? pk.slice(0, 16) + "..." : pk})\n` : "  Identity:    ephemeral (not persisted)\n";
    if (i.owner) s += `  Owner:       ${i.owner}\n`;
    s += `  Traffic:     ${formatBytes(n("bytes_sent"))} sent / ${formatBytes(n("bytes_recv"))} recv\n  Packets:     ${n("pkts_sent")} sent / ${n("pkts_recv")} recv\n`;
    const cl = (i.conn_list as J[] | null) ?? [];
    if (cl.length) {
      s += `\nActive connections: ${cl.length}\n` + connHeader("  ") + "\n";
      for (const c of cl.slice(0, 50)) {
        s += `  ${pad(c.id as number, 4)}  ${pad(c.local_port as number, 6)}  ${pad(String(c.remote_addr), 22)}  ${pad(c.remote_port as number, 6)}  ${pad(String(c.state), 11)}  ${pad(formatBytes(Number(c.cong_win)), 8)}  ${pad(formatBytes(Number(c.in_flight)), 8)}  ${c.srtt_ms}ms${c.in_recovery ? " [RECOVERY]" : ""}\n`;
      }
      const more = cl.length - Math.min(cl.length, 50) + Number(i.conn_list_omitted ?? 0);
      if (more > 0) s += `\n  ... and ${more} more connections (showing first ${Math.min(cl.length, 50)})\n`;
    }
    return s;
  });
}

export async function peers(ctx: Ctx, args: string[]): Promise<void> {
  const p = parseFlags(args);
  const q = (p.flags.get("search") ?? "").toLowerCase();
  const i = await daemonInfo();
  let list = ((i.peer_list as J[] | null) ?? []).filter((x) => !q || String(x.node_id).toLowerCase().includes(q) || String(x.endpoint).toLowerCase().includes(q));
  // The daemon lists as many peers as fit one IPC reply and counts the rest (peer_list_omitted).
  const omitted = Number(i.peer_list_omitted ?? 0);
  const data: J = { peers: list.length ? list : null, total: list.length };
  if (omitted > 0) data.omitted = omitted;
  ctx.ok(data, () => {
    if (!list.length) return q ? `no peers matching ${goQ(p.flags.get("search")!)}\n` : "no peers connected\n  peers appear when you communicate with other nodes\n";
    let s = `${pad("NODE ID", 10)}  ${pad("ENDPOINT", 30)}  ${pad("ENCRYPTED", 20)}  AUTH\n`;
    for (const x of list.slice(0, 50)) s += `${pad(x.node_id as number, 10)}  ${pad(String(x.endpoint), 30)}  ${pad(x.encrypted ? "yes (AES-256-GCM)" : "no", 20)}  ${x.authenticated ? "yes (Ed25519)" : "no"}\n`;
    if (list.length > 50) s += `\n... and ${list.length - 50} more peers (showing first 50)\n`;
    if (omitted > 0) s += `${list.length > 50 ? "" : "\n"}... and ${omitted} more peers the daemon did not list (reply size limit)\n`;
    return s;
  });
  list = [];
}

export async function connections(ctx: Ctx): Promise<void> {
  const i = await daemonInfo();
  const cl = (i.conn_list as J[] | null) ?? [];
  ctx.ok({ connections: cl, total: cl.length }, () => {
    if (!cl.length) return 'no active connections\n  connect to a peer: pilotctl connect <address|hostname> --message "hello"\n';
    let s = `Active connections: ${cl.length}\n\n`;
    s += `${pad("ID", 4)}  ${pad("LOCAL", 6)}  ${pad("REMOTE ADDR", 22)}  ${pad("RPORT", 6)}  ${pad("STATE", 11)}  ${pad("CWND", 8)}  ${pad("FLIGHT", 8)}  ${pad("SRTT", 8)}  ${pad("UNACK", 6)}  ${pad("OOO", 6)}  ${pad("PEERWIN", 8)}  ${pad("RCVWIN", 8)}\n`;
    const fb = (x: unknown) => formatBytes(Number(x));
    for (const c of cl.slice(0, 50)) {
      s += `${pad(c.id as number, 4)}  ${pad(c.local_port as number, 6)}  ${pad(String(c.remote_addr), 22)}  ${pad(c.remote_port as number, 6)}  ${pad(String(c.state), 11)}  ${pad(fb(c.cong_win), 8)}  ${pad(fb(c.in_flight), 8)}  ${pad(c.srtt_ms as number, 6)}ms  ${pad(c.unacked as number, 6)}  ${pad(c.ooo_buf as number, 6)}  ${pad(fb(c.peer_recv_win), 8)}  ${pad(fb(c.recv_win), 8)}\n`;
      s += `      tx: ${fb(c.bytes_sent)} (${c.segs_sent} segs)  rx: ${fb(c.bytes_recv)} (${c.segs_recv} segs)  retx: ${c.retransmits}  fast-retx: ${c.fast_retx}  sack: ${c.sack_sent}/${c.sack_recv}  dup-ack: ${c.dup_acks}\n`;
    }
    if (cl.length > 50) s += `\n... and ${cl.length - 50} more connections (showing first 50)\n`;
    return s;
  });
}
