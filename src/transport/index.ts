export { Transport, type TransportOptions, type DialOptions } from "./transport.ts";
export { TransportError, type StreamConn, type Listener, type ConnInfo, type TransportHost, type StreamStats } from "./api.ts";
export { SimNet, type LinkOptions, mulberry32 } from "./sim.ts";
