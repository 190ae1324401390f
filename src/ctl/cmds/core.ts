// Identity/discovery, settings, trust, management, mailbox, config and registry commands.
import { copyFileSync, existsSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import type { Identity } from "../../crypto/identity.ts";
import { join } from "node:path";
import { formatAddr, parseAddr } from "../../proto/addr.ts";
import { registryJsonCodec } from "../../proto/registry-frames.ts";
import { parseHostPort } from "../../sys/hostport.ts";
import { withTimeout } from "../../sys/queue.ts";
import { dialFramed } from "../../sys/framed-conn.ts";
import {
  type Ctx, CtlError, cfgStr, configPath, DEFAULT_BEACON_CTL, DEFAULT_REGISTRY, DEFAULT_SOCKET, flagBool, formatBytes,
  getRegistry, getSocket, goQ, loadConfig, localStamp, logFile, pad, parseFlags, parseNodeId, pidFile, pilotDir, rfc3339Local, saveConfig,
} from "../util.ts";
import { connectDaemon, daemonCall, daemonErr, usage } from "./shared.ts";

type J = Record<string, unknown>;

export async function disconnect(ctx: Ctx, args: string[]): Promise<void> {
  if (!args.length) throw usage("pilotctl disconnect <conn_id>");
  const id = parseNodeId(args[0], "conn");
  // Fixed: waits for the CloseOK reply instead of hanging (docs/differences.md).
  await daemonCall("disconnect", (d) => d.disconnect(id, { timeoutMs: 30000 }));
  ctx.ok({ conn_id: id });
}

// ---------- trust ----------
export async function handshake(ctx: Ctx, args: string[]): Promise<void> {
  if (!args.length) throw usage("pilotctl handshake <node_id|address|hostname> [justification]");
  const d = await connectDaemon();
  try {
    const t = args[0];
    let node: number;
    if (/^\d+$/.test(t) && Number(t) <= 0xffffffff) node = Number(t);
    else {
      let a: ReturnType<typeof parseAddr> | null = null;
      try { a = parseAddr(t); } catch {}
      if (a) {
        node = a.node;
        ctx.info(`parsed address ${t} → node ${node}\n`);
      } else {
        try {
          node = Number((await d.resolveHostname(t)).node_id);
        } catch (e) {
          throw new CtlError("not_found", `resolve ${goQ(t)}: ${(e as Error).message}`);
        }
        ctx.info(`resolved ${t} → node ${node}\n`);
      }
    }
    let r: J;
    try { r = await d.handshake(node, args[1] ?? ""); } catch (e) { throw daemonErr("handshake", e); }
    ctx.ok(r, () => r.status === "already_trusted"
      ? `already trusted with node ${node} — ready to communicate\n`
      : `handshake request sent to node ${node}\n  next: node ${node} must approve — or send a handshake back for auto-approval\n  check: pilotctl trust\n`);
  } finally {
    d.close();
  }
}

export async function approve(ctx: Ctx, args: string[]): Promise<void> {
  if (!args.length) throw usage("pilotctl approve <node_id>");
  const d = await connectDaemon();
  try {
    const n = parseNodeId(args[0]);
    let r: J;
    try { r = await d.approve(n); } catch (e) { throw daemonErr("approve", e); }
    ctx.ok(r, () => `trust established with node ${n}\n  try: pilotctl ping ${n}\n`);
  } finally { d.close(); }
}

export async function reject(ctx: Ctx, args: string[]): Promise<void> {
  if (!args.length) throw usage("pilotctl reject <node_id> [reason]");
  const d = await connectDaemon();
  try {
    const n = parseNodeId(args[0]);
    let r: J;
    try { r = await d.reject(n, args[1] ?? ""); } catch (e) { throw daemonErr("reject", e); }
    ctx.ok(r, () => `handshake from node ${n} rejected\n`);
  } finally { d.close(); }
}

export async function untrust(ctx: Ctx, args: string[]): Promise<void> {
  if (!args.length) throw usage("pilotctl untrust <node_id>");
  const n = parseNodeId(args[0], "plain");
  await daemonCall("untrust", (d) => d.untrust(n));
  ctx.ok({ node_id: n });
}

export async function pending(ctx: Ctx): Promise<void> {
  const r = await daemonCall("pending", (d) => d.pending());
  const list = (r.pending as J[] | null) ?? [];
  ctx.ok({ pending: list }, () => {
    if (!list.length) return "no pending handshake requests\n  requests appear here when another node sends: pilotctl handshake <your-node-id>\n";
    let s = `${pad("NODE ID", 10)}  ${pad("JUSTIFICATION", 40)}  RECEIVED\n`;
    for (const p of list) s += `${pad(p.node_id as number, 10)}  ${pad(String(p.justification ?? ""), 40)}  ${localStamp(Number(p.received_at))}\n`;
    return s;
  });
}

export async function trust(ctx: Ctx): Promise<void> {
  const r = await daemonCall("trust", (d) => d.trusted());
  const list = (r.trusted as J[] | null) ?? [];
  ctx.ok({ trusted: list }, () => {
    if (!list.length) return 'no trusted peers\n  establish trust: pilotctl handshake <node_id|hostname> "reason"\n';
    let s = `${pad("NODE ID", 10)}  ${pad("MUTUAL", 10)}  ${pad("NETWORK", 10)}  APPROVED AT\n`;
    for (const t of list) s += `${pad(t.node_id as number, 10)}  ${pad(t.mutual ? "yes" : "no", 10)}  ${pad(Number(t.network) ? String(t.network) : "-", 10)}  ${localStamp(Number(t.approved_at))}\n`;
    return s;
  });
}

// ---------- discovery & settings ----------
export async function find(ctx: Ctx, args: string[]): Promise<void> {
  if (!args.length) throw usage("pilotctl find <hostname>");
  const h = args[0];
  const d = await connectDaemon();
  let r: J;
  try {
    r = await d.resolveHostname(h);
  } catch {
    throw new CtlError("not_found", `cannot find ${goQ(h)} — hostname not found or no mutual trust`, `establish trust first: pilotctl handshake ${h} "reason"`);
  } finally { d.close(); }
  const data = { address: r.address, hostname: h, node_id: r.node_id, public: r.public === true };
  ctx.ok(data, () => `Hostname:  ${h}\nNode ID:   ${r.node_id}\nAddress:   ${r.address}\nVisible:   ${r.public === true ? "public" : "private"}\n`);
}

async function setCfgKey(k: string, v: string | null): Promise<void> {
  const cfg = loadConfig();
  if (v === null) delete cfg[k];
  else cfg[k] = v;
  try { await saveConfig(cfg); } catch {}
}

// Fix (docs/differences.md): validate locally with the registry's rules so a bad value is
// invalid_argument ("do not retry") instead of the registry's opaque connection_failed.
const HOST_RE = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
const TAG_RE = /^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$/;
function checkHostname(h: string): void {
  if (h === "") return; // empty clears
  if (h.length > 63) throw new CtlError("invalid_argument", `invalid hostname ${goQ(h)}: longer than 63 characters`, "hostnames are 1-63 chars of a-z, 0-9 and '-', not starting or ending with '-'");
  if (!HOST_RE.test(h)) throw new CtlError("invalid_argument", `invalid hostname ${goQ(h)}: must match ^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`, "hostnames are 1-63 chars of a-z, 0-9 and '-', not starting or ending with '-'");
  if (h === "localhost" || h === "backbone" || h === "broadcast") throw new CtlError("invalid_argument", `invalid hostname ${goQ(h)}: reserved`, "choose another hostname");
}
function checkTag(t: string): void {
  const v = t.startsWith("#") ? t.slice(1) : t;
  if (!TAG_RE.test(v)) throw new CtlError("invalid_argument", `invalid tag ${goQ(t)}: must be 1-32 chars of a-z, 0-9 and '-' (one leading '#' allowed)`, "example: pilotctl set-tags web-server api");
}

export async function setHostname(ctx: Ctx, args: string[]): Promise<void> {
  if (!args.length) throw usage("pilotctl set-hostname <hostname>");
  const h = args[0];
  checkHostname(h);
  const r = await daemonCall("set-hostname", (d) => d.setHostname(h));
  await setCfgKey("hostname", h === "" ? null : h);
  ctx.ok({ hostname: r.hostname ?? h, node_id: r.node_id }, () => (h === "" ? "hostname cleared\n" : `hostname set: ${h}\n`));
}
export async function clearHostname(ctx: Ctx): Promise<void> {
  await daemonCall("clear-hostname", (d) => d.setHostname(""));
  await setCfgKey("hostname", null);
  ctx.ok({ hostname: "" }, () => "hostname cleared\n");
}
export async function setTags(ctx: Ctx, args: string[]): Promise<void> {
  if (!args.length) throw usage("pilotctl set-tags <tag1> [tag2] ...");
  if (args.length > 3) throw new CtlError("invalid_argument", `set-tags: maximum 3 tags allowed, got ${args.length}`);
  for (const t of args) checkTag(t);
  const r = await daemonCall("set-tags", (d) => d.setTags(args));
  const tags = (r.tags as string[] | null) ?? [];
  ctx.ok({ node_id: r.node_id, tags: r.tags ?? null }, () => `tags set: ${tags.length ? tags.map((t) => "#" + t).join(" ") : "none"}\n`);
}
export async function clearTags(ctx: Ctx): Promise<void> {
  await daemonCall("clear-tags", (d) => d.setTags([]));
  ctx.ok({ tags: [] }, () => "tags cleared\n");
}
export async function enableTasks(ctx: Ctx): Promise<void> {
  ctx.ok(await daemonCall("enable-tasks", (d) => d.setTaskExec(true)));
}
export async function disableTasks(ctx: Ctx): Promise<void> {
  ctx.ok(await daemonCall("disable-tasks", (d) => d.setTaskExec(false)));
}
export async function setPublic(ctx: Ctx): Promise<void> {
  ctx.ok(await daemonCall("set-public", (d) => d.setVisibility(true)));
}
export async function setPrivate(ctx: Ctx): Promise<void> {
  ctx.ok(await daemonCall("set-private", (d) => d.setVisibility(false)));
}
export async function deregister(ctx: Ctx): Promise<void> {
  ctx.ok(await daemonCall("deregister", (d) => d.deregister()));
}

async function applyWebhook(url: string): Promise<boolean> {
  try {
    const d = await connectDaemon({ timeoutMs: 2000 });
    try { await d.setWebhook(url, { timeoutMs: 10000 }); return true; } catch { return false; } finally { d.close(); }
  } catch {
    return false;
  }
}
export async function setWebhook(ctx: Ctx, args: string[]): Promise<void> {
  if (!args.length) throw usage("pilotctl set-webhook <url>");
  const url = args[0];
  if (!url.startsWith("http://") && !url.startsWith("https://")) throw new CtlError("invalid_argument", "webhook URL must start with http:// or https://");
  const cfg = loadConfig();
  cfg.webhook = url;
  await saveConfig(cfg);
  const applied = await applyWebhook(url);
  ctx.ok({ applied, webhook: url }, () => `webhook set: ${url}\n${applied ? "applied to running daemon" : "will take effect on next daemon start"}\n`);
}
export async function clearWebhook(ctx: Ctx): Promise<void> {
  const cfg = loadConfig();
  delete cfg.webhook;
  await saveConfig(cfg);
  const applied = await applyWebhook("");
  ctx.ok({ applied, webhook: "" }, () => `webhook cleared\n${applied ? "applied to running daemon" : "will take effect on next daemon start"}\n`);
}

// ---------- bootstrap ----------
export async function init(ctx: Ctx, args: string[]): Promise<void> {
  const p = parseFlags(args);
  const cfg = loadConfig();
  const registry = p.flags.get("registry") ?? DEFAULT_REGISTRY;
  const beacon = p.flags.get("beacon") ?? DEFAULT_BEACON_CTL;
  const socket = p.flags.get("socket") ?? DEFAULT_SOCKET;
  const hostname = p.flags.get("hostname") ?? "";
  Object.assign(cfg, { registry, beacon, socket });
  if (hostname) cfg.hostname = hostname;
  await saveConfig(cfg);
  ctx.ok({ beacon, config_path: configPath(), hostname, registry, socket });
}

export async function config(ctx: Ctx, args: string[]): Promise<void> {
  const p = parseFlags(args);
  const set = p.flags.get("set");
  if (set !== undefined) {
    const eq = set.indexOf("=");
    if (eq < 0) throw new CtlError("invalid_argument", "usage: pilotctl config --set key=value");
    const cfg = loadConfig();
    const k = set.slice(0, eq), v = set.slice(eq + 1);
    cfg[k] = v;
    await saveConfig(cfg);
    return ctx.ok({ key: k, value: v });
  }
  const cfg = loadConfig();
  const out: J = { ...cfg, config_path: configPath(), pid_file: pidFile(), log_file: logFile() };
  if (cfgStr(cfg, "registry") === "" && !("registry" in cfg)) out.registry = getRegistry(cfg);
  if (!("socket" in cfg)) out.socket = getSocket(cfg);
  ctx.ok(out);
}

export async function broadcast(): Promise<void> {
  throw new CtlError("unavailable", "broadcast is not available yet — custom networks are WIP");
}

// ---------- mailbox ----------
export async function received(ctx: Ctx, args: string[]): Promise<void> {
  const p = parseFlags(args);
  const dir = join(pilotDir(), "received");
  let names: string[] | null = null;
  try { names = readdirSync(dir).sort(); } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw new CtlError("internal", `read directory: ${(e as Error).message}`);
  }
  if (flagBool(p, "clear")) {
    if (names === null) throw new CtlError("not_found", "no received files");
    let n = 0;
    for (const f of names) { try { if (!statSync(join(dir, f)).isDirectory()) { rmSync(join(dir, f)); n++; } } catch {} }
    return ctx.ok({ cleared: n }, () => `cleared ${n} received file(s)\n`);
  }
  const empty = "no received files\n  files appear here when someone sends: pilotctl send-file <your-hostname> <file>\n";
  if (names === null) return ctx.ok({ files: [], total: 0 }, () => empty);
  const files: J[] = [];
  for (const f of names) {
    try {
      const st = statSync(join(dir, f));
      if (st.isDirectory()) continue;
      files.push({ bytes: st.size, modified: rfc3339Local(st.mtime), name: f, path: join(dir, f) });
    } catch {}
  }
  ctx.ok({ dir, files: files.length ? files : null, total: files.length }, () => {
    if (!files.length) return empty;
    let s = `Received files (${dir}):\n\n  ${pad("NAME", 40)}  ${pad("SIZE", 10)}  RECEIVED\n`;
    for (const f of files) s += `  ${pad(String(f.name), 40)}  ${pad(formatBytes(Number(f.bytes)), 10)}  ${f.modified}\n`;
    return s + `\ntotal: ${files.length}\n`;
  });
}

export async function inbox(ctx: Ctx, args: string[]): Promise<void> {
  const p = parseFlags(args);
  const dir = join(pilotDir(), "inbox");
  let names: string[] | null = null;
  try { names = readdirSync(dir).sort(); } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw new CtlError("internal", `read directory: ${(e as Error).message}`);
  }
  if (flagBool(p, "clear")) {
    if (names === null) throw new CtlError("not_found", "inbox is empty");
    let n = 0;
    for (const f of names) { try { if (!statSync(join(dir, f)).isDirectory()) { rmSync(join(dir, f)); n++; } } catch {} }
    return ctx.ok({ cleared: n }, () => `cleared ${n} message(s)\n`);
  }
  const empty = 'inbox is empty\n  messages appear here when someone sends: pilotctl send-message <your-hostname> --data "hello"\n';
  if (names === null) return ctx.ok({ messages: [], total: 0 }, () => empty);
  const msgs: J[] = [];
  for (const f of names) {
    try {
      const v = JSON.parse(readFileSync(join(dir, f), "utf8"));
      if (v && typeof v === "object" && !Array.isArray(v)) msgs.push(v);
    } catch {}
  }
  ctx.ok({ dir, messages: msgs.length ? msgs : null, total: msgs.length }, () => {
    if (!msgs.length) return empty;
    let s = `Inbox (${msgs.length} messages):\n\n`;
    for (const m of msgs) {
      const data = String(m.data ?? "");
      const b = Buffer.from(data);
      const prev = b.length > 80 ? b.subarray(0, 80).toString() + "..." : data;
      s += `  [${m.received_at}] from ${m.from} type=${m.type}\n    ${prev}\n\n`;
    }
    return s + "clear with: pilotctl inbox --clear\n";
  });
}

// ---------- registry (direct) ----------
/** One request/response on a fresh registry connection (u32 length + JSON frames). */
async function registryRequest(addr: string, msg: J, timeoutMs = 15000): Promise<J> {
  const hp = parseHostPort(addr);
  if (!hp || hp.port === 0) throw new CtlError("invalid_argument", `invalid registry address ${JSON.stringify(addr)}`, "use host:port, e.g. 127.0.0.1:9000, or set PILOT_REGISTRY");
  const unreachable = () => new CtlError("connection_failed", `cannot reach registry at ${addr}`, `check that the registry is running at ${addr}, or set PILOT_REGISTRY`);
  const deadline = Date.now() + timeoutMs;
  let conn;
  try {
    conn = await dialFramed({ host: hp.host || "127.0.0.1", port: hp.port, timeoutMs, codec: registryJsonCodec });
  } catch {
    throw unreachable();
  }
  const c = conn;
  const answer = (async (): Promise<J> => {
    const next = await c.messages().next();
    if (next.done) {
      const r = next.value;
      throw new CtlError("connection_failed", r.code === "eof" ? "registry: connection closed" : `registry: ${r.message}`);
    }
    const v = next.value;
    if (!v || typeof v !== "object" || Array.isArray(v)) throw new CtlError("connection_failed", "registry: reply is not a JSON object");
    return v as J;
  })();
  answer.catch(() => {}); // settled after close when send() throws
  try {
    c.send(msg);
    return await withTimeout(answer, Math.max(1, deadline - Date.now()), unreachable);
  } finally {
    c.close("closed", "done", true);
  }
}

function regResult(prefix: string, r: J): J {
  if (r.type === "error" || typeof r.error === "string") throw new CtlError("connection_failed", `${prefix}: registry: ${r.error ?? "request failed"}`);
  return r;
}

export async function lookup(ctx: Ctx, args: string[]): Promise<void> {
  if (!args.length) throw usage("pilotctl lookup <node_id>");
  const n = parseNodeId(args[0]);
  const r = await registryRequest(getRegistry(), { type: "lookup", node_id: n });
  ctx.ok(regResult("lookup", r));
}

/** Identity used by register / rotate-key: config.json `identity`, else the first existing of
 *  ~/.pilot/identity.key (pilotctl daemon start) and ~/.pilot/identity.json (install.sh units). */
function identityPath(): string {
  const c = cfgStr(loadConfig(), "identity");
  if (c) return c;
  for (const n of ["identity.key", "identity.json"]) if (existsSync(join(pilotDir(), n))) return join(pilotDir(), n);
  return join(pilotDir(), "identity.key");
}
// Ed25519 code is loaded only by the commands that use a key (register, rotate-key), so the start-up
// of every other command does not pay for it.
const idLib = () => import("../../crypto/identity.ts");

async function loadId(create: boolean): Promise<{ path: string; id: Identity }> {
  const path = identityPath();
  const { loadIdentity, loadOrCreateIdentity } = await idLib();
  try {
    const id = create ? loadOrCreateIdentity(path) : loadIdentity(path);
    if (!id) throw new CtlError("not_found", `no identity at ${path}`, "register first: pilotctl register (or start the daemon once)");
    return { path, id };
  } catch (e) {
    if (e instanceof CtlError) throw e;
    throw new CtlError("internal", `identity: ${(e as Error).message}`);
  }
}

// Fix (docs/differences.md): the reference sends no public key, so registration always fails. We send
// the local identity's key (generated and saved when missing, like the daemon); the output shape
// is the registry response, as in the reference.
export async function register(ctx: Ctx, args: string[]): Promise<void> {
  const { id } = await loadId(true);
  const { encodePublicKey } = await idLib();
  const cfg = loadConfig();
  const msg: J = { type: "register", public_key: encodePublicKey(id.publicKey), listen_addr: args[0] ?? "" };
  if (cfgStr(cfg, "owner")) msg.owner = cfgStr(cfg, "owner");
  const r = await registryRequest(getRegistry(), msg);
  ctx.ok(regResult("register", r));
}

// Fix (docs/differences.md): a real rotation. A new Ed25519 key is generated, the request is signed
// with the CURRENT key (challenge `rotate:<id>`; timestamped first, which pilot-ts registries
// require for subscribed nodes, then plain as the reference registry expects), and on success the
// new identity replaces the identity file (previous one kept as ⟨file⟩.old). The <owner> argument
// is kept for compatibility and sent as `owner` (ignored by registries that do not use it).
export async function rotateKey(ctx: Ctx, args: string[]): Promise<void> {
  if (args.length < 2) throw usage("pilotctl rotate-key <node_id> <owner>");
  const n = parseNodeId(args[0]);
  const { path, id } = await loadId(false);
  const { encodePublicKey, encodeSignature, generateIdentity, saveIdentity, sign } = await idLib();
  const fresh = generateIdentity();
  const nk = encodePublicKey(fresh.publicKey);
  const base: J = { type: "rotate_key", node_id: n, new_public_key: nk, owner: args[1] };
  const ts = Date.now();
  let r = await registryRequest(getRegistry(), { ...base, ts, signature: encodeSignature(sign(id, `rotate:${n}:${ts}`)) });
  if (r.type === "error") r = await registryRequest(getRegistry(), { ...base, signature: encodeSignature(sign(id, `rotate:${n}`)) });
  regResult("rotate-key", r);
  try {
    copyFileSync(path, path + ".old");
    saveIdentity(path, fresh);
  } catch (e) {
    throw new CtlError("internal", `key rotated in the registry but saving the new identity failed: ${(e as Error).message}`);
  }
  ctx.ok(r);
}

export { formatAddr };
