// UDP generic segmentation offload (Linux UDP_SEGMENT, kernel ≥ 4.18) through bun:ffi: one
// sendmsg(2) hands the kernel a run of equal-sized datagrams lying back to back in memory, and the
// kernel cuts them into separate datagrams (identical on the wire to sending them one by one). The
// network stack is traversed once per run instead of once per datagram, which is most of the
// sender's cost on a bulk transfer. IPv4 destinations only; anything unusual returns "unsupported"
// and the caller sends those datagrams the ordinary way.
import { FFIType, ptr, type Pointer } from "bun:ffi";
import { errnoAt, ipv4, openLibc, put64 } from "./libc.ts";

const SOL_UDP = 17;
const UDP_SEGMENT = 103;
const AF_INET = 2;
const EAGAIN = 11;
/** EIO, EINVAL, EMSGSIZE, ENOPROTOOPT, EOPNOTSUPP. */
const NO_GSO_ERRNOS = new Set([5, 22, 90, 92, 95]);
/** Largest run handed over at once (the kernel accepts up to 64 KiB of UDP payload per call). */
export const GSO_MAX_BYTES = 60 * 1024;
export const GSO_MAX_SEGMENTS = 32;

type Libc = { sendmsg(fd: number, msg: Pointer, flags: number): number; __errno_location(): Pointer };
let libc: Libc | null | undefined;

function load(): Libc | null {
  if (libc !== undefined) return libc;
  libc = null;
  if (process.platform !== "linux" || process.env.PILOT_UDP_GSO === "0") return null;
  libc = openLibc<Libc>({
    sendmsg: { args: [FFIType.i32, FFIType.ptr, FFIType.i32], returns: FFIType.i64_fast },
    __errno_location: { args: [], returns: FFIType.ptr },
  });
  return libc;
}

export type GsoResult = "sent" | "again" | "unsupported";

/** Sends runs of equal-sized datagrams from one socket fd with UDP_SEGMENT. */
export class GsoSender {
  // struct msghdr (56) | struct iovec (16) | sockaddr_in (16) | cmsghdr + u16 (CMSG_SPACE(2) = 24)
  private readonly mem = new Uint8Array(56 + 16 + 16 + 24);
  private readonly dv = new DataView(this.mem.buffer);
  private readonly base: number;
  private lastIp = "";
  private lastPort = -1;
  /** Set after a call failed for another reason than a full buffer: GSO is off for good. */
  broken = false;

  private constructor(
    private readonly lib: Libc,
    private readonly fd: number,
  ) {
    this.base = ptr(this.mem);
    const dv = this.dv;
    const b = this.base;
    // msghdr: name, namelen, iov, iovlen, control, controllen, flags
    put64(dv, 0, b + 72);
    dv.setUint32(8, 16, true);
    put64(dv, 16, b + 56);
    put64(dv, 24, 1);
    put64(dv, 32, b + 88);
    put64(dv, 40, 24);
    dv.setInt32(48, 0, true);
    // cmsghdr: len = CMSG_LEN(2) = 18, level, type
    put64(dv, 88, 18);
    dv.setInt32(96, SOL_UDP, true);
    dv.setInt32(100, UDP_SEGMENT, true);
    // sockaddr_in family
    dv.setUint16(72, AF_INET, true);
  }

  /** A sender for socket `fd`, or null where UDP_SEGMENT cannot be used. */
  static create(fd: number): GsoSender | null {
    if (!Number.isInteger(fd) || fd < 0 || process.arch !== "x64" && process.arch !== "arm64") return null;
    const l = load();
    return l ? new GsoSender(l, fd) : null;
  }

  private setDest(ip: string, port: number): boolean {
    if (ip === this.lastIp && port === this.lastPort) return true;
    const a = ipv4(ip);
    if (a < 0) return false;
    this.dv.setUint32(76, a, false);
    this.dv.setUint16(74, port, false);
    this.lastIp = ip;
    this.lastPort = port;
    return true;
  }

  /**
   * Send `run` (segments of `seg` bytes back to back; the last may be shorter) to ip:port as
   * separate datagrams. "again": the socket buffer is full, nothing was sent.
   */
  send(run: Uint8Array, seg: number, ip: string, port: number): GsoResult {
    if (this.broken || !this.setDest(ip, port)) return "unsupported";
    put64(this.dv, 56, ptr(run));
    put64(this.dv, 64, run.length);
    this.dv.setUint16(104, seg, true);
    const n = Number(this.lib.sendmsg(this.fd, this.base as unknown as Pointer, 0x40 /* MSG_DONTWAIT */));
    if (n === run.length) return "sent";
    const errno = n < 0 ? errnoAt(this.lib.__errno_location) : 0;
    if (errno === EAGAIN) return "again";
    // The kernel, the route or the device cannot segment: off for good. Other errors (e.g. an
    // unreachable destination) only send this run the ordinary way.
    if (n >= 0 || NO_GSO_ERRNOS.has(errno)) this.broken = true;
    return "unsupported";
  }
}
