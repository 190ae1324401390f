// Receiving side of the resumable file-transfer extension of the data-exchange service
// (docs/file-transfer.md). The file is written to a partial file under <dataDir>/partial/, keyed
// by sender + name + size + SHA-256, so that a new offer of the same file after a broken
// connection resumes where the bytes stopped. After END the digest is checked and the partial file
// is linked into received/ under the usual `<stem>-<stamp><ext>` name (atomic, never overwriting).
import { createHash, type Hash } from "node:crypto";
import { link, mkdir, open, readdir, stat, statfs, unlink, type FileHandle } from "node:fs/promises";
import { join } from "node:path";
import { formatAddr } from "../../proto/addr.ts";
import {
  type DxMessage, encodeMessage, encodeText, formatAck, TYPE_FILE, XFER_MAX_CHUNK, XFER_VERSION,
  type XferData, type XferOffer,
} from "../../proto/dataexchange.ts";
import type { StreamConn } from "../../transport/api.ts";
import { nowMs, type ServiceContext } from "./context.ts";
import { splitReceivedName } from "./dx-storage.ts";
import { errText, fileStamp } from "./util.ts";

export interface FileReceiverOptions {
  /** Largest file accepted (default 64 GiB). */
  maxFileBytes?: number;
  /** Free space that must remain on the data directory's file system (default 64 MiB). */
  reserveBytes?: number;
  /** Partial files kept at most; the oldest idle ones are removed first (default 16). */
  maxPartials?: number;
  /** Partial files untouched for longer are removed (default 24 h). */
  partialTtlMs?: number;
  /** DATA size granted to senders (default and maximum 1 MiB). */
  chunk?: number;
  /** A PROGRESS frame is sent every this many bytes written (default 4 MiB). */
  progressEvery?: number;
}

interface Transfer {
  key: string;
  offer: XferOffer;
  from: string;
  partPath: string;
  fh: FileHandle | null;
  hash: Hash;
  offset: number;
  lastProgress: number;
  /** set when another connection took the transfer over or it ended */
  detached: boolean;
  /** resolves when the current operation on the file is done */
  busy: Promise<void>;
}

/** While re-hashing a partial file for a resume, a PROGRESS frame goes out every this many bytes. */
const REHASH_PROGRESS_EVERY = 256 * 2 ** 20;

const refuse = (code: string, error: string) => [encodeMessage({ kind: "refuse", code, error })];

export class FileReceiver {
  private readonly active = new Map<string, Transfer>();
  private readonly o: Required<FileReceiverOptions>;
  readonly partialDir: string;

  constructor(private readonly ctx: ServiceContext, opts: FileReceiverOptions = {}) {
    this.o = {
      maxFileBytes: opts.maxFileBytes ?? 64 * 2 ** 30,
      reserveBytes: opts.reserveBytes ?? 64 * 2 ** 20,
      maxPartials: opts.maxPartials ?? 16,
      partialTtlMs: opts.partialTtlMs ?? 24 * 3600_000,
      chunk: Math.min(opts.chunk ?? XFER_MAX_CHUNK, XFER_MAX_CHUNK),
      progressEvery: opts.progressEvery ?? 4 * 2 ** 20,
    };
    this.partialDir = join(ctx.dataDir, "partial");
  }

  /** Per-connection state: the transfer (if any) this connection is feeding. */
  session(conn: StreamConn): ReceiverSession {
    return new ReceiverSession(this, conn);
  }

  /** Close every open partial file (service stop); partial files stay for a later resume. */
  async stop(): Promise<void> {
    const all = [...this.active.values()];
    this.active.clear();
    await Promise.all(all.map((t) => this.detach(t)));
  }

  /** @internal */ async detach(t: Transfer): Promise<void> {
    t.detached = true;
    if (this.active.get(t.key) === t) this.active.delete(t.key);
    await t.busy.catch(() => {});
    const fh = t.fh;
    t.fh = null;
    await fh?.close().catch(() => {});
  }

  /** @internal */ async begin(conn: StreamConn, offer: XferOffer): Promise<{ replies: Uint8Array[]; transfer?: Transfer }> {
    const ctx = this.ctx;
    if (offer.size > this.o.maxFileBytes) {
      return { replies: refuse("too_large", `file of ${offer.size} bytes exceeds the receiver's limit of ${this.o.maxFileBytes} bytes`) };
    }
    const from = formatAddr(conn.remoteAddr);
    const key = createHash("sha256").update(`${from}\n${offer.name}\n${offer.size}\n${offer.sha256}`).digest("hex").slice(0, 40);
    // A new offer of the same file takes over (the old connection is usually dead already).
    const prev = this.active.get(key);
    if (prev) await this.detach(prev);
    try {
      await mkdir(this.partialDir, { recursive: true, mode: 0o700 });
      await this.prune(key);
    } catch (e) {
      return { replies: refuse("storage", `partial directory: ${errText(e)}`) };
    }
    if (this.active.size >= this.o.maxPartials) return { replies: refuse("busy", "too many transfers in progress, retry later") };
    const partPath = join(this.partialDir, `${key}.part`);
    let fh: FileHandle;
    let offset = 0;
    const hash = createHash("sha256");
    try {
      fh = await open(partPath, "a+", 0o600);
      offset = (await fh.stat()).size;
      if (offset > offer.size) {
        await fh.truncate(0);
        offset = 0;
      }
      const need = offer.size - offset;
      const fs = await statfs(this.partialDir).catch(() => null);
      if (fs && need + this.o.reserveBytes > fs.bavail * fs.bsize) {
        await fh.close();
        return { replies: refuse("no_space", `not enough free space for ${need} more bytes`) };
      }
      // Resume: the digest covers the whole file, so hash what is already on disk. This can take
      // a while for a large partial file: PROGRESS frames tell the sender we are alive.
      if (offset > 0) {
        const buf = Buffer.allocUnsafe(1 << 20);
        let reported = 0;
        for (let pos = 0; pos < offset;) {
          const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, offset - pos), pos);
          if (bytesRead <= 0) break;
          hash.update(buf.subarray(0, bytesRead));
          pos += bytesRead;
          if (pos - reported >= REHASH_PROGRESS_EVERY) {
            reported = pos;
            try { conn.write(encodeMessage({ kind: "progress", bytes: pos })); } catch { /* closed: the offer fails below */ }
          }
        }
      }
    } catch (e) {
      return { replies: refuse("storage", `partial file: ${errText(e)}`) };
    }
    const t: Transfer = { key, offer, from, partPath, fh, hash, offset, lastProgress: offset, detached: false, busy: Promise.resolve() };
    this.active.set(key, t);
    ctx.log.info("file transfer accepted", { from, name: offer.name, size: offer.size, offset });
    return {
      replies: [encodeMessage({ kind: "accept", offset, chunk: this.o.chunk, v: XFER_VERSION })],
      transfer: t,
    };
  }

  /** @internal */ async write(t: Transfer, m: XferData): Promise<Uint8Array[]> {
    if (t.detached || !t.fh) return refuse("superseded", "the transfer was taken over by another connection");
    let bad: Uint8Array[] | null = null;
    if (m.offset !== t.offset) bad = refuse("bad_offset", `data at offset ${m.offset}, expected ${t.offset}`);
    else if (m.data.length > this.o.chunk) bad = refuse("bad_chunk", `data frame of ${m.data.length} bytes exceeds ${this.o.chunk}`);
    else if (t.offset + m.data.length > t.offer.size) bad = refuse("bad_offset", `data beyond the offered size of ${t.offer.size} bytes`);
    if (bad) {
      await this.detach(t); // the partial file keeps the bytes that were in order
      return bad;
    }
    const fh = t.fh;
    const op = (async () => {
      let done = 0;
      while (done < m.data.length) {
        const { bytesWritten } = await fh.write(m.data, done, m.data.length - done, t.offset + done);
        done += bytesWritten;
      }
    })();
    t.busy = op;
    try {
      await op;
    } catch (e) {
      await this.detach(t);
      return refuse("storage", `write: ${errText(e)}`);
    }
    t.hash.update(m.data);
    t.offset += m.data.length;
    if (t.offset - t.lastProgress >= this.o.progressEvery) {
      t.lastProgress = t.offset;
      return [encodeMessage({ kind: "progress", bytes: t.offset })];
    }
    return [];
  }

  /** @internal */ async finish(t: Transfer): Promise<Uint8Array[]> {
    const ctx = this.ctx;
    if (t.detached || !t.fh) return refuse("superseded", "the transfer was taken over by another connection");
    if (t.offset !== t.offer.size) {
      await this.detach(t);
      return refuse("incomplete", `end after ${t.offset} of ${t.offer.size} bytes`);
    }
    const fh = t.fh;
    try {
      await fh.sync();
    } catch (e) {
      await this.detach(t);
      return refuse("storage", `sync: ${errText(e)}`);
    }
    await this.detach(t);
    const digest = t.hash.digest("hex");
    if (digest !== t.offer.sha256) {
      await unlink(t.partPath).catch(() => {});
      ctx.log.warn("file transfer: digest mismatch", { from: t.from, name: t.offer.name, expected: t.offer.sha256, got: digest });
      return refuse("digest_mismatch", `SHA-256 of the received bytes is ${digest}, expected ${t.offer.sha256}; send the file again`);
    }
    let path: string, base: string;
    try {
      ({ path, base } = await this.publish(t));
    } catch (e) {
      return [encodeText(`ERR FILE save failed: ${errText(e)}`)];
    }
    ctx.log.info("file received", { path, bytes: t.offer.size, sha256: digest });
    ctx.webhook("file.received", { filename: base, size: t.offer.size, path });
    return [encodeText(formatAck(TYPE_FILE, t.offer.size))];
  }

  /** Link the checked partial file into received/ under a new name, then drop the partial name. */
  private async publish(t: Transfer): Promise<{ path: string; base: string }> {
    const dir = join(this.ctx.dataDir, "received");
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const { base, stem, ext } = splitReceivedName(t.offer.name);
    const s = `${stem}-${fileStamp(nowMs(this.ctx))}`;
    for (let i = 0; i < 10000; i++) {
      const path = join(dir, i === 0 ? `${s}${ext}` : `${s}-${i}${ext}`);
      try {
        await link(t.partPath, path);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === "EEXIST") continue;
        throw e;
      }
      await unlink(t.partPath).catch(() => {});
      return { path, base };
    }
    throw new Error(`link ${join(dir, s + ext)}: too many files with the same name`);
  }

  /** Remove expired partial files and, above the limit, the oldest idle ones. */
  private async prune(keep: string): Promise<void> {
    const now = Date.now();
    const idle: { name: string; mtime: number }[] = [];
    for (const name of await readdir(this.partialDir)) {
      if (!name.endsWith(".part")) continue;
      const key = name.slice(0, -5);
      if (key === keep || this.active.has(key)) continue;
      const st = await stat(join(this.partialDir, name)).catch(() => null);
      if (!st) continue;
      if (now - st.mtimeMs > this.o.partialTtlMs) await unlink(join(this.partialDir, name)).catch(() => {});
      else idle.push({ name, mtime: st.mtimeMs });
    }
    idle.sort((a, b) => a.mtime - b.mtime);
    while (idle.length + this.active.size >= this.o.maxPartials && idle.length > 0) {
      await unlink(join(this.partialDir, idle.shift()!.name)).catch(() => {});
    }
  }
}

/** The extension frames of one data-exchange connection. */
export class ReceiverSession {
  private t: Transfer | null = null;
  /** After a refusal, the rest of that transfer's frames (already in flight) are dropped silently. */
  private dropping = false;

  constructor(private readonly rx: FileReceiver, private readonly conn: StreamConn) {}

  /** Handle one extension message; returns the frames to send back (possibly none). */
  async handle(m: DxMessage): Promise<Uint8Array[]> {
    switch (m.kind) {
      case "offer": {
        if (this.t) await this.rx.detach(this.t);
        this.t = null;
        this.dropping = false;
        const r = await this.rx.begin(this.conn, m);
        this.t = r.transfer ?? null;
        return r.replies;
      }
      case "data": {
        const t = this.t;
        if (!t) return this.noTransfer("data");
        const out = await this.rx.write(t, m);
        if (t.detached && this.t === t) {
          this.t = null;
          this.dropping = true;
        }
        return out;
      }
      case "end": {
        if (!this.t) return this.noTransfer("end");
        const t = this.t;
        this.t = null;
        return this.rx.finish(t);
      }
      default:
        return [];
    }
  }

  private noTransfer(what: string): Uint8Array[] {
    if (this.dropping) return [];
    this.dropping = true;
    return refuse("no_transfer", `${what} without an accepted offer`);
  }

  /** The connection ended: keep the partial file for a resume, release the handle. */
  async close(): Promise<void> {
    const t = this.t;
    this.t = null;
    if (t) await this.rx.detach(t);
  }
}
