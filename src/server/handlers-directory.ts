// Registry handlers that answer questions about other nodes and the network: resolve, punch,
// resolve_hostname, list_networks, list_nodes, beacons. `resolve` and `punch` reveal an endpoint
// only to nodes the target may be resolved by (see canResolve); the reference let any node that
// had reported trust on its own resolve anybody.
import { punchChallenge, resolveChallenge } from "../proto/registry.ts";
import { NEED_WRITE, canResolve, live, readOrWrite, type Core, type HandlerTable, type Reply } from "./core.ts";
import type { NodeRec, Tx } from "./store.ts";
import { BEACON_TTL_MS, addrText, fail } from "./validate.ts";

/** Beacon announcements kept (the reference had no bound). */
export const MAX_BEACONS = 1024;

export const directoryHandlers: HandlerTable = {
  async resolve(core, m, ctx) {
    const target = m.node_id;
    const rid = m.requester_id;
    const challenge = resolveChallenge(rid, target);
    const finish = async (t: Tx, req: NodeRec): Promise<Reply<"resolve">> => {
      const tn = await live(t, target);
      if (!(await canResolve(t, req, tn))) fail("private", `node ${target} is private and has not granted trust to ${rid}`);
      return { type: "resolve_ok", node_id: target, real_addr: tn.realAddr };
    };
    return readOrWrite(core.store, async (t) => {
      const req = await live(t, rid, "requester");
      if (!core.auth.verifyNoWrite(req, challenge, m, ctx)) return NEED_WRITE;
      return finish(t, req);
    }, async (t) => {
      const req = await live(t, rid, "requester");
      await core.auth.verify(t, req, challenge, m, ctx);
      return finish(t, req);
    }, true);
  },

  async punch(core, m, ctx) {
    const { requester_id: rid, node_a: a, node_b: b } = m;
    const challenge = punchChallenge(a, b);
    return readOrWrite(core.store, async (t) => {
      const req = await live(t, rid, "requester");
      if (rid !== a && rid !== b) fail("not_participant", "requester must be node_a or node_b");
      if (!core.auth.verifyNoWrite(req, challenge, m, ctx)) return NEED_WRITE;
      return punchFinish(t, req, rid, a, b);
    }, async (t) => {
      const req = await live(t, rid, "requester");
      if (rid !== a && rid !== b) fail("not_participant", "requester must be node_a or node_b");
      await core.auth.verify(t, req, challenge, m, ctx);
      return punchFinish(t, req, rid, a, b);
    }, true);
  },

  async resolve_hostname(core, m) {
    const h = m.hostname;
    if (!h) fail("hostname_required", "hostname is required");
    return core.store.view(async (t) => {
      const id = await t.nodeByHostname(h);
      const node = id === null ? null : await t.getNode(id);
      if (!node) fail("not_found", `hostname ${JSON.stringify(h)} not found`);
      return { type: "resolve_hostname_ok", node_id: id!, address: addrText(0, id!), public: node!.public, hostname: h };
    });
  },

  async list_networks(core) {
    return core.store.view(async (t) => {
      const nets = await t.networks();
      const count = await t.nodeCount();
      return {
        type: "list_networks_ok",
        networks: nets.map((n) => ({ id: n.id, name: n.name, members: n.id === 0 ? count : n.members.length, join_rule: n.joinRule })),
      };
    });
  },

  async list_nodes(core, m) {
    const nid = m.network_id;
    if (nid === 0) fail("forbidden", "listing the backbone is not allowed");
    return core.store.view(async (t) => {
      const net = await t.network(nid);
      if (!net) fail("not_found", `network ${nid} not found`);
      const nodes: Reply<"list_nodes">["nodes"] = [];
      for (const id of net!.members) {
        const n = await t.getNode(id);
        if (!n) continue;
        const o: Reply<"list_nodes">["nodes"][number] = { node_id: id, address: addrText(nid, id) };
        if (n.hostname) o.hostname = n.hostname;
        if (n.taskExec) o.task_exec = true;
        if (n.public) o.real_addr = n.realAddr;
        nodes.push(o);
      }
      return { type: "list_nodes_ok", nodes };
    });
  },

  create_network: disabled,
  join_network: disabled,
  leave_network: disabled,

  async beacon_register(core, m) {
    const id = m.beacon_id;
    if (id === 0) fail("bad_beacon_id", "beacon_id must be non-zero");
    if (!m.addr) fail("addr_required", "addr is required");
    if (core.beacons.size >= MAX_BEACONS && !core.beacons.has(id)) fail("too_many_beacons", "beacon table full");
    core.beacons.set(id, { addr: m.addr, seen: core.now() });
    return { type: "beacon_register_ok", beacon_id: id };
  },

  async beacon_list(core) {
    return { type: "beacon_list_ok", beacons: liveBeacons(core) };
  },
};

async function disabled(): Promise<never> {
  return fail("disabled", "custom networks are disabled in this version");
}

function liveBeacons(core: Core): { id: number; addr: string }[] {
  const now = core.now();
  const out: { id: number; addr: string }[] = [];
  for (const [id, b] of core.beacons) if (now - b.seen <= BEACON_TTL_MS) out.push({ id, addr: b.addr });
  return out;
}

async function punchFinish(t: Tx, req: NodeRec, rid: number, a: number, b: number): Promise<Reply<"punch">> {
  const na = await live(t, a);
  const nb = await live(t, b);
  const other = rid === a ? nb : na;
  if (other.id !== rid && !(await canResolve(t, req, other))) fail("private", `node ${other.id} is private and has not granted trust to ${rid}`);
  return { type: "punch_ok", node_a: a, node_a_addr: na.realAddr, node_b: b, node_b_addr: nb.realAddr };
}
