/**
 * The replica cursor: per namespace, the applied position {generation, seq,
 * checksum}, the durable seq, the batch in flight, and a latched divergence.
 *
 * Stored as one small JSON file (`cursor.json`) with a CRC-32 over the record,
 * replaced atomically (temp file, fsync, rename, directory fsync; invariant 5).
 * A file rather than a SQLite database: the record is ~300 bytes written once
 * or twice per batch, a rename is a single atomic step with no journal of its
 * own, and the daemon keeps no second SQLite file whose descriptors could be
 * closed by accident (design.md, POSIX-lock trap). The CRC catches a corrupt
 * or hand-edited file (invariant 4).
 *
 * The applier writes the record twice per batch (apply-worker.ts):
 *   1. before the commit point: `pending` = the batch's last seq and the
 *      primary's checksum there, `appliedSeq` still the previous seq;
 *   2. after the commit point: `appliedSeq` = the batch's last seq, no pending.
 * At start the database checksum decides which of the two states the
 * database is in (see ApplyWorker.recover). So record 2 may be lost in a
 * crash without losing the commit, and record 1 may survive a batch that
 * rolled back without claiming it.
 *
 * Only the apply worker thread writes this file, so writes never race.
 */
import { closeSync, constants, existsSync, fsyncSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { CursorCorruptError, EMPTY_CHECKSUM, crc32, isChecksum, isGeneration } from '@walwire/protocol';
import { fsyncDirSync, tempPathFor } from '@walwire/runtime';

export const CURSOR_FORMAT_VERSION = 1;

/** A batch whose pages may or may not have been committed (crash between the two writes). */
export interface PendingBatch {
  /** First seq of the batch. */
  readonly fromSeq: number;
  /** Last seq of the batch: the applied seq once the batch commits. */
  readonly seq: number;
  /** The primary's database checksum at `seq`. */
  readonly checksum: string;
  /** The durable seq to record if the batch commits. */
  readonly durableSeq: number;
  /**
   * Set when the batch installs a snapshot: the generation the database
   * holds if it commits (its seqs restart, so `seq` may be at or below the
   * applied seq of the generation being replaced).
   */
  readonly generation?: string;
}

/** Why and where a namespace stopped applying. Latched until a snapshot replaces the database. */
export interface DivergedState {
  /** The seq whose checksum did not match (or the applied seq, for a start-up mismatch). */
  readonly seq: number;
  /** The primary's checksum at `seq` (or the cursor's, for a start-up mismatch). */
  readonly expected: string;
  /** What the replica computed. */
  readonly actual: string;
  readonly reason: string;
  /** ms since the epoch. */
  readonly at: number;
}

export interface CursorRecord {
  readonly version: typeof CURSOR_FORMAT_VERSION;
  /** null until the first batch is applied. */
  readonly generation: string | null;
  readonly appliedSeq: number;
  /** Database checksum at appliedSeq. */
  readonly checksum: string;
  /** ≤ appliedSeq. */
  readonly durableSeq: number;
  readonly pending: PendingBatch | null;
  readonly diverged: DivergedState | null;
}

/** The cursor of a namespace that holds nothing yet: seq 0 over an empty database. */
export const INITIAL_CURSOR: CursorRecord = Object.freeze({
  version: CURSOR_FORMAT_VERSION,
  generation: null,
  appliedSeq: 0,
  checksum: EMPTY_CHECKSUM,
  durableSeq: 0,
  pending: null,
  diverged: null,
});

interface StoredCursor {
  readonly crc: number;
  readonly record: CursorRecord;
}

/** Reads a cursor file; a missing file is the initial cursor. Throws CursorCorruptError. */
export function readCursorSync(path: string): CursorRecord {
  if (!existsSync(path)) return INITIAL_CURSOR;
  const text = readFileSync(path, 'utf8');
  let stored: StoredCursor;
  try {
    stored = JSON.parse(text) as StoredCursor;
  } catch (err) {
    throw new CursorCorruptError(`cursor file ${path} is not JSON: ${(err as Error).message}`);
  }
  if (typeof stored !== 'object' || stored === null || typeof stored.crc !== 'number' || typeof stored.record !== 'object') {
    throw new CursorCorruptError(`cursor file ${path} lacks the crc and record fields`);
  }
  const actual = crc32(Buffer.from(JSON.stringify(stored.record)));
  if (actual !== stored.crc) {
    throw new CursorCorruptError(`cursor file ${path} has CRC-32 ${stored.crc}, its record gives ${actual}`);
  }
  checkRecord(path, stored.record);
  return stored.record;
}

/**
 * Replaces the cursor file atomically: temp file, write, fsync, close,
 * rename over the target, then (unless `syncDir` is false) fsync the
 * directory. Crash before the rename: the old record stays and the temp is
 * removed at the next start (removeStaleTemps). Crash after it: the new
 * record, whole. `syncDir: false` lets the caller fold the directory fsync
 * into a later one that it must issue before relying on the new record.
 */
export function writeCursorSync(path: string, record: CursorRecord, options: { syncDir?: boolean } = {}): void {
  const body = JSON.stringify(record);
  const text = `${JSON.stringify({ crc: crc32(Buffer.from(body)), record } satisfies StoredCursor)}\n`;
  const temp = tempPathFor(path);
  // The temp file is never a SQLite file, so closing its descriptor is safe.
  const fd = openSync(temp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o644);
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } catch (err) {
    closeSync(fd);
    rmSync(temp, { force: true });
    throw err;
  }
  // Close exactly once: a second close could hit a descriptor number another
  // thread has reused since, such as the kept database descriptor.
  closeSync(fd);
  renameSync(temp, path);
  if (options.syncDir !== false) fsyncDirSync(dirname(path));
}

function checkRecord(path: string, r: CursorRecord): void {
  const bad = (what: string): never => {
    throw new CursorCorruptError(`cursor file ${path}: ${what}`);
  };
  if (r.version !== CURSOR_FORMAT_VERSION) bad(`version ${String(r.version)} is not ${CURSOR_FORMAT_VERSION}`);
  if (r.generation !== null && !isGeneration(r.generation)) bad('generation is not 32 hex digits');
  if (!Number.isSafeInteger(r.appliedSeq) || r.appliedSeq < 0) bad('appliedSeq is not a seq');
  if (!Number.isSafeInteger(r.durableSeq) || r.durableSeq < 0 || r.durableSeq > r.appliedSeq) bad('durableSeq is not within [0, appliedSeq]');
  if (!isChecksum(r.checksum)) bad('checksum is not 16 hex digits');
  if (r.pending !== null) {
    const install = r.pending.generation !== undefined;
    if (typeof r.pending !== 'object' || !isChecksum(r.pending.checksum) || (install ? !isGeneration(r.pending.generation) : !(r.pending.seq > r.appliedSeq))) {
      bad('pending batch is malformed');
    }
  }
}
