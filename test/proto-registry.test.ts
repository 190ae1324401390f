// Registry protocol schema: challenge strings (wire vectors) and request decoding rules.
import { describe, expect, test } from "bun:test";
import {
  classifyReply, decodeRequest, deregisterChallenge, freshChallenge, handshakeChallenge, heartbeatChallenge, okType,
  pollHandshakesChallenge, punchChallenge, reportTrustChallenge, resolveChallenge, respondChallenge, revokeTrustChallenge,
  rotateChallenge, setHostnameChallenge, setTagsChallenge, setTaskExecChallenge, setVisibilityChallenge, subscribeChallenge,
  updatePoloChallenge,
} from "../src/proto/registry.ts";
import { RegistryFrameDecoder, RegistryJsonDecoder, encodeFrame, registryJsonCodec } from "../src/proto/registry-frames.ts";

describe("challenge strings", () => {
  test("exact reference strings", () => {
    expect(handshakeChallenge(5, 4294967295)).toBe("handshake:5:4294967295");
    expect(respondChallenge(1, 2)).toBe("respond:1:2");
    expect(rotateChallenge(7)).toBe("rotate:7");
    expect(resolveChallenge(3, 4)).toBe("resolve:3:4");
    expect(reportTrustChallenge(3, 4)).toBe("report_trust:3:4");
    expect(revokeTrustChallenge(3, 4)).toBe("revoke_trust:3:4");
    expect(setVisibilityChallenge(9)).toBe("set_visibility:9");
    expect(deregisterChallenge(9)).toBe("deregister:9");
    expect(heartbeatChallenge(9)).toBe("heartbeat:9");
    expect(punchChallenge(1, 2)).toBe("punch:1:2");
    expect(pollHandshakesChallenge(9)).toBe("poll_handshakes:9");
    expect(setHostnameChallenge(9)).toBe("set_hostname:9");
    expect(setTagsChallenge(9)).toBe("set_tags:9");
    expect(setTaskExecChallenge(9)).toBe("set_task_exec:9");
  });
  test("node IDs print as unsigned decimals", () => {
    expect(heartbeatChallenge(-1)).toBe("heartbeat:4294967295");
  });
  test("extension challenges", () => {
    expect(subscribeChallenge(3, 1700000000.7)).toBe("subscribe:3:1700000000");
    expect(updatePoloChallenge(1, 2, -3.9)).toBe("update_polo_score:1:2:-3");
    expect(freshChallenge("heartbeat:9", 1700000000123)).toBe("heartbeat:9:1700000000123");
  });
});

describe("request decoding", () => {
  test("u32 / u16 / bool / string / string list conversions", () => {
    const { type, req } = decodeRequest({ type: "set_tags", node_id: 1.9, tags: ["a", 3, "b"], signature: 5 });
    expect(type).toBe("set_tags");
    expect(req).toEqual({ type: "set_tags", node_id: 1, tags: ["a", "b"], signature: "", ts: undefined });
    expect(decodeRequest({ type: "lookup", node_id: -1 }).req).toEqual({ type: "lookup", node_id: 0 });
    expect(decodeRequest({ type: "lookup", node_id: 4294967296 }).req).toEqual({ type: "lookup", node_id: 0 });
    expect(decodeRequest({ type: "lookup", node_id: "7" }).req).toEqual({ type: "lookup", node_id: 0 });
    expect(decodeRequest({ type: "list_nodes", network_id: 65536 }).req).toEqual({ type: "list_nodes", network_id: 0 });
    expect(decodeRequest({ type: "set_visibility", node_id: 1, public: "true" }).req).toMatchObject({ public: false });
    expect(decodeRequest({ type: "set_tags", node_id: 1, tags: "x" }).req).toMatchObject({ tags: [] });
    expect(decodeRequest({ type: "update_polo_score", node_id: 1 }).req).toMatchObject({ delta: undefined });
  });
  test("unknown fields are dropped, unknown and missing types reported", () => {
    expect(decodeRequest({ type: "heartbeat", node_id: 2, extra: 1 }).req).toEqual({ type: "heartbeat", node_id: 2, signature: "", ts: undefined });
    expect(decodeRequest({ type: "nope" })).toEqual({ type: "nope", req: null });
    expect(decodeRequest(null)).toEqual({ type: "", req: null });
    expect(decodeRequest({ type: 5 })).toEqual({ type: "", req: null });
    // Object prototype names are not request types.
    expect(decodeRequest({ type: "toString" }).req).toBeNull();
  });
  test("reply classification", () => {
    expect(okType("heartbeat")).toBe("heartbeat_ok");
    expect(classifyReply({ type: "error", error: "x", code: "c" })).toEqual({ kind: "error", err: { type: "error", error: "x", code: "c" } });
    expect(classifyReply({ type: "push", error: "x" }).kind).toBe("error");
    expect(classifyReply({ type: "push", node_id: 1 }).kind).toBe("push");
    expect(classifyReply([1]).kind).toBe("bad");
    expect(classifyReply({ type: "lookup_ok" }).kind).toBe("ok");
  });
});

describe("registry framing", () => {
  const body = (s: string) => new TextEncoder().encode(s);
  test("frames split at every byte boundary come back whole", () => {
    const wire = new Uint8Array([...encodeFrame(body('{"a":1}')), ...encodeFrame(body('{"type":"x"}'))]);
    for (let cut = 0; cut <= wire.length; cut++) {
      const d = new RegistryFrameDecoder();
      const got = [...d.push(wire.subarray(0, cut)), ...d.push(wire.subarray(cut))].map((f: Uint8Array) => new TextDecoder().decode(f));
      expect(got).toEqual(['{"a":1}', '{"type":"x"}']);
      expect(d.pending).toBe(0);
    }
  });
  test("length 0 and oversized lengths are errors", () => {
    expect(() => new RegistryFrameDecoder().push(new Uint8Array([0, 0, 0, 0]))).toThrow(expect.objectContaining({ code: "empty_frame" }));
    expect(() => new RegistryFrameDecoder().push(new Uint8Array([0, 0x10, 0, 1]))).toThrow(expect.objectContaining({ code: "frame_too_large" }));
    // exactly 1 MiB is allowed (header only: waits for the body)
    expect(new RegistryFrameDecoder().push(new Uint8Array([0, 0x10, 0, 0]))).toEqual([]);
  });
  test("JSON decoder: values across any split; a non-JSON body after good ones fails only after them", () => {
    const wire = new Uint8Array([...encodeFrame(body('{"a":1}')), ...encodeFrame(body("[2]"))]);
    for (let cut = 0; cut <= wire.length; cut++) {
      const d = new RegistryJsonDecoder();
      expect([...d.push(wire.subarray(0, cut)), ...d.push(wire.subarray(cut))]).toEqual([{ a: 1 }, [2]]);
      expect(d.pending).toBe(0);
    }
    const d = new RegistryJsonDecoder();
    expect(d.push(new Uint8Array([...encodeFrame(body('{"ok":true}')), ...encodeFrame(body("{nope"))]))).toEqual([{ ok: true }]);
    expect(d.error?.code).toBe("malformed_json");
    expect(() => d.push(encodeFrame(body("{}")))).toThrow(expect.objectContaining({ code: "malformed_json" }));
    expect(() => new RegistryJsonDecoder().push(encodeFrame(body("nope")))).toThrow(expect.objectContaining({ code: "malformed_json" }));
  });
  test("registryJsonCodec encodes as Go would and refuses bodies above 1 MiB", () => {
    const f = registryJsonCodec.encode({ type: "x", a: "<" });
    expect(new TextDecoder().decode(f.subarray(4))).toBe('{"a":"\\u003c","type":"x"}');
    expect(() => registryJsonCodec.encode({ b: "x".repeat(1 << 20) })).toThrow(expect.objectContaining({ code: "frame_too_large" }));
  });
});
