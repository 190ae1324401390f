// The small JSON Schema subset the MCP tools declare, and a validator for it, so a malformed tool
// call is rejected with a precise message instead of reaching the daemon.

export interface PropSchema {
  type: "string" | "integer" | "boolean";
  description: string;
  enum?: string[];
  minLength?: number;
  maxLength?: number;
  minimum?: number;
  maximum?: number;
  default?: string | number | boolean;
}

export interface ObjectSchema {
  type: "object";
  properties: Record<string, PropSchema>;
  required?: string[];
  additionalProperties: false;
}

export type Args = Record<string, string | number | boolean | undefined>;

/** Returns the arguments (defaults filled in) or an error message naming the first problem. */
export function validate(schema: ObjectSchema, input: unknown): { ok: true; args: Args } | { ok: false; error: string } {
  if (input === undefined || input === null) input = {};
  if (typeof input !== "object" || Array.isArray(input)) return { ok: false, error: "arguments must be a JSON object" };
  const o = input as Record<string, unknown>;
  for (const k of Object.keys(o)) if (!(k in schema.properties)) return { ok: false, error: `unknown argument ${JSON.stringify(k)} (allowed: ${Object.keys(schema.properties).join(", ") || "none"})` };
  for (const k of schema.required ?? []) if (o[k] === undefined || o[k] === null) return { ok: false, error: `missing required argument ${JSON.stringify(k)}` };
  const args: Args = {};
  for (const [k, p] of Object.entries(schema.properties)) {
    let v = o[k];
    if (v === undefined || v === null) {
      if (p.default !== undefined) args[k] = p.default;
      continue;
    }
    const bad = (why: string) => ({ ok: false as const, error: `argument ${JSON.stringify(k)} ${why}` });
    switch (p.type) {
      case "string":
        if (typeof v !== "string") return bad(`must be a string, got ${typeName(v)}`);
        if (p.minLength !== undefined && v.length < p.minLength) return bad(`must be at least ${p.minLength} characters`);
        if (p.maxLength !== undefined && v.length > p.maxLength) return bad(`must be at most ${p.maxLength} characters`);
        if (p.enum && !p.enum.includes(v)) return bad(`must be one of ${p.enum.join(", ")}`);
        break;
      case "integer":
        if (typeof v === "string" && /^-?\d+$/.test(v)) v = Number(v); // lenient: "42"
        if (typeof v !== "number" || !Number.isSafeInteger(v)) return bad(`must be an integer, got ${typeName(v)}`);
        if (p.minimum !== undefined && v < p.minimum) return bad(`must be >= ${p.minimum}`);
        if (p.maximum !== undefined && v > p.maximum) return bad(`must be <= ${p.maximum}`);
        break;
      case "boolean":
        if (typeof v !== "boolean") return bad(`must be true or false, got ${typeName(v)}`);
        break;
    }
    args[k] = v as string | number | boolean;
  }
  return { ok: true, args };
}

function typeName(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "an array";
  if (typeof v === "number" && !Number.isInteger(v)) return `the number ${v}`;
  return typeof v === "object" ? "an object" : `${typeof v} ${JSON.stringify(v)}`.slice(0, 60);
}
