// Build the npm library: JavaScript + declarations for the client SDK (src/index.ts and what it
// imports) into lib/ (dist/ holds the compiled binaries). Relative ".ts" import specifiers become ".js" in both outputs, so the
// package loads under Node >= 20 and Bun. Run: bun run build:lib (npm pack runs it via prepack).
import { readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { spawnSync } from "node:child_process";

const root = resolve(import.meta.dir, "..");
const dist = join(root, "lib");
rmSync(dist, { recursive: true, force: true });
const tsc = join(root, "node_modules", ".bin", "tsc");
const r = spawnSync(tsc, ["-p", join(root, "tsconfig.lib.json")], { stdio: "inherit" });
if (r.status !== 0) {
  console.error("build:lib: tsc failed");
  process.exit(1);
}
const rel = /((?:from|import)\s*\(?\s*["'])(\.{1,2}\/[^"']+)\.ts(["'])/g;
let files = 0;
const walk = (d: string): void => {
  for (const n of readdirSync(d)) {
    const p = join(d, n);
    if (statSync(p).isDirectory()) walk(p);
    else if (n.endsWith(".d.ts") || n.endsWith(".js")) {
      const s = readFileSync(p, "utf8");
      const t = s.replace(rel, "$1$2.js$3");
      if (t !== s) writeFileSync(p, t);
      if (/from\s*["']\.{1,2}\/[^"']+\.ts["']/.test(t)) {
        console.error(`build:lib: ${p} still imports a .ts file`);
        process.exit(1);
      }
      files++;
    }
  }
};
walk(dist);
console.log(`build:lib: ${files} files in lib/`);
