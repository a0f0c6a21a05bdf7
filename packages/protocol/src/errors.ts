/**
 * The walwire error hierarchy.
 *
 * Every failure a caller can act on is its own subclass with literal `name` and
 * `code` fields, in the style of undici: callers branch on `err.code`, never on
 * the message text. Codes are stable across releases and each is described in
 * one sentence in docs/errors.md (a test keeps the two in sync).
 *
 * Errors that cross the wire travel as an ERROR message carrying `code` and
 * `message`; `errorFromWire` rebuilds the matching subclass on the other side.
 */

/** Base class of every error walwire throws on purpose. */
export class WalwireError extends Error {
  override name: string = 'WalwireError';
  code: string = 'WALWIRE_ERR';

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

// ---------------------------------------------------------------------------
// Wire protocol (codec and validation). All are ProtocolError, so a receiver
// can treat "the peer sent something bad" as one case and still report the
// precise code.
// ---------------------------------------------------------------------------

/** A message from the peer could not be accepted. Subclasses say why. */
export class ProtocolError extends WalwireError {
  override name: string = 'ProtocolError';
  override code: string = 'WALWIRE_ERR_PROTOCOL';
}

/** The frame is not a decodable walwire envelope (too short, bad MessagePack). */
export class DecodeError extends ProtocolError {
  override readonly name = 'DecodeError' as const;
  override readonly code = 'WALWIRE_ERR_DECODE' as const;
}

/** The frame's CRC-32 does not match its bytes: corruption in transit. */
export class FrameChecksumError extends ProtocolError {
  override readonly name = 'FrameChecksumError' as const;
  override readonly code = 'WALWIRE_ERR_FRAME_CHECKSUM' as const;
}

/** The message decoded but a field has the wrong type, range or size. */
export class InvalidMessageError extends ProtocolError {
  override readonly name = 'InvalidMessageError' as const;
  override readonly code = 'WALWIRE_ERR_INVALID_MESSAGE' as const;
}

/** The message type number is not one this protocol version defines. */
export class UnknownMessageTypeError extends ProtocolError {
  override readonly name = 'UnknownMessageTypeError' as const;
  override readonly code = 'WALWIRE_ERR_UNKNOWN_MESSAGE_TYPE' as const;
}

/** The frame is larger than the negotiated maximum message size. */
export class MessageTooLargeError extends ProtocolError {
  override readonly name = 'MessageTooLargeError' as const;
  override readonly code = 'WALWIRE_ERR_MESSAGE_TOO_LARGE' as const;
}

/** The peers share no protocol version. */
export class UnsupportedVersionError extends ProtocolError {
  override readonly name = 'UnsupportedVersionError' as const;
  override readonly code = 'WALWIRE_ERR_UNSUPPORTED_VERSION' as const;
}

/** A well-formed message arrived in a state where it is not allowed. */
export class UnexpectedMessageError extends ProtocolError {
  override readonly name = 'UnexpectedMessageError' as const;
  override readonly code = 'WALWIRE_ERR_UNEXPECTED_MESSAGE' as const;
}

// ---------------------------------------------------------------------------
// SQLite file formats.
// ---------------------------------------------------------------------------

/** A WAL header or frame violates the WAL format (sqlite.org/fileformat2.html §4). */
export class WalFormatError extends WalwireError {
  override readonly name = 'WalFormatError' as const;
  override readonly code = 'WALWIRE_ERR_WAL_FORMAT' as const;
}

/** A rollback journal is malformed or fails its own checksums (fileformat2.html §3). */
export class JournalFormatError extends WalwireError {
  override readonly name = 'JournalFormatError' as const;
  override readonly code = 'WALWIRE_ERR_JOURNAL_FORMAT' as const;
}

/** A database page 1 header is not a valid SQLite header (fileformat2.html §1.3). */
export class DatabaseFormatError extends WalwireError {
  override readonly name = 'DatabaseFormatError' as const;
  override readonly code = 'WALWIRE_ERR_DATABASE_FORMAT' as const;
}

// ---------------------------------------------------------------------------
// Configuration and names.
// ---------------------------------------------------------------------------

/** An option has a value outside its documented type or range. */
export class InvalidOptionError extends WalwireError {
  override readonly name = 'InvalidOptionError' as const;
  override readonly code = 'WALWIRE_ERR_INVALID_OPTION' as const;
}

/** A namespace name does not match `[a-z0-9][a-z0-9_-]{0,63}`. */
export class InvalidNamespaceError extends WalwireError {
  override readonly name = 'InvalidNamespaceError' as const;
  override readonly code = 'WALWIRE_ERR_INVALID_NAMESPACE' as const;
}

/** The namespace is not configured on this daemon. */
export class UnknownNamespaceError extends WalwireError {
  override readonly name = 'UnknownNamespaceError' as const;
  override readonly code = 'WALWIRE_ERR_UNKNOWN_NAMESPACE' as const;
}

/** The namespace is configured but not running: it failed to start, and the daemon retries (try again later). */
export class NamespaceUnavailableError extends WalwireError {
  override readonly name = 'NamespaceUnavailableError' as const;
  override readonly code = 'WALWIRE_ERR_NAMESPACE_UNAVAILABLE' as const;
}

// ---------------------------------------------------------------------------
// Runtime: replication state.
// ---------------------------------------------------------------------------

/** The replication log on disk failed verification (bad record checksum, seq gap). */
export class LogCorruptError extends WalwireError {
  override readonly name = 'LogCorruptError' as const;
  override readonly code = 'WALWIRE_ERR_LOG_CORRUPT' as const;
}

/** A database checksum after apply differs from the primary's checksum at that seq. */
export class DivergedError extends WalwireError {
  override readonly name = 'DivergedError' as const;
  override readonly code = 'WALWIRE_ERR_DIVERGED' as const;
}

/** The requested position is not in the log (other generation or outside retention). */
export class SnapshotRequiredError extends WalwireError {
  override readonly name = 'SnapshotRequiredError' as const;
  override readonly code = 'WALWIRE_ERR_SNAPSHOT_REQUIRED' as const;
}

/** An operation did not finish within its configured time limit. */
export class TimeoutError extends WalwireError {
  override readonly name = 'TimeoutError' as const;
  override readonly code = 'WALWIRE_ERR_TIMEOUT' as const;
}

/** The daemon or namespace is shutting down and refuses new work. */
export class ClosedError extends WalwireError {
  override readonly name = 'ClosedError' as const;
  override readonly code = 'WALWIRE_ERR_CLOSED' as const;
}

/** The bearer token is missing or wrong. */
export class UnauthorizedError extends WalwireError {
  override readonly name = 'UnauthorizedError' as const;
  override readonly code = 'WALWIRE_ERR_UNAUTHORIZED' as const;
}

/** A primary-only operation was sent to a replica. */
export class NotAPrimaryError extends WalwireError {
  override readonly name = 'NotAPrimaryError' as const;
  override readonly code = 'WALWIRE_ERR_NOT_A_PRIMARY' as const;
}

/** A failpoint armed by a test fired. Never seen in production. */
export class FailpointError extends WalwireError {
  override readonly name = 'FailpointError' as const;
  override readonly code = 'WALWIRE_ERR_FAILPOINT' as const;
}

/** An error reported by the peer whose code this build does not know. */
export class RemoteError extends WalwireError {
  override readonly name = 'RemoteError' as const;
  override code: string;

  constructor(code: string, message: string) {
    super(message);
    this.code = code;
  }
}

// ---------------------------------------------------------------------------
// Replica applier.
// ---------------------------------------------------------------------------

/** A transaction batch cannot be applied to this replica (order, page size, page range). */
export class InvalidTxnError extends WalwireError {
  override readonly name = 'InvalidTxnError' as const;
  override readonly code = 'WALWIRE_ERR_INVALID_TXN' as const;
}

/** A replica cursor file fails its checksum or does not parse. */
export class CursorCorruptError extends WalwireError {
  override readonly name = 'CursorCorruptError' as const;
  override readonly code = 'WALWIRE_ERR_CURSOR_CORRUPT' as const;
}

/** The applier failed with an I/O or SQLite error; the namespace stopped applying. */
export class ApplyFailedError extends WalwireError {
  override readonly name = 'ApplyFailedError' as const;
  override readonly code = 'WALWIRE_ERR_APPLY_FAILED' as const;
}

/** An HTTP route or resource does not exist. */
export class NotFoundError extends WalwireError {
  override readonly name = 'NotFoundError' as const;
  override readonly code = 'WALWIRE_ERR_NOT_FOUND' as const;
}

/** An unexpected internal failure (a bug or an environment error); the message has the cause. */
export class InternalError extends WalwireError {
  override readonly name = 'InternalError' as const;
  override readonly code = 'WALWIRE_ERR_INTERNAL' as const;
}

/**
 * SQLite reports the database itself as corrupt (a checkpoint or an
 * integrity check failed); the message says what failed and what to do.
 */
export class DatabaseCorruptError extends WalwireError {
  override readonly name = 'DatabaseCorruptError' as const;
  override readonly code = 'WALWIRE_ERR_DATABASE_CORRUPT' as const;
}

/** A namespace of that name already exists on this daemon (admin API create/add). */
export class NamespaceExistsError extends WalwireError {
  override readonly name = 'NamespaceExistsError' as const;
  override readonly code = 'WALWIRE_ERR_NAMESPACE_EXISTS' as const;
}

// ---------------------------------------------------------------------------
// Blobs.
// ---------------------------------------------------------------------------

/** A blob id does not match the allowed pattern (HTTP 400). */
export class InvalidBlobIdError extends WalwireError {
  override readonly name = 'InvalidBlobIdError' as const;
  override readonly code = 'WALWIRE_ERR_INVALID_BLOB_ID' as const;
}

/** Blob content does not hash to the SHA-256 it was declared with (HTTP 400 on upload; a failed save on a replica). */
export class BlobChecksumError extends WalwireError {
  override readonly name = 'BlobChecksumError' as const;
  override readonly code = 'WALWIRE_ERR_BLOB_CHECKSUM' as const;
}

/** A blob upload exceeds the size limit (HTTP 413). */
export class BlobTooLargeError extends WalwireError {
  override readonly name = 'BlobTooLargeError' as const;
  override readonly code = 'WALWIRE_ERR_BLOB_TOO_LARGE' as const;
}

/** A blob with that id already exists with other content; delete it first (HTTP 409). */
export class BlobExistsError extends WalwireError {
  override readonly name = 'BlobExistsError' as const;
  override readonly code = 'WALWIRE_ERR_BLOB_EXISTS' as const;
}

/** A blob upload ended before its declared length (HTTP 400), or a streamed blob ended short. */
export class BlobIncompleteError extends WalwireError {
  override readonly name = 'BlobIncompleteError' as const;
  override readonly code = 'WALWIRE_ERR_BLOB_INCOMPLETE' as const;
}

/** A replica could not save a streamed blob (disk error or timeout); its durable cursor holds until a re-stream saves it. */
export class BlobSaveFailedError extends WalwireError {
  override readonly name = 'BlobSaveFailedError' as const;
  override readonly code = 'WALWIRE_ERR_BLOB_SAVE_FAILED' as const;
}

/** The primary could not read a blob's content from its store to stream it (after retrying transient errors); the replica re-streams it after reconnecting. */
export class BlobReadFailedError extends WalwireError {
  override readonly name = 'BlobReadFailedError' as const;
  override readonly code = 'WALWIRE_ERR_BLOB_READ_FAILED' as const;
}

/** A snapshot image on the primary no longer matches the chunk CRCs stored with it (damaged on disk); the primary rebuilds the image from its database and the replica's bootstrap retries. */
export class SnapshotDamagedError extends WalwireError {
  override readonly name = 'SnapshotDamagedError' as const;
  override readonly code = 'WALWIRE_ERR_SNAPSHOT_DAMAGED' as const;
}

/** A Range request lies outside the blob (HTTP 416). */
export class RangeNotSatisfiableError extends WalwireError {
  override readonly name = 'RangeNotSatisfiableError' as const;
  override readonly code = 'WALWIRE_ERR_RANGE_NOT_SATISFIABLE' as const;
}

type ErrorClass = new (message: string) => WalwireError;

/**
 * Every concrete error class by code. docs/errors.md must list exactly these
 * codes (checked by a unit test).
 */
export const ERROR_CLASSES: ReadonlyMap<string, ErrorClass> = new Map<string, ErrorClass>(
  (
    [
      DecodeError,
      FrameChecksumError,
      InvalidMessageError,
      UnknownMessageTypeError,
      MessageTooLargeError,
      UnsupportedVersionError,
      UnexpectedMessageError,
      WalFormatError,
      JournalFormatError,
      DatabaseFormatError,
      InvalidOptionError,
      InvalidNamespaceError,
      UnknownNamespaceError,
      NamespaceUnavailableError,
      LogCorruptError,
      DivergedError,
      SnapshotRequiredError,
      TimeoutError,
      ClosedError,
      UnauthorizedError,
      NotAPrimaryError,
      FailpointError,
      NotFoundError,
      InternalError,
      InvalidTxnError,
      CursorCorruptError,
      ApplyFailedError,
      DatabaseCorruptError,
      NamespaceExistsError,
      InvalidBlobIdError,
      BlobChecksumError,
      BlobTooLargeError,
      BlobExistsError,
      BlobIncompleteError,
      BlobSaveFailedError,
      BlobReadFailedError,
      SnapshotDamagedError,
      RangeNotSatisfiableError,
    ] as ErrorClass[]
  ).map((C) => [new C('').code, C]),
);

/** Rebuilds the typed error for a code received from the peer. */
export function errorFromWire(code: string, message: string): WalwireError {
  const C = ERROR_CLASSES.get(code);
  return C ? new C(message) : new RemoteError(code, message);
}

/** True when `err` is a WalwireError carrying `code`. */
export function hasCode(err: unknown, code: string): boolean {
  return err instanceof WalwireError && err.code === code;
}
