// Helpers for the interop audit tests (test/interop-*.test.ts): a raw-JSON registry client, a
// fake registry server that records what a daemon sends, and a fake "reference daemon" peer that
// speaks raw tunnel frames over its own UDP socket. Everything is built from the spec's byte
// layouts; only low-level codecs (packet CRC, AES-GCM session, Ed25519) are imported.
import { connect, createServer, type Server, type Socket } from "node:net";
import { createSocket, type Socket as UdpSocket } from "node:dgram";
import { FrameDecoder } from "../src/proto/framing.ts";
import { generateIdentity, sign, verify, type Identity } from "../src/crypto/identity.ts";

export const b64 = (b: Uint8Array): string => Buffer.from(b).toString("base64");
export const unb64 = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, "base64"));

export function frame(obj: unknown): Uint8Array {
  const body = Buffer.from(JSON.stringify(obj));
  const out = Buffer.alloc(4 + body.length);
  out.writeUInt32BE(body.length, 0);
  body.copy(out, 4);
  return out;
}

/** Raw registry client: one TCP connection, raw frames, positional correlation. */
export class RawReg {
  private dec = new FrameDecoder();
  private frames: Record<string, any>[] = [];
  private waiters: ((f: Record<string, any> | null) => void)[] = [];
  closed = false;
  private constructor(private sock: Socket) {
    sock.on("data", (d) => {
      for (const f of this.dec.push(new Uint8Array(d as Buffer))) {
        const o = JSON.parse(Buffer.from(f).toString("utf8"));
        const w = this.waiters.shift();
        if (w) w(o);
        else this.frames.push(o);
      }
    });
    const onClose = () => {
      this.closed = true;
      for (const w of this.waiters.splice(0)) w(null);
    };
    sock.on("close", onClose);
    sock.on("error", onClose);
  }
  static open(addr: string): Promise<RawReg> {
    const i = addr.lastIndexOf(":");
    return new Promise((res, rej) => {
      const s = connect({ host: addr.slice(0, i), port: Number(addr.slice(i + 1)) }, () => res(new RawReg(s)));
      s.once("error", rej);
    });
  }
  write(bytes: Uint8Array): void {
    this.sock.write(bytes);
  }
  /** Next frame, or null when the server closed the connection. */
  next(timeoutMs = 5000): Promise<Record<string, any> | null> {
    const f = this.frames.shift();
    if (f) return Promise.resolve(f);
    if (this.closed) return Promise.resolve(null);
    return new Promise((res, rej) => {
      const t = setTimeout(() => rej(new Error("registry: no response")), timeoutMs);
      this.waiters.push((v) => {
        clearTimeout(t);
        res(v);
      });
    });
  }
  async req(obj: Record<string, unknown>): Promise<Record<string, any>> {
    this.write(frame(obj));
    const r = await this.next();
    if (!r) throw new Error("registry closed the connection");
    return r;
  }
  close(): void {
    this.sock.destroy();
  }
}

export interface Node {
  id: Identity;
  nodeId: number;
  address: string;
  pub: string;
}

export function signB64(id: Identity, challenge: string): string {
  return b64(sign(id, challenge));
}

export async function registerNode(r: RawReg, listenAddr: string, extra: Record<string, unknown> = {}): Promise<Node> {
  const id = generateIdentity();
  const pub = b64(id.publicKey);
  const resp = await r.req({ type: "register", public_key: pub, listen_addr: listenAddr, ...extra });
  if (resp.type !== "register_ok") throw new Error(`register failed: ${JSON.stringify(resp)}`);
  return { id, nodeId: resp.node_id, address: resp.address, pub };
}

/** A TCP server speaking the registry framing; records every request, answers via `handle`. */
export class FakeRegistry {
  readonly msgs: Record<string, any>[] = [];
  private server: Server;
  private listeners: ((m: Record<string, any>) => void)[] = [];
  port = 0;
  constructor(public handle: (m: Record<string, any>) => Record<string, unknown>) {
    this.server = createServer((s) => {
      const dec = new FrameDecoder();
      s.on("data", (d) => {
        for (const f of dec.push(new Uint8Array(d as Buffer))) {
          const m = JSON.parse(Buffer.from(f).toString("utf8"));
          this.msgs.push(m);
          for (const l of this.listeners) l(m);
          s.write(frame(this.handle(m)));
        }
      });
      s.on("error", () => {});
    });
  }
  listen(): Promise<string> {
    return new Promise((res) => this.server.listen(0, "127.0.0.1", () => {
      this.port = (this.server.address() as { port: number }).port;
      res(`127.0.0.1:${this.port}`);
    }));
  }
  waitFor(pred: (m: Record<string, any>) => boolean, timeoutMs = 15000): Promise<Record<string, any>> {
    const hit = this.msgs.find(pred);
    if (hit) return Promise.resolve(hit);
    return new Promise((res, rej) => {
      const t = setTimeout(() => rej(new Error(`fake registry: no matching message; got types ${this.msgs.map((m) => m.type).join(",")}`)), timeoutMs);
      const l = (m: Record<string, any>) => {
        if (pred(m)) {
          clearTimeout(t);
          this.listeners = this.listeners.filter((x) => x !== l);
          res(m);
        }
      };
      this.listeners.push(l);
    });
  }
  close(): void {
    this.server.close();
  }
}

export function verifySig(pubB64: string, challenge: string, sigB64: unknown): boolean {
  if (typeof sigB64 !== "string") return false;
  return verify(unb64(pubB64), challenge, unb64(sigB64));
}

/** A UDP socket on 127.0.0.1 that records every datagram. */
export class RawUdp {
  readonly got: { buf: Uint8Array; port: number; addr: string }[] = [];
  private listeners: ((d: { buf: Uint8Array; port: number; addr: string }) => void)[] = [];
  sock: UdpSocket;
  port = 0;
  constructor() {
    this.sock = createSocket("udp4");
    this.sock.on("message", (m, r) => {
      const d = { buf: new Uint8Array(m), port: r.port, addr: r.address };
      this.got.push(d);
      for (const l of this.listeners.slice()) l(d);
    });
  }
  bind(): Promise<number> {
    return new Promise((res) => this.sock.bind(0, "127.0.0.1", () => res((this.port = this.sock.address().port))));
  }
  onMessage(l: (d: { buf: Uint8Array; port: number; addr: string }) => void): () => void {
    this.listeners.push(l);
    return () => (this.listeners = this.listeners.filter((x) => x !== l));
  }
  send(buf: Uint8Array, port: number, host = "127.0.0.1"): void {
    this.sock.send(buf, port, host);
  }
  /** Wait for a datagram (received after `since` index) matching pred. */
  waitFor<T>(pick: (d: { buf: Uint8Array; port: number; addr: string }) => T | null | undefined, timeoutMs = 8000, since = 0): Promise<T> {
    for (let i = since; i < this.got.length; i++) {
      const v = pick(this.got[i]);
      if (v) return Promise.resolve(v);
    }
    return new Promise((res, rej) => {
      const t = setTimeout(() => {
        off();
        rej(new Error(`udp: timed out; saw ${this.got.length} datagrams: ${this.got.slice(since).map((d) => magicOf(d.buf)).join(",")}`));
      }, timeoutMs);
      const off = this.onMessage((d) => {
        const v = pick(d);
        if (v) {
          clearTimeout(t);
          off();
          res(v);
        }
      });
    });
  }
  close(): void {
    try {
      this.sock.close();
    } catch {}
  }
}

export function magicOf(b: Uint8Array): string {
  if (b.length && b[0] < 0x10) return `beacon(${b[0]})`;
  return Buffer.from(b.subarray(0, 4)).toString("latin1");
}
