// Minimal headless Chromium driver over the DevTools protocol (a websocket, Bun's WebSocket), for
// the dashboard test. No puppeteer: Chromium comes from the distribution (`apt-get install
// chromium`); findChromium() returns null when it is absent so the test can skip with a message.
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export function findChromium(): string | null {
  const env = process.env.PILOT_TEST_CHROMIUM;
  if (env) return existsSync(env) ? env : null;
  for (const p of ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome", "/usr/bin/google-chrome-stable"]) if (existsSync(p)) return p;
  return null;
}

type Pending = { resolve(v: any): void; reject(e: Error): void; method: string };

export class Browser {
  private nextId = 1;
  private pending = new Map<number, Pending>();
  private events: { method: string; params: any }[] = [];
  private constructor(private proc: ChildProcess, private ws: WebSocket, private profile: string) {
    ws.onmessage = (ev) => {
      const m = JSON.parse(String(ev.data));
      if (typeof m.id === "number") {
        const p = this.pending.get(m.id);
        if (!p) return;
        this.pending.delete(m.id);
        if (m.error) p.reject(new Error(`${p.method}: ${m.error.message}`));
        else p.resolve(m.result);
      } else if (m.method) {
        this.events.push(m);
        if (this.events.length > 1000) this.events.shift();
      }
    };
    ws.onclose = () => {
      for (const p of this.pending.values()) p.reject(new Error(`${p.method}: devtools connection closed`));
      this.pending.clear();
    };
  }

  /** Start headless Chromium on an ephemeral DevTools port and attach to its first page. */
  static async launch(exe: string, timeoutMs = 30000): Promise<Browser> {
    const profile = mkdtempSync(join(tmpdir(), "pilot-chromium-"));
    const args = [
      "--headless=new", "--remote-debugging-port=0", "--remote-debugging-address=127.0.0.1", `--user-data-dir=${profile}`,
      "--no-first-run", "--no-default-browser-check", "--disable-gpu", "--disable-extensions", "--disable-background-networking",
      "--disable-sync", "--disable-dev-shm-usage", "--mute-audio", "--hide-scrollbars", "--window-size=1280,900",
    ];
    if (process.getuid?.() === 0) args.push("--no-sandbox"); // Chromium refuses to run as root with its sandbox
    args.push("about:blank");
    const proc = spawn(exe, args, { stdio: ["ignore", "ignore", "pipe"] });
    let err = "";
    const wsUrl = await new Promise<string>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`chromium did not print its DevTools address within ${timeoutMs} ms: ${err.slice(-500)}`)), timeoutMs);
      proc.stderr!.on("data", (d: Buffer) => {
        err += d.toString();
        const m = /DevTools listening on (ws:\/\/\S+)/.exec(err);
        if (m) { clearTimeout(t); resolve(m[1]); }
      });
      proc.on("exit", (code) => { clearTimeout(t); reject(new Error(`chromium exited (${code}): ${err.slice(-500)}`)); });
    });
    proc.stderr!.resume();
    // Attach to the page target directly (its own websocket), found through the HTTP listing.
    const port = new URL(wsUrl).port;
    const list = (await (await fetch(`http://127.0.0.1:${port}/json/list`)).json()) as { type: string; webSocketDebuggerUrl: string }[];
    const page = list.find((t) => t.type === "page");
    if (!page) throw new Error("chromium has no page target");
    const ws = new WebSocket(page.webSocketDebuggerUrl);
    await new Promise<void>((resolve, reject) => {
      ws.onopen = () => resolve();
      ws.onerror = () => reject(new Error("devtools websocket failed"));
    });
    const b = new Browser(proc, ws, profile);
    await b.send("Page.enable");
    await b.send("Runtime.enable");
    return b;
  }

  send(method: string, params: Record<string, unknown> = {}): Promise<any> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, method });
      this.ws.send(JSON.stringify({ id, method, params }));
    });
  }

  /** Evaluate an expression in the page; returns its JSON value (awaits promises). */
  async eval<T = unknown>(expression: string): Promise<T> {
    const r = await this.send("Runtime.evaluate", { expression, returnByValue: true, awaitPromise: true });
    if (r.exceptionDetails) throw new Error(`page exception: ${r.exceptionDetails.exception?.description ?? r.exceptionDetails.text}`);
    return r.result.value as T;
  }

  async navigate(url: string): Promise<void> {
    const r = await this.send("Page.navigate", { url });
    if (r.errorText) throw new Error(`navigate ${url}: ${r.errorText}`);
  }

  async viewport(width: number, height: number, mobile: boolean): Promise<void> {
    await this.send("Emulation.setDeviceMetricsOverride", { width, height, deviceScaleFactor: 1, mobile });
  }

  /** Full-page PNG. */
  async screenshot(): Promise<Uint8Array> {
    const r = await this.send("Page.captureScreenshot", { format: "png", captureBeyondViewport: true });
    return new Uint8Array(Buffer.from(r.data, "base64"));
  }

  /** Console errors and uncaught exceptions seen so far. */
  pageErrors(): string[] {
    const out: string[] = [];
    for (const e of this.events) {
      if (e.method === "Runtime.exceptionThrown") out.push(e.params.exceptionDetails?.exception?.description ?? e.params.exceptionDetails?.text);
      if (e.method === "Runtime.consoleAPICalled" && e.params.type === "error") out.push(e.params.args?.map((a: any) => a.value ?? a.description).join(" "));
    }
    return out;
  }

  async close(): Promise<void> {
    try { this.ws.close(); } catch {}
    if (this.proc.exitCode === null) {
      const gone = new Promise((r) => this.proc.once("exit", r));
      this.proc.kill("SIGTERM");
      await Promise.race([gone, Bun.sleep(5000)]);
      if (this.proc.exitCode === null) this.proc.kill("SIGKILL");
    }
    rmSync(this.profile, { recursive: true, force: true, maxRetries: 5 });
  }
}
