// `rendezvous` binary (docs/protocol.md §13.4): registry (TCP) + beacon (UDP) + optional HTTP in one process.
//
// Prints, on stdout, one line per listener so scripts/tests can parse the chosen ports:
//   registry listening on <host>:<port>
//   beacon listening on <host>:<port>
//   http listening on <host>:<port>        (only with -http)
//   tls fingerprint sha256 <64 hex>        (only with -tls; R24: the pin daemons need)
// Logs (slog-like text or json) go to stderr.
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { FlagError, type FlagDef, parseFlags as parseGoFlags } from "../sys/flags.ts";
import { type LogFn, makeLogger } from "../sys/log.ts";
import { DEFAULT_BEACON_LISTEN, DEFAULT_REGISTRY_LISTEN } from "../sys/constants.ts";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BeaconServer } from "./beacon.ts";
import { Registry, importSnapshot } from "./registry.ts";
import { RegistryServer, splitHostPort, type TlsFiles } from "./server.ts";
import { SqliteStore, type Store } from "./store.ts";
import { SNAPSHOT_TOO_LARGE_HINT, StandbyClient } from "./replication.ts";
import { startHttp } from "./http.ts";

interface Flags {
  config: string;
  "registry-addr": string;
  "beacon-addr": string;
  store: string;
  tls: boolean;
  "tls-cert": string;
  "tls-key": string;
  standby: string;
  http: string;
  "admin-token": string;
  "log-level": string;
  "log-format": string;
  "store-sync": string;
  "replication-token": string;
  "standby-fingerprint": string;
}

const DEFAULTS: Flags = {
  config: "", "registry-addr": DEFAULT_REGISTRY_LISTEN, "beacon-addr": DEFAULT_BEACON_LISTEN, store: "", tls: false, "tls-cert": "", "tls-key": "",
  standby: "", http: "", "admin-token": "", "log-level": "info", "log-format": "text", "store-sync": "normal",
  "replication-token": "", "standby-fingerprint": "",
};
const BOOL_FLAGS = new Set(["tls"]);

export class UsageError extends Error {}

const DEFS: FlagDef[] = Object.entries(DEFAULTS).map(([name, def]) => ({
  name,
  type: BOOL_FLAGS.has(name) ? "bool" : "string",
  default: def,
  usage: "",
}));

/** Go `flag` style (-name value, -name=value, --name, bare booleans, -config), src/sys/flags.ts. */
export function parseFlags(args: string[]): { flags: Flags; given: Set<string> } {
  let r: ReturnType<typeof parseGoFlags>;
  try {
    r = parseGoFlags(args, DEFS);
  } catch (e) {
    if (e instanceof FlagError) throw new UsageError(e.code === "help" ? "" : e.message);
    throw e;
  }
  if (r.rest.length) throw new UsageError(`unexpected argument ${JSON.stringify(r.rest[0])}`);
  return { flags: r.values as unknown as Flags, given: r.explicit };
}

const USAGE = `Usage of rendezvous:
  -config string         JSON config file
  -registry-addr string  registry TCP listen address (default ":9000")
  -beacon-addr string    beacon UDP listen address (default ":9001")
  -store string          state store: SQLite file path, postgres:// URL, or a reference JSON snapshot
                         (imported on first start into <path>.db); empty = in memory
  -store-sync string     SQLite synchronous mode: normal (default) or full
  -tls                   TLS for registry connections
  -tls-cert string       certificate PEM file (empty with -tls = auto-generated self-signed)
  -tls-key string        key PEM file
  -standby string        run as hot standby replicating from the primary host:port (write requests
                         refused). Full snapshots in 1 MiB frames: up to about 4,800 nodes; larger
                         registries share a PostgreSQL store between rendezvous processes instead
  -replication-token string
                         replication token (docs/protocol.md §5.2): a primary accepts subscribe_replication
                         with it, a standby presents it. Empty = replication disabled. Prefer the
                         environment variable PILOT_REPLICATION_TOKEN (a flag is visible in ps).
  -standby-fingerprint string
                         follow a TLS primary, pinning its certificate (64 lower-case hex SHA-256)
  -http string           HTTP address for /metrics, /healthz, /api/stats (empty = off)
  -admin-token string    operator token: authorizes polo-score writes (set_polo_score, and
                         update_polo_score without a node signature); network management is
                         disabled. Empty = no operator access.
  -log-level string      debug|info|warn|error (default "info")
  -log-format string     text|json (default "text")
`;

/** Open the store named by -store (see USAGE). */
export async function openStore(spec: string, sync: string, log: LogFn): Promise<Store> {
  if (/^postgres(ql)?:\/\//.test(spec)) {
    const { PgStore } = await import("./store-pg.ts");
    return PgStore.open(spec);
  }
  if (!spec) return new SqliteStore(":memory:");
  let dbPath = spec;
  let snapshot: unknown = undefined;
  if (existsSync(spec)) {
    const head = Buffer.alloc(16);
    const fd = require("node:fs").openSync(spec, "r");
    const n = require("node:fs").readSync(fd, head, 0, 16, 0);
    require("node:fs").closeSync(fd);
    const text = head.subarray(0, n).toString("utf8").trimStart();
    if (text.startsWith("{")) {
      dbPath = spec + ".db";
      try {
        snapshot = JSON.parse(readFileSync(spec, "utf8"));
      } catch (e) {
        // R17: refuse to start on a corrupt snapshot instead of silently starting empty.
        throw new UsageError(`store: ${spec} looks like a JSON snapshot but does not parse: ${(e as Error).message}`);
      }
    }
  }
  const store = new SqliteStore(dbPath, { sync: sync === "full" ? "full" : "normal" });
  if (snapshot !== undefined && (await store.isEmpty())) {
    const r = await importSnapshot(store, snapshot);
    log("info", "imported reference snapshot", { path: spec, nodes: r.nodes, trust_pairs: r.pairs, db: dbPath });
  }
  return store;
}

/** Self-signed certificate via the openssl CLI (ECDSA P-256, SANs localhost/127.0.0.1/::1, 365 d). */
function selfSigned(): TlsFiles {
  const dir = mkdtempSync(join(tmpdir(), "pilot-tls-"));
  try {
    const key = join(dir, "key.pem");
    const cert = join(dir, "cert.pem");
    const r = Bun.spawnSync(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
      "-keyout", key, "-out", cert, "-days", "365", "-subj", "/O=Pilot Protocol",
      "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1",
      "-addext", "keyUsage=digitalSignature,keyEncipherment", "-addext", "extendedKeyUsage=serverAuth"], { stderr: "pipe" });
    if (r.exitCode !== 0) throw new Error(`openssl failed: ${r.stderr.toString().trim()}`);
    return { cert: readFileSync(cert, "utf8"), key: readFileSync(key, "utf8") };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Lower-case hex SHA-256 of the leaf certificate's DER (docs/protocol.md §8.1 pinning rule). */
export function certFingerprint(pem: string): string {
  const m = /-----BEGIN CERTIFICATE-----([\s\S]*?)-----END CERTIFICATE-----/.exec(pem);
  if (!m) return "";
  const der = Buffer.from(m[1].replace(/\s+/g, ""), "base64");
  return new Bun.CryptoHasher("sha256").update(der).digest("hex");
}

export interface Rendezvous {
  registry: Registry;
  /** Standby follower (only with -standby). */
  standby: StandbyClient | null;
  server: RegistryServer;
  beacon: BeaconServer;
  registryPort: number;
  beaconPort: number;
  httpPort: number;
  fingerprint: string;
  stop(): Promise<void>;
}

/** Start everything in-process (used by run() and by tests). */
export async function startRendezvous(flags: Partial<Flags> & {
  opaqueErrors?: boolean; noRateLimit?: boolean; quiet?: boolean; store_?: Store;
  /** Ignore PILOT_REPLICATION_TOKEN (tests). */
  noEnvToken?: boolean;
  /** Standby reconnect backoff bounds in ms (default 500 → 3000). */
  standbyBackoff?: [number, number];
}): Promise<Rendezvous> {
  const f: Flags = { ...DEFAULTS, ...flags };
  const log = flags.quiet ? () => {} : makeLogger(f["log-level"], f["log-format"]).fn;
  const store = flags.store_ ?? (await openStore(f.store, f["store-sync"], log));
  // Extension (R28: the whitepaper's --replication-token never existed in the reference, which made
  // `rendezvous -standby` unusable, docs/protocol.md §13): flag, else env PILOT_REPLICATION_TOKEN.
  const replToken = f["replication-token"] || (flags.noEnvToken ? "" : process.env.PILOT_REPLICATION_TOKEN ?? "");
  const registry = new Registry(store, {
    opaqueErrors: flags.opaqueErrors, noRateLimit: flags.noRateLimit, replicationToken: replToken, standby: !!f.standby, log,
    adminToken: f["admin-token"],
  });
  const server = new RegistryServer(registry);
  let tls: TlsFiles | undefined;
  let fingerprint = "";
  if (f.tls) {
    if (f["tls-cert"] && f["tls-key"]) tls = { cert: readFileSync(f["tls-cert"], "utf8"), key: readFileSync(f["tls-key"], "utf8") };
    else tls = selfSigned();
    fingerprint = certFingerprint(tls.cert);
  }
  const reg = server.listen(f["registry-addr"], tls);
  const beacon = new BeaconServer({ authorize: (a, b) => registry.mayResolve(a, b) });
  let bc: { host: string; port: number };
  try {
    bc = await beacon.listen(f["beacon-addr"]);
  } catch (e) {
    server.stop();
    throw new Error(`beacon: ${(e as Error).message}`);
  }
  let http: { port: number; stop(): void } | null = null;
  if (f.http) {
    const { host, port } = splitHostPort(f.http);
    http = startHttp(registry, beacon, host || "0.0.0.0", port);
  }
  let standby: StandbyClient | null = null;
  if (f.standby) {
    try {
      standby = new StandbyClient(f.standby, replToken, store, {
        log, minBackoffMs: flags.standbyBackoff?.[0], maxBackoffMs: flags.standbyBackoff?.[1],
        tlsFingerprint: f["standby-fingerprint"] || undefined,
        onApplied: () => registry.replication.markDirty(), // chaining: feed our own subscribers (docs/protocol.md §13.6)
      });
    } catch (e) {
      server.stop();
      beacon.stop();
      http?.stop();
      throw e;
    }
    standby.start();
    const sbc = standby;
    registry.standbyInfo = () => ({ connected: sbc.connected, snapshots: sbc.snapshots });
  }
  // Housekeeping tick (docs/protocol.md §13.4): reap, beacon table expiry, limiter cleanup. A standby does not reap
  // nodes on its own clock (R20, replication.ts): the primary's reaps arrive in its snapshots.
  const tick = setInterval(() => {
    if (f.standby) { beacon.expire(); return; }
    registry.reap().then((ids) => { if (ids.length) log("info", "reaped stale nodes", { count: ids.length }); }, (e) => log("error", "reap failed", { err: String(e) }));
    beacon.expire();
  }, 60_000);
  (tick as any).unref?.();
  return {
    registry, standby, server, beacon, registryPort: reg.port, beaconPort: bc.port, httpPort: http?.port ?? 0, fingerprint,
    async stop() {
      clearInterval(tick);
      standby?.stop();
      registry.replication.stop();
      server.stop();
      beacon.stop();
      http?.stop();
      await store.close();
    },
  };
}

export async function run(args: string[]): Promise<number> {
  let flags: Flags;
  try {
    flags = parseFlags(args).flags;
  } catch (e) {
    if (e instanceof UsageError) {
      if (e.message) process.stderr.write(e.message + "\n");
      process.stderr.write(USAGE);
      return e.message ? 2 : 0; // -h / -help: usage on request is not an error (docs/protocol.md §13.4)
    }
    throw e;
  }
  const log = makeLogger(flags["log-level"], flags["log-format"]).fn;
  log("info", "starting rendezvous server");
  if (flags.standby) log("info", "running as hot standby", { primary: flags.standby, limit: SNAPSHOT_TOO_LARGE_HINT });
  let rv: Rendezvous;
  try {
    rv = await startRendezvous(flags);
  } catch (e) {
    log("error", (e as Error).message);
    process.stderr.write(`rendezvous: ${(e as Error).message}\n`);
    return 1;
  }
  const host = (h: string) => (h.includes(":") ? `[${h}]` : h);
  const regHost = splitHostPort(flags["registry-addr"]).host || "0.0.0.0";
  const bcHost = splitHostPort(flags["beacon-addr"]).host || "0.0.0.0";
  process.stdout.write(`registry listening on ${host(regHost)}:${rv.registryPort}\n`);
  process.stdout.write(`beacon listening on ${host(bcHost)}:${rv.beaconPort}\n`);
  if (flags.http) process.stdout.write(`http listening on ${host(splitHostPort(flags.http).host || "0.0.0.0")}:${rv.httpPort}\n`);
  if (rv.fingerprint) process.stdout.write(`tls fingerprint sha256 ${rv.fingerprint}\n`);
  log("info", "rendezvous running", { registry: `:${rv.registryPort}`, beacon: `:${rv.beaconPort}`, mode: flags.standby ? "standby" : "primary", store: rv.registry.store.description });
  await new Promise<void>((resolve) => {
    const onSig = () => {
      process.off("SIGINT", onSig);
      process.off("SIGTERM", onSig);
      resolve();
    };
    process.on("SIGINT", onSig);
    process.on("SIGTERM", onSig);
  });
  log("info", "shutting down");
  await rv.stop();
  return 0;
}
