// Seeded fuzz of the remaining decoders that read bytes from the network or from disk: SACK
// options, trust handshake messages (port 444), trust.json, data-exchange
// file payloads and ACK texts. Random and mutated-valid inputs may be rejected, but only with a
// typed ProtoError — never a generic exception, never a crash.
import { describe, expect, test } from "bun:test";
import { ProtoError } from "../src/proto/types.ts";
import { decodeSack, encodeSack } from "../src/proto/sack.ts";
import { decodeHandshakeMsg, encodeHandshakeMsg } from "../src/proto/handshake.ts";
import { decodeTrustFile, encodeTrustFile } from "../src/daemon/services/trust-store.ts";
import { decodeFilePayload, encodeFilePayload, parseAck } from "../src/proto/dataexchange.ts";
import { assertNoEscapes, bytes, fuzzSeed, fuzzTarget, mutate, seededRng } from "./helpers/fuzz.ts";
import { fuzzTargets } from "./helpers/fuzz-targets.ts";

// One seed for the whole file (FUZZ_SEED overrides it); every test derives its own stream from it
// and names it when it fails.
const SEED = fuzzSeed(0x5eed);
function seeded(name: string, salt: number, fn: (r: () => number) => void | Promise<void>): () => Promise<void> {
  return async () => {
    try {
      await fn(seededRng((SEED + salt) >>> 0));
    } catch (e) {
      throw new Error(`${name} failed with FUZZ_SEED=${SEED} (replay with that variable): ${(e as Error).message}`, { cause: e });
    }
  };
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
  test("SACK option decoder (random, mutated valid) never throws", seeded("SACK", 11, (r) => {
    const valid = encodeSack([{ left: 100, right: 4196 }, { left: 8292, right: 12388 }]);
    for (let i = 0; i < 20000; i++) {
      const buf = i % 2 ? bytes(r, Math.floor(r() * 48)) : mutate(r, valid);
      const v = decodeSack(buf); // predicate: a non-SACK payload is data, so null is fine
      if (v) for (const b of v) expect(Number.isInteger(b.left) && Number.isInteger(b.right)).toBe(true);
    }
  }));

  test("handshake messages and trust.json", seeded("handshake", 12, (r) => {
    const msg = enc.encode(
      encodeHandshakeMsg({ type: "handshake_request", node_id: 7, public_key: Buffer.alloc(32, 1).toString("base64"), justification: "hi", signature: Buffer.alloc(64, 2).toString("base64"), reason: "", timestamp: 1700000000 } as never),
    );
    const file = enc.encode(encodeTrustFile([{ nodeId: 7, publicKey: "", approvedAt: 1700000000000, mutual: true, network: 0 }] as never, []));
    for (let i = 0; i < 5000; i++) {
      onlyTyped(() => decodeHandshakeMsg(i % 3 === 0 ? bytes(r, Math.floor(r() * 300)) : mutate(r, msg)));
      onlyTyped(() => decodeTrustFile(new TextDecoder().decode(i % 3 === 0 ? bytes(r, Math.floor(r() * 200)) : mutate(r, file))));
    }
  }));

  test("data-exchange payloads / ACK texts", seeded("records", 13, (r) => {
    const fp = encodeFilePayload("report.pdf", bytes(r, 100));
    for (let i = 0; i < 5000; i++) {
      onlyTyped(() => decodeFilePayload(i % 2 ? bytes(r, Math.floor(r() * 64)) : mutate(r, fp)));
      onlyTyped(() => parseAck(new TextDecoder().decode(bytes(r, Math.floor(r() * 40)))));
    }
  }));

  test("every network-facing decoder: seeded random and mutated inputs, only typed rejections", async () => {
    for (const t of fuzzTargets()) {
      const rep = await fuzzTarget(t, SEED, 3000);
      assertNoEscapes(rep, SEED);
      expect(rep.inputs).toBe(3000);
      expect(rep.rejected).toBeGreaterThan(0); // the inputs do reach the decoder's checks
    }
  });
});
