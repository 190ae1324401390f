// `pilot-daemon` (docs/protocol.md §13.4): flags, -config, logging, foreground run until SIGINT/SIGTERM.
import { FlagError, type FlagDef, parseFlags, usage } from "../sys/flags.ts";
import { makeLogger } from "../sys/log.ts";

import { DEFAULT_BEACON, DEFAULT_REGISTRY, DEFAULT_SOCKET } from "../sys/constants.ts";
import { parseHostPort } from "../sys/hostport.ts";

export const DAEMON_FLAGS: FlagDef[] = [
  { name: "config", type: "string", default: "", usage: "JSON config file" },
  { name: "registry", type: "string", default: DEFAULT_REGISTRY, usage: "registry address (TCP)" },
  { name: "beacon", type: "string", default: DEFAULT_BEACON, usage: "beacon address (UDP); empty disables STUN discovery" },
  { name: "listen", type: "string", default: ":0", usage: "UDP listen address for tunnel traffic" },
  { name: "socket", type: "string", default: DEFAULT_SOCKET, usage: "Unix socket path for IPC" },
  { name: "endpoint", type: "string", default: "", usage: "fixed public host:port (skips STUN)" },
  { name: "encrypt", type: "bool", default: true, usage: "enable tunnel encryption (X25519 + AES-256-GCM)" },
  { name: "registry-tls", type: "bool", default: false, usage: "use TLS for the registry connection" },
  { name: "registry-fingerprint", type: "string", default: "", usage: "hex SHA-256 of the registry certificate (pinning)" },
  { name: "identity", type: "string", default: "", usage: "path to the Ed25519 identity file (empty = ephemeral)" },
  { name: "owner", type: "string", default: "", usage: "owner identifier (e.g. email) for key recovery" },
  { name: "keepalive", type: "duration", default: 0, usage: "heartbeat/keepalive interval (default 30s)" },
  { name: "idle-timeout", type: "duration", default: 0, usage: "idle connection timeout (default 120s)" },
  { name: "syn-rate-limit", type: "int", default: 0, usage: "max SYNs per second (default 100)" },
  { name: "syn-rate-limit-per-source", type: "int", default: 0, usage: "max SYNs per second from one node (default 10; extension)" },
  { name: "max-conns-per-port", type: "int", default: 0, usage: "max connections per port (default 1024)" },
  { name: "max-conns-total", type: "int", default: 0, usage: "max total connections (default 4096)" },
  { name: "time-wait", type: "duration", default: 0, usage: "TIME_WAIT duration (default 10s)" },
  { name: "public", type: "bool", default: false, usage: "make this node's endpoint public in the registry" },
  { name: "hostname", type: "string", default: "", usage: "hostname to claim at startup" },
  { name: "no-echo", type: "bool", default: false, usage: "disable the echo service (port 7)" },
  { name: "no-dataexchange", type: "bool", default: false, usage: "disable the data exchange service (port 1001)" },
  { name: "no-eventstream", type: "bool", default: false, usage: "disable the event stream service (port 1002)" },
  { name: "webhook", type: "string", default: "", usage: "webhook URL (empty = disabled)" },
  { name: "data-dir", type: "string", default: "", usage: "directory for received files, inbox and tasks (default ~/.pilot)" },
  { name: "log-level", type: "string", default: "info", usage: "log level: debug, info, warn, error" },
  { name: "log-format", type: "string", default: "text", usage: "log format: text or json" },
  { name: "metrics", type: "string", default: "", usage: "serve Prometheus metrics at http://<host:port>/metrics (e.g. 127.0.0.1:9102; empty = off)" },
];

export async function run(args: string[]): Promise<number> {
  let values;
  try {
    values = parseFlags(args, DAEMON_FLAGS).values;
  } catch (e) {
    if (e instanceof FlagError) {
      if (e.code === "help") {
        process.stderr.write(usage("pilot-daemon", DAEMON_FLAGS));
        return 0;
      }
      process.stderr.write(`${e.message}\n${usage("pilot-daemon", DAEMON_FLAGS)}`);
      return 2;
    }
    throw e;
  }
  const v = values as Record<string, string & number & boolean>;
  const log = makeLogger(v["log-level"], v["log-format"]);
  let metricsAt: { ip: string; port: number } | null = null;
  if (v.metrics) {
    const hp = parseHostPort(v.metrics);
    metricsAt = hp && { ip: hp.host, port: hp.port };
    if (!metricsAt) {
      process.stderr.write(`invalid -metrics address ${JSON.stringify(v.metrics)}: want host:port, e.g. 127.0.0.1:9102\n`);
      return 2;
    }
  }
  const { Daemon } = await import("./daemon.ts");
  const d = new Daemon(
    {
      registry: v.registry,
      beacon: v.beacon,
      listen: v.listen,
      socket: v.socket,
      endpoint: v.endpoint,
      encrypt: v.encrypt,
      registryTls: v["registry-tls"],
      registryFingerprint: v["registry-fingerprint"],
      identity: v.identity,
      owner: v.owner,
      keepaliveMs: v.keepalive || 30_000,
      idleTimeoutMs: v["idle-timeout"] || 120_000,
      synRateLimit: v["syn-rate-limit"] || 100,
      synRateLimitPerSource: v["syn-rate-limit-per-source"] || 10,
      maxConnsPerPort: v["max-conns-per-port"] || 1024,
      maxConnsTotal: v["max-conns-total"] || 4096,
      timeWaitMs: v["time-wait"] || 10_000,
      public: v.public,
      hostname: v.hostname,
      noEcho: v["no-echo"],
      noDataExchange: v["no-dataexchange"],
      noEventStream: v["no-eventstream"],
      webhook: v.webhook,
      dataDir: v["data-dir"] || undefined,
    },
    log,
  );
  const metrics = metricsAt ? new (await import("./metrics.ts")).DaemonMetrics() : null;
  d.observer = metrics;
  let metricsSrv: { port: number; stop(): void } | null = null;
  try {
    await d.start();
    if (metrics && metricsAt) {
      metricsSrv = (await import("./metrics.ts")).startMetricsServer(metrics, d, metricsAt.ip || "0.0.0.0", metricsAt.port);
      log.info("metrics listening", { addr: `${metricsAt.ip || "0.0.0.0"}:${metricsSrv.port}` });
    }
  } catch (e) {
    log.error("daemon start failed", { err: (e as Error).message });
    process.stderr.write(`${(e as Error).message}\n`);
    await d.stop().catch(() => {});
    return 1;
  }
  return await new Promise<number>((resolve) => {
    let stopping = false;
    const onSig = () => {
      if (stopping) return;
      stopping = true;
      metricsSrv?.stop();
      d.stop().then(
        () => resolve(0),
        () => resolve(1),
      );
    };
    process.on("SIGINT", onSig);
    process.on("SIGTERM", onSig);
  });
}
