// Helpers shared by command modules: daemon connection, target resolution.
import { formatAddr, parseAddr } from "../../proto/addr.ts";
import type { Addr } from "../../proto/types.ts";
import { Driver, DriverError } from "../../client/driver.ts";
import type { ErrorCode } from "../../client/errors.ts";
import { type Ctx, CtlError, daemonErr, E_DAEMON, getSocket, goQ, tryUint32 } from "../util.ts";

export async function connectDaemon(opts: { timeoutMs?: number } = {}): Promise<Driver> {
  try {
    return await Driver.connect(getSocket(), opts);
  } catch {
    throw E_DAEMON();
  }
}

/** One request on a fresh daemon connection; a failure becomes `<prefix>: <err>` (connection_failed). */
export async function daemonCall<T>(prefix: string, fn: (d: Driver) => Promise<T>): Promise<T> {
  const d = await connectDaemon();
  try {
    return await fn(d);
  } catch (e) {
    throw daemonErr(prefix, e);
  } finally {
    d.close();
  }
}

export { daemonErr };

/** docs/protocol.md §13.1: full address, bare node ID, or hostname via the daemon. */
export async function resolveTarget(ctx: Ctx, d: Driver, s: string, code: ErrorCode = "not_found"): Promise<Addr> {
  try {
    return parseAddr(s);
  } catch {}
  const n = tryUint32(s);
  if (n !== null) return { network: 0, node: n };
  try {
    const r = await d.resolveHostname(s);
    const a = parseAddr(String(r.address));
    ctx.info(`resolved ${goQ(s)} → ${formatAddr(a)}\n`);
    return a;
  } catch (e) {
    if (e instanceof DriverError && e.message === "daemon disconnected") throw daemonErr("resolve", e);
    throw new CtlError(code, `cannot resolve ${goQ(s)} — is the hostname correct and is there mutual trust? (see: pilotctl handshake)`);
  }
}

export function usage(s: string): CtlError {
  return new CtlError("invalid_argument", `usage: ${s}`);
}
