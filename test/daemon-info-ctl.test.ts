// pilotctl info / peers against a daemon whose Info reply had to leave entries out (it always fits
// one IPC frame): the counts the daemon announces are shown, and the info table header matches
// the reference's column widths.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { DEFAULT_INFO, type FakeDaemon, startFakeDaemon } from "./ipc-fake-daemon.ts";
import { runPilotctl } from "./ctl-helpers.ts";

let fd: FakeDaemon;
beforeAll(async () => {
  fd = await startFakeDaemon({ info: { ...DEFAULT_INFO, peers: 12_000, peer_list_omitted: 11_999, conn_list_omitted: 5 } });
});
afterAll(async () => {
  await fd.close();
});
const ctl = (args: string[]) => runPilotctl(args, { socket: fd.path });

describe("Info with omitted entries", () => {
  test("peers: the listed peers plus how many the daemon left out (json and human)", async () => {
    const j = await ctl(["--json", "peers"]);
    expect(j.code).toBe(0);
    expect(j.json.data.total).toBe(1);
    expect(j.json.data.omitted).toBe(11_999);
    const h = await ctl(["peers"]);
    expect(h.stdout).toContain("127.0.0.1:4000");
    expect(h.stdout.endsWith("\n... and 11999 more peers the daemon did not list (reply size limit)\n")).toBe(true);
  });

  test("info: SRTT header padded like the reference; omitted connections counted", async () => {
    const h = await ctl(["info"]);
    expect(h.stdout).toContain("  Peers:       12000\n");
    expect(h.stdout).toContain("\n  ID    LOCAL   REMOTE ADDR             RPORT   STATE        CWND      FLIGHT    SRTT  \n");
    expect(h.stdout).toContain("\n  ... and 5 more connections (showing first 1)\n");
  });
});
