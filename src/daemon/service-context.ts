// What the built-in services get from the daemon (ServiceContext), and their start-up. Trust
// registry requests are signed here, once, by the registry client: it adds the timestamp a
// pilot-ts registry demands after `subscribe` (replay protection) and falls back to the plain
// challenge with a reference registry.
import { mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { decodePublicKey, decodeSignature, encodePublicKey, verify } from "../crypto/identity.ts";
import type { Addr } from "../proto/types.ts";
import type { StreamConn } from "../transport/api.ts";
import type { BoundPort } from "./daemon-api.ts";
import { regCall } from "./errors.ts";
import type { Logger } from "../sys/log.ts";
import type { RegistrationSession } from "./registration.ts";
import type { ServiceContext, ServiceHandle, TrustRegistry } from "./services/context.ts";
import type { TrustService } from "./services/trust.ts";

export interface ServiceHost {
  readonly session: RegistrationSession;
  readonly dataDir: string;
  /** identity file path ("" = ephemeral: trust state is kept in memory only) */
  readonly identityPath: string;
  readonly log: Logger;
  listen(port: number, onAccept: (c: StreamConn) => void): BoundPort;
  dial(addr: Addr, port: number): Promise<StreamConn>;
  /** Refuse a node's tunnel frames (after a revocation). */
  dropTunnel(nodeId: number): void;
  webhook(event: string, data?: Record<string, unknown>): void;
}

export function serviceContext(h: ServiceHost): ServiceContext {
  const s = h.session;
  const reg: TrustRegistry = {
    lookup: async (nodeId) => await regCall(s.registry.lookup(nodeId)),
    requestHandshake: async (to, justification) => {
      await regCall(s.registry.requestHandshake(s.nodeId, to, justification));
    },
    respondHandshake: async (peer, accept) => {
      await regCall(s.registry.respondHandshake(s.nodeId, peer, accept));
    },
    pollHandshakes: async () => await regCall(s.registry.pollHandshakes(s.nodeId)),
    reportTrust: async (peer) => {
      await regCall(s.registry.reportTrust(s.nodeId, peer));
    },
    revokeTrust: async (peer) => {
      await regCall(s.registry.revokeTrust(s.nodeId, peer));
    },
  };
  return {
    nodeId: () => s.nodeId,
    localAddr: () => s.address,
    dataDir: h.dataDir,
    trustPath: h.identityPath ? join(dirname(h.identityPath), "trust.json") : null,
    listen: (port, onAccept) => h.listen(port, onAccept),
    dial: (addr, port) => h.dial(addr, port),
    identity: {
      // getter: the identity can be replaced at run time (key rotation)
      get publicKey() {
        return encodePublicKey(s.identity.publicKey);
      },
      sign: (challenge) => s.signature(challenge),
    },
    verify: (pub, challenge, sig) => {
      try {
        return verify(decodePublicKey(pub), challenge, decodeSignature(sig));
      } catch {
        return false;
      }
    },
    registry: reg,
    polo: {
      get: async (nodeId: number) => Number((await regCall(s.registry.getPoloScore(nodeId))).polo_score ?? 0),
      update: async (nodeId: number, delta: number) => {
        await regCall(s.registry.updatePoloScore(nodeId, delta));
      },
    },
    dropTunnel: (nodeId) => h.dropTunnel(nodeId),
    webhook: (event, data) => h.webhook(event, data),
    log: h.log,
  };
}

export interface Webhooks extends ServiceHandle {
  setUrl(u: string): void;
  emit(ev: string, data?: Record<string, unknown>): void;
}

export interface StartedServices {
  all: ServiceHandle[];
  webhooks: Webhooks;
  trust: TrustService;
}

export interface ServiceSwitches {
  webhook: string;
  noEcho: boolean;
  noDataExchange: boolean;
  noEventStream: boolean;
}

/** Start the built-in services (webhooks first, so the others can emit). */
export async function startServices(ctx: ServiceContext, sw: ServiceSwitches): Promise<StartedServices> {
  mkdirSync(ctx.dataDir, { recursive: true, mode: 0o700 });
  const all: ServiceHandle[] = [];
  // Static import specifiers only: `bun build --compile` must see every module.
  const webhooks = (await import("./services/webhooks.ts")).startWebhooks(ctx, sw.webhook);
  all.push(webhooks);
  const trust = (await import("./services/trust.ts")).startTrust(ctx);
  all.push(trust);
  if (!sw.noEcho) all.push((await import("./services/echo.ts")).startEcho(ctx));
  if (!sw.noDataExchange) all.push((await import("./services/dataexchange.ts")).startDataExchange(ctx));
  if (!sw.noEventStream) all.push((await import("./services/eventstream.ts")).startEventStream(ctx));
  // Task submit (port 1003) is always on, like the reference.
  all.push((await import("./services/tasks.ts")).startTasks(ctx));
  return { all, webhooks, trust };
}
