// Batched UDP sending shared by the daemon's tunnel socket and the beacon. Datagrams queued during
// one event-loop turn are written with a single sendMany (sendmmsg on Linux) from setImmediate,
// i.e. after every datagram received in the same poll phase has been processed: ACKs for a burst
// of received segments and a congestion window's worth of data each cost one syscall.
import { GSO_MAX_BYTES, GSO_MAX_SEGMENTS, type GsoSender } from "./udp-gso.ts";

type BunUdp = {
  send(data: Uint8Array, port: number, address: string): boolean;
  sendMany(packets: readonly (Uint8Array | number | string)[]): number;
};

/** Cap of datagrams kept while the kernel buffer is full (beyond it UDP loss semantics apply). */
const MAX_BACKLOG = 4096;
/** Flush at once when this many datagrams are queued. */
const MAX_BATCH = 256;

export class UdpBatcher {
  private batch: (Uint8Array | number | string)[] = [];
  private scheduled = false;
  private blocked = false;
  sentDatagrams = 0;
  dropped = 0;
  /** Set by the owner when the socket can send segmented runs (see udp-gso.ts). */
  gso: GsoSender | null = null;
  /** Datagrams sent inside segmented runs (diagnostics). */
  gsoDatagrams = 0;

  constructor(
    private readonly sock: () => BunUdp | null,
    private readonly onError: (e: Error) => void = () => {},
    /** After each flush that wrote something: true when nothing is left queued. */
    private readonly onFlushed: (allWritten: boolean) => void = () => {},
  ) {}

  queue(data: Uint8Array, port: number, ip: string): void {
    this.batch.push(data, port, ip);
    if (this.batch.length >= 3 * MAX_BATCH) {
      this.flush();
      return;
    }
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.flush());
    }
  }

  /** Write every queued datagram now (also called from the socket's drain callback). */
  flush(): void {
    this.scheduled = false;
    const sock = this.sock();
    if (!sock || this.batch.length === 0 || this.blocked) return;
    let b = this.batch;
    this.batch = [];
    if (this.gso && b.length > 3) {
      const used = this.sendRuns(sock, b, this.gso);
      if (used === b.length) {
        this.onFlushed(true);
        return;
      }
      b = used === 0 ? b : b.slice(used);
    }
    let sent: number;
    try {
      sent = b.length === 3 ? (sock.send(b[0] as Uint8Array, b[1] as number, b[2] as string) ? 1 : 0) : sock.sendMany(b);
    } catch (e) {
      // One bad entry (e.g. an address of the wrong family) fails the whole sendMany: retry one
      // by one so only the bad datagrams are lost.
      this.onError(e as Error);
      for (let i = 0; i < b.length; i += 3) {
        try {
          if (sock.send(b[i] as Uint8Array, b[i + 1] as number, b[i + 2] as string)) this.sentDatagrams++;
        } catch {
          this.dropped++;
        }
      }
      this.onFlushed(true);
      return;
    }
    this.sentDatagrams += sent;
    if (sent * 3 < b.length) {
      // Kernel buffer full: keep the rest for drain().
      let rest = b.slice(sent * 3).concat(this.batch);
      if (rest.length > 3 * MAX_BACKLOG) {
        this.dropped += (rest.length - 3 * MAX_BACKLOG) / 3;
        rest = rest.slice(rest.length - 3 * MAX_BACKLOG);
      }
      this.batch = rest;
      this.blocked = true;
    }
    this.onFlushed(!this.blocked);
  }

  /**
   * Send the queued datagrams in order, runs of equal-sized datagrams that lie back to back in one
   * buffer (sealed into the tunnel's slab) as one segmented send each, the rest with sendMany.
   * Returns how many batch entries (3 per datagram) were sent; the caller sends the rest the
   * ordinary way (which also lets the socket report when it is writable again).
   */
  private sendRuns(sock: BunUdp, b: (Uint8Array | number | string)[], gso: GsoSender): number {
    let plain = 0; // first entry not yet sent
    let i = 0;
    while (i < b.length) {
      const d = b[i] as Uint8Array;
      const port = b[i + 1] as number;
      const ip = b[i + 2] as string;
      const seg = d.length;
      let end = d.byteOffset + seg;
      let j = i + 3;
      let k = 1;
      while (j < b.length && k < GSO_MAX_SEGMENTS && (k + 1) * seg <= GSO_MAX_BYTES) {
        const e = b[j] as Uint8Array;
        if (e.buffer !== d.buffer || e.byteOffset !== end || e.length !== seg || b[j + 1] !== port || b[j + 2] !== ip) break;
        end += seg;
        j += 3;
        k++;
      }
      if (k < 2) {
        i = j;
        continue;
      }
      if (plain < i) {
        let n: number;
        try {
          n = sock.sendMany(b.slice(plain, i));
        } catch {
          return plain; // the caller retries these one by one
        }
        this.sentDatagrams += n;
        if (n * 3 < i - plain) return plain + n * 3;
      }
      const r = gso.send(new Uint8Array(d.buffer, d.byteOffset, k * seg), seg, ip, port);
      if (r === "again") return i;
      if (r === "sent") {
        this.sentDatagrams += k;
        this.gsoDatagrams += k;
        plain = j;
      }
      i = j;
    }
    return plain;
  }

  /** The socket is writable again. */
  drain(): void {
    this.blocked = false;
    this.flush();
  }
}
