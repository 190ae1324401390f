// Go `flag`-package compatible parsing shared by pilot-daemon, pilot-gateway and rendezvous:
// `-name value`, `-name=value`, `--name value`, booleans as `-name` / `-name=false`, plus the
// `-config file.json` rule of docs/protocol.md §13.4 (config fills flags not given on the command line;
// key `name` or `name_with_underscores`; unparseable values are ignored).
import { readFileSync } from "node:fs";

export type FlagType = "string" | "bool" | "int" | "duration";
export interface FlagDef {
  name: string;
  type: FlagType;
  default: string | number | boolean;
  usage: string;
}

export class FlagError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** Go duration text ("30s", "1m30s", "250ms", "0") → milliseconds; null when invalid. */
export function parseDuration(s: string): number | null {
  if (s === "0") return 0;
  const re = /(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/gy;
  let total = 0;
  let m: RegExpExecArray | null;
  let pos = 0;
  if (s.length === 0) return null;
  while (pos < s.length && (m = re.exec(s))) {
    const v = parseFloat(m[1]);
    const mult = { ns: 1e-6, us: 1e-3, "µs": 1e-3, ms: 1, s: 1000, m: 60000, h: 3600000 }[m[2]]!;
    total += v * mult;
    pos = re.lastIndex;
  }
  return pos === s.length ? total : null;
}

function convert(def: FlagDef, text: string): string | number | boolean | null {
  switch (def.type) {
    case "string":
      return text;
    case "bool":
      if (["1", "t", "T", "true", "TRUE", "True"].includes(text)) return true;
      if (["0", "f", "F", "false", "FALSE", "False"].includes(text)) return false;
      return null;
    case "int": {
      if (!/^[+-]?\d+$/.test(text)) return null;
      return parseInt(text, 10);
    }
    case "duration":
      return parseDuration(text);
  }
}

export type FlagValues = Record<string, string | number | boolean>;

export function usage(tool: string, defs: FlagDef[]): string {
  let s = `Usage of ${tool}:\n`;
  for (const d of defs) {
    s += `  -${d.name}${d.type === "bool" ? "" : " " + d.type}\n    \t${d.usage}`;
    if (d.default !== "" && d.default !== false && d.default !== 0) s += ` (default ${JSON.stringify(d.default)})`;
    s += "\n";
  }
  return s;
}

export function parseFlags(args: string[], defs: FlagDef[]): { values: FlagValues; rest: string[]; explicit: Set<string> } {
  const byName = new Map(defs.map((d) => [d.name, d]));
  const values: FlagValues = {};
  for (const d of defs) values[d.name] = d.default;
  const explicit = new Set<string>();
  const rest: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === "--") {
      rest.push(...args.slice(i + 1));
      break;
    }
    if (!a.startsWith("-") || a === "-") {
      rest.push(...args.slice(i));
      break;
    }
    let name = a.replace(/^--?/, "");
    let val: string | undefined;
    const eq = name.indexOf("=");
    if (eq >= 0) {
      val = name.slice(eq + 1);
      name = name.slice(0, eq);
    }
    if (name === "h" || name === "help") throw new FlagError("help", "help requested");
    const def = byName.get(name);
    if (!def) throw new FlagError("invalid_flag", `flag provided but not defined: -${name}`);
    if (def.type === "bool" && val === undefined) val = "true";
    if (val === undefined) {
      if (i + 1 >= args.length) throw new FlagError("invalid_flag", `flag needs an argument: -${name}`);
      val = args[++i];
    }
    const v = convert(def, val);
    if (v === null) throw new FlagError("invalid_flag", `invalid value "${val}" for flag -${name}`);
    values[name] = v;
    explicit.add(name);
  }
  // -config: fill the flags not given explicitly.
  const cfgPath = values["config"];
  if (typeof cfgPath === "string" && cfgPath !== "") {
    let obj: unknown;
    try {
      obj = JSON.parse(readFileSync(cfgPath, "utf8"));
    } catch (e) {
      throw new FlagError("config_invalid", `load config: ${(e as Error).message}`);
    }
    if (typeof obj !== "object" || obj === null || Array.isArray(obj)) throw new FlagError("config_invalid", `load config: not a JSON object`);
    const o = obj as Record<string, unknown>;
    for (const d of defs) {
      if (explicit.has(d.name) || d.name === "config") continue;
      const raw = d.name in o ? o[d.name] : o[d.name.replace(/-/g, "_")];
      let text: string | null = null;
      if (typeof raw === "string") text = raw;
      else if (typeof raw === "number") text = raw >= 1e6 ? raw.toExponential().replace("e+", "e+0") : String(raw);
      else if (typeof raw === "boolean") text = String(raw);
      if (text === null) continue;
      const v = convert(d, text);
      if (v !== null) values[d.name] = v; // unparseable config values are ignored (reference behaviour)
    }
  }
  return { values, rest, explicit };
}
