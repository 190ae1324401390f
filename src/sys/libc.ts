// The C library through bun:ffi, for the socket calls Bun does not expose (sockopt.ts,
// udp-gso.ts, udp-fd-send.ts, udp-ring.ts): one loader, and the small helpers their structs need.
import { dlopen, read, type FFIFunction, type Pointer } from "bun:ffi";

const NAMES = process.platform === "darwin" ? ["libc.dylib", "/usr/lib/libSystem.B.dylib"] : ["libc.so.6", "libc.so"];

/** The C library bound with `symbols` (each caller its own set), or null where it cannot be loaded. */
export function openLibc<T>(symbols: Record<string, FFIFunction>): T | null {
  for (const n of NAMES) {
    try {
      return dlopen(n, symbols).symbols as unknown as T;
    } catch {
      /* try the next name */
    }
  }
  return null;
}

/** The calling thread's errno, through glibc's `__errno_location` (Linux). */
export function errnoAt(errnoLocation: () => Pointer): number {
  return read.i32(errnoLocation(), 0);
}

/** Little-endian u64 of a non-negative safe integer (pointers and sizes in C structs). */
export function put64(dv: DataView, o: number, v: number): void {
  dv.setUint32(o, v % 0x100000000, true);
  dv.setUint32(o + 4, Math.floor(v / 0x100000000), true);
}

/** Dotted-quad IPv4 text as a u32 (network byte order when written big-endian), or -1. */
export function ipv4(s: string): number {
  const p = s.split(".");
  if (p.length !== 4) return -1;
  let a = 0;
  for (const part of p) {
    if (!/^\d{1,3}$/.test(part)) return -1;
    const v = Number(part);
    if (v > 255) return -1;
    a = a * 256 + v;
  }
  return a;
}
