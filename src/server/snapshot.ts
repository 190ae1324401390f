// Registry state as a snapshot document: the reference's JSON persistence format (also the
// payload of replication snapshots), exported from and imported into a Store.
//
// The document: {"next_node", "next_net", "nodes": {"<id>": node}, "networks": {"<id>": net},
// "trust_pairs": ["a:b"], "pub_key_idx": {key: id}, "handshake_inbox", "handshake_responses"}
// plus pilot-ts extension fields that reference readers ignore (they decode into fixed Go
// structs): "trust_grants" (directional grants "grantor>grantee"), "owner_idx" (owner bindings of
// nodes that are gone) and the node flag "strict" (timestamped signatures only).
import { bool, str, u16, u32 } from "../proto/registry.ts";
import type { NodeRec, Store, Tx } from "./store.ts";
import { RegError, b64, b64decode, clampPolo, hasNul, validateHostname } from "./validate.ts";

/** RFC 3339, whole seconds, UTC ("Z") — the form the reference writes for last_seen/created. */
function rfc3339s(ms: number): string {
  return new Date(Math.floor(ms / 1000) * 1000).toISOString().replace(/\.\d{3}Z$/, "Z");
}
/** Go's default time encoding: fractional seconds with trailing zeros trimmed (inbox timestamps). */
function rfc3339frac(ms: number): string {
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, (_, f: string) => (/^0+$/.test(f) ? "Z" : "." + f.replace(/0+$/, "") + "Z"));
}

/**
 * Export the whole state as the snapshot document (what a reference primary writes to disk
 * and pushes to standbys), plus extension fields (`trust_grants`, `owner_idx`, node `strict`)
 * that reference standbys ignore. Reads in one store.read (consistent: serialised with writers).
 */
export async function exportSnapshot(store: Store): Promise<Record<string, unknown>> {
  return store.read(async (t) => {
    const c = await t.counters();
    const nodesArr = await t.allNodes();
    const nodes: Record<string, unknown> = {};
    for (const n of nodesArr) {
      const o: Record<string, unknown> = { id: n.id };
      if (n.owner) o.owner = n.owner;
      o.public_key = n.publicKey;
      if (n.realAddr) o.real_addr = n.realAddr;
      o.networks = n.networks.length ? n.networks : null;
      if (n.public) o.public = true;
      o.last_seen = rfc3339s(n.lastSeen);
      if (n.hostname) o.hostname = n.hostname;
      if (n.tags.length) o.tags = n.tags;
      if (n.polo) o.polo_score = n.polo;
      if (n.taskExec) o.task_exec = true;
      if (n.strict) o.strict = true; // extension
      nodes[String(n.id)] = o;
    }
    const networks: Record<string, unknown> = {};
    for (const net of await t.networks()) {
      // Backbone members = every live node in registration (seq) order; this store
      // derives them from the node table instead of keeping a list.
      const members = net.id === 0 ? nodesArr.map((n) => n.id) : net.members;
      const o: Record<string, unknown> = { id: net.id, name: net.name, join_rule: net.joinRule };
      if (net.token) o.token = net.token;
      o.members = members;
      o.created = rfc3339s(net.created);
      networks[String(net.id)] = o;
    }
    const doc: Record<string, unknown> = { next_node: c.nextNode, next_net: c.nextNet, nodes, networks };
    const pairs = await t.pairs();
    if (pairs.length) doc.trust_pairs = pairs.map(([a, b]) => `${a}:${b}`);
    const grants = await t.grantsAll();
    if (grants.length) doc.trust_grants = grants.map(([a, b]) => `${a}>${b}`); // extension: directional grants
    const keys = await t.keyAll();
    if (keys.length) doc.pub_key_idx = Object.fromEntries(keys);
    const owners = await t.ownerAll();
    if (owners.length) doc.owner_idx = Object.fromEntries(owners); // extension: bindings of nodes that are gone
    const inbox: Record<string, unknown[]> = {};
    for (const { target, r } of await t.inboxAll()) (inbox[String(target)] ??= []).push({ from_node_id: r.from, justification: r.justification, timestamp: rfc3339frac(r.ts) });
    if (Object.keys(inbox).length) doc.handshake_inbox = inbox;
    const resp: Record<string, unknown[]> = {};
    for (const { requester, r } of await t.respAll()) (resp[String(requester)] ??= []).push({ from_node_id: r.from, accept: r.accept, timestamp: rfc3339frac(r.ts) });
    if (Object.keys(resp).length) doc.handshake_responses = resp;
    return doc;
  });
}

/** Replace the store's whole state by a snapshot document (a standby applying a replicated snapshot). */
export async function applySnapshot(store: Store, doc: unknown): Promise<{ nodes: number; pairs: number }> {
  if (!doc || typeof doc !== "object" || Array.isArray(doc)) throw new RegError("bad_snapshot", "snapshot is not a JSON object");
  const d = doc as any;
  if (!d.nodes || typeof d.nodes !== "object" || !d.networks || typeof d.networks !== "object") {
    // Refuse a document that would wipe the state without being a real snapshot.
    throw new RegError("bad_snapshot", "snapshot lacks nodes/networks");
  }
  return store.tx(async (t) => {
    await t.wipe();
    return importSnapshotTx(t, d);
  });
}

// ------------------------------------------------------------------ import

/**
 * Import the reference's JSON snapshot document into an empty store (first start). Validates on
 * load: nodes with undecodable or non-32-byte keys are skipped, counters are clamped to ≥ 1
 * and above every imported ID, and the backbone is ensured. Trust pairs become grants in both
 * directions (the reference's pairs were symmetric).
 */
export async function importSnapshot(store: Store, doc: any): Promise<{ nodes: number; pairs: number }> {
  if (!doc || typeof doc !== "object" || Array.isArray(doc)) throw new RegError("bad_snapshot", "snapshot is not a JSON object");
  return store.tx((t) => importSnapshotTx(t, doc));
}

/**
 * The import itself, inside the caller's transaction (also used by a standby to apply a
 * replicated snapshot after Tx.wipe()). Besides the reference fields it reads the
 * extension fields written by replication.ts exportSnapshot (ignored by reference standbys, which
 * decode into fixed Go structs): `trust_grants` (directional grants "grantor>grantee"; when
 * present they replace the symmetric `trust_pairs`), `owner_idx` (owner bindings of non-live
 * nodes) and the node flag `strict` (timestamped signatures only).
 */
export async function importSnapshotTx(t: Tx, doc: any): Promise<{ nodes: number; pairs: number }> {
  if (!doc || typeof doc !== "object" || Array.isArray(doc)) throw new RegError("bad_snapshot", "snapshot is not a JSON object");
  let nNodes = 0, nPairs = 0;
  const nodesObj = doc.nodes && typeof doc.nodes === "object" ? doc.nodes : {};
  let maxId = 0;
  let seq = 0;
  // Registration order = position in the backbone member list; nodes missing from it go last,
  // by ID.
  const bb = doc.networks?.["0"]?.members;
  const pos = new Map<number, number>();
  if (Array.isArray(bb)) for (let i = 0; i < bb.length; i++) { const id = u32(bb[i]); if (!pos.has(id)) pos.set(id, i); }
  const ordered = Object.values(nodesObj) as any[];
  const rank = (r: any) => pos.get(u32(r?.id)) ?? 1e12;
  ordered.sort((a, b) => rank(a) - rank(b) || u32(a?.id) - u32(b?.id));
  for (const r of ordered) {
    const id = u32(r?.id);
    const kb = b64decode(str(r?.public_key));
    if (id === 0 || !kb || kb.length !== 32) continue;
    const K = b64(kb);
    const ls = Date.parse(str(r.last_seen));
    let hostname = str(r.hostname);
    if (validateHostname(hostname) || (hostname && (await t.nodeByHostname(hostname)) !== null)) hostname = "";
    const node: NodeRec = {
      id, owner: str(r.owner).replaceAll("\u0000", ""), publicKey: K, realAddr: str(r.real_addr),
      networks: Array.isArray(r.networks) ? r.networks.map(u16) : [0], public: bool(r.public),
      lastSeen: Number.isFinite(ls) ? ls : Date.now(), hostname,
      tags: Array.isArray(r.tags) ? r.tags.filter((x: unknown) => typeof x === "string") : [],
      polo: typeof r.polo_score === "number" ? clampPolo(Math.trunc(r.polo_score)) : 0, taskExec: bool(r.task_exec), seq: ++seq, strict: bool(r.strict),
    };
    if (!node.networks.includes(0)) node.networks.unshift(0);
    await t.putNode(node);
    await t.keySet(K, id);
    if (node.owner) await t.ownerSet(node.owner, id);
    maxId = Math.max(maxId, id);
    nNodes++;
  }
  if (doc.pub_key_idx && typeof doc.pub_key_idx === "object") {
    for (const [k, v] of Object.entries(doc.pub_key_idx)) {
      const kb = b64decode(k);
      const id = u32(v);
      if (!kb || kb.length !== 32 || id === 0) continue;
      const K = b64(kb);
      if ((await t.keyGet(K)) === null) await t.keySet(K, id);
      maxId = Math.max(maxId, id);
    }
  }
  if (doc.owner_idx && typeof doc.owner_idx === "object" && !Array.isArray(doc.owner_idx)) {
    for (const [o, v] of Object.entries(doc.owner_idx)) {
      const id = u32(v);
      if (o && !hasNul(o) && id !== 0 && (await t.ownerGet(o)) === null) await t.ownerSet(o, id);
    }
  }
  if (Array.isArray(doc.trust_grants)) {
    for (const p of doc.trust_grants) {
      const mm = /^(\d+)>(\d+)$/.exec(str(p));
      if (!mm) continue;
      await t.grantAdd(Number(mm[1]), Number(mm[2]));
      nPairs++;
    }
  } else if (Array.isArray(doc.trust_pairs)) {
    for (const p of doc.trust_pairs) {
      const mm = /^(\d+):(\d+)$/.exec(str(p));
      if (!mm) continue;
      const a = Number(mm[1]), b = Number(mm[2]);
      await t.grantAdd(a, b);
      await t.grantAdd(b, a);
      nPairs++;
    }
  }
  if (doc.networks && typeof doc.networks === "object") {
    for (const n of Object.values(doc.networks) as any[]) {
      const id = u16(n?.id);
      const c = Date.parse(str(n?.created));
      if (id === 0) {
        // The backbone is the store's own (name, open rule, members derived from the node table);
        // only its creation time is carried over, so a copy exports the same document as its source.
        const bb = Number.isFinite(c) ? await t.network(0) : null;
        if (bb) await t.putNetwork({ ...bb, created: c });
        continue;
      }
      await t.putNetwork({ id, name: str(n.name), joinRule: str(n.join_rule) || "open", token: str(n.token), members: Array.isArray(n.members) ? n.members.map(u32) : [], created: Number.isFinite(c) ? c : 0 });
    }
  }
  // Sequential (the SQLite tx is synchronous underneath; order preserved by array order).
  for (const [k, arr] of Object.entries(doc.handshake_inbox ?? {})) {
    if (!(Number(k) > 0) || !Array.isArray(arr)) continue;
    for (const e of arr) {
      const ts = Date.parse(str(e?.timestamp));
      await t.inboxAdd(Number(k), { from: u32(e?.from_node_id), justification: str(e?.justification).replaceAll("\u0000", ""), ts: Number.isFinite(ts) ? ts : Date.now() });
    }
  }
  for (const [k, arr] of Object.entries(doc.handshake_responses ?? {})) {
    if (!(Number(k) > 0) || !Array.isArray(arr)) continue;
    for (const e of arr) {
      const ts = Date.parse(str(e?.timestamp));
      await t.respAdd(Number(k), { from: u32(e?.from_node_id), accept: bool(e?.accept), ts: Number.isFinite(ts) ? ts : Date.now() });
    }
  }
  await t.bumpNextNode(Math.max(u32(doc.next_node), maxId + 1, 1));
  // Keep the backbone-order counter above every imported node (a fresh registration after an
  // import must sort after the imported nodes) and carry next_net over.
  const c = await t.counters();
  await t.setCounters({ nextNode: c.nextNode, nextNet: Math.max(c.nextNet, u16(doc.next_net), 1), seq: Math.max(c.seq, seq + 1) });
  return { nodes: nNodes, pairs: nPairs };
}
