// Gateway commands delegate to src/gateway/control.ts (written separately); loaded lazily.
import type { Ctx } from "../util.ts";
import { CtlError } from "../util.ts";

type GwFn = (ctx: Ctx, args: string[]) => Promise<void>;

async function control(name: string): Promise<GwFn> {
  let mod: Record<string, unknown>;
  try {
    mod = (await import("../../gateway/control" + ".ts")) as Record<string, unknown>;
  } catch {
    throw new CtlError("not_available", "gateway support is not available in this build", "run pilot-gateway directly, or update pilotctl");
  }
  const fn = mod[name];
  if (typeof fn !== "function") throw new CtlError("not_available", `gateway ${name} is not available in this build`, "run pilot-gateway directly, or update pilotctl");
  return fn as GwFn;
}

export const start: GwFn = async (ctx, a) => (await control("start"))(ctx, a);
export const stop: GwFn = async (ctx, a) => (await control("stop"))(ctx, a);
export const map: GwFn = async (ctx, a) => (await control("map"))(ctx, a);
export const unmap: GwFn = async (ctx, a) => (await control("unmap"))(ctx, a);
export const list: GwFn = async (ctx, a) => (await control("list"))(ctx, a);
