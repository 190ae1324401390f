#!/usr/bin/env bun
// File sync between two agents with the SDK: the sender pushes every file of a directory with
// sendFile, then a JSON manifest (names + SHA-256) with sendMessage; the receiver waits for the
// manifest, finds each file among its received files by hash, and copies it into its directory.
//
// Usage:  bun examples/file-sync.ts push <target> <dir>
//         bun examples/file-sync.ts pull <dir> [timeout_s]
import { createHash } from "node:crypto";
import { copyFile, mkdir, readdir, readFile, stat } from "node:fs/promises";
import { basename, join } from "node:path";
import { connect, type Pilot, PilotError } from "pilot-ts";

export interface ManifestEntry {
  name: string;
  bytes: number;
  sha256: string;
}
interface Manifest {
  kind: "file-sync-manifest";
  files: ManifestEntry[];
}

/**
 * Send every regular file of `dir` to `target`, then the manifest. `onProgress` sees the sending
 * phase only: bytes handed to the daemon so far (the SDK also reports a "hashing" phase, with
 * sentBytes 0, and a "finishing" phase while it waits for the receiver's acknowledgement).
 */
export async function push(pilot: Pilot, target: string | number, dir: string, onProgress?: (name: string, sent: number, total: number) => void): Promise<ManifestEntry[]> {
  const files: ManifestEntry[] = [];
  for (const name of (await readdir(dir)).sort()) {
    const path = join(dir, name);
    if (!(await stat(path)).isFile()) continue;
    const r = await pilot.sendFile(target, path, {
      onProgress: (p) => {
        if (p.phase === "sending") onProgress?.(name, p.sentBytes, p.totalBytes);
      },
    });
    files.push({ name: basename(path), bytes: r.bytes, sha256: r.sha256 });
  }
  const manifest: Manifest = { kind: "file-sync-manifest", files };
  await pilot.sendMessage(target, manifest, { type: "json" });
  return files;
}

const sha256 = async (path: string) => createHash("sha256").update(await readFile(path)).digest("hex");

/** Wait for a manifest, then copy the files it names (verified by SHA-256) into `dir`. */
export async function pull(pilot: Pilot, dir: string, timeoutMs = 60_000): Promise<ManifestEntry[]> {
  const deadline = Date.now() + timeoutMs;
  const seen = new Set<string>();
  let manifest: Manifest | null = null;
  while (!manifest) {
    const msg = await pilot.waitForMessage({ seen, timeoutMs: Math.max(0, deadline - Date.now()) });
    if (!msg) throw new PilotError("timeout", "no file-sync manifest arrived", "run push on the other agent");
    seen.add(msg.id);
    try {
      const v = JSON.parse(msg.data);
      if (v?.kind === "file-sync-manifest") manifest = v as Manifest;
    } catch {}
  }
  await mkdir(dir, { recursive: true });
  const received = await pilot.received();
  const byHash = new Map<string, string>();
  for (const f of received) byHash.set(await sha256(f.path), f.path);
  for (const e of manifest.files) {
    const src = byHash.get(e.sha256);
    if (!src) throw new PilotError("not_found", `${e.name}: no received file with SHA-256 ${e.sha256}`);
    await copyFile(src, join(dir, basename(e.name)));
  }
  return manifest.files;
}

if (import.meta.main) {
  const [mode, a, b] = process.argv.slice(2);
  const pilot = await connect();
  try {
    if (mode === "push" && a && b) {
      const files = await push(pilot, a, b, (name, sent, total) => process.stderr.write(`\r${name}: ${sent}/${total} bytes`));
      console.log(`\npushed ${files.length} files`);
    } else if (mode === "pull" && a) {
      const files = await pull(pilot, a, Number(b ?? 60) * 1000);
      console.log(`synced ${files.length} files into ${a}`);
    } else {
      console.error("usage: file-sync.ts push <target> <dir> | pull <dir> [timeout_s]");
      process.exitCode = 2;
    }
  } finally {
    pilot.close();
  }
}
