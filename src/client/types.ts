// Typed results of the SDK's calls. Field names are camelCase; each type says which daemon or
// registry reply it is built from.
import type { Addr } from "../proto/types.ts";

export type { Addr };

/** Where to reach a node: a Pilot address ("0:0000.0000.0005"), a node ID, an Addr, or a hostname. */
export type Target = string | number | Addr;

/** One stream connection, as listed by `info()`. */
export interface ConnectionInfo {
  id: number;
  localPort: number;
  remoteAddr: string;
  remotePort: number;
  state: string;
  bytesSent: number;
  bytesRecv: number;
  congestionWindow: number;
  inFlight: number;
  srttMs: number;
  retransmits: number;
}

/** One tunnel peer, as listed by `info()`. */
export interface PeerInfo {
  nodeId: number;
  endpoint: string;
  encrypted: boolean;
  authenticated: boolean;
  /** direct, punched or relayed (pilot-ts daemons only; "" otherwise) */
  path: string;
}

/** The daemon's status (IPC Info). */
export interface NodeInfo {
  nodeId: number;
  address: string;
  hostname: string;
  uptimeSecs: number;
  connections: number;
  ports: number;
  peers: number;
  encrypt: boolean;
  encryptedPeers: number;
  authenticatedPeers: number;
  /** true when the identity is persisted on disk */
  identity: boolean;
  publicKey: string;
  owner: string;
  bytesSent: number;
  bytesRecv: number;
  pktsSent: number;
  pktsRecv: number;
  connList: ConnectionInfo[];
  peerList: PeerInfo[];
}

export interface FoundNode {
  hostname: string;
  nodeId: number;
  address: string;
  public: boolean;
}

export interface HostnameResult {
  nodeId: number;
  hostname: string;
}
export interface TagsResult {
  nodeId: number;
  tags: string[];
}
export interface VisibilityResult {
  nodeId: number;
  public: boolean;
}
export interface TaskExecResult {
  nodeId: number;
  taskExec: boolean;
}

export interface HandshakeResult {
  nodeId: number;
  status: "sent" | "already_trusted" | "approved" | "rejected" | "revoked";
}

export interface PendingRequest {
  nodeId: number;
  justification: string;
  publicKey: string;
  /** Unix seconds */
  receivedAt: number;
}

export interface TrustedPeer {
  nodeId: number;
  mutual: boolean;
  network: number;
  publicKey: string;
  /** Unix seconds */
  approvedAt: number;
}

export type MessageType = "text" | "json" | "binary";

export interface SendMessageResult {
  target: string;
  type: MessageType;
  bytes: number;
  /** The receiver's acknowledgement ("ACK TEXT 5 bytes"); without one the call fails instead. */
  ack: string;
}

export interface SendFileProgress {
  /**
   * "hashing": the file is read once for its SHA-256 (and a resuming receiver may report re-reading
   * its partial copy); "sending": bytes go out; "finishing": all sent, waiting for the receiver's
   * acknowledgement.
   */
  phase: "hashing" | "sending" | "finishing";
  /** Bytes of the file handed to the daemon, counting a prefix the receiver already had (resume); 0 while hashing. */
  sentBytes: number;
  totalBytes: number;
  /** Bytes hashed so far while hashing; totalBytes afterwards. */
  hashedBytes: number;
  /** Bytes the receiver reported as written (resumable transfers only; 0 otherwise). */
  ackedBytes: number;
}

export interface SendFileResult {
  filename: string;
  bytes: number;
  destination: string;
  /** hex SHA-256 of the file */
  sha256: string;
  /** The receiver's final acknowledgement ("ACK FILE 1234 bytes"); without one the call fails instead. */
  ack: string;
  /**
   * "resumable": the pilot-ts extension (any size, resumes an interrupted transfer); "single-frame":
   * the classic one-frame form toward a receiver without the extension (at most 16 MiB).
   */
  mode: "resumable" | "single-frame";
  /** Offset the receiver already had from an earlier interrupted send (0 = sent from the start). */
  resumedFrom: number;
}

/** A message stored in this node's inbox by the data-exchange service. */
export interface InboxMessage {
  /** file name inside the inbox directory (stable ID for this message) */
  id: string;
  type: MessageType | string;
  from: string;
  data: string;
  bytes: number;
  /** RFC 3339 time the daemon stored it */
  receivedAt: string;
}

/** A file stored in this node's received/ directory by the data-exchange service. */
export interface ReceivedFile {
  name: string;
  path: string;
  bytes: number;
  /** RFC 3339 */
  modified: string;
}

export interface PublishResult {
  target: string;
  topic: string;
  bytes: number;
}

export interface StreamEvent {
  topic: string;
  data: Uint8Array;
  /** `data` decoded as UTF-8 */
  text: string;
}

export interface PingReply {
  seq: number;
  bytes: number;
  rttMs: number;
  error?: string;
}
export interface PingResult {
  target: string;
  results: PingReply[];
}

export interface BenchResult {
  target: string;
  sentBytes: number;
  recvBytes: number;
  sendMs: number;
  totalMs: number;
  /** MiB/s of the echoed round trip */
  totalMbps: number;
  timedOut: boolean;
}

export interface Datagram {
  src: string;
  srcPort: number;
  dstPort: number;
  data: Uint8Array;
}
