/**
 * The replica cursor: per namespace, the applied position {generation, seq,
 * checksum}, the durable seq, the batch in flight, and a latched divergence.
 *
 * Stored in `cursor.json` as two fixed slots of CURSOR_SLOT_BYTES, each one
 * JSON line `{"crc","n","record"}` padded with spaces: `n` counts writes,
 * `crc` is the CRC-32 of `{n, record}` as JSON (invariant 4). A write goes in
 * place into the slot not holding the newest record, then fdatasync: no
 * temp file, rename or directory fsync, which were half of the syscalls of
 * a small batch's apply (cursor record 1 took 0.55 ms of 2.2 at 1,000
 * commits/s; 0.22 ms in place). A crash during the write tears at most
 * that slot, which then fails its CRC, and the other slot holds the record
 * before (the write was never relied on). So a read takes the valid slot
 * with the higher `n`. Replaced whole instead (temp file, fsync, rename,
 * directory fsync; see writeCursorSync): a missing file, one in the older
 * one-record layout, one without a valid record, one whose last in-place
 * write failed.
 *
 * A file rather than a SQLite database: the record is ~300 bytes written
 * once or twice per batch, and the daemon keeps no second SQLite file
 * whose descriptors could be closed by accident (design.md, POSIX-lock
 * trap).
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
import { closeSync, constants, existsSync, fdatasyncSync, openSync, readSync } from 'node:fs';
import { CursorCorruptError, EMPTY_CHECKSUM, crc32, isChecksum, isGeneration } from '@walwire/protocol';
import { failpoint, writeFileDurableSync, writeFullySync } from '@walwire/runtime';

export const CURSOR_FORMAT_VERSION = 1;

/** Size of each of the cursor file's two record slots; the file is twice this. */
export const CURSOR_SLOT_BYTES = 4096;

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
  /** Write count; absent in the one-record layout (counts as 0). */
  readonly n?: number;
  readonly record: CursorRecord;
}

type Slot = { readonly kind: 'record'; readonly n: number; readonly record: CursorRecord } | { readonly kind: 'empty' } | { readonly kind: 'damaged'; readonly why: string };

/** Parses one slot: its first line, the rest being padding. */
function parseSlot(bytes: Buffer): Slot {
  const end = bytes.indexOf(0x0a);
  const text = bytes.toString('utf8', 0, end < 0 ? bytes.length : end);
  if (text.trim() === '' && end <= 0) return { kind: 'empty' };
  let stored: StoredCursor;
  try {
    stored = JSON.parse(text) as StoredCursor;
  } catch (err) {
    return { kind: 'damaged', why: `not JSON: ${(err as Error).message}` };
  }
  if (typeof stored !== 'object' || stored === null || typeof stored.crc !== 'number' || typeof stored.record !== 'object') {
    return { kind: 'damaged', why: 'lacks the crc and record fields' };
  }
  if (stored.n !== undefined && !Number.isSafeInteger(stored.n)) return { kind: 'damaged', why: 'has a write count that is not an integer' };
  const actual = slotCrc(stored.n, stored.record);
  if (actual !== stored.crc) return { kind: 'damaged', why: `has CRC-32 ${stored.crc}, its record gives ${actual}` };
  const problem = recordProblem(stored.record);
  if (problem !== null) return { kind: 'damaged', why: problem };
  return { kind: 'record', n: stored.n ?? 0, record: stored.record };
}

/** The slots of an open cursor file; `twoSlots` is false for the older one-record layout (or a missing second slot). */
function readSlots(fd: number): { readonly slots: readonly Slot[]; readonly twoSlots: boolean } {
  const image = Buffer.alloc(2 * CURSOR_SLOT_BYTES + 1);
  let got = 0;
  for (let n = -1; n !== 0 && got < image.length; got += n) n = readSync(fd, image, got, image.length - got, got);
  const twoSlots = got === 2 * CURSOR_SLOT_BYTES;
  if (!twoSlots) return { slots: [parseSlot(image.subarray(0, got))], twoSlots };
  return { slots: [parseSlot(image.subarray(0, CURSOR_SLOT_BYTES)), parseSlot(image.subarray(CURSOR_SLOT_BYTES, got))], twoSlots };
}

/** Index of the slot with the newest record, or -1. */
function newestSlot(slots: readonly Slot[]): number {
  let best = -1;
  slots.forEach((slot, i) => {
    if (slot.kind !== 'record') return;
    const b = slots[best];
    if (b === undefined || b.kind !== 'record' || slot.n > b.n) best = i;
  });
  return best;
}

function corruptError(path: string, slots: readonly Slot[]): CursorCorruptError {
  const whys = slots.map((s, i) => `slot ${i} ${s.kind === 'damaged' ? s.why : 'is empty'}`);
  return new CursorCorruptError(`cursor file ${path} holds no valid record: ${whys.join('; ')}`);
}

/** Reads a cursor file; a missing file is the initial cursor. Throws CursorCorruptError. */
export function readCursorSync(path: string): CursorRecord {
  if (!existsSync(path)) return INITIAL_CURSOR;
  // Not a SQLite file: closing the descriptor is safe.
  const fd = openSync(path, constants.O_RDONLY);
  try {
    const { slots } = readSlots(fd);
    const i = newestSlot(slots);
    if (i < 0) throw corruptError(path, slots);
    return (slots[i] as Extract<Slot, { kind: 'record' }>).record;
  } finally {
    closeSync(fd);
  }
}

/** The CRC-32 a slot stores: over `{n, record}`, or over the record alone in the one-record layout (no `n`). */
function slotCrc(n: number | undefined, record: CursorRecord): number {
  return crc32(Buffer.from(JSON.stringify(n === undefined ? record : { n, record })));
}

/** Longest `diverged.reason` stored; every other field is of bounded size, so a record always fits its slot. */
const MAX_REASON_CHARS = 1024;

/** One slot's bytes: the JSON line, then spaces. */
function slotBytes(record: CursorRecord, n: number): Buffer {
  const d = record.diverged;
  const r = d !== null && d.reason.length > MAX_REASON_CHARS ? { ...record, diverged: { ...d, reason: `${d.reason.slice(0, MAX_REASON_CHARS - 1)}…` } } : record;
  const line = `${JSON.stringify({ crc: slotCrc(n, r), n, record: r } satisfies StoredCursor)}\n`;
  const out = Buffer.alloc(CURSOR_SLOT_BYTES, 0x20);
  const len = out.write(line, 0, 'utf8');
  if (len < Buffer.byteLength(line)) throw new RangeError(`cursor record is ${Buffer.byteLength(line)} bytes, over the ${CURSOR_SLOT_BYTES}-byte slot`);
  return out;
}

/**
 * Paths whose last in-place write failed (this thread): the slot written
 * may sit in the page cache without being on disk, and would then pass for
 * the newest record, so the next write must not go into the other slot,
 * which holds the last record known durable. It replaces the file instead.
 */
const suspect = new Set<string>();

/**
 * Writes `record` as the newest cursor record. In a two-slot file: into
 * the slot not holding the newest record, then fdatasync (see the file
 * comment for the crash behaviour). A missing file, one in the one-record
 * layout, one without a valid record, or one whose last in-place write
 * failed is replaced atomically: temp file, write, fsync, close, rename,
 * directory fsync (once per file, so always, also for the first record of
 * a batch). Crash before the rename: the old file stays and the temp is
 * removed at the next start (removeStaleTemps).
 */
export function writeCursorSync(path: string, record: CursorRecord): void {
  let fd = -1;
  if (!suspect.has(path)) {
    try {
      fd = openSync(path, constants.O_RDWR);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
  if (fd >= 0) {
    // Close exactly once: a second close could hit a descriptor number
    // another thread has reused since, such as the kept database descriptor.
    try {
      const { slots, twoSlots } = readSlots(fd);
      const newest = newestSlot(slots);
      // In place only beside a valid record: it is what a torn write falls back to.
      if (twoSlots && newest >= 0) {
        const n = (slots[newest] as Extract<Slot, { kind: 'record' }>).n + 1;
        const target = newest === 0 ? 1 : 0;
        try {
          writeFullySync(fd, slotBytes(record, n), target * CURSOR_SLOT_BYTES);
          // Test hook: the write is in the page cache, its sync fails (errno(EIO)).
          failpoint('replica.cursor.sync');
          fdatasyncSync(fd);
        } catch (err) {
          suspect.add(path);
          throw err;
        }
        return;
      }
    } finally {
      closeSync(fd);
    }
  }
  replaceFile(path, record);
  suspect.delete(path);
}

/** A two-slot file holding `record` (slot 0, n 1), written durably under a temp name and renamed over `path`. */
function replaceFile(path: string, record: CursorRecord): void {
  const image = Buffer.alloc(2 * CURSOR_SLOT_BYTES, 0x20);
  slotBytes(record, 1).copy(image, 0);
  writeFileDurableSync(path, image);
}

/** What makes a record that passed its CRC invalid, or null. */
function recordProblem(r: CursorRecord): string | null {
  if (r.version !== CURSOR_FORMAT_VERSION) return `version ${String(r.version)} is not ${CURSOR_FORMAT_VERSION}`;
  if (r.generation !== null && !isGeneration(r.generation)) return 'generation is not 32 hex digits';
  if (!Number.isSafeInteger(r.appliedSeq) || r.appliedSeq < 0) return 'appliedSeq is not a seq';
  if (!Number.isSafeInteger(r.durableSeq) || r.durableSeq < 0 || r.durableSeq > r.appliedSeq) return 'durableSeq is not within [0, appliedSeq]';
  if (!isChecksum(r.checksum)) return 'checksum is not 16 hex digits';
  if (r.pending !== null) {
    const install = r.pending.generation !== undefined;
    if (typeof r.pending !== 'object' || !isChecksum(r.pending.checksum) || (install ? !isGeneration(r.pending.generation) : !(r.pending.seq > r.appliedSeq))) {
      return 'pending batch is malformed';
    }
  }
  return null;
}
