// The real PacketNet: one Bun UDP socket with large kernel buffers and batched sends.
import type { Endpoint } from "../../proto/beacon.ts";
import type { Logger } from "../../sys/log.ts";
import { setSocketBuffers } from "../../sys/sockopt.ts";
import { UdpBatcher } from "../../sys/udp-batch.ts";
import type { PacketConn, PacketHandler, PacketNet } from "./packet-conn.ts";

/** Kernel socket buffers for the tunnel socket (see sockopt.ts). */
const UDP_BUFFER_BYTES = 8 << 20;
const NO_BATCH = process.env.PILOT_NO_BATCH === "1";

type UdpSocket = import("bun").udp.Socket<"uint8array">;

class UdpConn implements PacketConn {
  sock: UdpSocket | null = null;
  readonly out: UdpBatcher;

  constructor(private readonly log: Logger) {
    this.out = new UdpBatcher(
      () => this.sock,
      (e) => this.log.debug("tunnel send failed", { err: e.message }),
    );
  }

  get local(): Endpoint {
    return { ip: this.sock?.hostname ?? "", port: this.sock?.port ?? 0 };
  }

  send(data: Uint8Array, to: Endpoint): void {
    if (NO_BATCH) this.sock?.send(data, to.port, to.ip);
    else this.out.queue(data, to.port, to.ip);
  }

  flush(): void {
    this.out.flush();
  }

  close(): void {
    this.flush();
    this.sock?.close();
    this.sock = null;
  }
}

export const udpNet: PacketNet = {
  async listen(host: string, port: number, onPacket: PacketHandler, log: Logger): Promise<PacketConn> {
    const c = new UdpConn(log);
    c.sock = await Bun.udpSocket({
      hostname: host || "0.0.0.0",
      binaryType: "uint8array",
      port,
      socket: {
        data: (_s, buf, rport, raddr) => {
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
    const bufs = setSocketBuffers((c.sock as unknown as { fd: number }).fd, UDP_BUFFER_BYTES);
    log.debug("tunnel socket buffers", { rcv: bufs?.rcv ?? "default", snd: bufs?.snd ?? "default" });
    return c;
  },
};
