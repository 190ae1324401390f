// pilot-ts public entry: the typed client SDK for a local Pilot Protocol daemon. Runs under Bun and
// Node >= 20; the daemon, registry and pilotctl themselves are Bun programs.
export { connect, Pilot, Subscription, type ConnectOptions } from "./client/pilot.ts";
export { Connection, Listener } from "./client/conn.ts";
export { PilotError, ERROR_CODE_MEANINGS, isErrorCode, type ErrorCode, type CallOptions } from "./client/errors.ts";
export { createTestnet, type Testnet, type TestnetNode, type TestnetOptions } from "./client/testnet.ts";
export { Driver, DriverConn, DriverListener, DEFAULT_SOCKET } from "./client/driver.ts";
export { formatAddr, parseAddr } from "./proto/addr.ts";
export type * from "./client/types.ts";
