// The plaintext notice. A daemon with encryption off ignores key exchanges (as the reference does),
// so a peer that has encryption on would hold its first packets until its plaintext fallback wait
// ends. Instead, we answer a key exchange with one plaintext (PILT) frame: the peer then knows at
// once that we speak plaintext and sends what it queued. The frame holds a control packet to a
// port other than ping's (0), which every daemon, the reference included, ignores; the notice
// therefore changes nothing for peers that do not look for it.
import { HEADER_SIZE, PROTO_CONTROL, type Packet } from "../proto/types.ts";
import { encodePacketInto, makePacket } from "../proto/packet.ts";
import { RateGate } from "./net/rate-gate.ts";

/** Control port of the notice (anything but ping's 0 is ignored by receivers that do not know it). */
export const PLAIN_NOTICE_PORT = 0x504c; // "PL"
const MIN_KX_FRAME = 40; // a PILK; a PILA is longer
/** At most one notice per source (address, or relayed node) per interval: it may be spoofed. */
const NOTICE_INTERVAL_MS = 1000;

/** True for the notice packet (the receiving tunnel consumes it; it is not handed up). */
export function isPlainNotice(pkt: Packet): boolean {
  return pkt.protocol === PROTO_CONTROL && pkt.flags === 0 && pkt.dstPort === PLAIN_NOTICE_PORT && pkt.srcPort === PLAIN_NOTICE_PORT;
}

export class PlainNotices {
  private readonly gate = new RateGate(NOTICE_INTERVAL_MS);

  /**
   * The PILT notice answering a key-exchange frame `kx` (PILA or PILK) from `source`, or null
   * when the frame is too short or this source was answered within the interval. The notice (38 bytes)
   * is smaller than any key exchange, so it cannot amplify a spoofed request.
   */
  answer(kx: Uint8Array, source: string, localNodeId: number, now: number): { nodeId: number; frame: Uint8Array } | null {
    if (kx.length < MIN_KX_FRAME || localNodeId === 0) return null;
    const nodeId = ((kx[4] << 24) | (kx[5] << 16) | (kx[6] << 8) | kx[7]) >>> 0;
    if (nodeId === localNodeId || !this.gate.allow(source, now)) return null;
    const pkt = makePacket({
      protocol: PROTO_CONTROL,
      src: { network: 0, node: localNodeId },
      dst: { network: 0, node: nodeId },
      srcPort: PLAIN_NOTICE_PORT,
      dstPort: PLAIN_NOTICE_PORT,
    });
    const frame = new Uint8Array(4 + HEADER_SIZE);
    frame.set([0x50, 0x49, 0x4c, 0x54]); // PILT
    encodePacketInto(pkt, frame, 4);
    return { nodeId, frame };
  }
}
