// Sending on a UDP socket descriptor that Bun does not own (the receive ring's, udp-ring.ts)
// through sendmmsg(2) with MSG_DONTWAIT: the same send / sendMany surface as a Bun UDP socket, so
// the tunnel's batcher (udp-batch.ts) and segmentation offload (udp-gso.ts) work unchanged on it.
// A full kernel buffer returns a short count; the socket is then polled for room every
// millisecond and `onWritable` is called (Bun's `drain` callback does this for its own sockets).
import { FFIType, ptr, type Pointer } from "bun:ffi";
import { errnoAt, ipv4, openLibc, put64 } from "./libc.ts";

const EAGAIN = 11;
const MAX_MSGS = 256;
// struct mmsghdr (64) per message, then iovec (16) and sockaddr_in (16) per message.
const IOV_OFF = MAX_MSGS * 64;
const ADDR_OFF = IOV_OFF + MAX_MSGS * 16;

type Libc = { sendmmsg(fd: number, v: Pointer, n: number, flags: number): number; __errno_location(): Pointer };
let libc: Libc | null | undefined;

function load(): Libc | null {
  if (libc !== undefined) return libc;
  libc = openLibc<Libc>({
    sendmmsg: { args: [FFIType.i32, FFIType.ptr, FFIType.u32, FFIType.i32], returns: FFIType.i32 },
    __errno_location: { args: [], returns: FFIType.ptr },
  });
  return libc;
}

export class UdpFdSender {
  private readonly mem = new Uint8Array(ADDR_OFF + MAX_MSGS * 16);
  private readonly dv = new DataView(this.mem.buffer);
  private readonly base: number;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private closed = false;
  // Parsed destination addresses (a tunnel talks to a bounded set of peers; the cache is capped).
  private readonly addrs = new Map<string, number>();

  private constructor(
    private readonly lib: Libc,
    private readonly fd: number,
    private readonly onWritable: () => void,
  ) {
    this.base = ptr(this.mem);
    const dv = this.dv;
    for (let i = 0; i < MAX_MSGS; i++) {
      const m = i * 64;
      put64(dv, m, this.base + ADDR_OFF + i * 16);
      dv.setUint32(m + 8, 16, true);
      put64(dv, m + 16, this.base + IOV_OFF + i * 16);
      put64(dv, m + 24, 1);
      dv.setUint16(ADDR_OFF + i * 16, 2, true); // AF_INET
    }
  }

  static create(fd: number, onWritable: () => void): UdpFdSender | null {
    const l = load();
    return l ? new UdpFdSender(l, fd, onWritable) : null;
  }

  /** The IPv4 address as a big-endian u32, or -1 (not IPv4: such a datagram cannot be sent here). */
  private addr(ip: string): number {
    let a = this.addrs.get(ip);
    if (a !== undefined) return a;
    a = ipv4(ip);
    if (this.addrs.size >= 4096) this.addrs.clear();
    this.addrs.set(ip, a);
    return a;
  }

  private fill(i: number, data: Uint8Array, port: number, ip: string): void {
    const a = this.addr(ip);
    if (a < 0 || !Number.isInteger(port) || port <= 0 || port > 65535) {
      throw new Error(`cannot send to ${ip}:${port} from an IPv4 socket`);
    }
    const dv = this.dv;
    put64(dv, IOV_OFF + i * 16, data.length === 0 ? 0 : ptr(data));
    put64(dv, IOV_OFF + i * 16 + 8, data.length);
    const s = ADDR_OFF + i * 16;
    dv.setUint16(s + 2, port, false);
    dv.setUint32(s + 4, a, false);
  }

  private again(): void {
    if (this.timer || this.closed) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      if (!this.closed) this.onWritable();
    }, 1);
  }

  /** One datagram: true when sent, false when the buffer is full (onWritable follows). */
  send(data: Uint8Array, port: number, ip: string): boolean {
    return this.sendMany([data, port, ip]) === 1;
  }

  /** [data, port, ip, …]: how many were sent, in order (fewer: the buffer is full). */
  sendMany(b: readonly (Uint8Array | number | string)[]): number {
    const total = b.length / 3;
    let sent = 0;
    while (sent < total) {
      const n = Math.min(MAX_MSGS, total - sent);
      for (let i = 0; i < n; i++) {
        const k = (sent + i) * 3;
        this.fill(i, b[k] as Uint8Array, b[k + 1] as number, b[k + 2] as string);
      }
      const r = this.lib.sendmmsg(this.fd, this.base as unknown as Pointer, n, 0x40 /* MSG_DONTWAIT */);
      if (r < 0) {
        const e = errnoAt(this.lib.__errno_location);
        if (e === EAGAIN) {
          this.again();
          return sent;
        }
        throw Object.assign(new Error(`sendmmsg: errno ${e}`), { errno: e });
      }
      sent += r;
      if (r < n) {
        // Stopped early: a full buffer, or an error on the next datagram (reported on retry).
        this.again();
        return sent;
      }
    }
    return sent;
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }
}
