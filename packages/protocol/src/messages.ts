/**
 * walwire wire messages, protocol version 1.
 *
 * Every WebSocket binary frame carries exactly one message: a MessagePack map
 * followed by a CRC-32 of that map (see codec.ts). The map's `type` field is
 * one of MessageType; the remaining fields are fixed per type and checked by
 * validate.ts before any byte is used.
 *
 * Direction legend: P→R primary to replica, R→P replica to primary.
 *
 * Positions: seqs start at 1 within a generation; seq 0 means "nothing yet".
 * A checksum is the database checksum (db-checksum.ts) after that seq.
 */

/** Message type numbers. Never reuse a retired number. */
export const MessageType = {
  /** R→P: first message; versions, replica id and per-namespace positions. */
  HELLO: 1,
  /** P→R: answer to HELLO; chosen version and, per namespace, stream or snapshot. */
  WELCOME: 2,
  /** P→R: one or more whole transactions (small ones batched). */
  TXN: 3,
  /** P→R: one part of a transaction too large for one message. */
  TXN_PART: 4,
  /** P→R: a blob-put event at `seq`; chunks follow. */
  BLOB_BEGIN: 5,
  /** P→R: a bounded slice of blob content with its own CRC. */
  BLOB_CHUNK: 6,
  /** P→R: all chunks of the blob have been sent. */
  BLOB_END: 7,
  /** P→R: a blob-delete event at `seq`. */
  BLOB_DELETE: 8,
  /** P→R: the blob of a put event no longer exists on the primary; skip it. */
  BLOB_GONE: 9,
  /** P→R: snapshot manifest. */
  SNAPSHOT_BEGIN: 10,
  /** P→R: a run of snapshot pages with its CRC. */
  SNAPSHOT_CHUNK: 11,
  /** P→R: every snapshot chunk has been sent. */
  SNAPSHOT_END: 12,
  /** R→P: ask for a snapshot (diverged, or resuming a staged bootstrap). */
  SNAPSHOT_REQUEST: 13,
  /** R→P: applied and durable positions of one namespace. */
  ACK: 14,
  /** Both ways: liveness. */
  HEARTBEAT: 15,
  /** Both ways: a failure with a stable code. */
  ERROR: 16,
  /** R→P: how much of one streamed blob is written; `final` ends its stream (flow-control credit). */
  BLOB_ACK: 17,
  /** P→R: every event of the namespace at or below `seq` has been sent on this connection. */
  STREAM_MARK: 18,
} as const;

export type MessageTypeName = keyof typeof MessageType;
export type MessageTypeNumber = (typeof MessageType)[MessageTypeName];

/** Name of a message type number, for logs and error messages. */
export function messageTypeName(type: number): string {
  for (const [name, value] of Object.entries(MessageType)) if (value === type) return name;
  return `type ${type}`;
}

/** One database page image. `data.length` is the database page size. */
export interface PageImage {
  readonly pgno: number;
  readonly data: Uint8Array;
}

/**
 * One seq worth of committed database change. Pages are deduplicated (last
 * version wins) and none lies beyond `commitSize`.
 */
export interface Txn {
  readonly seq: number;
  /** Database size in pages after this seq (the WAL commit frame's field). */
  readonly commitSize: number;
  /** Database checksum after this seq. */
  readonly checksum: string;
  /** Milliseconds since the epoch when the primary captured the commit. */
  readonly commitTime: number;
  readonly pages: readonly PageImage[];
}

/** A replica's position in one namespace, as sent in HELLO. */
export interface NamespacePosition {
  readonly ns: string;
  /** null when the replica holds no copy yet. */
  readonly generation: string | null;
  readonly appliedSeq: number;
  readonly durableSeq: number;
  /** Database checksum at appliedSeq; null when generation is null. */
  readonly checksum: string | null;
}

export type WelcomeMode = 'stream' | 'snapshot';

export interface WelcomeNamespace {
  readonly ns: string;
  readonly generation: string;
  readonly headSeq: number;
  readonly mode: WelcomeMode;
  /** Why a snapshot is needed; empty when streaming. */
  readonly reason: string;
}

export interface HelloMessage {
  readonly type: typeof MessageType.HELLO;
  readonly minVersion: number;
  readonly maxVersion: number;
  readonly replicaId: string;
  readonly namespaces: readonly NamespacePosition[];
}

export interface WelcomeMessage {
  readonly type: typeof MessageType.WELCOME;
  readonly version: number;
  readonly primaryId: string;
  readonly namespaces: readonly WelcomeNamespace[];
}

export interface TxnMessage {
  readonly type: typeof MessageType.TXN;
  readonly ns: string;
  readonly generation: string;
  /** Strictly increasing seqs; blob events may sit between them. */
  readonly txns: readonly Txn[];
}

export interface TxnPartMessage {
  readonly type: typeof MessageType.TXN_PART;
  readonly ns: string;
  readonly generation: string;
  readonly seq: number;
  /** 0-based part index; parts arrive in order. */
  readonly part: number;
  readonly partCount: number;
  readonly commitSize: number;
  readonly checksum: string;
  readonly commitTime: number;
  readonly pages: readonly PageImage[];
}

/**
 * Opens the stream of one blob's content. `seq` is its put event; during a
 * snapshot stream it is the snapshot's seq, and the blob is one of those the
 * primary held at that point (bootstrap copies them before SNAPSHOT_END).
 */
export interface BlobBeginMessage {
  readonly type: typeof MessageType.BLOB_BEGIN;
  readonly ns: string;
  readonly generation: string;
  readonly seq: number;
  readonly blobId: string;
  readonly size: number;
  readonly sha256: string;
}

export interface BlobChunkMessage {
  readonly type: typeof MessageType.BLOB_CHUNK;
  readonly ns: string;
  readonly generation: string;
  readonly seq: number;
  readonly blobId: string;
  readonly offset: number;
  readonly data: Uint8Array;
  /** CRC-32 of data. */
  readonly crc: number;
}

export interface BlobEndMessage {
  readonly type: typeof MessageType.BLOB_END;
  readonly ns: string;
  readonly generation: string;
  readonly seq: number;
  readonly blobId: string;
}

export interface BlobDeleteMessage {
  readonly type: typeof MessageType.BLOB_DELETE;
  readonly ns: string;
  readonly generation: string;
  readonly seq: number;
  readonly blobId: string;
}

export interface BlobGoneMessage {
  readonly type: typeof MessageType.BLOB_GONE;
  readonly ns: string;
  readonly generation: string;
  readonly seq: number;
  readonly blobId: string;
  readonly reason: string;
}

/** Outcome of a blob stream as the replica reports it. */
export type BlobAckOutcome = 'progress' | 'saved' | 'present' | 'failed';

export interface BlobAckMessage {
  readonly type: typeof MessageType.BLOB_ACK;
  readonly ns: string;
  readonly generation: string;
  readonly seq: number;
  readonly blobId: string;
  /** Content bytes received and written so far. */
  readonly bytes: number;
  /**
   * `progress` while chunks arrive; the other outcomes are final and free
   * the primary's slot: `saved` (durable and verified), `present` (already
   * held with that content; send no more chunks), `failed` (the replica
   * latched a gap and will re-stream it on its next connection).
   */
  readonly outcome: BlobAckOutcome;
}

export interface StreamMarkMessage {
  readonly type: typeof MessageType.STREAM_MARK;
  readonly ns: string;
  readonly generation: string;
  readonly seq: number;
}

export interface SnapshotBeginMessage {
  readonly type: typeof MessageType.SNAPSHOT_BEGIN;
  readonly ns: string;
  readonly generation: string;
  readonly seq: number;
  readonly pageSize: number;
  readonly pageCount: number;
  readonly checksum: string;
  /** Pages per chunk; the last chunk may hold fewer. */
  readonly chunkPages: number;
  /** CRC-32 of each chunk's bytes, by chunk index. */
  readonly chunkCrcs: readonly number[];
  /** First chunk this stream sends (> 0 when resuming a staged bootstrap). */
  readonly fromChunk: number;
}

export interface SnapshotChunkMessage {
  readonly type: typeof MessageType.SNAPSHOT_CHUNK;
  readonly ns: string;
  readonly generation: string;
  readonly seq: number;
  readonly index: number;
  readonly data: Uint8Array;
  readonly crc: number;
}

export interface SnapshotEndMessage {
  readonly type: typeof MessageType.SNAPSHOT_END;
  readonly ns: string;
  readonly generation: string;
  readonly seq: number;
}

export interface SnapshotRequestMessage {
  readonly type: typeof MessageType.SNAPSHOT_REQUEST;
  readonly ns: string;
  readonly reason: string;
  /** Staged snapshot to resume, or null for a fresh one. */
  readonly generation: string | null;
  readonly seq: number;
  readonly fromChunk: number;
}

export interface AckMessage {
  readonly type: typeof MessageType.ACK;
  readonly ns: string;
  readonly generation: string;
  readonly appliedSeq: number;
  readonly durableSeq: number;
}

export interface HeartbeatMessage {
  readonly type: typeof MessageType.HEARTBEAT;
  /** Sender's clock, ms since the epoch. */
  readonly sentAt: number;
}

export interface ErrorMessage {
  readonly type: typeof MessageType.ERROR;
  readonly code: string;
  readonly message: string;
  /** The namespace the error concerns, or null for the whole connection. */
  readonly ns: string | null;
  /** True when the sender closes the connection after this message. */
  readonly fatal: boolean;
}

export type Message =
  | HelloMessage
  | WelcomeMessage
  | TxnMessage
  | TxnPartMessage
  | BlobBeginMessage
  | BlobChunkMessage
  | BlobEndMessage
  | BlobDeleteMessage
  | BlobGoneMessage
  | SnapshotBeginMessage
  | SnapshotChunkMessage
  | SnapshotEndMessage
  | SnapshotRequestMessage
  | AckMessage
  | HeartbeatMessage
  | ErrorMessage
  | BlobAckMessage
  | StreamMarkMessage;

/** Current protocol version and the oldest this build still speaks. */
export const PROTOCOL_VERSION = 1;
export const MIN_PROTOCOL_VERSION = 1;

/**
 * WebSocket close codes walwire uses (RFC 6455 §7.4.2: 4000–4999 are for
 * private use). 1002 and 1009 keep their RFC meanings.
 */
export const CloseCode = {
  NORMAL: 1000,
  GOING_AWAY: 1001,
  /** RFC 6455 §7.4.1: protocol error (undecodable or invalid message). */
  PROTOCOL_ERROR: 1002,
  /** RFC 6455 §7.4.1: message too big. */
  MESSAGE_TOO_BIG: 1009,
  /** RFC 6455 §7.4.1: the server met an unexpected condition (here: a blob it cannot read). */
  INTERNAL_ERROR: 1011,
  /** IANA WebSocket close code registry: try again later (here: no namespace asked for is running yet). */
  TRY_AGAIN_LATER: 1013,
  UNSUPPORTED_VERSION: 4001,
  UNKNOWN_NAMESPACE: 4002,
  HANDSHAKE_TIMEOUT: 4003,
  HEARTBEAT_TIMEOUT: 4004,
  STALLED: 4005,
  CHECKSUM_MISMATCH: 4006,
} as const;

/**
 * The close code a peer uses after rejecting a message with `code`
 * (errors.ts). Unlisted protocol failures close with 1002.
 */
export function closeCodeFor(code: string): number {
  switch (code) {
    case 'WALWIRE_ERR_MESSAGE_TOO_LARGE':
      return CloseCode.MESSAGE_TOO_BIG;
    case 'WALWIRE_ERR_UNSUPPORTED_VERSION':
      return CloseCode.UNSUPPORTED_VERSION;
    case 'WALWIRE_ERR_UNKNOWN_NAMESPACE':
    case 'WALWIRE_ERR_INVALID_NAMESPACE':
      return CloseCode.UNKNOWN_NAMESPACE;
    case 'WALWIRE_ERR_FRAME_CHECKSUM':
      return CloseCode.CHECKSUM_MISMATCH;
    case 'WALWIRE_ERR_TIMEOUT':
      return CloseCode.HANDSHAKE_TIMEOUT;
    case 'WALWIRE_ERR_BLOB_READ_FAILED':
    case 'WALWIRE_ERR_SNAPSHOT_DAMAGED':
      return CloseCode.INTERNAL_ERROR;
    case 'WALWIRE_ERR_NAMESPACE_UNAVAILABLE':
      return CloseCode.TRY_AGAIN_LATER;
    default:
      return CloseCode.PROTOCOL_ERROR;
  }
}
