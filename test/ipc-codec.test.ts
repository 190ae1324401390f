import { describe, expect, test } from "bun:test";
import { encodeFrame, FrameDecoder, MAX_FRAME } from "../src/proto/framing.ts";
import {
  CMD_BIND, CMD_INFO_OK, decodeIpc, encodeIpc, encodeIpcFrame, type IpcMsg, IPC_CMD, IPC_CMD_NAME, isPushCmd, replyCmdFor,
} from "../src/proto/ipc.ts";
import { ProtoError } from "../src/proto/types.ts";

const hex = (s: string) => Uint8Array.from(s.replace(/[^0-9a-fA-F]/g, "").match(/../g)!.map((h) => parseInt(h, 16)));
const ascii = (s: string) => new TextEncoder().encode(s);
const cat = (...a: Uint8Array[]) => { const o = new Uint8Array(a.reduce((n, x) => n + x.length, 0)); let i = 0; for (const x of a) { o.set(x, i); i += x.length; } return o; };
const A7 = { network: 0, node: 7 };

function norm(m: IpcMsg): unknown {
  return JSON.parse(JSON.stringify(m, (_k, v) => (v instanceof Uint8Array ? Array.from(v) : v)));
}

const samples: IpcMsg[] = [
  { cmd: "Bind", port: 1000 },
  { cmd: "BindOK", port: 65535 },
  { cmd: "Dial", addr: { network: 1, node: 0xdeadbeef }, port: 7 },
  { cmd: "DialOK", connId: 0xffffffff },
  { cmd: "Accept", localPort: 1000, connId: 3, remote: A7, remotePort: 49152 },
  { cmd: "Send", connId: 3, data: ascii("hello") },
  { cmd: "Send", connId: 3, data: new Uint8Array(0) },
  { cmd: "Recv", connId: 9, data: ascii("x") },
  { cmd: "Close", connId: 1 },
  { cmd: "CloseOK", connId: 1 },
  { cmd: "Error", code: 1, message: "port 7 already bound" },
  { cmd: "SendTo", addr: A7, port: 1002, data: ascii("dg") },
  { cmd: "RecvFrom", src: A7, srcPort: 50000, dstPort: 1002, data: ascii("dgram") },
  { cmd: "Info" },
  { cmd: "InfoOK", json: { address: "0:0000.0000.0005", node_id: 5, conn_list: [], peer_list: [] } },
  { cmd: "Handshake", sub: "request", nodeId: 7, justification: "please <trust> me" },
  { cmd: "Handshake", sub: "request", nodeId: 7, justification: "" },
  { cmd: "Handshake", sub: "approve", nodeId: 7 },
  { cmd: "Handshake", sub: "reject", nodeId: 7, reason: "no" },
  { cmd: "Handshake", sub: "pending" },
  { cmd: "Handshake", sub: "trusted" },
  { cmd: "Handshake", sub: "revoke", nodeId: 0x01020304 },
  { cmd: "HandshakeOK", json: { node_id: 7, status: "sent" } },
  { cmd: "ResolveHostname", hostname: "other-agent" },
  { cmd: "ResolveHostnameOK", json: { address: "0:0000.0000.0003", hostname: "other-agent", node_id: 3, public: false, type: "resolve_hostname_ok" } },
  { cmd: "SetHostname", hostname: "" },
  { cmd: "SetHostnameOK", json: { hostname: "my-agent", node_id: 5, type: "set_hostname_ok" } },
  { cmd: "SetVisibility", public: true },
  { cmd: "SetVisibility", public: false },
  { cmd: "SetVisibilityOK", json: { node_id: 5, type: "set_visibility_ok", visibility: "public" } },
  { cmd: "Deregister" },
  { cmd: "DeregisterOK", json: { type: "deregister_ok" } },
  { cmd: "SetTags", tags: ["web", "api"] },
  { cmd: "SetTags", tags: null },
  { cmd: "SetTagsOK", json: { node_id: 5, tags: null, type: "set_tags_ok" } },
  { cmd: "SetWebhook", url: "http://localhost:8080/hook" },
  { cmd: "SetWebhookOK", json: { webhook: "" } },
  { cmd: "SetTaskExec", enabled: true },
  { cmd: "SetTaskExecOK", json: { node_id: 5, task_exec: true, type: "set_task_exec_ok" } },
];

describe("ipc codec round trips", () => {
  for (const m of samples) {
    test(`${m.cmd}${"sub" in m ? "/" + m.sub : ""}`, () => {
      const body = encodeIpc(m);
      expect(body[0]).toBe(IPC_CMD[m.cmd]);
      expect(norm(decodeIpc(body))).toEqual(norm(m));
      // frame path == encodeFrame(body)
      expect(Array.from(encodeIpcFrame(m))).toEqual(Array.from(encodeFrame(body)));
    });
  }
  test("every command byte 0x01-0x1E has a name and round-trips through the tables", () => {
    for (let b = 1; b <= 0x1e; b++) expect(IPC_CMD[IPC_CMD_NAME[b]!]).toBe(b);
    expect(replyCmdFor(CMD_BIND)).toBe(0x02);
    expect(replyCmdFor(0x06)).toBeUndefined();
    expect([5, 7, 9, 12].every(isPushCmd)).toBe(true);
    expect(isPushCmd(CMD_INFO_OK)).toBe(false);
  });
  test("JSON replies are Go-sorted with Go escaping", () => {
    const b = encodeIpc({ cmd: "HandshakeOK", json: { status: "sent", node_id: 7, x: "<&>" } });
    expect(new TextDecoder().decode(b.subarray(1))).toBe('{"node_id":7,"status":"sent","x":"\\u003c\\u0026\\u003e"}');
  });
});

describe("docs/protocol.md §9.2 example session byte for byte", () => {
  const rows: [IpcMsg, string][] = [
    [{ cmd: "Dial", addr: A7, port: 7 }, "00 00 00 09 03 00 00 00 00 00 07 00 07"],
    [{ cmd: "DialOK", connId: 3 }, "00 00 00 05 04 00 00 00 03"],
    [{ cmd: "Send", connId: 3, data: ascii("ping-0") }, "00 00 00 0B 06 00 00 00 03 70 69 6E 67 2D 30"],
    [{ cmd: "Recv", connId: 3, data: ascii("ping-0") }, "00 00 00 0B 07 00 00 00 03 70 69 6E 67 2D 30"],
    [{ cmd: "Close", connId: 3 }, "00 00 00 05 08 00 00 00 03"],
    [{ cmd: "CloseOK", connId: 3 }, "00 00 00 05 09 00 00 00 03"],
    [{ cmd: "Bind", port: 7 }, "00 00 00 03 01 00 07"],
    [{ cmd: "Info" }, "00 00 00 01 0D"],
  ];
  for (const [m, h] of rows) {
    test(m.cmd, () => {
      expect(Buffer.from(encodeIpcFrame(m)).toString("hex")).toBe(Buffer.from(hex(h)).toString("hex"));
      expect(norm(decodeIpc(hex(h).subarray(4)))).toEqual(norm(m));
    });
  }
  test("Error port 7 already bound", () => {
    const want = cat(hex("00 00 00 17 0A 00 01"), ascii("port 7 already bound"));
    expect(Array.from(encodeIpcFrame({ cmd: "Error", code: 1, message: "port 7 already bound" }))).toEqual(Array.from(want));
  });
  test("whole session through a FrameDecoder split at every byte", () => {
    const stream = cat(...rows.map(([m]) => encodeIpcFrame(m)));
    const dec = new FrameDecoder();
    const got: IpcMsg[] = [];
    for (let i = 0; i < stream.length; i++) for (const f of dec.push(stream.subarray(i, i + 1))) got.push(decodeIpc(f));
    expect(got.map((m) => m.cmd)).toEqual(rows.map(([m]) => m.cmd));
  });
  test("Bind example from docs/protocol.md §9.1", () => {
    expect(Array.from(encodeIpcFrame({ cmd: "Bind", port: 1000 }))).toEqual([0, 0, 0, 3, 1, 3, 0xe8]);
  });
});

describe("malformed input is rejected with ProtoError", () => {
  const cases: [string, Uint8Array, string][] = [
    ["empty", new Uint8Array(0), "empty IPC message"],
    ["unknown", hex("2A"), "unknown command: 0x2A"],
    ["bind short", hex("01 03"), "bind: missing port"],
    ["dial short", hex("03 00 00 00 00 00 07 00"), "dial: missing address/port"],
    ["send short", hex("06 00 00"), "send: missing conn_id"],
    ["close short", hex("08"), "close: missing conn_id"],
    ["sendto short", hex("0B 00"), "sendto: missing address/port"],
    ["hs empty", hex("0F"), "handshake: missing sub-command"],
    ["hs req short", hex("0F 01 00 00 07"), "handshake request: missing node_id"],
    ["hs approve short", hex("0F 02"), "handshake approve: missing node_id"],
    ["hs reject short", hex("0F 03 00"), "handshake reject: missing node_id"],
    ["hs revoke short", hex("0F 06 00 00 00"), "handshake revoke: missing node_id"],
    ["hs unknown", hex("0F 09"), "handshake: unknown sub-command 0x09"],
    ["resolve empty", hex("11"), "resolve_hostname: missing hostname"],
    ["visibility empty", hex("15"), "set_visibility: missing value"],
    ["taskexec empty", hex("1D"), "set_task_exec: missing value"],
    ["accept short", hex("05 00 01 00 00 00 03"), "Accept: payload needs 14 bytes, got 6"],
    ["dialok short", hex("04 00 00"), "DialOK: payload needs 4 bytes, got 2"],
    ["error short", hex("0A 00"), "Error: payload needs 2 bytes, got 1"],
    ["recvfrom short", hex("0C 00 00 00 00 00 07 00 01 00"), "RecvFrom: payload needs 10 bytes, got 9"],
  ];
  for (const [name, body, msg] of cases) {
    test(name, () => {
      let err: unknown;
      try { decodeIpc(body); } catch (e) { err = e; }
      expect(err).toBeInstanceOf(ProtoError);
      expect((err as ProtoError).message).toBe(msg);
      expect((err as ProtoError).code.length).toBeGreaterThan(0);
    });
  }
  test("set_tags with bad JSON / non-string array", () => {
    expect(() => decodeIpc(cat(hex("19"), ascii("[1,2")))).toThrow(/^set_tags: invalid JSON: /);
    expect(() => decodeIpc(cat(hex("19"), ascii("[1,2]")))).toThrow(ProtoError);
    expect(() => decodeIpc(cat(hex("19"), ascii('{"a":1}')))).toThrow(ProtoError);
  });
  test("JSON reply that is not an object", () => {
    expect(() => decodeIpc(cat(hex("0E"), ascii("[]")))).toThrow(ProtoError);
    expect(() => decodeIpc(cat(hex("0E"), ascii("{")))).toThrow(ProtoError);
  });
  test("oversized frames", () => {
    const dec = new FrameDecoder();
    expect(() => dec.push(hex("00 10 00 01"))).toThrow(ProtoError);
    expect(() => encodeIpcFrame({ cmd: "Send", connId: 1, data: new Uint8Array(MAX_FRAME - 4) })).toThrow(ProtoError);
    expect(encodeIpcFrame({ cmd: "Send", connId: 1, data: new Uint8Array(MAX_FRAME - 5) }).length).toBe(4 + MAX_FRAME);
  });
  test("out-of-range fields on encode", () => {
    expect(() => encodeIpc({ cmd: "Bind", port: 99999 })).toThrow(ProtoError);
    expect(() => encodeIpc({ cmd: "Close", connId: -1 })).toThrow(ProtoError);
  });
  test("non-1 visibility byte means private; extra bytes ignored", () => {
    expect(decodeIpc(hex("15 02"))).toEqual({ cmd: "SetVisibility", public: false });
    expect(decodeIpc(hex("01 00 07 FF"))).toEqual({ cmd: "Bind", port: 7 });
  });
});
