// Codec throughput: packet encode/decode (4 KiB and 64-byte payloads), PILT framing,
// address text parse/format, CRC-32 (selected implementation, pure JS, native).
import { measure, type Reporter } from "./run.ts";
import { formatAddr, parseAddr } from "../src/proto/addr.ts";
import { crc32, crc32Js, CRC32_IMPL } from "../src/proto/crc32.ts";
import { decodePacket, encodePacket, encodePacketInto, makePacket } from "../src/proto/packet.ts";
import { decodePILT, encodePacketPILT } from "../src/proto/tunnel.ts";
import { type Addr, FLAG_ACK } from "../src/proto/types.ts";

export default async function codec(r: Reporter): Promise<void> {
  for (const size of [4096, 64]) {
    const payload = new Uint8Array(size).map((_, i) => (i * 31) & 0xff);
    const p = makePacket({
      flags: FLAG_ACK, protocol: 1, src: { network: 0, node: 1 }, dst: { network: 0, node: 2 },
      srcPort: 49152, dstPort: 1000, seq: 123456, ack: 654321, window: 512, payload,
    });
    const wire = encodePacket(p);
    const label = size === 4096 ? "4KiB" : "64B";

    const enc = measure(() => encodePacket(p), { batch: 200 });
    r.add(`packet encode ${label}`, enc.opsPerSec, "packets/s", `${((enc.opsPerSec * wire.length) / 1e6).toFixed(0)} MB/s (fresh buffer each)`);
    const scratch = new Uint8Array(wire.length + 4);
    const into = measure(() => encodePacketInto(p, scratch, 4), { batch: 200 });
    r.add(`packet encodeInto ${label}`, into.opsPerSec, "packets/s", `${((into.opsPerSec * wire.length) / 1e6).toFixed(0)} MB/s (reused buffer)`);
    const dec = measure(() => decodePacket(wire), { batch: 200 });
    r.add(`packet decode ${label}`, dec.opsPerSec, "packets/s", `${((dec.opsPerSec * wire.length) / 1e6).toFixed(0)} MB/s (CRC verified)`);
    const pilt = encodePacketPILT(p);
    const pe = measure(() => encodePacketPILT(p), { batch: 200 });
    r.add(`PILT encode ${label}`, pe.opsPerSec, "frames/s");
    const pd = measure(() => decodePILT(pilt), { batch: 200 });
    r.add(`PILT decode ${label}`, pd.opsPerSec, "frames/s");
  }

  const texts: string[] = [];
  const addrs: Addr[] = [];
  for (let i = 0; i < 1024; i++) {
    const a = { network: (i * 7919) & 0xffff, node: (Math.imul(i, 2654435761) >>> 0) };
    addrs.push(a);
    texts.push(formatAddr(a));
  }
  let k = 0;
  const pa = measure(() => parseAddr(texts[k++ & 1023]), { batch: 500 });
  r.add("parseAddr", pa.opsPerSec, "ops/s", `${pa.nsPerOp.toFixed(0)} ns/op`);
  const fa = measure(() => formatAddr(addrs[k++ & 1023]), { batch: 500 });
  r.add("formatAddr", fa.opsPerSec, "ops/s", `${fa.nsPerOp.toFixed(0)} ns/op`);

  for (const size of [4096, 64]) {
    const buf = new Uint8Array(size).map((_, i) => i & 0xff);
    const label = size === 4096 ? "4KiB" : "64B";
    const sel = measure(() => crc32(buf), { batch: 500 });
    r.add(`crc32 ${label}`, (sel.opsPerSec * size) / 1e6, "MB/s", `selected: ${size >= 32 ? CRC32_IMPL : "js-slicing-by-8"}`);
    const js = measure(() => crc32Js(buf), { batch: 500 });
    r.add(`crc32 js ${label}`, (js.opsPerSec * size) / 1e6, "MB/s", "pure-JS slicing-by-8");
    if (typeof Bun !== "undefined") {
      const nat = measure(() => Bun.hash.crc32(buf), { batch: 500 });
      r.add(`crc32 Bun.hash ${label}`, (nat.opsPerSec * size) / 1e6, "MB/s", "native");
    }
  }
}
