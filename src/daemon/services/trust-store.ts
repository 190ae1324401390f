// Local trust state and its file, trust.json (next to the identity file): the reference's layout
// (Go json.MarshalIndent, 2 spaces, struct order) plus an `outgoing` list of nodes we asked, which
// the reference's decoder ignores. Written atomically with mode 0600; a file that cannot be
// decoded is moved aside (kept for the user) instead of being overwritten.
import { readFileSync, renameSync } from "node:fs";
import { ProtoError } from "../../proto/types.ts";
import type { ServiceLogger } from "./context.ts";
import { atomicWriteFile, errText, GO_ZERO_UNIX, goString, parseRfc3339, rfc3339Local } from "./util.ts";

export interface TrustedPeer {
  nodeId: number;
  publicKey: string;
  /** ms since epoch; null = unparsable stored time (Go zero time) */
  approvedAt: number | null;
  mutual: boolean;
  network: number;
}

export interface PendingRequest {
  nodeId: number;
  publicKey: string;
  justification: string;
  receivedAt: number | null;
}

const GO_ZERO_TEXT = "0001-01-01T00:00:00Z";
const timeText = (ms: number | null) => (ms === null ? GO_ZERO_TEXT : rfc3339Local(ms));
const unixS = (ms: number | null) => (ms === null ? GO_ZERO_UNIX : Math.floor(ms / 1000));

/** trust.json as the reference writes it (Go json.MarshalIndent, 2 spaces, struct order). */
export function encodeTrustFile(trusted: TrustedPeer[], pending: PendingRequest[], outgoing: number[] = []): string {
  const I2 = "    ", I3 = "      ";
  let s = "{\n";
  if (trusted.length === 0) s += '  "trusted": null';
  else {
    s += '  "trusted": [\n' + trusted.map((t) => {
      let r = I2 + "{\n" + I3 + '"node_id": ' + t.nodeId + ",\n" +
        I3 + '"public_key": ' + goString(t.publicKey) + ",\n" +
        I3 + '"approved_at": ' + goString(timeText(t.approvedAt)) + ",\n" +
        I3 + '"mutual": ' + (t.mutual ? "true" : "false");
      if (t.network !== 0) r += ",\n" + I3 + '"network": ' + t.network;
      return r + "\n" + I2 + "}";
    }).join(",\n") + "\n  ]";
  }
  if (pending.length > 0) {
    s += ',\n  "pending": [\n' + pending.map((p) => {
      let r = I2 + "{\n" + I3 + '"node_id": ' + p.nodeId;
      if (p.publicKey !== "") r += ",\n" + I3 + '"public_key": ' + goString(p.publicKey);
      if (p.justification !== "") r += ",\n" + I3 + '"justification": ' + goString(p.justification);
      r += ",\n" + I3 + '"received_at": ' + goString(timeText(p.receivedAt));
      return r + "\n" + I2 + "}";
    }).join(",\n") + "\n  ]";
  }
  // Extra key, ignored by the reference's decoder (unknown keys are skipped).
  if (outgoing.length > 0) s += ',\n  "outgoing": [\n' + outgoing.map((n) => I2 + n).join(",\n") + "\n  ]";
  return s + "\n}";
}

export function decodeTrustFile(text: string): { trusted: TrustedPeer[]; pending: PendingRequest[]; outgoing: number[] } {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new ProtoError("bad_trust_file", "trust.json is not valid JSON", "fix or delete the file; it is rewritten on the next change");
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw new ProtoError("bad_trust_file", "trust.json is not a JSON object", "fix or delete the file");
  const o = v as Record<string, unknown>;
  const u32 = (x: unknown) => (typeof x === "number" && Number.isInteger(x) && x >= 0 && x <= 0xffffffff ? x : null);
  const str = (x: unknown) => (typeof x === "string" ? x : "");
  const time = (x: unknown) => {
    const ms = parseRfc3339(x);
    return Number.isNaN(ms) || x === GO_ZERO_TEXT ? null : ms;
  };
  const trusted: TrustedPeer[] = [];
  for (const r of Array.isArray(o.trusted) ? o.trusted : []) {
    if (typeof r !== "object" || r === null) continue;
    const t = r as Record<string, unknown>;
    const id = u32(t.node_id);
    if (id === null) continue;
    const net = typeof t.network === "number" && Number.isInteger(t.network) && t.network >= 0 && t.network <= 0xffff ? t.network : 0;
    trusted.push({ nodeId: id, publicKey: str(t.public_key), approvedAt: time(t.approved_at), mutual: t.mutual === true, network: net });
  }
  const pending: PendingRequest[] = [];
  for (const r of Array.isArray(o.pending) ? o.pending : []) {
    if (typeof r !== "object" || r === null) continue;
    const p = r as Record<string, unknown>;
    const id = u32(p.node_id);
    if (id === null) continue;
    pending.push({ nodeId: id, publicKey: str(p.public_key), justification: str(p.justification), receivedAt: time(p.received_at) });
  }
  const outgoing: number[] = [];
  for (const x of Array.isArray(o.outgoing) ? o.outgoing : []) {
    const id = u32(x);
    if (id !== null) outgoing.push(id);
  }
  return { trusted, pending, outgoing };
}

export interface PendingJson { justification: string; node_id: number; public_key: string; received_at: number }
export interface TrustedJson { approved_at: number; mutual: boolean; network: number; node_id: number; public_key: string }

/** Trusted peers, pending requests and the nodes we asked, persisted on every change. */
export class TrustStore {
  readonly trusted = new Map<number, TrustedPeer>();
  readonly pending = new Map<number, PendingRequest>();
  readonly outgoing = new Set<number>();

  /** `path` null = in memory only; `now` names the aside copy of a corrupt file. */
  constructor(
    private readonly path: string | null,
    private readonly log: ServiceLogger,
    private readonly now: () => number = Date.now,
  ) {
    this.load();
  }

  private load(): void {
    const path = this.path;
    if (!path) return;
    let text: string;
    try {
      text = readFileSync(path, "utf8");
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "ENOENT") this.log.warn("trust: cannot read trust.json", { error: errText(e) });
      return;
    }
    try {
      const d = decodeTrustFile(text);
      for (const t of d.trusted) this.trusted.set(t.nodeId, t);
      for (const p of d.pending) this.pending.set(p.nodeId, p);
      for (const n of d.outgoing) this.outgoing.add(n);
    } catch (e) {
      // Keep the unreadable file for the user instead of overwriting it on the next save.
      const aside = `${path}.corrupt-${this.now()}`;
      this.log.warn("trust: trust.json undecodable; starting empty", { error: errText(e), movedTo: aside });
      try {
        renameSync(path, aside);
      } catch {
        /* the next save replaces it */
      }
    }
  }

  save(): void {
    const path = this.path;
    if (!path) return;
    try {
      atomicWriteFile(path, encodeTrustFile([...this.trusted.values()], [...this.pending.values()], [...this.outgoing]), 0o600);
    } catch (e) {
      this.log.warn("trust: save failed", { error: errText(e) });
    }
  }

  /** Pending requests as the IPC Handshake "pending" reply lists them. */
  pendingJson(): PendingJson[] {
    return [...this.pending.values()].map((p) => ({
      justification: p.justification, node_id: p.nodeId, public_key: p.publicKey, received_at: unixS(p.receivedAt),
    }));
  }

  /** Trusted peers as the IPC Handshake "trusted" reply lists them. */
  trustedJson(): TrustedJson[] {
    return [...this.trusted.values()].map((t) => ({
      approved_at: unixS(t.approvedAt), mutual: t.mutual, network: t.network, node_id: t.nodeId, public_key: t.publicKey,
    }));
  }

  /** Trust a peer: it is no longer pending nor asked. Saves unless `save` is false (batching). */
  trust(t: TrustedPeer, save = true): void {
    this.pending.delete(t.nodeId);
    this.outgoing.delete(t.nodeId);
    this.trusted.set(t.nodeId, t);
    if (save) this.save();
  }

  /** Forget every trace of `P` (trusted, pending, asked); saves when anything changed. */
  forget(P: number): { wasTrusted: boolean } {
    const wasTrusted = this.trusted.delete(P);
    const hadPending = this.pending.delete(P);
    const hadOut = this.outgoing.delete(P);
    if (wasTrusted || hadPending || hadOut) this.save();
    return { wasTrusted };
  }
}
