// The real PacketNet: one Bun UDP socket with large kernel buffers and batched sends.
import type { Endpoint } from "../../proto/beacon.ts";
import type { Logger } from "../../sys/log.ts";
import { setSocketBuffers } from "../../sys/sockopt.ts";
import { UdpBatcher } from "../../sys/udp-batch.ts";
import { UdpFdSender } from "../../sys/udp-fd-send.ts";
import { GsoSender } from "../../sys/udp-gso.ts";
import { UdpRing } from "../../sys/udp-ring.ts";
import { GcPacer } from "./gc-pacer.ts";
import type { PacketConn, PacketHandler, PacketNet } from "./packet-conn.ts";
// PILOT_GC_PACING=0 turns the post-traffic collection off (for measurements).
const NO_GC_PACING = process.env.PILOT_GC_PACING === "0";

/** Kernel socket buffers for the tunnel socket (see sockopt.ts). */
const UDP_BUFFER_BYTES = 8 << 20;
const NO_BATCH = process.env.PILOT_NO_BATCH === "1";

type UdpSocket = import("bun").udp.Socket<"uint8array">;
/** What the batcher sends through: Bun's socket, or sendmmsg on the receive ring's descriptor. */
type Sender = Pick<UdpSocket, "send" | "sendMany">;

/** Outgoing datagrams of one event-loop turn are written into slabs of this size. */
const SLAB_BYTES = 256 * 1024;

class UdpConn implements PacketConn {
  sock: UdpSocket | null = null;
  /** Linux: the socket read by a worker into a shared ring (udp-ring.ts), sent on with sendmmsg. */
  ring: UdpRing | null = null;
  fdSender: UdpFdSender | null = null;
  readonly out: UdpBatcher;
  // Scratch slab for outgoing datagrams: regions are handed out until the batch is written, then
  // the slab is reused from its start. While the kernel buffer is full, queued datagrams still
  // point into the slab, so the next request starts a fresh one (the old one goes with them).
  private slab: Uint8Array | null = null;
  private slabOff = 0;
  readonly gc = new GcPacer(NO_GC_PACING ? null : undefined);

  constructor(private readonly log: Logger) {
    this.out = new UdpBatcher(
      (): Sender | null => this.fdSender ?? this.sock,
      (e) => this.log.debug("tunnel send failed", { err: e.message }),
      (allWritten) => {
        if (allWritten) this.slabOff = 0;
        else this.slab = null;
      },
    );
  }

  scratch(n: number): Uint8Array {
    if (NO_BATCH || n > SLAB_BYTES) return new Uint8Array(n);
    if (!this.slab || this.slabOff + n > SLAB_BYTES) {
      // Full: the datagrams in it are queued, so flush them and start over (or take a new slab
      // if the kernel did not take them all).
      if (this.slab) this.out.flush();
      if (!this.slab || this.slabOff + n > SLAB_BYTES) {
        this.slab = new Uint8Array(SLAB_BYTES);
        this.slabOff = 0;
      }
    }
    const r = this.slab.subarray(this.slabOff, this.slabOff + n);
    this.slabOff += n;
    return r;
  }

  get local(): Endpoint {
    if (this.ring) return { ip: this.host, port: this.ring.port };
    return { ip: this.sock?.hostname ?? "", port: this.sock?.port ?? 0 };
  }

  host = "";

  get reusesBuffers(): boolean {
    return this.ring !== null;
  }

  send(data: Uint8Array, to: Endpoint): void {
    this.gc.note(data.length);
    if (NO_BATCH && this.sock) this.sock.send(data, to.port, to.ip);
    else this.out.queue(data, to.port, to.ip);
  }

  flush(): void {
    this.out.flush();
  }

  close(): void {
    this.flush();
    this.gc.stop();
    this.sock?.close();
    this.sock = null;
    this.fdSender?.close();
    this.fdSender = null;
    this.ring?.close();
    this.ring = null;
  }
}

export const udpNet: PacketNet = {
  async listen(host: string, port: number, onPacket: PacketHandler, log: Logger): Promise<PacketConn> {
    const c = new UdpConn(log);
    c.host = host || "0.0.0.0";
    let from: Endpoint = { ip: "", port: 0 };
    const ring = UdpRing.open(
      c.host,
      port,
      (buf, ip, rport) => {
        c.gc.note(buf.length);
        // Most datagrams come from the peer of the one before: reuse its (never mutated) endpoint.
        if (ip !== from.ip || rport !== from.port) from = { ip, port: rport };
        onPacket(buf, from);
      },
      (e) => log.debug("tunnel datagram dropped", { err: e.message }),
      (e) => log.error("tunnel socket receive failed", { err: e.message }),
      UDP_BUFFER_BYTES,
    );
    if (ring) {
      c.ring = ring;
      c.fdSender = UdpFdSender.create(ring.fd, () => c.out.drain());
      if (c.fdSender) {
        if (!NO_BATCH) c.out.gso = GsoSender.create(ring.fd);
        const bufs = ring.buffers;
        log.debug("tunnel socket buffers", { rcv: bufs?.rcv ?? "default", snd: bufs?.snd ?? "default", gso: c.out.gso !== null, ring: true });
        return c;
      }
      ring.close();
      c.ring = null;
    }
    c.sock = await Bun.udpSocket({
      hostname: c.host,
      binaryType: "uint8array",
      port,
      socket: {
        data: (_s, buf, rport, raddr) => {
          c.gc.note(buf.length);
          try {
            onPacket(buf, { ip: raddr, port: rport });
          } catch (e) {
            log.debug("tunnel datagram dropped", { err: (e as Error).message });
          }
        },
        drain: () => c.out.drain(),
        // ICMP errors (e.g. port unreachable after a peer went away) surface here; they must
        // never take the daemon down.
        error: (...args: unknown[]) => {
          const err = args.find((a) => a instanceof Error) as Error | undefined;
          log.debug("tunnel socket error", { err: err?.message ?? String(args[0]) });
        },
      },
    });
    const fd = (c.sock as unknown as { fd: number }).fd;
    const bufs = setSocketBuffers(fd, UDP_BUFFER_BYTES);
    if (!NO_BATCH) c.out.gso = GsoSender.create(fd);
    log.debug("tunnel socket buffers", { rcv: bufs?.rcv ?? "default", snd: bufs?.snd ?? "default", gso: c.out.gso !== null });
    return c;
  },
};
