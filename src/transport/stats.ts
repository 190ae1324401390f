// The per-connection statistics snapshot (pilotctl info / connections).
import type { StreamStats } from "./api.ts";
import type { Receiver } from "./receiver.ts";
import type { Sender } from "./sender.ts";
import { u32 } from "./seq.ts";

export function connStats(snd: Sender, rx: Receiver, sackRecv: number, sackSent: number): StreamStats {
  const s = snd.st, rtt = snd.rtt;
  return {
    bytesSent: s.bytesSent,
    bytesRecv: rx.bytesRecv,
    segsSent: s.segsSent,
    segsRecv: rx.segsRecv,
    retransmits: s.retransmits,
    fastRetransmits: s.fastRetransmits,
    srttMs: rtt.srtt,
    rttvarMs: rtt.rttvar,
    rtoMs: rtt.rto,
    cwnd: snd.cc.cwnd,
    ssthresh: snd.cc.ssthresh,
    inFlight: u32(snd.sndNxt - snd.sndUna),
    peerWindow: snd.peerWnd,
    sendBuffered: snd.buf.bytes,
    recvBuffered: rx.buffered,
    dupAcks: snd.dupAcks,
    inRecovery: snd.inRecovery,
    oooSegments: rx.oooSegments,
    recvWindow: rx.window(),
    sackRecv,
    sackSent,
  };
}
