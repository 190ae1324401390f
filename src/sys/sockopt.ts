// Enlarge a UDP socket's kernel buffers. Bun.udpSocket has no buffer-size option, and the Linux
// default (~208 KiB) overflows under a full congestion window of 4 KiB frames: the kernel drops
// datagrams while the event loop is busy, the transport sees loss and collapses its window.
// We call setsockopt(2) on the socket's fd through bun:ffi; any failure leaves the defaults.
import { FFIType, ptr } from "bun:ffi";
import { openLibc } from "./libc.ts";

type Lib = { setsockopt: (fd: number, level: number, name: number, val: unknown, len: number) => number; getsockopt: (fd: number, level: number, name: number, val: unknown, len: unknown) => number };
let lib: Lib | null | undefined;

function libc(): Lib | null {
  if (lib !== undefined) return lib;
  lib = openLibc<Lib>({
    setsockopt: { args: [FFIType.i32, FFIType.i32, FFIType.i32, FFIType.ptr, FFIType.u32], returns: FFIType.i32 },
    getsockopt: { args: [FFIType.i32, FFIType.i32, FFIType.i32, FFIType.ptr, FFIType.ptr], returns: FFIType.i32 },
  });
  return lib;
}

const LINUX = { SOL_SOCKET: 1, SO_SNDBUF: 7, SO_RCVBUF: 8, SO_SNDBUFFORCE: 32, SO_RCVBUFFORCE: 33 };
const DARWIN = { SOL_SOCKET: 0xffff, SO_SNDBUF: 0x1001, SO_RCVBUF: 0x1002, SO_SNDBUFFORCE: -1, SO_RCVBUFFORCE: -1 };

function get(l: Lib, fd: number, level: number, name: number): number {
  const v = new Int32Array(1);
  const len = new Uint32Array([4]);
  return l.getsockopt(fd, level, name, ptr(v), ptr(len)) === 0 ? v[0] : -1;
}

/** Best effort: returns the resulting {rcv, snd} sizes (kernel-reported), or null without FFI. */
export function setSocketBuffers(fd: number, bytes: number): { rcv: number; snd: number } | null {
  if (!Number.isInteger(fd) || fd < 0) return null;
  const l = libc();
  if (!l) return null;
  const k = process.platform === "darwin" ? DARWIN : LINUX;
  const v = new Int32Array([bytes]);
  for (const [name, force] of [
    [k.SO_RCVBUF, k.SO_RCVBUFFORCE],
    [k.SO_SNDBUF, k.SO_SNDBUFFORCE],
  ] as const) {
    l.setsockopt(fd, k.SOL_SOCKET, name, ptr(v), 4);
    // Linux reports double the requested size; below the request means rmem_max capped it.
    if (force > 0 && get(l, fd, k.SOL_SOCKET, name) < bytes) l.setsockopt(fd, k.SOL_SOCKET, force, ptr(v), 4);
  }
  return { rcv: get(l, fd, k.SOL_SOCKET, k.SO_RCVBUF), snd: get(l, fd, k.SOL_SOCKET, k.SO_SNDBUF) };
}
