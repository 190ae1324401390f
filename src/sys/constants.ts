// Defaults every program shares (the reference's values; changing one changes them everywhere).

/** Daemon IPC socket (pilot-daemon -socket, pilotctl / SDK / gateway PILOT_SOCKET fallback). */
export const DEFAULT_SOCKET = "/tmp/pilot.sock";
/** Public registry (pilot-daemon -registry, pilotctl PILOT_REGISTRY fallback). */
export const DEFAULT_REGISTRY = "34.71.57.205:9000";
/** Public beacon (pilot-daemon -beacon). */
export const DEFAULT_BEACON = "34.71.57.205:9001";
/** Beacon `pilotctl daemon start` passes when none is configured (the reference's choice). */
export const DEFAULT_BEACON_CTL = "127.0.0.1:9001";
/** rendezvous listen addresses (-registry-addr TCP, -beacon-addr UDP). */
export const DEFAULT_REGISTRY_LISTEN = ":9000";
export const DEFAULT_BEACON_LISTEN = ":9001";
