// Seeded fuzz of the remaining decoders that read bytes from the network or from disk: SACK
// options, trust handshake messages (port 444), trust.json, data-exchange
// file payloads and ACK texts. Random and mutated-valid inputs may be rejected, but only with a
// typed ProtoError — never a generic exception, never a crash.
import { describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { ProtoError } from "../src/proto/types.ts";
import { decodeSack, encodeSack } from "../src/proto/sack.ts";
import { decodeHandshakeMsg, encodeHandshakeMsg, decodeTrustFile, encodeTrustFile } from "../src/daemon/services/trust.ts";
import { decodeFilePayload, encodeFilePayload, parseAck } from "../src/daemon/services/dataexchange.ts";

import { mulberry32 as rng } from "../src/sys/prng.ts";

function mutate(r: () => number, b: Uint8Array): Uint8Array {
  const out = Uint8Array.from(b);
  const n = 1 + Math.floor(r() * 4);
  for (let i = 0; i < n && out.length; i++) out[Math.floor(r() * out.length)] = Math.floor(r() * 256);
  const cut = r() < 0.3 ? Math.floor(r() * out.length) : out.length;
  return out.subarray(0, cut);
}

function onlyTyped(fn: () => unknown): void {
  try {
    fn();
  } catch (e) {
    if (!(e instanceof ProtoError)) throw new Error(`untyped error: ${(e as Error)?.stack ?? e}`);
  }
}

const enc = new TextEncoder();

describe("fuzz: service decoders raise only ProtoError", () => {
  test("SACK option decoder (random, mutated valid) never throws", () => {
    const r = rng(11);
    const valid = encodeSack([{ left: 100, right: 4196 }, { left: 8292, right: 12388 }]);
    for (let i = 0; i < 20000; i++) {
      const buf = i % 2 ? randomBytes(Math.floor(r() * 48)) : mutate(r, valid);
      const v = decodeSack(buf); // predicate: a non-SACK payload is data, so null is fine
      if (v) for (const b of v) expect(Number.isInteger(b.left) && Number.isInteger(b.right)).toBe(true);
    }
  });

  test("handshake messages and trust.json", () => {
    const r = rng(12);
    const msg = enc.encode(
      encodeHandshakeMsg({ type: "handshake_request", node_id: 7, public_key: Buffer.alloc(32, 1).toString("base64"), justification: "hi", signature: Buffer.alloc(64, 2).toString("base64"), reason: "", timestamp: 1700000000 } as never),
    );
    const file = enc.encode(encodeTrustFile([{ nodeId: 7, publicKey: "", approvedAt: 1700000000000, mutual: true, network: 0 }] as never, []));
    for (let i = 0; i < 5000; i++) {
      onlyTyped(() => decodeHandshakeMsg(i % 3 === 0 ? randomBytes(Math.floor(r() * 300)) : mutate(r, msg)));
      onlyTyped(() => decodeTrustFile(new TextDecoder().decode(i % 3 === 0 ? randomBytes(Math.floor(r() * 200)) : mutate(r, file))));
    }
  });

  test("data-exchange payloads / ACK texts", () => {
    const r = rng(13);
    const fp = encodeFilePayload("report.pdf", randomBytes(100));
    for (let i = 0; i < 5000; i++) {
      onlyTyped(() => decodeFilePayload(i % 2 ? randomBytes(Math.floor(r() * 64)) : mutate(r, fp)));
      onlyTyped(() => parseAck(new TextDecoder().decode(randomBytes(Math.floor(r() * 40)))));
    }
  });
});
