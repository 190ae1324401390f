// Gateway control channel server and client (the reference has none, so its pilotctl map/unmap/list
// never reached the running gateway). Message formats: src/proto/gateway-control.ts.
import { chmodSync, rmSync } from "node:fs";
import { connect, createServer, type Server } from "node:net";
import {
  type ControlReply, type ControlRequest, decodeControlRequest, encodeControlReply, encodeControlRequest, MAX_CONTROL_LINE, takeControlReply,
} from "../proto/gateway-control.ts";
import { ProtoError } from "../proto/types.ts";
import { asGatewayError, GatewayError } from "./errors.ts";
import type { Gateway } from "./gateway.ts";

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
  const handle = async (req: ControlRequest): Promise<ControlReply> => {
    switch (req.op) {
      case "status":
        return { ok: true, pid: process.pid, subnet: gw.subnet, ports: gw.ports, mappings: gw.list(), bridges: gw.activeBridges };
      case "list":
        return { ok: true, mappings: gw.list() };
      case "map": {
        try {
          return { ok: true, mapping: await gw.map(req.addr, req.ip) };
        } catch (e) {
          throw asGatewayError(e, "map: ");
        }
      }
      case "unmap":
        return { ok: true, ...(await gw.unmap(req.target)) };
      case "stop":
        await onStop();
        return { ok: true, pid: process.pid };
    }
  };
  const srv: Server = createServer((s) => {
    let buf = "";
    s.setEncoding("utf8");
    s.on("error", () => {});
    s.on("data", (chunk: string) => {
      buf += chunk;
      if (buf.length > MAX_CONTROL_LINE && buf.indexOf("\n") < 0) {
        s.destroy();
        return;
      }
      let nl: number;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        let req: ControlRequest;
        try {
          req = decodeControlRequest(line);
        } catch (e) {
          const code = e instanceof ProtoError && e.code === "invalid_argument" ? e.message : "control: malformed request";
          s.write(encodeControlReply({ ok: false, error: { code: "invalid_argument", message: code } }));
          continue;
        }
        handle(req).then(
          (r) => s.write(encodeControlReply(r)),
          (e) => s.write(encodeControlReply({ ok: false, error: asGatewayError(e).toJSON() })),
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
export function controlRequest(path: string, req: ControlRequest, timeoutMs = 10_000): Promise<Record<string, unknown>> {
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
    s.on("connect", () => s.write(encodeControlRequest(req)));
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
  let r: ControlReply | null;
  try {
    r = takeControlReply(buf);
  } catch {
    return { err: new GatewayError("internal", malformed), malformed: true };
  }
  if (!r) return null;
  if (r.ok) return { ok: r };
  return { err: new GatewayError(r.error.code, r.error.message || fallback, r.error.hint) };
}
