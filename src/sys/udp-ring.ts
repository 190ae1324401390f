// A UDP socket read by a worker thread with recvmmsg(2) into a ring of fixed slots in shared
// memory (Linux, through bun:ffi). Bun's own UDP socket calls JavaScript once per datagram with a
// freshly allocated buffer and address string; at bulk rates that callback and the garbage it
// leaves (hundreds of MB/s of 4 KiB ArrayBuffers waiting for the collector) were about half of a
// receiving daemon's CPU floor and most of its peak memory (docs/performance.md, fifth round).
// Here the worker blocks in recvmmsg and the main thread handles every datagram that has arrived
// in one pass over the ring, each as a view of its slot: nothing is allocated per datagram.
//
// Ownership: a datagram's view is valid only during the handler call (the PacketHandler
// contract); the slot is given back to the worker when the pass moves on. With
// PILOT_RX_POISON=1 every slot is overwritten right after its handler returns, so a consumer that
// keeps a view without copying it sees garbage at once (the test suite runs with it once).
//
// Datagrams larger than a slot (the unreliable datagram service allows 64 KiB) are rare: the
// kernel writes their tail into a per-batch overflow area, and the worker sends such a datagram
// whole to the main thread as a message (it may then arrive out of order with the ring, which
// UDP allows). IPv4 only; callers fall back to Bun's socket elsewhere.
import { FFIType, ptr, type Pointer } from "bun:ffi";
import { errnoAt, ipv4, openLibc } from "./libc.ts";
import { setSocketBuffers } from "./sockopt.ts";

const AF_INET = 2;
const SOCK_DGRAM = 2;
const SOL_SOCKET = 1;
const SO_RCVTIMEO = 20;
const SHUT_RDWR = 2;

/** Ring slots (a power of two) and bytes per slot: a full 4 KiB segment frame fits in one. */
export const RING_SLOTS = 512;
export const SLOT_BYTES = 4608;
/** Datagrams read per recvmmsg call at most. */
const BATCH = 64;
/** Room for the rest of a datagram larger than a slot (the largest UDP payload is 65,507). */
const OVERFLOW_BYTES = 65536 - SLOT_BYTES;
/** msg_len value the worker writes for a slot whose datagram went by message (or was cut). */
const SKIP = 0xffffffff;

// ctrl (Int32Array) indices
const HEAD = 0; // slots the main thread has finished with (a running count, wraps)
const TAIL = 1; // slots the worker has filled (a running count, wraps)
const MAIN_WAITING = 2; // 1: the main thread waits on TAIL for a notify
const STOP = 3; // 1: the worker must exit
const WORKER_WAITING = 4; // 1: the ring is full and the worker waits on HEAD
const CTRL_INTS = 8;

// Per slot in `meta`: struct mmsghdr (64 bytes) at slot*64; then iovec[2] (32 bytes) per slot;
// then struct sockaddr_in (16 bytes) per slot.
const MMSG = 64;
const IOV_OFF = RING_SLOTS * MMSG;
const ADDR_OFF = IOV_OFF + RING_SLOTS * 32;
const META_BYTES = ADDR_OFF + RING_SLOTS * 16;

type Libc = {
  socket(d: number, t: number, p: number): number;
  bind(fd: number, a: Pointer, l: number): number;
  getsockname(fd: number, a: Pointer, l: Pointer): number;
  setsockopt(fd: number, level: number, name: number, v: Pointer, l: number): number;
  shutdown(fd: number, how: number): number;
  close(fd: number): number;
  __errno_location(): Pointer;
};
let libc: Libc | null | undefined;

function load(): Libc | null {
  if (libc !== undefined) return libc;
  libc = null;
  if (process.platform !== "linux" || (process.arch !== "x64" && process.arch !== "arm64")) return null;
  libc = openLibc<Libc>({
    socket: { args: [FFIType.i32, FFIType.i32, FFIType.i32], returns: FFIType.i32 },
    bind: { args: [FFIType.i32, FFIType.ptr, FFIType.u32], returns: FFIType.i32 },
    getsockname: { args: [FFIType.i32, FFIType.ptr, FFIType.ptr], returns: FFIType.i32 },
    setsockopt: { args: [FFIType.i32, FFIType.i32, FFIType.i32, FFIType.ptr, FFIType.u32], returns: FFIType.i32 },
    shutdown: { args: [FFIType.i32, FFIType.i32], returns: FFIType.i32 },
    close: { args: [FFIType.i32], returns: FFIType.i32 },
    __errno_location: { args: [], returns: FFIType.ptr },
  });
  return libc;
}

// The worker, as source: it is started from a Blob so that the compiled release executable
// needs no extra entry point. Plain JavaScript; it only loops over recvmmsg.
const WORKER_SOURCE = String.raw`
import { dlopen, FFIType, ptr, read } from "bun:ffi";
self.onmessage = (ev) => {
  const { fd, ctrlSab, metaSab, dataSab, ovSab, slots, slotBytes, ovBytes, batch } = ev.data;
  let lib = null;
  for (const n of ["libc.so.6", "libc.so"]) {
    try {
      lib = dlopen(n, {
        recvmmsg: { args: [FFIType.i32, FFIType.ptr, FFIType.u32, FFIType.i32, FFIType.ptr], returns: FFIType.i32 },
        __errno_location: { args: [], returns: FFIType.ptr },
      }).symbols;
      break;
    } catch {}
  }
  const ctrl = new Int32Array(ctrlSab);
  if (!lib) { postMessage({ exit: "no libc" }); return; }
  const meta = new Uint8Array(metaSab);
  const mdv = new DataView(metaSab);
  const data = new Uint8Array(dataSab);
  const ov = new Uint8Array(ovSab);
  const IOV = slots * 64, ADDR = IOV + slots * 32;
  const mbase = ptr(meta), dbase = ptr(data), obase = ptr(ov);
  const put64 = (o, v) => { mdv.setUint32(o, v % 4294967296, true); mdv.setUint32(o + 4, Math.floor(v / 4294967296), true); };
  for (let i = 0; i < slots; i++) {
    const m = i * 64, iov = IOV + i * 32;
    put64(m, mbase + ADDR + i * 16); mdv.setUint32(m + 8, 16, true); // msg_name, msg_namelen
    put64(m + 16, mbase + iov); put64(m + 24, 2); // msg_iov, msg_iovlen
    put64(iov, dbase + i * slotBytes); put64(iov + 8, slotBytes);
    put64(iov + 16, obase + (i % batch) * ovBytes); put64(iov + 24, ovBytes);
  }
  const mask = slots - 1;
  for (;;) {
    if (Atomics.load(ctrl, 3) !== 0) break;
    const head = Atomics.load(ctrl, 0);
    const tail = ctrl[1];
    const free = slots - ((tail - head) | 0);
    if (free <= 0) {
      Atomics.store(ctrl, 4, 1);
      if (Atomics.load(ctrl, 0) === head && Atomics.load(ctrl, 3) === 0) Atomics.wait(ctrl, 0, head, 250);
      Atomics.store(ctrl, 4, 0);
      continue;
    }
    const idx = tail & mask;
    const want = Math.min(free, slots - idx, batch);
    for (let i = 0; i < want; i++) mdv.setUint32((idx + i) * 64 + 8, 16, true);
    const r = lib.recvmmsg(fd, mbase + idx * 64, want, 0x10000 /* MSG_WAITFORONE */, null);
    if (r <= 0) {
      const e = r < 0 ? read.i32(lib.__errno_location(), 0) : 0;
      if (e === 11 || e === 4 || r === 0) continue; // timeout (SO_RCVTIMEO), EINTR, shutdown
      if (e === 9 || e === 88) break; // EBADF, ENOTSOCK: the socket is gone
      continue; // e.g. ECONNREFUSED from an ICMP error: the socket is still fine
    }
    for (let i = 0; i < r; i++) {
      const m = (idx + i) * 64;
      const len = mdv.getUint32(m + 56, true);
      const flags = mdv.getInt32(m + 48, true);
      if (len <= slotBytes && (flags & 0x20) === 0) continue;
      if ((flags & 0x20) === 0 && len <= slotBytes + ovBytes) {
        const big = new Uint8Array(len);
        const s = (idx + i) * slotBytes;
        big.set(data.subarray(s, s + slotBytes), 0);
        const o = ((idx + i) % batch) * ovBytes;
        big.set(ov.subarray(o, o + len - slotBytes), slotBytes);
        const a = ADDR + (idx + i) * 16;
        postMessage({ big: big.buffer, ip: meta[a + 4] + "." + meta[a + 5] + "." + meta[a + 6] + "." + meta[a + 7], port: (meta[a + 2] << 8) | meta[a + 3] }, [big.buffer]);
      }
      mdv.setUint32(m + 56, 0xffffffff, true);
    }
    Atomics.store(ctrl, 1, (tail + r) | 0);
    if (Atomics.load(ctrl, 2) === 1) {
      Atomics.store(ctrl, 2, 0);
      Atomics.notify(ctrl, 1);
    }
  }
  postMessage({ exit: "stopped" });
};
`;

/** bind(2) errnos (Linux) as Node-style codes and texts. */
const BIND_ERRORS: Record<number, [string, string]> = {
  13: ["EACCES", "permission denied"],
  98: ["EADDRINUSE", "address already in use"],
  99: ["EADDRNOTAVAIL", "cannot assign requested address"],
};

export type RingHandler = (data: Uint8Array, ip: string, port: number) => void;

let workerUrl: string | undefined;

const POISON = process.env.PILOT_RX_POISON === "1";

/** An IPv4 UDP socket whose datagrams are read by a worker into a shared ring. */
export class UdpRing {
  private readonly ctrl: Int32Array;
  private readonly meta: Uint8Array;
  private readonly mdv: DataView;
  private readonly data: Uint8Array;
  private readonly worker: Worker;
  private head = 0;
  private closed = false;
  private waiting = false;
  // Cache of the last sender's address string (most datagrams come from one peer at a time).
  private lastAddr = -1;
  private lastIp = "";
  /** Datagrams handled (diagnostics). */
  datagrams = 0;

  private constructor(
    private readonly lib: Libc,
    readonly fd: number,
    readonly port: number,
    /** Kernel buffer sizes as reported after sizing (null: left at the defaults). */
    readonly buffers: { rcv: number; snd: number } | null,
    private readonly onPacket: RingHandler,
    private readonly onError: (e: Error) => void,
    private readonly onFatal: (e: Error) => void,
  ) {
    const ctrlSab = new SharedArrayBuffer(CTRL_INTS * 4);
    const metaSab = new SharedArrayBuffer(META_BYTES);
    const dataSab = new SharedArrayBuffer(RING_SLOTS * SLOT_BYTES);
    const ovSab = new SharedArrayBuffer(BATCH * OVERFLOW_BYTES);
    this.ctrl = new Int32Array(ctrlSab);
    this.meta = new Uint8Array(metaSab);
    this.mdv = new DataView(metaSab);
    this.data = new Uint8Array(dataSab);
    // One object URL per process, kept: a worker loads its script asynchronously.
    workerUrl ??= URL.createObjectURL(new Blob([WORKER_SOURCE], { type: "application/javascript" }));
    this.worker = new Worker(workerUrl);
    this.worker.onmessage = (ev: MessageEvent) => this.onMessage(ev.data);
    this.worker.onerror = (ev) => this.onFatal(new Error(`udp receive worker: ${(ev as ErrorEvent).message ?? "error"}`));
    this.worker.postMessage({ fd, ctrlSab, metaSab, dataSab, ovSab, slots: RING_SLOTS, slotBytes: SLOT_BYTES, ovBytes: OVERFLOW_BYTES, batch: BATCH });
    this.worker.unref();
    this.wait();
  }

  /**
   * Bind an IPv4 socket on host:port and start reading it. Null where this cannot work here (not
   * Linux, no libc, not IPv4); throws an Error with `code` (e.g. EADDRINUSE) when binding fails.
   */
  static open(
    host: string,
    port: number,
    onPacket: RingHandler,
    /** A handler threw (the datagram is dropped). */
    onError: (e: Error) => void,
    /** The worker failed: nothing more will be received on this socket. */
    onFatal: (e: Error) => void,
    bufBytes: number,
  ): UdpRing | null {
    if (process.env.PILOT_UDP_RING === "0") return null;
    const ip = ipv4(host || "0.0.0.0");
    if (ip < 0 || !Number.isInteger(port) || port < 0 || port > 65535) return null;
    const l = load();
    if (!l) return null;
    const fd = l.socket(AF_INET, SOCK_DGRAM | 0x80000 /* SOCK_CLOEXEC */, 0);
    if (fd < 0) return null;
    try {
      // Receive timeout: the worker re-checks its stop flag at least this often.
      const tv = new BigInt64Array([0n, 250000n]);
      l.setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, ptr(tv), 16);
      const buffers = setSocketBuffers(fd, bufBytes);
      const sa = new Uint8Array(16);
      const sdv = new DataView(sa.buffer);
      sdv.setUint16(0, AF_INET, true);
      sdv.setUint16(2, port, false);
      sdv.setUint32(4, ip, false);
      if (l.bind(fd, ptr(sa), 16) !== 0) {
        const e = errnoAt(l.__errno_location);
        const [code, text] = BIND_ERRORS[e] ?? [`errno_${e}`, `errno ${e}`];
        throw Object.assign(new Error(`bind ${host || "0.0.0.0"}:${port}: ${text}`), { code });
      }
      const len = new Uint32Array([16]);
      l.getsockname(fd, ptr(sa), ptr(len));
      return new UdpRing(l, fd, sdv.getUint16(2, false), buffers, onPacket, onError, onFatal);
    } catch (e) {
      l.close(fd);
      throw e;
    }
  }

  private wait(): void {
    if (this.closed || this.waiting) return;
    const ctrl = this.ctrl;
    Atomics.store(ctrl, MAIN_WAITING, 1);
    const tail = Atomics.load(ctrl, TAIL);
    // More arrived during the pass: the next pass runs after the rest of this event-loop turn
    // (timers, sockets, and the ACKs and sends the pass queued), never starving them.
    if (tail !== this.head) {
      Atomics.store(ctrl, MAIN_WAITING, 0);
      setImmediate(this.passFn);
      return;
    }
    const w = Atomics.waitAsync(ctrl, TAIL, tail);
    if (!w.async) {
      Atomics.store(ctrl, MAIN_WAITING, 0);
      setImmediate(this.passFn);
      return;
    }
    this.waiting = true;
    void w.value.then(() => {
      this.waiting = false;
      this.pass();
    });
  }

  private readonly passFn = (): void => this.pass();

  /** Handle every datagram in the ring, then wait for more. */
  private pass(): void {
    if (this.closed) return;
    const ctrl = this.ctrl;
    const mdv = this.mdv;
    const meta = this.meta;
    const data = this.data;
    let head = this.head;
    let tail = Atomics.load(ctrl, TAIL);
    // At most one ring's worth per pass, then the event loop gets its turn (see wait()).
    const stop = (head + RING_SLOTS) | 0;
    while (head !== tail && head !== stop && !this.closed) {
      const idx = head & (RING_SLOTS - 1);
      const len = mdv.getUint32(idx * MMSG + 56, true);
      if (len !== SKIP) {
        const a = ADDR_OFF + idx * 16;
        const addr = mdv.getUint32(a + 4, true);
        if (addr !== this.lastAddr) {
          this.lastAddr = addr;
          this.lastIp = `${meta[a + 4]}.${meta[a + 5]}.${meta[a + 6]}.${meta[a + 7]}`;
        }
        const off = idx * SLOT_BYTES;
        try {
          this.onPacket(data.subarray(off, off + len), this.lastIp, (meta[a + 2] << 8) | meta[a + 3]);
        } catch (e) {
          this.onError(e as Error);
        }
        if (POISON) data.fill(0xee, off, off + SLOT_BYTES);
        this.datagrams++;
      }
      head = (head + 1) | 0;
      // Give slots back in steps so the worker can read on while this pass continues.
      if ((head & 63) === 0) {
        this.release(head);
        tail = Atomics.load(ctrl, TAIL);
      }
    }
    this.release(head);
    this.wait();
  }

  private release(head: number): void {
    this.head = head;
    Atomics.store(this.ctrl, HEAD, head);
    if (Atomics.load(this.ctrl, WORKER_WAITING) === 1) Atomics.notify(this.ctrl, HEAD);
  }

  private onMessage(m: { big?: ArrayBuffer; ip?: string; port?: number; exit?: string }): void {
    if (this.closed) return;
    if (m.big) {
      try {
        this.onPacket(new Uint8Array(m.big), m.ip ?? "", m.port ?? 0);
      } catch (e) {
        this.onError(e as Error);
      }
    } else if (m.exit && m.exit !== "stopped") {
      this.onFatal(new Error(`udp receive worker stopped: ${m.exit}`));
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    Atomics.store(this.ctrl, STOP, 1);
    Atomics.notify(this.ctrl, HEAD);
    Atomics.notify(this.ctrl, TAIL);
    // Wakes a recvmmsg blocked on the socket (on Linux even for an unconnected UDP socket); the
    // worker then sees STOP and exits, and the descriptor is closed once it has.
    this.lib.shutdown(this.fd, SHUT_RDWR);
    const fd = this.fd;
    const lib = this.lib;
    const w = this.worker;
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      lib.close(fd);
      w.terminate();
    };
    w.onmessage = (ev: MessageEvent) => {
      if ((ev.data as { exit?: string }).exit) finish();
    };
    setTimeout(finish, 600).unref();
  }
}
