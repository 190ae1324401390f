// Registry handlers for trust and handshakes: report_trust, revoke_trust, request_handshake,
// poll_handshakes, respond_handshake, and the push subscription extension.
//
// Trust is stored as directional grants: `report_trust(X,P)` and an accepting
// `respond_handshake(X,P)` let P resolve X (X consented); a signed `request_handshake(R,T)` lets
// T resolve R (R asked to be contacted). Every reference flow still obtains the direction it
// needs, but a node can no longer make itself able to resolve somebody by reporting trust on its
// own. `revoke_trust` removes both directions. Both inboxes are bounded.
import { EXT_FRESH_SIGNATURES, EXT_PUSH, handshakeChallenge, pollHandshakesChallenge, reportTrustChallenge, respondChallenge, revokeTrustChallenge, subscribeChallenge } from "../proto/registry.ts";
import { NEED_WRITE, live, readOrWrite, type HandlerTable } from "./core.ts";
import { FRESH_WINDOW_S, MAX_INBOX, MAX_JUSTIFICATION, MAX_RESP_INBOX, fail, hasNul } from "./validate.ts";

export const trustHandlers: HandlerTable = {
  async report_trust(core, m, ctx) {
    const { node_id: id, peer_id: peer } = m;
    await core.store.tx(async (t) => {
      const node = await live(t, id);
      await live(t, peer, "peer");
      await core.auth.verify(t, node, reportTrustChallenge(id, peer), m, ctx);
      await t.grantAdd(id, peer);
    });
    core.metrics.trustReports++;
    return { type: "report_trust_ok" };
  },

  async revoke_trust(core, m, ctx) {
    const { node_id: id, peer_id: peer } = m;
    await core.store.tx(async (t) => {
      const node = await live(t, id);
      await core.auth.verify(t, node, revokeTrustChallenge(id, peer), m, ctx);
      if (!(await t.pairRemove(id, peer))) fail("no_trust_pair", `no trust pair between ${id} and ${peer}`);
    });
    core.metrics.trustRevocations++;
    return { type: "revoke_trust_ok" };
  },

  async request_handshake(core, m, ctx) {
    const { from_node_id: from, to_node_id: to, justification: just } = m;
    if (just.length > MAX_JUSTIFICATION) fail("justification_too_long", `justification longer than ${MAX_JUSTIFICATION} characters`);
    if (hasNul(just)) fail("invalid_justification", "justification must not contain U+0000");
    const ts = core.now();
    await core.store.tx(async (t) => {
      const fn = await live(t, from, "requester");
      await live(t, to, "target");
      await core.auth.verify(t, fn, handshakeChallenge(from, to), m, ctx);
      if ((await t.inboxCount(to)) >= MAX_INBOX) fail("inbox_full", `handshake inbox of node ${to} is full`);
      if (await t.inboxHasFrom(to, from)) fail("already_pending", `a handshake request from ${from} to ${to} is already pending`);
      await t.inboxAdd(to, { from, justification: just, ts });
      await t.grantAdd(from, to); // the requester consents to being resolved by the target
    });
    core.metrics.handshakeRequests++;
    await core.store.publish({ node_id: to, event: "handshake_request", from_node_id: from, justification: just, timestamp: Math.floor(ts / 1000) });
    return { type: "request_handshake_ok", status: "delivered" };
  },

  async poll_handshakes(core, m, ctx) {
    const id = m.node_id;
    const challenge = pollHandshakesChallenge(id);
    const r = await readOrWrite(core.store, async (t) => {
      const node = await live(t, id);
      if (!core.auth.verifyNoWrite(node, challenge, m, ctx)) return NEED_WRITE;
      // Empty inboxes (the common case): nothing to take, so no write. Anything queued after
      // these reads is left for the next poll, as if this poll had run first.
      if ((await t.inboxCount(id)) !== 0 || (await t.respCount(id)) !== 0) return NEED_WRITE;
      return { requests: [], responses: [] };
    }, async (t) => {
      const node = await live(t, id);
      await core.auth.verify(t, node, challenge, m, ctx);
      return t.inboxTake(id);
    }, true);
    return {
      type: "poll_handshakes_ok",
      requests: r.requests.map((x) => ({ from_node_id: x.from, justification: x.justification, timestamp: Math.floor(x.ts / 1000) })),
      responses: r.responses.map((x) => ({ from_node_id: x.from, accept: x.accept, timestamp: Math.floor(x.ts / 1000) })),
    };
  },

  async respond_handshake(core, m, ctx) {
    const { node_id: id, peer_id: peer, accept } = m;
    const ts = core.now();
    await core.store.tx(async (t) => {
      const node = await live(t, id);
      await live(t, peer, "peer");
      await core.auth.verify(t, node, respondChallenge(id, peer), m, ctx);
      if (accept) await t.grantAdd(id, peer);
      if ((await t.respCount(peer)) >= MAX_RESP_INBOX) fail("inbox_full", `response inbox of node ${peer} is full`);
      await t.respAdd(peer, { from: id, accept, ts });
    });
    await core.store.publish({ node_id: peer, event: "handshake_response", from_node_id: id, accept, timestamp: Math.floor(ts / 1000) });
    return { type: "respond_handshake_ok", accept, peer_id: peer };
  },

  /**
   * Push extension. Request: {"type":"subscribe","node_id":N,"timestamp":T,"signature":sig("subscribe:N:T")}
   * (T = Unix seconds, within ±120 s). Reply: {"type":"subscribe_ok","node_id":N,"extensions":[...]}.
   * From then on the server may write unsolicited frames {"type":"push","event":...,"node_id":N,...}
   * on this connection whenever a handshake request or response is queued for N (on any process
   * sharing the store). The inbox entry stays queued until poll_handshakes, so a lost push loses
   * nothing. Reference clients never send `subscribe`, so they never see pushes. Clients tell
   * pushes from replies by `type === "push"` (no reply has that type).
   */
  async subscribe(core, m, ctx) {
    const id = m.node_id;
    const ts = m.timestamp === undefined ? NaN : Math.trunc(m.timestamp);
    if (!Number.isFinite(ts) || Math.abs(core.now() / 1000 - ts) > FRESH_WINDOW_S) fail("stale_signature", "timestamp missing or outside ±120 s");
    await core.store.tx(async (t) => {
      const node = await live(t, id);
      // Plain form only: the challenge already carries the timestamp.
      await core.auth.verify(t, node, subscribeChallenge(id, ts), { signature: m.signature }, ctx);
    });
    ctx.subscribed.add(id);
    return { type: "subscribe_ok", node_id: id, extensions: [EXT_PUSH, EXT_FRESH_SIGNATURES] };
  },
};
