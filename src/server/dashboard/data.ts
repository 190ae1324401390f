// Dashboard data: one cached, read-only snapshot of the public registry view, shared by
// /api/stats, /api/nodes (paged and filtered on the server) and the badges.
//
// The reference walked every node and trust pair under its global lock on every dashboard or
// badge request (public, CORS *), so a few polling browsers could stall a large registry. Here
// the walk happens at most once per TTL (single flight: concurrent requests share one rebuild),
// and a page of nodes is a slice of the sorted snapshot. The TTL grows with the cost of a walk
// (20 × its duration, up to 30 s), so however many clients poll, rebuilding takes at most ~5% of
// the process (the SQLite read is synchronous and holds the store lock while it runs).
//
// Privacy: the snapshot holds exactly the reference's public fields (address, tags, online, trust
// link count, task flag, POLO score; network names and member counts; trust edges between live
// nodes). No endpoint, public key, owner or hostname is ever copied into it.
import type { Registry } from "../registry.ts";
import { STALE_MS, addrText } from "../validate.ts";

export interface DashNode {
  address: string;
  tags: string[];
  online: boolean;
  trust_links: number;
  task_exec: boolean;
  polo_score: number;
}

export interface DashNetwork {
  id: number;
  name: string;
  members: number;
  online_members: number;
}

export interface DashSummary {
  total_nodes: number;
  active_nodes: number;
  total_trust_links: number;
  total_requests: number;
  unique_tags: number;
  task_executors: number;
  uptime_secs: number;
}

export interface DashSnapshot {
  builtAt: number;
  summary: DashSummary;
  networks: DashNetwork[];
  /** Sorted by address text, like the reference's `nodes`. */
  nodes: DashNode[];
  edges: { source: string; target: string }[];
  /** Distinct tags, most used first (for the page's filter suggestions). */
  topTags: { tag: string; nodes: number }[];
  /** Per node (same order as `nodes`): its tags lower-cased, joined by "\n" (filter scans). */
  tagText: string[];
  /** Filter results of this snapshot (tag → indexes into `nodes`), at most FILTER_CACHE entries. */
  filters: Map<string, Uint32Array>;
  /** Serialized list parts of /api/stats, built on first use (capped, uncapped/lite). */
  json: { lists?: string; lite?: string };
}

export interface NodePage {
  page: number;
  per: number;
  pages: number;
  /** Nodes matching the filter (all nodes without a filter). */
  total: number;
  tag: string;
  nodes: DashNode[];
}

export class DashboardQueryError extends Error {
  constructor(readonly code: string, message: string, readonly hint: string) {
    super(message);
  }
}

export interface DashboardOptions {
  /** Minimum snapshot lifetime (default 2 s; 0 = rebuild on every request, tests). */
  ttlMs?: number;
  /** /api/stats lists at most this many nodes (then `nodes_truncated: true`; page with /api/nodes). */
  statsNodeCap?: number;
  /** /api/stats lists at most this many edges (then `edges_truncated: true`). */
  statsEdgeCap?: number;
}

export const MAX_PER_PAGE = 200;
export const DEFAULT_PER_PAGE = 50;
export const MAX_TAG_FILTER = 64;
const TOP_TAGS = 50;
const MAX_TTL_MS = 30_000;
const FILTER_CACHE = 16; // × up to 4 bytes per node each

export class DashboardData {
  private snap: DashSnapshot | null = null;
  private building: Promise<DashSnapshot> | null = null;
  private readonly ttlMs: number;
  private lastBuildMs = 0;
  readonly statsNodeCap: number;
  readonly statsEdgeCap: number;

  constructor(private readonly registry: Registry, opts: DashboardOptions = {}) {
    this.ttlMs = opts.ttlMs ?? 2000;
    this.statsNodeCap = opts.statsNodeCap ?? 1000;
    this.statsEdgeCap = opts.statsEdgeCap ?? 5000;
  }

  private now(): number {
    return (this.registry.opts.now ?? Date.now)();
  }

  /** The current snapshot (rebuilt when older than ttlMs). */
  async snapshot(): Promise<DashSnapshot> {
    const s = this.snap;
    if (s && Date.now() - s.builtAt < this.ttl()) return s;
    if (!this.building) {
      this.building = this.build().then(
        (r) => { this.snap = r; this.building = null; return r; },
        (e) => { this.building = null; throw e; },
      );
    }
    return this.building;
  }

  /** Current snapshot lifetime in ms. */
  ttl(): number {
    return this.ttlMs === 0 ? 0 : Math.max(this.ttlMs, Math.min(MAX_TTL_MS, 20 * this.lastBuildMs));
  }

  private async build(): Promise<DashSnapshot> {
    const t0 = performance.now();
    try {
      return await this.walk();
    } finally {
      this.lastBuildMs = performance.now() - t0;
    }
  }

  private async walk(): Promise<DashSnapshot> {
    const reg = this.registry;
    const { nodes: recs, pairs, nets } = await reg.store.read(async (t) => ({ nodes: await t.allNodes(), pairs: await t.pairs(), nets: await t.networks() }));
    const cut = this.now() - STALE_MS;
    const live = new Set<number>();
    for (const n of recs) live.add(n.id);
    const links = new Map<number, number>();
    const edges: { source: string; target: string }[] = [];
    for (const [a, b] of pairs) {
      links.set(a, (links.get(a) ?? 0) + 1);
      links.set(b, (links.get(b) ?? 0) + 1);
      if (live.has(a) && live.has(b)) edges.push({ source: addrText(0, a), target: addrText(0, b) });
    }
    const tagCount = new Map<string, number>();
    let online = 0, tasks = 0;
    const onlineIds = new Set<number>();
    const nodes: DashNode[] = new Array(recs.length);
    for (let i = 0; i < recs.length; i++) {
      const n = recs[i];
      const on = n.lastSeen >= cut;
      if (on) { online++; onlineIds.add(n.id); }
      if (n.taskExec) tasks++;
      for (const tg of n.tags) tagCount.set(tg, (tagCount.get(tg) ?? 0) + 1);
      nodes[i] = { address: addrText(n.networks[0] ?? 0, n.id), tags: n.tags, online: on, trust_links: links.get(n.id) ?? 0, task_exec: n.taskExec, polo_score: n.polo };
    }
    nodes.sort((a, b) => (a.address < b.address ? -1 : a.address > b.address ? 1 : 0));
    const tagText = nodes.map((n) => (n.tags.length ? n.tags.join("\n").toLowerCase() : ""));
    const networks = nets.map((n) => {
      if (n.id === 0) return { id: 0, name: n.name, members: recs.length, online_members: online };
      let m = 0, on = 0;
      for (const id of n.members) if (live.has(id)) { m++; if (onlineIds.has(id)) on++; }
      return { id: n.id, name: n.name, members: m, online_members: on };
    });
    const topTags = [...tagCount].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).slice(0, TOP_TAGS).map(([tag, c]) => ({ tag, nodes: c }));
    return {
      builtAt: Date.now(),
      summary: {
        total_nodes: recs.length,
        active_nodes: online,
        total_trust_links: pairs.length,
        total_requests: reg.metrics.total,
        unique_tags: tagCount.size,
        task_executors: tasks,
        uptime_secs: Math.floor((Date.now() - reg.metrics.started) / 1000),
      },
      networks,
      nodes,
      edges,
      topTags,
      tagText,
      filters: new Map(),
      json: {},
    };
  }

  /** Counters recomputed per request on top of the snapshot (requests and uptime move on their own). */
  private liveSummary(s: DashSnapshot): DashSummary {
    return { ...s.summary, total_requests: this.registry.metrics.total, uptime_secs: Math.floor((Date.now() - this.registry.metrics.started) / 1000) };
  }

  async summary(): Promise<DashSummary> {
    return this.liveSummary(await this.snapshot());
  }

  /**
   * /api/stats body: the reference's keys, in its order. `nodes`/`edges` are capped (flagged with
   * `nodes_truncated`/`edges_truncated`); `withLists: false` leaves them empty (the page's poll).
   * Extensions: `top_tags`, `nodes_truncated`, `edges_truncated`.
   */
  async statsJson(withLists: boolean): Promise<string> {
    const s = await this.snapshot();
    // The lists are serialized once per snapshot; only the counters are rebuilt per request.
    const head = JSON.stringify(this.liveSummary(s));
    if (!withLists) {
      s.json.lite ??= `,"networks":${JSON.stringify(s.networks)},"nodes":[],"edges":[],"top_tags":${JSON.stringify(s.topTags)}}`;
      return head.slice(0, -1) + s.json.lite;
    }
    if (s.json.lists === undefined) {
      const capN = s.nodes.length > this.statsNodeCap, capE = s.edges.length > this.statsEdgeCap;
      const nodes = capN ? s.nodes.slice(0, this.statsNodeCap) : s.nodes;
      const edges = capE ? s.edges.slice(0, this.statsEdgeCap) : s.edges;
      s.json.lists = `,"networks":${JSON.stringify(s.networks)},"nodes":${JSON.stringify(nodes)},"edges":${JSON.stringify(edges)}` +
        `${capN ? ',"nodes_truncated":true' : ""}${capE ? ',"edges_truncated":true' : ""},"top_tags":${JSON.stringify(s.topTags)}}`;
    }
    return head.slice(0, -1) + s.json.lists;
  }

  /** One page of nodes (sorted by address), optionally only those with a tag containing `tag`. */
  async page(params: URLSearchParams): Promise<NodePage> {
    const page = intParam(params, "page", 1, 1, 1e9);
    const per = intParam(params, "per", DEFAULT_PER_PAGE, 1, MAX_PER_PAGE);
    let tag = (params.get("tag") ?? "").trim().toLowerCase();
    if (tag.startsWith("#")) tag = tag.slice(1);
    if (tag.length > MAX_TAG_FILTER) throw new DashboardQueryError("bad_tag", `tag filter longer than ${MAX_TAG_FILTER} characters`, "use a shorter tag");
    if (/[\u0000-\u001f]/.test(tag)) throw new DashboardQueryError("bad_tag", "tag filter contains control characters", "tags are letters, digits and dashes");
    const s = await this.snapshot();
    let total: number;
    let out: DashNode[];
    const from = (page - 1) * per;
    if (!tag) {
      total = s.nodes.length;
      out = s.nodes.slice(from, from + per);
    } else {
      let hits = s.filters.get(tag);
      if (!hits) {
        const idx: number[] = [];
        for (let i = 0; i < s.tagText.length; i++) if (s.tagText[i] !== "" && s.tagText[i].includes(tag)) idx.push(i);
        hits = Uint32Array.from(idx);
        if (s.filters.size >= FILTER_CACHE) s.filters.delete(s.filters.keys().next().value!);
        s.filters.set(tag, hits);
      }
      total = hits.length;
      out = Array.from(hits.subarray(from, from + per), (i) => s.nodes[i]);
    }
    return { page, per, pages: Math.max(1, Math.ceil(total / per)), total, tag, nodes: out };
  }
}

function intParam(p: URLSearchParams, name: string, def: number, min: number, max: number): number {
  const raw = p.get(name);
  if (raw === null || raw === "") return def;
  if (!/^[0-9]{1,10}$/.test(raw)) throw new DashboardQueryError(`bad_${name}`, `${name} must be a positive integer`, `${name}=${def}`);
  const v = Number(raw);
  if (v < min || v > max) throw new DashboardQueryError(`bad_${name}`, `${name} must be between ${min} and ${max}`, `${name}=${Math.min(Math.max(v, min), max)}`);
  return v;
}
