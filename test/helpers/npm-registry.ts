// A loopback stand-in for the npm registry: serves packuments (GET /<name>), version documents
// (GET /<name>/<version|latest>) and tarballs, shaped like registry.npmjs.org's, for packages
// added from local .tgz files. Each version's dist.integrity is the SHA-512 SRI of the tarball as
// packed; `tamper` serves different bytes under the same integrity (a corrupted or swapped download).
// With `upstream`, a package it does not hold (the main package's own dependencies, e.g. the MCP
// SDK) is fetched from that registry, so a local tarball installs as it would from npmjs.org.
import { readFileSync } from "node:fs";

export interface RegistryEntry {
  name: string;
  version: string;
  /** package.json of the version (os, cpu, bin, dependencies, …) */
  manifest: Record<string, unknown>;
  /** the .tgz to serve; null = listed but its tarball is missing (404) */
  tarball: string | null;
  tamper?: boolean;
}

export class FakeRegistry {
  readonly requests: string[] = [];
  private readonly entries = new Map<string, RegistryEntry[]>();
  private readonly blobs = new Map<string, Uint8Array | null>();
  private server: ReturnType<typeof Bun.serve> | null = null;

  constructor(private readonly upstream?: string) {}

  get base(): string {
    if (!this.server) throw new Error("registry not started");
    return `http://127.0.0.1:${this.server.port}`;
  }

  add(e: RegistryEntry): void {
    const list = this.entries.get(e.name) ?? [];
    list.push(e);
    this.entries.set(e.name, list);
  }

  /** Add a packed .tgz, reading its package.json from the tarball. */
  async addTarball(tgz: string, opts: { tamper?: boolean } = {}): Promise<RegistryEntry> {
    const p = Bun.spawn(["tar", "-xzOf", tgz, "package/package.json"], { stdout: "pipe", stderr: "pipe" });
    const text = await new Response(p.stdout).text();
    if ((await p.exited) !== 0) throw new Error(`${tgz}: no package/package.json`);
    const manifest = JSON.parse(text) as { name: string; version: string };
    const e = { name: manifest.name, version: manifest.version, manifest, tarball: tgz, ...opts };
    this.add(e);
    return e;
  }

  start(): this {
    this.server = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: (req) => this.handle(req) });
    return this;
  }

  stop(): void {
    this.server?.stop(true);
    this.server = null;
  }

  private tarballPath(e: RegistryEntry): string {
    return `/-/tarballs/${encodeURIComponent(e.name)}-${e.version}${e.tamper ? "-t" : ""}.tgz`;
  }

  private dist(e: RegistryEntry): Record<string, string> {
    const bytes = e.tarball ? readFileSync(e.tarball) : new Uint8Array();
    const integrity = "sha512-" + new Bun.CryptoHasher("sha512").update(bytes).digest("base64");
    const shasum = new Bun.CryptoHasher("sha1").update(bytes).digest("hex");
    let served: Uint8Array | null = null;
    if (e.tarball) {
      served = new Uint8Array(bytes);
      if (e.tamper) served[served.length >> 1] ^= 0x01;
    }
    this.blobs.set(this.tarballPath(e), served);
    return { shasum, integrity, tarball: this.base + this.tarballPath(e) };
  }

  private versionDoc(e: RegistryEntry): Record<string, unknown> {
    return { ...e.manifest, name: e.name, version: e.version, _id: `${e.name}@${e.version}`, dist: this.dist(e) };
  }

  private handle(req: Request): Response | Promise<Response> {
    const path = new URL(req.url).pathname;
    this.requests.push(path);
    if (path.startsWith("/-/tarballs/")) {
      const blob = this.blobs.get(path);
      return blob ? new Response(blob, { headers: { "content-type": "application/octet-stream" } }) : notFound();
    }
    // /<name>, /@scope%2fname, /@scope/name, each optionally followed by /<version|latest>.
    const parts = decodeURIComponent(path.slice(1)).split("/");
    const nameLen = parts[0]?.startsWith("@") ? 2 : 1;
    const name = parts.slice(0, nameLen).join("/");
    const rest = parts.slice(nameLen);
    const list = this.entries.get(name);
    if (!list && this.upstream) return this.proxy(path, req);
    if (!list || rest.length > 1) return notFound();
    const latest = list[list.length - 1]!;
    if (rest.length === 1) {
      const e = rest[0] === "latest" ? latest : list.find((x) => x.version === rest[0]);
      return e ? Response.json(this.versionDoc(e)) : notFound();
    }
    const versions: Record<string, unknown> = {};
    for (const e of list) versions[e.version] = this.versionDoc(e);
    return Response.json({ _id: name, name, "dist-tags": { latest: latest.version }, versions });
  }

  private async proxy(path: string, req: Request): Promise<Response> {
    const r = await fetch(this.upstream!.replace(/\/$/, "") + path, { headers: { accept: req.headers.get("accept") ?? "application/json" } });
    return new Response(await r.arrayBuffer(), { status: r.status, headers: { "content-type": r.headers.get("content-type") ?? "application/json" } });
  }
}

const notFound = () => Response.json({ error: "Not found" }, { status: 404 });
