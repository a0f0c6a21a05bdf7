/**
 * The rollback journal format (sqlite.org/fileformat2.html §3; pager.c).
 *
 * A replica commits a batch of pages the way SQLite itself does in
 * journal_mode=DELETE: it writes a hot journal holding the original content
 * of every page it will overwrite, syncs it, writes the pages, then deletes
 * the journal. A crash in between leaves a hot journal that the next SQLite
 * opener plays back, restoring the exact previous image.
 *
 * Header (padded with zeros to the sector size), all fields big-endian:
 *    0  magic d9 d5 05 f9 20 a1 63 d7
 *    8  record count (exact; 0 replays nothing)
 *   12  checksum nonce (random per journal)
 *   16  original database size in pages (playback truncates to it)
 *   20  sector size
 *   24  page size
 * Each record: u32 page number, the original page, u32 checksum, where the
 * checksum is nonce + page[n-200] + page[n-400] + … over single bytes while
 * the offset is above 0 (pager.c pager_cksum).
 *
 * SQLite stops playback silently at the first record whose checksum fails,
 * so an encoding bug would lose the rollback without any error. Every
 * journal is therefore re-decoded by `decodeJournal` before it is written.
 */
import { JournalFormatError } from '../errors.js';
import { isValidPageSize, lockBytePage } from './page1.js';

export const JOURNAL_MAGIC = Uint8Array.of(0xd9, 0xd5, 0x05, 0xf9, 0x20, 0xa1, 0x63, 0xd7);
export const JOURNAL_HEADER_FIELDS_BYTES = 28;
export const DEFAULT_SECTOR_SIZE = 4096;

export interface JournalRecord {
  readonly pgno: number;
  /** Original content of the page, exactly pageSize bytes. */
  readonly data: Uint8Array;
}

export interface JournalSpec {
  readonly pageSize: number;
  /** Database size in pages before the transaction. */
  readonly originalPageCount: number;
  /** Random u32 seeding the record checksums. */
  readonly nonce: number;
  /** @default 4096 */
  readonly sectorSize?: number;
  readonly records: readonly JournalRecord[];
}

export interface DecodedJournal {
  readonly pageSize: number;
  readonly sectorSize: number;
  readonly originalPageCount: number;
  readonly nonce: number;
  readonly records: readonly JournalRecord[];
}

/** pager_cksum: the nonce plus every 200th byte counting back from the page end. */
export function journalRecordChecksum(nonce: number, page: Uint8Array): number {
  let sum = nonce >>> 0;
  for (let i = page.length - 200; i > 0; i -= 200) sum = (sum + page[i]!) >>> 0;
  return sum;
}

/** Bytes of a journal with `recordCount` records. */
export function journalSize(pageSize: number, recordCount: number, sectorSize = DEFAULT_SECTOR_SIZE): number {
  return sectorSize + recordCount * (pageSize + 8);
}

/** Encodes a journal, then verifies it with decodeJournal before returning it. */
export function encodeJournal(spec: JournalSpec): Uint8Array {
  const sectorSize = spec.sectorSize ?? DEFAULT_SECTOR_SIZE;
  checkGeometry(spec.pageSize, sectorSize);
  const out = new Uint8Array(journalSize(spec.pageSize, spec.records.length, sectorSize));
  const view = new DataView(out.buffer);
  out.set(JOURNAL_MAGIC, 0);
  view.setUint32(8, spec.records.length, false);
  view.setUint32(12, spec.nonce >>> 0, false);
  view.setUint32(16, spec.originalPageCount, false);
  view.setUint32(20, sectorSize, false);
  view.setUint32(24, spec.pageSize, false);
  let at = sectorSize;
  for (const record of spec.records) {
    if (record.data.length !== spec.pageSize) {
      throw new JournalFormatError(`journal record for page ${record.pgno} has ${record.data.length} bytes, page size is ${spec.pageSize}`);
    }
    view.setUint32(at, record.pgno, false);
    out.set(record.data, at + 4);
    view.setUint32(at + 4 + spec.pageSize, journalRecordChecksum(spec.nonce, record.data), false);
    at += spec.pageSize + 8;
  }
  const decoded = decodeJournal(out);
  if (decoded.records.length !== spec.records.length) {
    throw new JournalFormatError(`journal re-decode found ${decoded.records.length} records, expected ${spec.records.length}`);
  }
  return out;
}

/**
 * Decodes and fully verifies a journal: magic, geometry, exact length, unique
 * page numbers and every record checksum. Throws JournalFormatError where
 * SQLite would silently stop playing back.
 */
export function decodeJournal(bytes: Uint8Array): DecodedJournal {
  if (bytes.length < JOURNAL_HEADER_FIELDS_BYTES) {
    throw new JournalFormatError(`journal of ${bytes.length} bytes is shorter than its header`);
  }
  for (let i = 0; i < JOURNAL_MAGIC.length; i++) {
    if (bytes[i] !== JOURNAL_MAGIC[i]) throw new JournalFormatError('journal magic mismatch');
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  const count = view.getUint32(8, false);
  const nonce = view.getUint32(12, false);
  const originalPageCount = view.getUint32(16, false);
  const sectorSize = view.getUint32(20, false);
  const pageSize = view.getUint32(24, false);
  checkGeometry(pageSize, sectorSize);
  const expected = journalSize(pageSize, count, sectorSize);
  if (bytes.length !== expected) {
    throw new JournalFormatError(`journal is ${bytes.length} bytes, ${count} records of page size ${pageSize} need ${expected}`);
  }
  const records: JournalRecord[] = [];
  const seen = new Set<number>();
  const lockPage = lockBytePage(pageSize);
  let at = sectorSize;
  for (let r = 0; r < count; r++) {
    const pgno = view.getUint32(at, false);
    const data = bytes.subarray(at + 4, at + 4 + pageSize);
    const stored = view.getUint32(at + 4 + pageSize, false);
    const actual = journalRecordChecksum(nonce, data);
    if (pgno === 0 || pgno === lockPage) throw new JournalFormatError(`journal record ${r} has invalid page number ${pgno}`);
    if (seen.has(pgno)) throw new JournalFormatError(`journal record ${r} repeats page ${pgno}`);
    if (stored !== actual) {
      throw new JournalFormatError(`journal record ${r} (page ${pgno}) checksum is ${stored}, content gives ${actual}`);
    }
    seen.add(pgno);
    records.push({ pgno, data });
    at += pageSize + 8;
  }
  return { pageSize, sectorSize, originalPageCount, nonce, records };
}

function checkGeometry(pageSize: number, sectorSize: number): void {
  if (!isValidPageSize(pageSize)) throw new JournalFormatError(`journal page size ${pageSize} is invalid`);
  // pager.c readJournalHdr: sector size is a power of two from 32 to 65536.
  if (sectorSize < 32 || sectorSize > 65536 || (sectorSize & (sectorSize - 1)) !== 0) {
    throw new JournalFormatError(`journal sector size ${sectorSize} is invalid`);
  }
}
