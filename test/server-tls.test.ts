import { expect, test } from "bun:test";
import { RegistryClient, RegistryError } from "../src/daemon/registry-client.ts";
import { startRendezvous } from "../src/server/main.ts";

test("TLS registry with auto-generated certificate; client pins the SHA-256 fingerprint", async () => {
  let rv;
  try {
    rv = await startRendezvous({ "registry-addr": "127.0.0.1:0", "beacon-addr": "127.0.0.1:0", tls: true, quiet: true });
  } catch (e) {
    console.log("TLS test skipped: " + (e as Error).message);
    return;
  }
  try {
    expect(rv.fingerprint).toMatch(/^[0-9a-f]{64}$/);
    const ok = new RegistryClient(`127.0.0.1:${rv.registryPort}`, { tls: { fingerprint: rv.fingerprint } });
    expect((await ok.listNetworks()).type).toBe("list_networks_ok");
    ok.close();
    const bad = new RegistryClient(`127.0.0.1:${rv.registryPort}`, { tls: { fingerprint: "00".repeat(32) }, reconnectAttempts: 1, backoffMs: 1 });
    let err: unknown;
    try { await bad.listNetworks(); } catch (e) { err = e; }
    expect(err).toBeInstanceOf(RegistryError);
    expect((err as Error).message).toContain("fingerprint");
    bad.close();
  } finally {
    await rv.stop();
  }
});
