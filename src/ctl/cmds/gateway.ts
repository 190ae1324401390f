// `pilotctl gateway start|stop|map|unmap|list` (docs/protocol.md §13) on top of src/gateway/control.ts.
// Unlike the reference (docs/differences.md), `start` runs the gateway in the background and returns
// once it listens, and map/unmap/list act on that LIVE gateway through its control socket.
import type { Ctx } from "../util.ts";
import { CtlError, getSocket, parseFlags, pilotDir } from "../util.ts";

type GwFn = (ctx: Ctx, args: string[]) => Promise<void>;

async function gw() {
  return await import("../../gateway/control.ts");
}

/** Map gateway errors ({code, message, hint}) onto pilotctl's error envelope. */
async function run<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    const err = e as { code?: string; message: string; hint?: string };
    if (e instanceof CtlError) throw e;
    throw e instanceof Error && typeof err.code === "string" ? e : new CtlError("internal", err.message, err.hint);
  }
}

function opts() {
  return { socket: getSocket(), dataDir: pilotDir() };
}

export const start: GwFn = async (ctx, args) => {
  const p = parseFlags(args);
  const m = await gw();
  const r = await run(() =>
    m.gatewayStart({
      ...opts(),
      subnet: p.flags.get("subnet") || undefined,
      ports: p.flags.get("ports") || undefined,
      mappings: p.pos,
    }),
  );
  ctx.ok(r, () => m.formatStartHuman(r));
};

export const stop: GwFn = async (ctx) => {
  const m = await gw();
  const r = await run(() => m.gatewayStop(opts()));
  ctx.ok(r);
};

export const map: GwFn = async (ctx, args) => {
  const p = parseFlags(args);
  if (p.pos.length < 1) throw new CtlError("invalid_argument", "usage: pilotctl gateway map <pilot-addr> [local-ip]");
  const m = await gw();
  const r = await run(() => m.gatewayMap(opts(), p.pos[0], p.pos[1]));
  ctx.ok(r);
};

export const unmap: GwFn = async (ctx, args) => {
  const p = parseFlags(args);
  if (p.pos.length < 1) throw new CtlError("invalid_argument", "usage: pilotctl gateway unmap <local-ip>");
  const m = await gw();
  const r = await run(() => m.gatewayUnmap(opts(), p.pos[0]));
  ctx.ok(r);
};

export const list: GwFn = async (ctx) => {
  const m = await gw();
  const r = await run(() => m.gatewayList(opts()));
  ctx.ok(r, () => m.formatListHuman(r));
};
