/**
 * The replica's rollback journal, kept as one file at `<db>-journal` for the
 * life of the apply worker, the way SQLite keeps it in journal_mode=PERSIST
 * (sqlite.org/pragma.html#pragma_journal_mode; pager.c).
 *
 * Why: creating, renaming and deleting a journal per batch costs two
 * directory fsyncs, a rename and an unlink, one of each while readers are
 * locked out. Rewriting a kept file in place costs an fdatasync of data
 * blocks that already exist, and changes no directory.
 *
 * When a journal is hot (pager.c hasHotJournal): the file exists, no
 * connection holds a RESERVED lock or more, the database has pages, and the
 * journal's first byte is not zero. So the file can sit next to the
 * database with a zeroed header while nobody holds a lock, and it becomes
 * hot only when its header is written:
 *   - records (the body) are written below the header while the header is
 *     zero, without SQLite's lock, and fdatasync'd (`writeBody`);
 *   - under the EXCLUSIVE lock, the header is written and fdatasync'd
 *     (`arm`): the journal is hot from here, exactly as after SQLite's own
 *     header sync (pager.c syncJournal);
 *   - after the pages are written and synced, the header is zeroed
 *     (`disarm`): the commit point, as pager.c zeroJournalHdr in PERSIST
 *     mode. A reader can hold SHARED only while the header is zero, because
 *     it is written and zeroed under EXCLUSIVE.
 *   - `sync` makes the zeroed header durable. It must return before the
 *     next body overwrites the records: a power loss could otherwise bring
 *     back the old header over a mix of old and new records.
 *
 * Two more things a persistent file must guarantee when it is hot, because
 * the file is longer than the records of the batch it describes:
 *   - pager.c reads the next journal header at the sector boundary after
 *     the last record (pager_playback's loop over readJournalHdr). Stale
 *     bytes there could carry the journal magic (page content is the
 *     user's), so every body is followed by 8 zero bytes at that boundary.
 *     SQLite does the same in syncJournal ("This block deals with an
 *     obscure problem").
 *   - pager.c readSuperJournal looks for a super-journal pointer in the last
 *     16 bytes of the file; the last sector of the file is never written, so
 *     it stays zero.
 *
 * Anyone may remove or replace the file while we hold no lock: a SQLite
 * read-write opener deletes a non-hot journal of an empty database, a hot
 * one after playing it back, and a snapshot install writes its own journal
 * at this path. `inPlace` (checked under the lock, where no SQLite
 * connection can touch the journal) tells whether the path still names our
 * descriptor's file; if not, the caller calls `reopen` and writes the body
 * again. (A writer of its own in journal_mode PERSIST or TRUNCATE would reuse
 * the file in place, which `inPlace` cannot see; like any other writer it
 * breaks the replica anyway, see docs/operations-replica-readers.md.)
 *
 * The file stays next to the database between batches, so every reader
 * opens it: pager.c treats a journal it cannot open as hot (hasHotJournal,
 * SQLITE_CANTOPEN). So it gets the database file's permissions, and its
 * owner when we run as root, as os_unix.c gives its journals
 * (findCreateFileMode, robust_open).
 */
import { closeSync, constants, fchmodSync, fchownSync, fdatasyncSync, fstatSync, ftruncateSync, openSync, readSync, statSync } from 'node:fs';
import { ApplyFailedError, DEFAULT_SECTOR_SIZE, JOURNAL_HEADER_FIELDS_BYTES } from '@walwire/protocol';
import { failpoint, fsyncDirSync, writeFullySync } from '@walwire/runtime';

const SECTOR = DEFAULT_SECTOR_SIZE;
/** Size a new journal file starts at: header sector, 60 KiB of records, trailing zero sector. */
const INITIAL_BYTES = 68 * 1024;
/** Files grow in steps of this much, so that a growing batch size does not resize every time. */
const GROWTH_BYTES = 256 * 1024;
/**
 * After a commit, a file grown past this by a large batch is cut back to
 * INITIAL_BYTES, so one large transaction does not keep its journal's disk
 * space for good (what SQLite's journal_size_limit does for PERSIST).
 */
const SIZE_LIMIT_BYTES = 4 * 1024 * 1024;
const ZERO_HEADER = new Uint8Array(JOURNAL_HEADER_FIELDS_BYTES);
const ZERO_MAGIC = new Uint8Array(8);

export interface JournalFileOptions {
  readonly path: string;
  /** The directory holding it (fsync'd by every reopen). */
  readonly dir: string;
}

/** True when the file at `path` is a hot journal by its first byte (see the file comment for the rest of the rule). */
export function journalHeaderArmed(path: string): boolean {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY);
  } catch {
    return false;
  }
  try {
    const first = Buffer.alloc(1);
    return readSync(fd, first, 0, 1, 0) === 1 && first[0] !== 0;
  } finally {
    closeSync(fd); // the journal carries no locks: closing it is safe
  }
}

export class JournalFile {
  readonly #opts: JournalFileOptions;
  #fd: number | null = null;
  #dev = 0;
  #ino = 0;
  #size = 0;

  constructor(options: JournalFileOptions) {
    this.#opts = options;
  }

  get path(): string {
    return this.#opts.path;
  }

  /**
   * True when the descriptor is open and the path still names its file.
   * Cheap (one stat); the apply worker asks before writing a body without
   * the lock, and again under the lock, where the answer holds until the
   * lock is released.
   */
  inPlace(): boolean {
    if (this.#fd === null) return false;
    try {
      const st = statSync(this.#opts.path);
      return st.ino === this.#ino && st.dev === this.#dev;
    } catch {
      return false;
    }
  }

  /**
   * Opens the file at the path, creating it if missing, and makes it a valid
   * idle journal: the database's permissions (and owner, as root), whole
   * sectors, at least the initial size, a zero header and a zero last
   * sector; then fsyncs the directory, so its name is durable before it is
   * ever armed (every time: a crash inside an earlier reopen may have left a
   * file whose name never reached the disk). `dbFd` is the database's
   * descriptor. Call it only where the file cannot be hot: under the
   * EXCLUSIVE lock (SQLite plays a hot journal back when the lock is taken),
   * or after recovery. Crash at any point: the header is zero, so the file is
   * no one's hot journal, and the next reopen repeats this.
   */
  reopen(dbFd: number): void {
    this.forget();
    const db = fstatSync(dbFd);
    const fd = openSync(this.#opts.path, constants.O_RDWR | constants.O_CREAT, db.mode & 0o777);
    try {
      fchmodSync(fd, db.mode & 0o777);
      if (process.getuid?.() === 0) fchownSync(fd, db.uid, db.gid);
      const st = fstatSync(fd);
      const created = st.size === 0;
      const size = Math.max(INITIAL_BYTES, roundUp(st.size, SECTOR));
      // A new file is written out in full, so that its blocks exist and a
      // body's fdatasync changes no metadata.
      if (created) writeFullySync(fd, new Uint8Array(size), 0);
      else if (size !== st.size) ftruncateSync(fd, size);
      writeFullySync(fd, ZERO_HEADER, 0);
      writeFullySync(fd, new Uint8Array(SECTOR), size - SECTOR);
      failpoint('replica.journal.reopen');
      fdatasyncSync(fd);
      fsyncDirSync(this.#opts.dir);
      this.#fd = fd;
      this.#dev = st.dev;
      this.#ino = st.ino;
      this.#size = size;
    } catch (err) {
      closeSync(fd);
      throw err;
    }
  }

  /**
   * Writes the records (everything after the header sector of an encoded
   * journal) while the header is zero, then 8 zero bytes at the next sector
   * boundary, and fdatasyncs. Grows the file first when they do not fit in
   * front of its zero last sector.
   */
  writeBody(body: Uint8Array): void {
    const fd = this.#requireFd();
    const nextHeader = roundUp(SECTOR + body.length, SECTOR);
    const needed = nextHeader + ZERO_MAGIC.length + SECTOR;
    if (needed > this.#size) {
      const size = roundUp(needed, GROWTH_BYTES);
      ftruncateSync(fd, size); // the new tail reads as zeros
      this.#size = size;
    }
    writeFullySync(fd, body, SECTOR);
    writeFullySync(fd, ZERO_MAGIC, nextHeader);
    fdatasyncSync(fd);
  }

  /** Writes the header fields and fdatasyncs: the journal is hot from here. Under the EXCLUSIVE lock only. */
  arm(header: Uint8Array): void {
    const fd = this.#requireFd();
    writeFullySync(fd, header.subarray(0, JOURNAL_HEADER_FIELDS_BYTES), 0);
    fdatasyncSync(fd);
  }

  /**
   * Zeroes the header fields: the commit point (a zero first byte is never
   * hot). Not synced: `sync` does that, after the lock is released.
   */
  disarm(): void {
    writeFullySync(this.#requireFd(), ZERO_HEADER, 0);
  }

  /**
   * Makes the zeroed header durable; then cuts a file grown past the size
   * limit back: the sector that will be last is zeroed first, then the file
   * is truncated, so its last sector is zero at every step. Crash during
   * the cut: the header is already durably zero, so nothing is hot.
   */
  sync(): void {
    const fd = this.#requireFd();
    fdatasyncSync(fd);
    if (this.#size > SIZE_LIMIT_BYTES) {
      writeFullySync(fd, new Uint8Array(SECTOR), INITIAL_BYTES - SECTOR);
      failpoint('replica.journal.cut');
      ftruncateSync(fd, INITIAL_BYTES);
      this.#size = INITIAL_BYTES;
      fdatasyncSync(fd);
    }
  }

  /** Closes the descriptor (the journal carries no locks); the next use needs `reopen`. */
  forget(): void {
    if (this.#fd === null) return;
    const fd = this.#fd;
    this.#fd = null;
    closeSync(fd);
  }

  #requireFd(): number {
    if (this.#fd === null) throw new ApplyFailedError(`journal ${this.#opts.path} is not open`);
    return this.#fd;
  }
}

function roundUp(n: number, unit: number): number {
  return Math.ceil(n / unit) * unit;
}
