// The network-facing decoders fuzzed by the tests and by `npm run fuzz` (scripts/fuzz.ts): packet,
// tunnel frames, beacon, registry requests, IPC, trust handshake and trust.json, data exchange,
// event stream, task messages. Each gets valid samples to mutate and a run() that may reject an
// input only with ProtoError.
import { buildAuthKeyExchange, buildKeyExchange, generateX25519, TunnelSession } from "../../src/crypto/tunnel.ts";
import { generateIdentity } from "../../src/crypto/identity.ts";
import { decodeHandshakeMsg, decodeTrustFile, encodeHandshakeMsg, encodeTrustFile } from "../../src/daemon/services/trust.ts";
import { encodeDiscover, encodePunchRequest, encodeRelay, encodeSync, decodeBeacon, encodeDiscoverReply } from "../../src/proto/beacon.ts";
import { decodeMessage, encodeMessage, encodeText, FrameReader, parseAck, decodeFilePayload } from "../../src/proto/dataexchange.ts";
import { decodeEvent, encodeEvent, EventReader } from "../../src/proto/eventstream.ts";
import { FrameDecoder } from "../../src/proto/framing.ts";
import { decodeIpc, encodeIpc } from "../../src/proto/ipc.ts";
import { decodePacket, encodePacket, makePacket } from "../../src/proto/packet.ts";
import { decodeTaskMessage, encodeTaskMessage } from "../../src/proto/tasks.ts";
import { decodePILA, decodePILK, decodePILP, decodePILT, encodePacketPILT, parsePILS } from "../../src/proto/tunnel.ts";
import { ProtoError } from "../../src/proto/types.ts";
import { decodeControlRequest, takeControlReply } from "../../src/proto/gateway-control.ts";
import type { FuzzTarget } from "./fuzz.ts";
import { Registry, newCtx } from "../../src/server/registry.ts";
import { SqliteStore } from "../../src/server/store.ts";


const te = new TextEncoder();
const td = new TextDecoder();

/** Feed `input` to an incremental reader in two pieces (split chosen from the input). */
function split(input: Uint8Array, push: (c: Uint8Array) => void): void {
  const cut = input.length ? input[0]! % (input.length + 1) : 0;
  push(input.subarray(0, cut));
  push(input.subarray(cut));
}

const REG_TYPES = [
  "register", "rotate_key", "deregister", "heartbeat", "lookup", "resolve", "set_visibility", "set_hostname", "resolve_hostname",
  "report_trust", "revoke_trust", "request_handshake", "poll_handshakes", "respond_handshake", "punch", "list_networks", "list_nodes",
  "create_network", "beacon_register", "beacon_list", "set_tags", "set_task_exec", "update_polo_score", "get_polo_score", "subscribe", "nope",
];
const REG_KEYS = [
  "node_id", "listen_addr", "public_key", "signature", "hostname", "requester_id", "target_id", "network_id", "peer_id", "from_node_id",
  "to_node_id", "justification", "accept", "public", "tags", "enabled", "delta", "score", "owner", "ts", "addr", "lan_addrs", "version",
];
/** A registry request shaped by the input bytes: a known type and fields of arbitrary JSON types. */
function registryRequest(b: Uint8Array): Record<string, unknown> {
  let i = 0;
  const next = () => (i < b.length ? b[i++]! : 0);
  const value = (depth: number): unknown => {
    switch (next() % 9) {
      case 0: return (next() << 8) | next();
      case 1: return [-1, 0, 1, 2 ** 32, 2 ** 53, 1e300, -0.5][next() % 7];
      case 2: return Buffer.from(b.subarray(i, (i += next() % 48))).toString("base64");
      case 3: return td.decode(b.subarray(i, (i += next() % 32)));
      case 4: return next() % 2 === 0;
      case 5: return null;
      case 6: return depth > 2 ? [] : Array.from({ length: next() % 4 }, () => value(depth + 1));
      case 7: return depth > 2 ? {} : { k: value(depth + 1) };
      default: return "127.0.0.1:" + next();
    }
  };
  const o: Record<string, unknown> = { type: REG_TYPES[next() % REG_TYPES.length] };
  for (let k = next() % 8; k > 0; k--) o[REG_KEYS[next() % REG_KEYS.length]!] = value(0);
  return o;
}

/** The network-facing decoders. Built lazily: some need keys or an in-memory registry. */
export function fuzzTargets(): FuzzTarget[] {
  const pkt = encodePacket(makePacket({ flags: 0x1, protocol: 1, src: { network: 0, node: 3 }, dst: { network: 0, node: 4 }, srcPort: 49152, dstPort: 1001, seq: 7, ack: 9, window: 512, payload: te.encode("hello") }));
  const key = new Uint8Array(32).fill(7);
  const sender = new TunnelSession(key);
  const receiver = new TunnelSession(key);
  const id = generateIdentity();
  const x = generateX25519();
  const pils = sender.seal(pkt, 3);
  const pila = buildAuthKeyExchange(id, 3, x.pub);
  const pilk = buildKeyExchange(3, x.pub);
  const pilt = encodePacketPILT(makePacket({ payload: te.encode("x") }));
  const hs = te.encode(encodeHandshakeMsg({ type: "handshake_request", node_id: 7, public_key: Buffer.alloc(32, 1).toString("base64"), justification: "hi", signature: Buffer.alloc(64, 2).toString("base64"), reason: "", timestamp: 1700000000 } as never));
  const trustFile = te.encode(encodeTrustFile([{ nodeId: 7, publicKey: "", approvedAt: 1700000000000, mutual: true, network: 0 }] as never, []));
  const sha = "ab".repeat(32);
  const registry = new Registry(new SqliteStore(":memory:"), { noRateLimit: true });
  const regCtx = newCtx("127.0.0.1", 40000);
  const regSamples = [
    { type: "register", listen_addr: "127.0.0.1:4000", public_key: Buffer.alloc(32, 3).toString("base64") },
    { type: "lookup", node_id: 1 }, { type: "resolve", node_id: 1, requester_id: 2 }, { type: "heartbeat", node_id: 1 },
    { type: "set_hostname", node_id: 1, hostname: "a-b", signature: "AAAA" }, { type: "list_nodes", network_id: 0 },
    { type: "punch", node_id: 1, target_id: 2 }, { type: "get_polo_score", node_id: 1 },
  ].map((o) => te.encode(JSON.stringify(o)));
  return [
    { name: "packet", samples: [pkt], run: (b) => void decodePacket(b) },
    {
      name: "tunnel frames",
      samples: [pils, pila, pilk, pilt],
      run: (b) => {
        if (receiver.open(b) !== null && b.length < 40) throw new Error("open accepted a frame too short to be authentic");
        const magic = td.decode(b.subarray(0, 4));
        if (magic === "PILS") parsePILS(b);
        else if (magic === "PILA") decodePILA(b);
        else if (magic === "PILK") decodePILK(b);
        else if (magic === "PILP") decodePILP(b);
        else decodePILT(b);
      },
    },
    {
      name: "beacon",
      samples: [encodeDiscover(5), encodeDiscoverReply({ ip: "127.0.0.1", port: 9 }), encodePunchRequest(1, 2), encodeRelay(1, 2, te.encode("p")), encodeSync(1, [1, 2, 3])],
      run: (b) => void decodeBeacon(b),
    },
    {
      name: "registry JSON",
      samples: regSamples,
      run: async (b) => {
        // Half the inputs are shaped into requests of known types (raw bytes rarely stay JSON).
        let msg: unknown;
        if (b.length % 2 === 0) msg = registryRequest(b);
        else {
          try {
            msg = JSON.parse(td.decode(b));
          } catch {
            throw new ProtoError("bad_json", "not JSON"); // the server answers with an error reply
          }
        }
        const res = await registry.handle(typeof msg === "object" && msg !== null && !Array.isArray(msg) ? (msg as Record<string, unknown>) : null, regCtx);
        if (typeof res !== "object" || res === null) throw new Error("registry.handle returned no object");
      },
    },
    {
      name: "IPC",
      samples: [encodeIpc({ cmd: "Dial", addr: { network: 0, node: 5 }, port: 7 }), encodeIpc({ cmd: "Send", connId: 3, data: te.encode("abc") }), encodeIpc({ cmd: "Bind", port: 1000 })],
      run: (b) => {
        const d = new FrameDecoder();
        const prefixed = new Uint8Array(4 + b.length);
        new DataView(prefixed.buffer).setUint32(0, b.length);
        prefixed.set(b, 4);
        for (const f of d.push(prefixed)) decodeIpc(f);
        decodeIpc(b);
      },
    },
    { name: "trust handshake", samples: [hs], run: (b) => void decodeHandshakeMsg(b) },
    { name: "trust.json", samples: [trustFile], run: (b) => void decodeTrustFile(td.decode(b)) },
    {
      name: "data exchange",
      samples: [
        encodeText("ACK FILE 2 bytes"), encodeMessage({ kind: "file", name: "a.txt", data: te.encode("hi") }),
        encodeMessage({ kind: "offer", name: "x.bin", size: 10, sha256: sha, v: 1 }), encodeMessage({ kind: "accept", offset: 0, chunk: 4096, v: 1 }),
        encodeMessage({ kind: "data", offset: 5, data: te.encode("abc") }), encodeMessage({ kind: "progress", bytes: 9 }),
        encodeMessage({ kind: "end" }), encodeMessage({ kind: "refuse", code: "busy", error: "x" }),
      ],
      run: (b) => {
        split(b, (c) => new FrameReader((f) => {
          const m = decodeMessage(f);
          if (m.kind === "text") parseAck(td.decode(m.payload));
        }, 1 << 16).push(c));
        decodeFilePayload(b.subarray(8));
      },
    },
    {
      name: "event stream",
      samples: [encodeEvent("status", te.encode("online")), encodeEvent("*"), encodeEvent("", new Uint8Array(3))],
      run: (b) => {
        const rd = new EventReader(() => {}, 1 << 16);
        split(b, (c) => rd.push(c));
        decodeEvent(b);
      },
    },
    {
      name: "task messages",
      samples: [
        encodeTaskMessage({ kind: "submit", task_id: "0123abcd-0000-1111-2222-333344445555", task_description: "d", from_addr: "0:0000.0000.0001", to_addr: "0:0000.0000.0002" }),
        encodeTaskMessage({ kind: "status_update", task_id: "x", status: "ACCEPTED", justification: "ok" }),
        encodeTaskMessage({ kind: "send_results", task_id: "x", result_type: "file", filename: "r.txt", file_data: "aGk=", completed_at: "2025-01-01T00:00:00Z", time_cpu_ms: 5 }),
      ],
      run: (b) => {
        const rd = new FrameReader((f) => { decodeTaskMessage(f); decodeTaskMessage(f, true); }, 1 << 16);
        split(b, (c) => rd.push(c));
      },
    },
    {
      name: "gateway control",
      samples: [
        te.encode('{"op":"map","addr":"0:0000.0000.0002","ip":"10.4.0.9"}'), te.encode('{"op":"unmap","target":"10.4.0.9"}'), te.encode('{"op":"status"}'),
        te.encode('{"ok":false,"error":{"code":"not_found","message":"m","hint":"h"}}\n'), te.encode('{"ok":true,"mappings":[]}\n'),
      ],
      run: (b) => {
        const line = td.decode(b);
        decodeControlRequest(line);
        takeControlReply(line);
      },
    },
  ];
}
