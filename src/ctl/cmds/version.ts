// `pilotctl version` (an extension: the reference has no such command; install.sh shows it on
// upgrade). Imported statically by the command table, so it runs without loading another module.
import pkg from "../../../package.json";
import type { Ctx } from "../util.ts";

export async function version(ctx: Ctx): Promise<void> {
  const v = { platform: `${process.platform}-${process.arch}`, runtime: `bun ${Bun.version}`, version: String(pkg.version) };
  ctx.ok(v, () => `pilotctl ${v.version} (${v.runtime}, ${v.platform})\n`);
}
