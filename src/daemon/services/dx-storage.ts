// Where the data-exchange service stores what it receives: files in <dataDir>/received/ as
// `<stem>-<YYYYMMDD-HHMMSS.mmm><ext>`, messages in <dataDir>/inbox/ as `<TYPE>-<stamp>.json`
// (the shapes `pilotctl received` and `pilotctl inbox` read).
import { mkdir, open } from "node:fs/promises";
import { join } from "node:path";
import { goJson } from "../../proto/gojson.ts";
import { typeName } from "../../proto/dataexchange.ts";
import { fileStamp, rfc3339Local, utf8, utf8Lossy } from "./util.ts";

const MAX_STEM_BYTES = 120;
const MAX_EXT_CHARS = 16;

function truncUtf8(s: string, maxBytes: number): string {
  if (utf8.encode(s).length <= maxBytes) return s;
  let out = "";
  let n = 0;
  for (const ch of s) {
    const b = utf8.encode(ch).length;
    if (n + b > maxBytes) break;
    out += ch;
    n += b;
  }
  return out;
}

/**
 * Reference shape: base name split at the last `.`, stored as `<stem>-<stamp><ext>`.
 * Fixes, all keeping that shape: `\` is also a separator, control characters and leading dots are
 * removed (no hidden files, no `.`/`..`), the stem is capped at 120 bytes and the extension at 16
 * characters, and an empty stem becomes `file`.
 */
export function splitReceivedName(sent: string): { base: string; stem: string; ext: string } {
  let s = sent.replace(/[\/\\]+$/, "");
  const slash = Math.max(s.lastIndexOf("/"), s.lastIndexOf("\\"));
  const base = slash >= 0 ? s.slice(slash + 1) : s;
  s = base.replace(/[\u0000-\u001f\u007f]/g, "");
  const dot = s.lastIndexOf(".");
  let stem = dot >= 0 ? s.slice(0, dot) : s;
  let ext = dot >= 0 ? s.slice(dot) : "";
  if (ext === "." || ext.length > MAX_EXT_CHARS) {
    if (ext.length > 1) stem = stem + ext; // keep an over-long "extension" as part of the stem
    ext = "";
  }
  stem = truncUtf8(stem.replace(/^\.+/, ""), MAX_STEM_BYTES);
  if (stem === "") stem = "file";
  return { base, stem, ext };
}

/**
 * Create a new file exclusively (O_EXCL, mode 0600); on a same-millisecond collision add `-1`,
 * `-2`, … before the extension instead of overwriting (the reference overwrites: data loss).
 */
async function writeUnique(dir: string, stem: string, ext: string, data: Uint8Array): Promise<string> {
  for (let i = 0; i < 10000; i++) {
    const name = i === 0 ? `${stem}${ext}` : `${stem}-${i}${ext}`;
    const path = join(dir, name);
    let fh;
    try {
      fh = await open(path, "wx", 0o600);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "EEXIST") continue;
      throw e;
    }
    try {
      await fh.writeFile(data);
    } finally {
      await fh.close();
    }
    return path;
  }
  throw new Error(`open ${join(dir, stem + ext)}: too many files with the same name`);
}

export async function saveReceivedFile(dataDir: string, sentName: string, data: Uint8Array, ms: number): Promise<{ path: string; base: string }> {
  const dir = join(dataDir, "received");
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const { base, stem, ext } = splitReceivedName(sentName);
  const path = await writeUnique(dir, `${stem}-${fileStamp(ms)}`, ext, data);
  return { path, base };
}

/** Inbox JSON, Go-sorted: {"bytes","data","from","received_at","type"}. */
export function inboxRecord(type: number, payload: Uint8Array, from: string, ms: number): string {
  return goJson({
    bytes: payload.length,
    data: utf8Lossy.decode(payload),
    from,
    received_at: rfc3339Local(ms),
    type: typeName(type),
  });
}

export async function saveInboxMessage(dataDir: string, type: number, payload: Uint8Array, from: string, ms: number): Promise<string> {
  const dir = join(dataDir, "inbox");
  await mkdir(dir, { recursive: true, mode: 0o700 });
  return writeUnique(dir, `${typeName(type)}-${fileStamp(ms)}`, ".json", utf8.encode(inboxRecord(type, payload, from, ms)));
}
