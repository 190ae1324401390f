// Gateway control channel (fix of services.md §13.9-1: the reference has none, so pilotctl's
// map/unmap/list never reached the running gateway). A Unix socket (mode 0600, in ~/.pilot by
// default) speaking JSON lines: one request object per line, one reply object per line.
//   {"op":"status"}                     → {"ok":true,"pid":N,"subnet":S,"ports":[…],"mappings":[…]}
//   {"op":"list"}                       → {"ok":true,"mappings":[{"local_ip","pilot_addr","listening"}…]}
//   {"op":"map","addr":A,"ip":I?}       → {"ok":true,"mapping":{…}}
//   {"op":"unmap","target":IP|ADDR}     → {"ok":true,"unmapped":IP,"pilot_addr":A}
//   {"op":"stop"}                       → {"ok":true,"pid":N}   (sent after cleanup; then the process exits)
// Errors: {"ok":false,"error":{"code","message","hint"?}}.
import { chmodSync, rmSync } from "node:fs";
import { connect, createServer, type Server } from "node:net";
import { asGatewayError, GatewayError } from "./errors.ts";
import type { Gateway } from "./gateway.ts";

const MAX_LINE = 64 * 1024;

export interface ControlServer {
  close(): void;
}

export async function serveControl(gw: Gateway, path: string, onStop: () => Promise<void>): Promise<ControlServer> {
  // A stale socket file from a crashed gateway: only remove it when nobody answers on it.
  try {
    await controlRequest(path, { op: "status" }, 500);
    throw new GatewayError("already_exists", `a gateway already answers on ${path}`, "stop it first with: pilotctl gateway stop");
  } catch (e) {
    if (e instanceof GatewayError && e.code === "already_exists") throw e;
  }
  rmSync(path, { force: true });
  const handle = async (req: Record<string, unknown>): Promise<Record<string, unknown>> => {
    switch (req.op) {
      case "status":
        return { ok: true, pid: process.pid, subnet: gw.subnet, ports: gw.ports, mappings: gw.list(), bridges: gw.activeBridges };
      case "list":
        return { ok: true, mappings: gw.list() };
      case "map": {
        if (typeof req.addr !== "string") throw new GatewayError("invalid_argument", "map: missing addr");
        const ip = typeof req.ip === "string" && req.ip !== "" ? req.ip : undefined;
        try {
          return { ok: true, mapping: await gw.map(req.addr, ip) };
        } catch (e) {
          throw asGatewayError(e, "map: ");
        }
      }
      case "unmap": {
        if (typeof req.target !== "string") throw new GatewayError("invalid_argument", "unmap: missing target");
        return { ok: true, ...(await gw.unmap(req.target)) };
      }
      case "stop":
        await onStop();
        return { ok: true, pid: process.pid };
      default:
        throw new GatewayError("invalid_argument", `unknown control op: ${String(req.op)}`);
    }
  };
  const srv: Server = createServer((s) => {
    let buf = "";
    s.setEncoding("utf8");
    s.on("error", () => {});
    s.on("data", (chunk: string) => {
      buf += chunk;
      if (buf.length > MAX_LINE && buf.indexOf("\n") < 0) {
        s.destroy();
        return;
      }
      let nl: number;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        let req: Record<string, unknown>;
        try {
          req = JSON.parse(line) as Record<string, unknown>;
          if (!req || typeof req !== "object") throw new Error("not an object");
        } catch {
          s.write(JSON.stringify({ ok: false, error: { code: "invalid_argument", message: "control: malformed request" } }) + "\n");
          continue;
        }
        handle(req).then(
          (r) => s.write(JSON.stringify(r) + "\n"),
          (e) => s.write(JSON.stringify({ ok: false, error: asGatewayError(e).toJSON() }) + "\n"),
        );
      }
    });
  });
  await new Promise<void>((resolve, reject) => {
    srv.once("error", reject);
    srv.listen(path, () => {
      srv.off("error", reject);
      resolve();
    });
  });
  chmodSync(path, 0o600);
  return {
    close() {
      srv.close();
      rmSync(path, { force: true });
    },
  };
}

/** One request over the control socket. Throws GatewayError (not_running when nobody answers). */
export function controlRequest(path: string, req: Record<string, unknown>, timeoutMs = 10_000): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const s = connect({ path });
    let buf = "";
    let done = false;
    const fin = (fn: () => void) => {
      if (done) return;
      done = true;
      clearTimeout(t);
      s.destroy();
      fn();
    };
    const t = setTimeout(() => fin(() => reject(new GatewayError("timeout", `gateway control: no reply within ${timeoutMs}ms`))), timeoutMs);
    s.setEncoding("utf8");
    s.on("error", () => fin(() => reject(new GatewayError("not_running", "gateway is not running", "start with: pilotctl gateway start"))));
    s.on("close", () => fin(() => reject(new GatewayError("not_running", "gateway is not running", "start with: pilotctl gateway start"))));
    s.on("connect", () => s.write(JSON.stringify(req) + "\n"));
    s.on("data", (c: string) => {
      buf += c;
      const r = takeReply(buf, "gateway control: malformed reply", "gateway control error");
      if (r) fin(() => (r.ok ? resolve(r.ok) : reject(r.err)));
    });
  });
}

/**
 * The gateway answers with one JSON line: {"ok":true,...} or {"ok":false,"error":{code,message,hint}}
 * (control replies and the start-up readiness report alike). Returns null until a full line is
 * buffered.
 */
export function takeReply(buf: string, malformed: string, fallback: string): { ok?: Record<string, unknown>; err?: GatewayError; malformed?: boolean } | null {
  const nl = buf.indexOf("\n");
  if (nl < 0) return null;
  let r: Record<string, unknown>;
  try {
    r = JSON.parse(buf.slice(0, nl)) as Record<string, unknown>;
  } catch {
    return { err: new GatewayError("internal", malformed), malformed: true };
  }
  if (r.ok === true) return { ok: r };
  const e = (r.error ?? {}) as { code?: string; message?: string; hint?: string };
  return { err: new GatewayError(e.code ?? "internal", e.message ?? fallback, e.hint) };
}
