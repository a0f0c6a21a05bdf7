/**
 * Replication log records and their on-disk encoding.
 *
 * A segment file is a header followed by records:
 *
 *     header:  "WWLOG\0\0\1" (8) | u32 json length | u32 CRC-32 of json | json (SegmentHeader)
 *     record:  u32 payload length | u32 CRC-32 of payload | payload
 *
 * Every byte of the log is under a CRC-32 (invariant 4): a record whose CRC
 * does not match is never returned. All integers are big-endian.
 *
 * Payload, common part (60 bytes):
 *     u8 kind (1 txn, 2 blob-put, 3 blob-delete) | u8 0 | u16 0 | u32 commits
 *     f64 seq | f64 commitTime | u32 commitSize | 8 bytes database checksum
 *     WAL position after the seq: u32 salt1 | u32 salt2 | f64 offset | u32 chain0 | u32 chain1
 * txn:         u32 pageSize | u32 pageCount | pageCount × u32 pgno | pageCount × page
 * blob-put:    u16 id length | id (UTF-8) | f64 size | 32 bytes sha256
 * blob-delete: u16 id length | id (UTF-8)
 */
import { LogCorruptError, crc32, type PageImage, type Txn } from '@walwire/protocol';

/** Where the tailer stood in the WAL after a seq: the incarnation and the checksum chain. */
export interface WalPosition {
  readonly salt1: number;
  readonly salt2: number;
  /** File offset just past the last commit frame logged (32 = no frame yet). 0 = no WAL header seen. */
  readonly offset: number;
  readonly chain: readonly [number, number];
}

export const NO_WAL_POSITION: WalPosition = Object.freeze({ salt1: 0, salt2: 0, offset: 0, chain: [0, 0] as const });

interface RecordBase {
  readonly seq: number;
  readonly generation: string;
}

/** One seq of committed SQLite transactions; `txn` goes on the wire unchanged. */
export interface TxnRecord extends RecordBase {
  readonly kind: 'txn';
  readonly txn: Txn;
  /** Number of SQLite commits grouped into this seq. */
  readonly commits: number;
}

/** A blob event leaves the database as it was: its state is the seq before's. */
interface BlobRecordBase extends RecordBase {
  /** Database checksum at this seq (unchanged by the event). */
  readonly checksum: string;
  /** Database size in pages at this seq (unchanged by the event). */
  readonly commitSize: number;
}

export interface BlobPutRecord extends BlobRecordBase {
  readonly kind: 'blob-put';
  readonly blobId: string;
  readonly size: number;
  readonly sha256: string;
  /** Milliseconds since the epoch when the event was appended. */
  readonly time: number;
}

export interface BlobDeleteRecord extends BlobRecordBase {
  readonly kind: 'blob-delete';
  readonly blobId: string;
  readonly time: number;
}

export type LogRecord = TxnRecord | BlobPutRecord | BlobDeleteRecord;

/** Database state after a record: what start-up and head() need. */
export interface RecordState {
  readonly seq: number;
  readonly checksum: string;
  readonly commitSize: number;
  readonly wal: WalPosition;
}

/** The JSON header of a segment file. */
export interface SegmentHeader {
  readonly version: 1;
  readonly generation: string;
  readonly firstSeq: number;
  /** State before firstSeq: the generation's base for the first segment. */
  readonly base: { readonly checksum: string; readonly commitSize: number; readonly pageSize: number; readonly wal: WalPosition };
  /** Why this generation started (first segment of a generation only, else ''). */
  readonly reason: string;
  readonly createdAt: number;
}

export const SEGMENT_MAGIC = Buffer.from('WWLOG\0\0\x01', 'latin1');
export const RECORD_HEADER_BYTES = 8;
const COMMON_BYTES = 60;
const KIND = { txn: 1, 'blob-put': 2, 'blob-delete': 3 } as const;


export function encodeSegmentHeader(header: SegmentHeader): Buffer {
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const out = Buffer.alloc(16 + json.length);
  SEGMENT_MAGIC.copy(out, 0);
  out.writeUInt32BE(json.length, 8);
  out.writeUInt32BE(crc32(json), 12);
  json.copy(out, 16);
  return out;
}

/** Parses a segment header from the first bytes of a file; returns undefined when torn or invalid. */
export function decodeSegmentHeader(bytes: Uint8Array): { header: SegmentHeader; length: number } | undefined {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
  if (buf.length < 16 || !buf.subarray(0, 8).equals(SEGMENT_MAGIC)) return undefined;
  const len = buf.readUInt32BE(8);
  if (buf.length < 16 + len) return undefined;
  const json = buf.subarray(16, 16 + len);
  if (crc32(json) !== buf.readUInt32BE(12)) return undefined;
  try {
    const header = JSON.parse(json.toString('utf8')) as SegmentHeader;
    if (header.version !== 1 || typeof header.generation !== 'string' || !Number.isInteger(header.firstSeq)) return undefined;
    return { header, length: 16 + len };
  } catch {
    return undefined;
  }
}

function writeChecksum(out: Buffer, at: number, checksum: string): void {
  if (!/^[0-9a-f]{16}$/.test(checksum)) throw new LogCorruptError(`database checksum ${JSON.stringify(checksum)} is not 16 hex digits`);
  out.write(checksum, at, 8, 'hex');
}

function writeCommon(out: Buffer, kind: number, commits: number, state: RecordState, time: number): void {
  out.writeUInt8(kind, 8);
  out.writeUInt32BE(commits, 12);
  out.writeDoubleBE(state.seq, 16);
  out.writeDoubleBE(time, 24);
  out.writeUInt32BE(state.commitSize, 32);
  writeChecksum(out, 36, state.checksum);
  out.writeUInt32BE(state.wal.salt1 >>> 0, 44);
  out.writeUInt32BE(state.wal.salt2 >>> 0, 48);
  out.writeDoubleBE(state.wal.offset, 52);
  out.writeUInt32BE(state.wal.chain[0] >>> 0, 60);
  out.writeUInt32BE(state.wal.chain[1] >>> 0, 64);
}

function frameRecord(out: Buffer): Buffer {
  out.writeUInt32BE(out.length - RECORD_HEADER_BYTES, 0);
  out.writeUInt32BE(crc32(out.subarray(RECORD_HEADER_BYTES)), 4);
  return out;
}

/** Encoded size of a txn record of `pageCount` pages (record header included). */
export function txnRecordBytes(pageCount: number, pageSize: number): number {
  return RECORD_HEADER_BYTES + COMMON_BYTES + 8 + pageCount * (4 + pageSize);
}

/**
 * Encodes a txn record (record header included). With `pagesOut`, pushes a
 * view of each page as encoded in the record (same order as `txn.pages`):
 * a caller that keeps the pages then holds no memory but the record's.
 * With `into` (exactly `txnRecordBytes` long), the record is encoded there
 * instead of in a new buffer.
 */
export function encodeTxnRecord(txn: Txn, commits: number, pageSize: number, wal: WalPosition, pagesOut?: PageImage[], into?: Buffer): Buffer {
  const n = txn.pages.length;
  const size = txnRecordBytes(n, pageSize);
  if (into !== undefined && into.length !== size) throw new RangeError(`encodeTxnRecord: into has ${into.length} bytes, the record needs ${size}`);
  const out = into ?? Buffer.allocUnsafe(size);
  out.fill(0, 0, RECORD_HEADER_BYTES + COMMON_BYTES);
  writeCommon(out, KIND.txn, commits, { seq: txn.seq, checksum: txn.checksum, commitSize: txn.commitSize, wal }, txn.commitTime);
  let at = RECORD_HEADER_BYTES + COMMON_BYTES;
  out.writeUInt32BE(pageSize, at);
  out.writeUInt32BE(n, at + 4);
  at += 8;
  for (const p of txn.pages) {
    out.writeUInt32BE(p.pgno, at);
    at += 4;
  }
  for (const p of txn.pages) {
    if (p.data.length !== pageSize) throw new LogCorruptError(`page ${p.pgno} has ${p.data.length} bytes, page size is ${pageSize}`);
    out.set(p.data, at);
    pagesOut?.push({ pgno: p.pgno, data: out.subarray(at, at + pageSize) });
    at += pageSize;
  }
  return frameRecord(out);
}

/** Encodes a blob event; `state` carries the unchanged database state at that seq. */
export function encodeBlobRecord(
  event: { kind: 'blob-put'; blobId: string; size: number; sha256: string } | { kind: 'blob-delete'; blobId: string },
  state: RecordState,
  time: number,
): Buffer {
  const id = Buffer.from(event.blobId, 'utf8');
  const extra = event.kind === 'blob-put' ? 2 + id.length + 8 + 32 : 2 + id.length;
  const out = Buffer.alloc(RECORD_HEADER_BYTES + COMMON_BYTES + extra);
  writeCommon(out, KIND[event.kind], 0, state, time);
  let at = RECORD_HEADER_BYTES + COMMON_BYTES;
  out.writeUInt16BE(id.length, at);
  id.copy(out, at + 2);
  at += 2 + id.length;
  if (event.kind === 'blob-put') {
    out.writeDoubleBE(event.size, at);
    out.write(event.sha256, at + 8, 32, 'hex');
  }
  return frameRecord(out);
}

export interface DecodedRecord {
  readonly record: LogRecord;
  readonly state: RecordState;
}

/**
 * Outcome of reading one record at `at` in `buf`: a record, the end of the
 * valid data (`end`: nothing more; `torn`: bytes that are not a whole valid
 * record), with the next offset.
 */
export type RecordRead =
  | { readonly status: 'ok'; readonly decoded: DecodedRecord; readonly next: number }
  | { readonly status: 'end' }
  | { readonly status: 'torn'; readonly reason: string }
  | { readonly status: 'short'; readonly need: number };

/** Reads the record header at `at`; `short` asks for more bytes. */
export function readRecord(buf: Buffer, at: number, generation: string, decodePages = true): RecordRead {
  if (at === buf.length) return { status: 'end' };
  if (buf.length - at < RECORD_HEADER_BYTES) return { status: 'short', need: RECORD_HEADER_BYTES };
  const len = buf.readUInt32BE(at);
  if (len < COMMON_BYTES) return { status: 'torn', reason: len === 0 ? 'zero-filled tail' : `record length ${len} too small` };
  if (buf.length - at < RECORD_HEADER_BYTES + len) return { status: 'short', need: RECORD_HEADER_BYTES + len };
  const payload = buf.subarray(at + RECORD_HEADER_BYTES, at + RECORD_HEADER_BYTES + len);
  if (crc32(payload) !== buf.readUInt32BE(at + 4)) return { status: 'torn', reason: 'record CRC-32 mismatch' };
  return { status: 'ok', decoded: decodePayload(payload, generation, decodePages), next: at + RECORD_HEADER_BYTES + len };
}

function decodePayload(p: Buffer, generation: string, decodePages: boolean): DecodedRecord {
  const kind = p.readUInt8(0);
  const commits = p.readUInt32BE(4);
  const seq = p.readDoubleBE(8);
  const time = p.readDoubleBE(16);
  const commitSize = p.readUInt32BE(24);
  const checksum = p.toString('hex', 28, 36);
  const wal: WalPosition = {
    salt1: p.readUInt32BE(36),
    salt2: p.readUInt32BE(40),
    offset: p.readDoubleBE(44),
    chain: [p.readUInt32BE(52), p.readUInt32BE(56)],
  };
  const state: RecordState = { seq, checksum, commitSize, wal };
  let at = COMMON_BYTES;
  if (kind === KIND.txn) {
    const pageSize = p.readUInt32BE(at);
    const n = p.readUInt32BE(at + 4);
    at += 8;
    if (p.length !== at + n * (4 + pageSize)) throw new LogCorruptError(`txn record for seq ${seq} has ${p.length} bytes, expected ${at + n * (4 + pageSize)}`);
    const pages: PageImage[] = [];
    if (decodePages) {
      const dataStart = at + 4 * n;
      for (let i = 0; i < n; i++) {
        const start = dataStart + i * pageSize;
        pages.push({ pgno: p.readUInt32BE(at + 4 * i), data: p.subarray(start, start + pageSize) });
      }
    }
    return { record: { kind: 'txn', seq, generation, commits, txn: { seq, commitSize, checksum, commitTime: time, pages } }, state };
  }
  if (kind !== KIND['blob-put'] && kind !== KIND['blob-delete']) throw new LogCorruptError(`record for seq ${seq} has unknown kind ${kind}`);
  const idLen = p.readUInt16BE(at);
  const blobId = p.toString('utf8', at + 2, at + 2 + idLen);
  at += 2 + idLen;
  if (kind === KIND['blob-delete']) return { record: { kind: 'blob-delete', seq, generation, blobId, time, checksum, commitSize }, state };
  return {
    record: { kind: 'blob-put', seq, generation, blobId, size: p.readDoubleBE(at), sha256: p.toString('hex', at + 8, at + 40), time, checksum, commitSize },
    state,
  };
}
