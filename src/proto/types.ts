// Shared wire-level types and constants (docs/protocol.md §1). Pure data, no I/O.
// Every layer imports these; codecs live beside this file (addr.ts, packet.ts, ...).

/** A 48-bit virtual address: network (u16) + node (u32). docs/protocol.md §1 */
export interface Addr {
  readonly network: number;
  readonly node: number;
}

export const ADDR_SIZE = 6;
export const HEADER_SIZE = 34;
export const MAX_PAYLOAD = 65535;
/** Stream MSS: payload bytes per data segment (docs/protocol.md §6). */
export const MSS = 4096;
export const PROTOCOL_VERSION = 1;

// Flags (low nibble of byte 0). docs/protocol.md §2
export const FLAG_SYN = 0x1;
export const FLAG_ACK = 0x2;
export const FLAG_FIN = 0x4;
export const FLAG_RST = 0x8;

// Protocol byte. docs/protocol.md §2
export const PROTO_STREAM = 0x01;
export const PROTO_DATAGRAM = 0x02;
export const PROTO_CONTROL = 0x03;

/** Decoded packet (34-byte header + payload). `payload` may be a view into the input buffer. */
export interface Packet {
  version: number;
  flags: number;
  protocol: number;
  src: Addr;
  dst: Addr;
  srcPort: number;
  dstPort: number;
  seq: number; // u32
  ack: number; // u32
  window: number; // u16, in segments
  payload: Uint8Array;
}

// Well-known ports. docs/protocol.md §1
export const PORT_PING = 0;
export const PORT_ECHO = 7;
export const PORT_NAMESERVER = 53;
export const PORT_HTTP = 80;
export const PORT_SECURE = 443;
export const PORT_HANDSHAKE = 444;
export const PORT_STDIO = 1000;
export const PORT_DATAEXCHANGE = 1001;
export const PORT_EVENTSTREAM = 1002;
export const PORT_TASKSUBMIT = 1003;
export const EPHEMERAL_MIN = 49152;
export const EPHEMERAL_MAX = 65535;

/**
 * Typed error for every malformed input. `code` is machine readable (snake_case),
 * `hint` is an actionable sentence. Parsers never throw anything else.
 */
export class ProtoError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly hint?: string,
  ) {
    super(message);
    this.name = "ProtoError";
  }
}
