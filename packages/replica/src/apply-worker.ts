/**
 * The apply worker: a worker_thread per namespace that owns the namespace's
 * SQLite connection, its incremental database checksum and the cursor file,
 * and commits batches of primary transactions into the replica database
 * through SQLite's rollback-journal protocol (design.md, "Replica side";
 * sqlite.org/fileformat2.html §3 and sqlite.org/atomiccommit.html).
 *
 * Why a worker: `BEGIN EXCLUSIVE` waits for readers inside SQLite's busy
 * handler, which sleeps synchronously. On the main thread that would freeze
 * the event loop (heartbeats, other namespaces) for as long as a reader
 * holds its lock. POSIX locks are per process, so the lock this thread's
 * connection takes is the process's lock, exactly as on the main thread.
 *
 * All page I/O goes through the descriptor kept open for the process lifetime
 * (database-file.ts); this thread never closes a descriptor of the database
 * file, and never opens one either: Node closes the descriptors a worker
 * opened when the worker exits. Where the file did not exist at open (the
 * first apply creates it, or a snapshot install links the staged image in
 * as the database), it asks the main thread ('fd-needed'), which opens the
 * kept descriptor and answers through a shared cell.
 */
import Database from 'better-sqlite3';
import { randomBytes } from 'node:crypto';
import {
  closeSync,
  constants,
  existsSync,
  fdatasyncSync,
  fstatSync,
  ftruncateSync,
  linkSync,
  openSync,
  readSync,
  rmSync,
  unlinkSync,
} from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import {
  ApplyFailedError,
  ClosedError,
  DatabaseChecksum,
  DivergedError,
  InvalidTxnError,
  SnapshotRequiredError,
  WalwireError,
  DEFAULT_SECTOR_SIZE,
  encodeJournal,
  lockBytePage,
  parseDatabaseHeader,
  patchReplicaPage1,
  type JournalRecord,
} from '@walwire/protocol';
import { failpoint, fsyncDirSync, writeFullySync } from '@walwire/runtime';
import { type CursorRecord, type DivergedState, readCursorSync, writeCursorSync } from './cursor-store.js';
import type {
  ApplyResult,
  ApplyWorkerData,
  InstallImage,
  InstallResult,
  PackedBatch,
  RecoverResult,
  StagedChunks,
  WorkerEvent,
  WorkerRequest,
} from './apply-messages.js';
import { JournalFile, journalHeaderArmed } from './journal-file.js';
import { readFully, readPage, writevFully } from './page-io.js';
import { StagedImage } from './staged-image.js';

// ---------------------------------------------------------------------------

interface Txn {
  readonly seq: number;
  readonly commitSize: number;
  readonly checksum: string;
  readonly pages: { pgno: number; data: Uint8Array }[];
}

interface Plan {
  readonly txns: readonly Txn[];
  /** Pages to write, last version within the batch, by pgno. */
  readonly pages: Map<number, Uint8Array>;
  readonly newSize: number;
  /** The database checksum after the last kept txn (the primary's, verified). */
  readonly checksum: string;
  readonly diverged: DivergedState | null;
}

export class ApplyWorker {
  readonly #data: ApplyWorkerData;
  /** null while the database file does not exist (see ApplyWorkerData.fd). */
  #conn: Database.Database | null = null;
  #dbFd: number | null;
  readonly #post: (event: WorkerEvent) => void;
  #checksum = new DatabaseChecksum();
  #pageSize = 0;
  #cursor: CursorRecord | null = null;
  /** The kept `-journal` file batches commit through (journal-file.ts). */
  readonly #journal: JournalFile;
  /** Set when a failed apply could not be rolled back: refuse everything until reopened. */
  #broken: string | null = null;
  /**
   * #checksum no longer describes the disk: a batch advanced it and then
   * failed or diverged. Only recover() (a reopen) rebuilds it.
   */
  #checksumStale = false;
  /** The last commit's cursor record 2 is not written yet (see apply, step 8). */
  #unsettled = false;
  /** The snapshot image being staged, verified chunk by chunk beside the transfer. */
  readonly #staged = new StagedImage();

  constructor(data: ApplyWorkerData, post: (event: WorkerEvent) => void) {
    this.#data = data;
    this.#post = post;
    this.#dbFd = data.fd;
    this.#journal = new JournalFile({ path: data.journalPath, dir: data.dir });
    if (data.fd !== null) this.#connect();
  }

  /** The SQLite connection; only code that runs after #open() or with a kept descriptor uses it. */
  get #db(): Database.Database {
    if (this.#conn === null) throw new ApplyFailedError('the replica database is not open');
    return this.#conn;
  }

  /** The kept descriptor of the database file. */
  get #fd(): number {
    if (this.#dbFd === null) throw new ApplyFailedError('the replica database is not open');
    return this.#dbFd;
  }

  #connect(): void {
    // Read-write, so that it can roll back a hot journal (a read-only opener
    // gets SQLITE_READONLY_ROLLBACK). Its busy timeout bounds one lock attempt.
    this.#conn = new Database(this.#data.dbPath, { timeout: this.#data.lockAttemptMs });
  }

  /**
   * Opens the database file when it had none at open (creating it empty if
   * it is still missing): first the kept descriptor, handed to the main
   * thread's registry so that the process never opens a second one, then the
   * SQLite connection.
   */
  #open(): void {
    if (this.#dbFd !== null) return;
    // The main thread opens it (keptDatabaseFd) while this thread waits:
    // Node closes the descriptors a worker opened when the worker exits, and
    // closing a descriptor on the database drops every POSIX lock the
    // process holds on it (design.md). Regression test in
    // packages/replica/test/namespace.test.ts ("… outlives its apply worker").
    const cell = this.#data.fdCell;
    Atomics.store(cell, 0, 0);
    this.#post({ kind: 'fd-needed' });
    if (Atomics.wait(cell, 0, 0, 30_000) === 'timed-out') {
      throw new ApplyFailedError(`the main thread did not open ${this.#data.dbPath} within 30000 ms`);
    }
    const fd = Atomics.load(cell, 1);
    if (fd < 0) throw new ApplyFailedError(`opening ${this.#data.dbPath} failed on the main thread`);
    this.#dbFd = fd;
    this.#connect();
  }

  close(): void {
    if (this.#conn?.inTransaction === true) this.#conn.exec('ROLLBACK');
    if (this.#cursor !== null && this.#broken === null) this.settle();
    this.#journal.forget();
    // Closing the SQLite connection is safe: SQLite defers closing its own
    // descriptor while other connections of the process hold locks, and our
    // kept `fs` descriptor holds none of its own.
    this.#conn?.close();
  }

  /**
   * Start-up: roll back any hot journal, compute the full database checksum
   * through the kept descriptor, and decide by checksum which state the
   * database is in.
   *
   * The cursor file says: applied seq Sc with checksum Cc, and maybe a
   * pending batch ending at Sp with the primary's checksum Cp. The database,
   * once any hot journal is rolled back, is at Sc (the batch never reached
   * its commit point) or at Sp (it did, and the crash came before the
   * cursor's second write). Its checksum Cdb tells which:
   *   Cdb = Cc  → at Sc; the in-doubt batch is re-streamed and re-applied
   *               (seqs ≤ Sc are skipped, so re-sending is idempotent);
   *   Cdb = Cp  → at Sp; record it;
   *   otherwise → diverged: latched, and a snapshot is requested.
   * The decision is recorded with one atomic cursor write; a crash before it
   * leaves the inputs unchanged, so the next start decides the same way.
   */
  recover(): RecoverResult {
    // A journal written under a temp name before the lock, as versions
    // before the kept journal file did: the database was not touched.
    rmSync(`${this.#data.journalPath}.walwire-tmp`, { force: true });
    let cursor = readCursorSync(this.#data.cursorPath);
    // Some other process created the file since the main thread looked.
    if (this.#dbFd === null && existsSync(this.#data.dbPath)) this.#open();
    const hadJournal = this.#conn !== null && journalHeaderArmed(this.#data.journalPath);
    const started = performance.now();
    let bytes = 0;
    if (this.#conn === null) {
      // No database file: the empty database (a journal without its database is never hot).
      this.#checksum = new DatabaseChecksum();
    } else {
      // A read takes the SHARED lock; on the way SQLite finds a hot journal and,
      // being read-write, plays it back (pager.c hasHotJournal, pager_playback).
      // Holding SHARED for the verification keeps any other opener from
      // rolling back a journal under it (none can exist, we are the only writer).
      this.#db.exec('BEGIN');
      try {
        this.#db.prepare('SELECT count(*) FROM sqlite_schema').get();
        // No journal is hot any more: take over (or create) the kept file.
        this.#journal.reopen(this.#fd);
        bytes = this.#verifyFull();
      } finally {
        this.#db.exec('COMMIT');
      }
    }
    const verifyMs = performance.now() - started;
    const actual = this.#checksum.value;
    let decision: RecoverResult['decision'];
    const install = cursor.pending?.generation;
    if (install !== undefined && cursor.pending !== null && actual === cursor.pending.checksum) {
      // A snapshot install reached its commit point before the crash: the
      // database is the new generation's image, whatever was latched before.
      decision = 'installed-pending';
      cursor = { ...cursor, generation: install, appliedSeq: cursor.pending.seq, checksum: actual, durableSeq: cursor.pending.durableSeq, pending: null, diverged: null };
      writeCursorSync(this.#data.cursorPath, cursor);
    } else if (cursor.diverged !== null) {
      decision = 'latched-diverged';
    } else if (actual === cursor.checksum) {
      decision = 'at-cursor';
      if (cursor.pending !== null) {
        cursor = { ...cursor, pending: null };
        writeCursorSync(this.#data.cursorPath, cursor);
      }
    } else if (cursor.pending !== null && actual === cursor.pending.checksum) {
      decision = 'committed-pending';
      cursor = {
        ...cursor,
        appliedSeq: cursor.pending.seq,
        checksum: cursor.pending.checksum,
        durableSeq: Math.max(cursor.durableSeq, Math.min(cursor.pending.durableSeq, cursor.pending.seq)),
        pending: null,
      };
      writeCursorSync(this.#data.cursorPath, cursor);
    } else {
      decision = 'diverged';
      cursor = {
        ...cursor,
        pending: null,
        diverged: {
          seq: cursor.appliedSeq,
          expected: cursor.checksum,
          actual,
          reason: 'start-up verification: the database checksum matches neither the applied nor the pending position',
          at: Date.now(),
        },
      };
      writeCursorSync(this.#data.cursorPath, cursor);
    }
    this.#cursor = cursor;
    return {
      cursor,
      checksum: actual,
      pageSize: this.#pageSize,
      pageCount: this.#checksum.pageCount,
      hadJournal,
      decision,
      verifyBytes: bytes,
      verifyMs,
    };
  }

  /** Reads the whole file through the kept descriptor into a fresh checksum. */
  #verifyFull(): number {
    const { verifyReadBytes } = this.#data;
    const fd = this.#fd;
    const size = fstatSync(fd).size;
    const checksum = new DatabaseChecksum();
    if (size === 0) {
      this.#checksum = checksum;
      return 0;
    }
    const head = Buffer.alloc(100);
    readSync(fd, head, 0, 100, 0);
    const pageSize = parseDatabaseHeader(head).pageSize;
    if (size % pageSize !== 0) {
      throw new ApplyFailedError(`database ${this.#data.dbPath} is ${size} bytes, not a multiple of its page size ${pageSize}`);
    }
    const slice = Buffer.alloc(Math.max(pageSize, Math.floor(verifyReadBytes / pageSize) * pageSize));
    let at = 0;
    while (at < size) {
      const want = Math.min(slice.length, size - at);
      readFully(fd, slice, want, at);
      checksum.addImage(slice.subarray(0, want), pageSize, at / pageSize + 1);
      at += want;
    }
    this.#checksum = checksum;
    this.#pageSize = pageSize;
    return size;
  }

  /**
   * Writes cursor record 2 of the last batch if it was deferred: applied
   * position, no pending batch. Crash before it: recover() decides by
   * checksum from record 1, as after step 6 of apply().
   */
  settle(): CursorRecord {
    const cursor = this.#requireCursor();
    if (this.#unsettled) {
      writeCursorSync(this.#data.cursorPath, cursor);
      this.#unsettled = false;
      failpoint('replica.apply.after-cursor');
    }
    return cursor;
  }

  /** Updates the durable seq alone (the blob writer released a hold). */
  setDurable(durableSeq: number): CursorRecord {
    const cursor = this.#requireCursor();
    const next = Math.min(cursor.appliedSeq, Math.max(cursor.durableSeq, durableSeq));
    if (next !== cursor.durableSeq) {
      this.#cursor = { ...cursor, durableSeq: next };
      writeCursorSync(this.#data.cursorPath, this.#cursor);
      this.#unsettled = false;
    }
    return this.#cursor!;
  }

  /**
   * Commits a batch. Seqs at or below the applied seq are skipped, so a
   * re-sent batch is idempotent.
   *
   * On-disk steps, and the state a crash (kill -9) between them leaves. Sc is
   * the applied seq before the batch, Sp its last seq:
   *   1. plan and journal built without SQLite's lock (readers go on; this
   *      worker is the only writer, so nothing it read can change).
   *   2. cursor record 1 (pending Sp, Cp): written in place, fdatasync
   *      (cursor-store.ts; a file still in the one-record layout is
   *      replaced once: temp, fsync, rename, directory fsync).
   *        crash → db at Sc, cursor Sc + pending: recover() keeps Sc.
   *   3. the journal's records written into the kept `-journal` file
   *      below its zero header, fdatasync (journal-file.ts: a journal whose
   *      first byte is zero is never hot).
   *        crash → db untouched, at Sc; the journal is not hot.
   *   4. BEGIN EXCLUSIVE (retried in slices); the journal's header written,
   *      fdatasync: the journal is hot from here. (Had the file been
   *      removed or replaced meanwhile, it is recreated and the records
   *      written again first, under the lock.)
   *        crash → a hot journal of original pages over an untouched
   *        database: rollback restores the same bytes.
   *   5. pages written (page 1 patched), file truncated or extended, fdatasync.
   *        crash → torn database, hot journal: every opener must roll back
   *        first (readers get SQLITE_READONLY_ROLLBACK or BUSY, never torn
   *        pages); recover() rolls back to Sc.
   *   6. the journal's header zeroed: THE COMMIT POINT.
   *        crash → db at Sp, cursor Sc + pending Sp: recover() records Sp.
   *   7. ROLLBACK the empty SQL transaction: releases the lock. Then
   *      fdatasync the journal (the zero header durable against power loss;
   *      until then a power loss may bring the header back, and recovery
   *      rolls back to Sc, as record 1 allows; and the next batch's records
   *      must not overwrite these before it).
   *   8. cursor record 2 (applied Sp): written in place, fdatasync,
   *      now when `settle` is true, else deferred to `settle()`: while
   *      batches follow each other, the next batch's record 1 carries
   *      applied = Sp anyway, and until then record 1 of this batch plus
   *      the database checksum identify Sp (step 6). That saves one
   *      fdatasync per batch under load.
   */
  apply(generation: string, batch: PackedBatch, durableCap: number, settle: boolean): ApplyResult {
    const started = performance.now();
    if (this.#broken !== null) throw new ApplyFailedError(this.#broken);
    const cursor = this.#requireCursor();
    if (cursor.diverged !== null) {
      throw new DivergedError(`namespace diverged at seq ${cursor.diverged.seq}; a snapshot is required before applying`);
    }
    if (cursor.generation !== null && cursor.generation !== generation) {
      throw new SnapshotRequiredError(`batch of generation ${generation} cannot apply over generation ${cursor.generation}; a snapshot is required`);
    }
    const all = unpack(batch);
    const txns = all.filter((t) => t.seq > cursor.appliedSeq);
    const skipped = all.length - txns.length;
    if (txns.length === 0) return this.#noop(cursor, skipped, started);
    this.#validate(txns, batch.pageSize || this.#pageSize || 4096);
    // A fresh namespace's first apply creates the (empty) database file.
    this.#open();
    // Steps 1-3 run without SQLite's lock: this worker is the database's
    // only writer, so its pages and size cannot change before step 5, and
    // readers keep reading meanwhile. Only 4-7 lock them out.
    let lockWaitMs = 0;
    let journalArmed = false;
    let pagesTouched = false;
    let oldSize = 0;
    let originals: JournalRecord[] = [];
    try {
      const fd = this.#fd;
      // A batch without page images (possible only for a pure shrink) takes the database's page size.
      const pageSize = batch.pageSize || this.#pageSize;
      if (pageSize === 0) throw new InvalidTxnError('the first batch applied to an empty replica must contain page 1');
      const fileBytes = fstatSync(fd).size;
      if (fileBytes % pageSize !== 0) {
        throw new ApplyFailedError(`database is ${fileBytes} bytes, not a multiple of page size ${pageSize}`);
      }
      oldSize = fileBytes / pageSize;
      if (oldSize > 0 && this.#pageSize !== 0 && this.#pageSize !== pageSize) {
        throw new InvalidTxnError(`batch page size ${pageSize} differs from the database's ${this.#pageSize}`);
      }
      if (oldSize === 0 && !txns[0]!.pages.some((p) => p.pgno === 1)) {
        throw new InvalidTxnError('the first batch applied to an empty replica must contain page 1');
      }
      // The live checksum is advanced in place (no per-batch copy of its
      // 8-bytes-a-page table); it matches the disk again only once the batch
      // commits. Until then, and for good after a divergence, it is stale.
      this.#checksumStale = true;
      let plan = this.#plan(txns, pageSize, oldSize, txns.length, this.#checksum);
      if (plan.diverged !== null && plan.txns.length > 0) {
        // Commit the verified prefix: merge it again, without hashing.
        plan = { ...this.#plan(txns, pageSize, oldSize, plan.txns.length, null), diverged: plan.diverged };
      }
      if (plan.txns.length === 0) {
        this.#checksumStale = false;
        this.#broken = 'the namespace diverged';
        const diverged = plan.diverged!;
        this.#cursor = { ...cursor, diverged };
        writeCursorSync(this.#data.cursorPath, this.#cursor);
        return { ...this.#noop(this.#cursor, skipped, started), lockWaitMs, diverged };
      }
      const lockPage = lockBytePage(pageSize);
      const last = plan.txns[plan.txns.length - 1]!;
      if (plan.pages.size === 0 && plan.newSize === oldSize && plan.diverged === null) {
        // Only blob events (empty transactions): the database does not
        // change, so no journal and no page write; the cursor moves. Its
        // record is deferred like step 8: a crash before it leaves the
        // cursor at Sc over an identical database, and the stream re-sends
        // the events from the durable seq.
        this.#checksumStale = false;
        this.#cursor = {
          version: cursor.version,
          generation,
          appliedSeq: last.seq,
          checksum: plan.checksum,
          durableSeq: Math.min(last.seq, Math.max(cursor.durableSeq, durableCap)),
          pending: null,
          diverged: null,
        };
        this.#unsettled = true;
        if (settle) this.settle();
        return { cursor: this.#cursor, txnsApplied: plan.txns.length, txnsSkipped: skipped, pagesWritten: 0, journalRecords: 0, bytesWritten: 0, lockWaitMs, totalMs: performance.now() - started, diverged: null };
      }

      // Journal: page 1 always (the change counter changes), every page to be
      // written that exists now, and every page a shrink cuts off.
      const journaled = new Set<number>();
      if (oldSize >= 1) journaled.add(1);
      for (const pgno of plan.pages.keys()) if (pgno <= oldSize) journaled.add(pgno);
      for (let p = plan.newSize + 1; p <= oldSize; p++) journaled.add(p);
      journaled.delete(lockPage);
      originals = [...journaled].sort((a, b) => a - b).map((pgno) => ({ pgno, data: readPage(fd, pgno, pageSize) }));
      const journal = encodeJournal({ pageSize, originalPageCount: oldSize, nonce: randomBytes(4).readUInt32BE(0), records: originals });

      // Page 1 as the replica stores it: rollback-journal mode, and a change
      // counter (offsets 24 and 92, fileformat2.html §1.3.11 and §1.3.8) that
      // differs from every earlier one, so every reader drops its cache.
      const oldPage1 = originals[0]?.pgno === 1 ? originals[0].data : undefined;
      const counter = oldPage1 === undefined ? 1 : (Buffer.from(oldPage1.buffer, oldPage1.byteOffset, 100).readUInt32BE(24) + 1) >>> 0;
      const page1 = patchReplicaPage1(plan.pages.get(1) ?? oldPage1!, counter);
      plan.pages.set(1, page1);

      // 2. Cursor record 1: what the database holds if the batch commits.
      const pendingDurable = Math.min(last.seq, Math.max(cursor.durableSeq, durableCap));
      writeCursorSync(
        this.#data.cursorPath,
        { ...cursor, generation, pending: { fromSeq: plan.txns[0]!.seq, seq: last.seq, checksum: plan.checksum, durableSeq: pendingDurable } },
      );
      failpoint('replica.apply.after-pending-cursor');
      // 3. The records, behind the journal's zero header.
      const body = journal.subarray(DEFAULT_SECTOR_SIZE);
      const bodyWritten = this.#journal.inPlace();
      if (bodyWritten) this.#journal.writeBody(body);
      failpoint('replica.apply.after-journal-body');
      // 4. EXCLUSIVE lock; no SQLite connection can touch the journal file
      //    until it is released, so a file still in place stays ours. The
      //    header makes the journal hot.
      lockWaitMs = this.#beginExclusive();
      if (!bodyWritten || !this.#journal.inPlace()) {
        this.#journal.reopen(fd);
        this.#journal.writeBody(body);
      }
      journalArmed = true;
      this.#journal.arm(journal);
      failpoint('replica.apply.after-journal');

      // 5. Pages, in runs of consecutive page numbers.
      pagesTouched = true;
      const order = [...plan.pages.keys()].sort((a, b) => a - b);
      let bytesWritten = 0;
      for (let i = 0; i < order.length; ) {
        let j = i + 1;
        while (j < order.length && order[j] === order[j - 1]! + 1 && j - i < 256) j++;
        const run = order.slice(i, j).map((p) => plan.pages.get(p)!);
        bytesWritten += writevFully(fd, run, (order[i]! - 1) * pageSize);
        failpoint('replica.apply.mid-pages');
        i = j;
      }
      if (plan.newSize !== oldSize) ftruncateSync(fd, plan.newSize * pageSize);
      fdatasyncSync(fd);
      failpoint('replica.apply.before-journal-zero');

      // 6. The commit point. From here on the batch is committed: a later
      // failure must never undo it, only leave the cursor for recover().
      this.#journal.disarm();
      journalArmed = false;
      pagesTouched = false;
      this.#checksumStale = plan.diverged !== null;
      this.#pageSize = pageSize;
      this.#cursor = {
        version: cursor.version,
        generation,
        appliedSeq: last.seq,
        checksum: plan.checksum,
        durableSeq: pendingDurable,
        pending: null,
        diverged: plan.diverged,
      };
      try {
        // 7. The lock goes before the journal's sync: readers wait for the
        // sync of the pages only, not also for the header's. A process
        // crash cannot undo the zeroing; a power loss before the sync can
        // bring the header back, and the next opener then rolls back to
        // Sc, which cursor record 1 (pending Sp) already describes. Nothing
        // is acknowledged, record 2 is not written and no later batch
        // touches the journal until the sync returns.
        this.#db.exec('ROLLBACK');
        this.#journal.sync();
        failpoint('replica.apply.after-commit-before-cursor');
        // 8. Cursor record 2 (a divergence is always recorded at once).
        this.#unsettled = true;
        if (settle || plan.diverged !== null) this.settle();
      } catch (err) {
        this.#broken = `seq ${last.seq} committed but the journal sync or cursor write after it failed (${(err as Error).message}); reopen the namespace`;
        if (this.#db.inTransaction) this.#db.exec('ROLLBACK');
        throw new ApplyFailedError(this.#broken, { cause: err });
      }
      return {
        cursor: this.#cursor,
        txnsApplied: plan.txns.length,
        txnsSkipped: skipped,
        pagesWritten: order.length,
        journalRecords: originals.length,
        bytesWritten,
        lockWaitMs,
        totalMs: performance.now() - started,
        diverged: plan.diverged,
      };
    } catch (err) {
      if (this.#checksumStale && this.#broken === null) {
        // Still latched on close (the in-memory checksum is ahead either way), but named for what happened.
        this.#broken =
          err instanceof ClosedError
            ? 'the namespace closed while a batch waited for readers\' locks; reopen it to continue'
            : 'a failed batch left the in-memory checksum ahead of the database; reopen the namespace to verify it again';
      }
      // Undo what was written (nothing, if the failure came after the commit
      // point) and release the lock.
      this.#abort(journalArmed, pagesTouched, oldSize, originals, batch.pageSize || this.#pageSize);
      if (err instanceof ApplyFailedError) throw err;
      if (err instanceof WalwireError && err.code !== 'WALWIRE_ERR_FAILPOINT') throw err;
      throw new ApplyFailedError(`apply of seqs ${txns[0]!.seq}..${txns[txns.length - 1]!.seq} failed and was rolled back: ${(err as Error).message}`, { cause: err });
    }
  }

  /**
   * Replaces the whole database with a verified snapshot image, as one
   * journal transaction, so a reader sees either the old database or the
   * new image, never a mix (invariant 1). Memory stays at a few slices:
   * the journal and the pages are written slice by slice.
   *
   * On-disk steps, and what a crash between them leaves:
   *   1. BEGIN EXCLUSIVE.
   *   2. cursor record 1: pending = {generation G', seq S', checksum C'}.
   *        crash → db untouched: recover() keeps the old position (or latch).
   *   3. hot journal holding every old page (encoded and verified in
   *      slices), fdatasync; fsync the directory.
   *        crash → partial or whole journal over an untouched db: rollback
   *        restores the same bytes.
   *   4. image pages written (page 1 patched), file sized to the image,
   *      fdatasync. The image's checksum is recomputed while writing and
   *      must equal C' before the commit point.
   *        crash → hot journal: every opener rolls back to the old db.
   *   5. unlink the journal: THE COMMIT POINT; fsync the directory.
   *        crash → db = image: recover() sees C' = pending and installs
   *        the position (decision installed-pending).
   *   6. ROLLBACK the empty SQL transaction; cursor record 2 (G', S', C').
   * A failure before step 5 rolls back through SQLite's own playback of the
   * hot journal (our read-write connection plays it back at its next read).
   */
  install(image: InstallImage): InstallResult {
    const started = performance.now();
    if (this.#broken !== null) throw new ApplyFailedError(this.#broken);
    if (this.#dbFd !== null) this.#staged.reset(); // the journal install verifies as it writes
    const cursor = this.#requireCursor();
    if (this.#dbFd === null) {
      const linked = this.#installByLink(image, cursor, started);
      if (linked !== null) return linked;
      // Another process created the database file meanwhile: a reader may
      // hold it open, so it must change through the journal like any other.
      this.#open();
    }
    const fd = this.#fd;
    const lockWaitMs = this.#beginExclusive();
    // The install writes its own journal at the path (and deletes it at its
    // commit point); the next apply recreates the kept file.
    this.#journal.forget();
    let journalWritten = false;
    let pagesTouched = false;
    try {
      const fileBytes = fstatSync(fd).size;
      const oldPageSize = this.#pageSize || image.pageSize;
      const oldSize = Math.floor(fileBytes / oldPageSize);
      const lockPage = lockBytePage(oldPageSize);
      writeCursorSync(
        this.#data.cursorPath,
        { ...cursor, pending: { fromSeq: image.seq, seq: image.seq, checksum: image.checksum, durableSeq: image.seq, generation: image.generation } },
      );
      failpoint('replica.install.after-pending-cursor');

      // 3. The journal, in verified slices: header with the total record count, then records.
      const nonce = randomBytes(4).readUInt32BE(0);
      const spec = { pageSize: oldPageSize, originalPageCount: oldSize, nonce };
      const old: number[] = [];
      for (let p = 1; p <= oldSize; p++) if (p !== lockPage) old.push(p);
      const header = Uint8Array.from(encodeJournal({ ...spec, records: [] }));
      new DataView(header.buffer).setUint32(8, old.length, false);
      const jfd = openSync(this.#data.journalPath, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC, 0o644);
      journalWritten = true;
      let oldPage1: Uint8Array | undefined;
      try {
        writeFullySync(jfd, header);
        let at = header.length;
        const slice = Math.max(1, Math.floor(this.#data.verifyReadBytes / oldPageSize));
        for (let i = 0; i < old.length; i += slice) {
          const records = old.slice(i, i + slice).map((pgno) => ({ pgno, data: readPage(fd, pgno, oldPageSize) }));
          if (records[0]?.pgno === 1) oldPage1 = records[0].data;
          at += writevFully(jfd, [encodeJournal({ ...spec, records }).subarray(header.length)], at);
        }
        fdatasyncSync(jfd);
      } finally {
        closeSync(jfd); // the journal carries no locks: closing it is safe
      }
      fsyncDirSync(this.#data.dir);
      failpoint('replica.install.after-journal');

      // 4. The image, slice by slice, checksummed as written.
      pagesTouched = true;
      const counter = oldPage1 === undefined ? 1 : (Buffer.from(oldPage1.buffer, oldPage1.byteOffset, 100).readUInt32BE(24) + 1) >>> 0;
      const checksum = new DatabaseChecksum(image.pageCount);
      const ifd = openSync(image.imagePath, 'r');
      let bytesWritten = 0;
      try {
        const slicePages = Math.max(1, Math.floor(this.#data.verifyReadBytes / image.pageSize));
        const buf = Buffer.allocUnsafe(slicePages * image.pageSize);
        for (let first = 1; first <= image.pageCount; first += slicePages) {
          const count = Math.min(slicePages, image.pageCount - first + 1);
          const data = buf.subarray(0, count * image.pageSize);
          readFully(ifd, data, data.length, (first - 1) * image.pageSize);
          checksum.addImage(data, image.pageSize, first);
          if (first === 1) data.set(patchReplicaPage1(data.subarray(0, image.pageSize), counter), 0);
          bytesWritten += writevFully(fd, [data], (first - 1) * image.pageSize);
          failpoint('replica.install.mid-pages');
        }
      } finally {
        closeSync(ifd);
      }
      if (checksum.value !== image.checksum) {
        throw new DivergedError(`snapshot image of seq ${image.seq} checksums to ${checksum.value} while written, expected ${image.checksum}`);
      }
      ftruncateSync(fd, image.pageCount * image.pageSize);
      fdatasyncSync(fd);
      failpoint('replica.install.before-journal-delete');

      // 5. The commit point.
      unlinkSync(this.#data.journalPath);
      journalWritten = false;
      pagesTouched = false;
      this.#checksum = checksum;
      this.#checksumStale = false;
      this.#pageSize = image.pageSize;
      this.#cursor = {
        version: cursor.version,
        generation: image.generation,
        appliedSeq: image.seq,
        checksum: image.checksum,
        durableSeq: image.seq,
        pending: null,
        diverged: null,
      };
      fsyncDirSync(this.#data.dir);
      failpoint('replica.install.after-commit-before-cursor');
      // 6.
      this.#db.exec('ROLLBACK');
      writeCursorSync(this.#data.cursorPath, this.#cursor);
      this.#unsettled = false;
      return { cursor: this.#cursor, method: 'journal', journalRecords: old.length, bytesWritten, lockWaitMs, totalMs: performance.now() - started };
    } catch (err) {
      this.#rollbackInstall(journalWritten, pagesTouched, cursor);
      if (err instanceof WalwireError && err.code !== 'WALWIRE_ERR_FAILPOINT') throw err;
      throw new ApplyFailedError(`snapshot install of seq ${image.seq} failed and was rolled back: ${(err as Error).message}`, { cause: err });
    }
  }

  /**
   * Installs a snapshot into a namespace that has no database file yet (a
   * fresh replica) by linking the staged image in as the database: the
   * image is written to disk once, never copied, and needs no journal,
   * because before the link no process can have the database open (a
   * read-only open of a missing file fails, and a process that creates the
   * file meanwhile makes the link fail, see step 3). Returns null, having
   * changed no database, when the file exists by then.
   *
   * On-disk steps, and what a crash between them leaves:
   *   1. read the staged image back, checking each chunk against the
   *      manifest's CRC (or hashing it when no checksum came with it), and
   *      check the image's checksum; patch page 1 in place (rollback-journal
   *      mode, change counter 1); fdatasync the image.
   *        crash → no database, cursor unchanged; the staged chunk 0 no
   *        longer matches its CRC, so the bootstrap fetches the image again.
   *   2. remove a stray journal (without its database it is no one's, and
   *      next to the image it would look hot); cursor record 1: pending
   *      {G', S', C'}, directory fsync.
   *        crash → still no database: recover() sees the empty database's
   *        checksum = the cursor's (at-cursor) and drops the pending record.
   *   3. link(image, db.sqlite), which fails with EEXIST if the file exists;
   *      fsync the directory: THE COMMIT POINT.
   *        crash → db = image: recover() finds C' = pending and installs the
   *        position (installed-pending). Had the link not reached the disk,
   *        as after 2.
   *   4. unlink the staging name. crash before → the staged image is a
   *      second name of the database; namespace open removes it before
   *      anything opens the database (an fs open and close of it would
   *      drop the process's SQLite locks).
   *   5. open the kept descriptor and the SQLite connection; cursor record 2.
   * The link is atomic: a reader opens either no database or the whole image.
   */
  #installByLink(image: InstallImage, cursor: CursorRecord, started: number): InstallResult | null {
    const { dbPath, journalPath, cursorPath, dir } = this.#data;
    let checksum: DatabaseChecksum;
    try {
      // 1.
      checksum = this.#prepareStagedImage(image);
      // 2.
      this.#journal.forget();
      if (existsSync(journalPath)) unlinkSync(journalPath);
      writeCursorSync(cursorPath, { ...cursor, pending: { fromSeq: image.seq, seq: image.seq, checksum: image.checksum, durableSeq: image.seq, generation: image.generation } });
      failpoint('replica.install.link.after-pending-cursor');
      // 3. The commit point (made durable by the directory fsync below).
      try {
        linkSync(image.imagePath, dbPath);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'EEXIST') return null;
        throw err;
      }
    } catch (err) {
      // Nothing committed: forget the pending record (recover() would drop it too).
      try {
        writeCursorSync(cursorPath, { ...cursor, pending: null });
      } catch {
        // recover() decides by checksum at the next open.
      }
      if (err instanceof WalwireError && err.code !== 'WALWIRE_ERR_FAILPOINT') throw err;
      throw new ApplyFailedError(`snapshot install of seq ${image.seq} failed before its commit point: ${(err as Error).message}`, { cause: err });
    }
    this.#checksum = checksum;
    this.#checksumStale = false;
    this.#pageSize = image.pageSize;
    this.#cursor = { version: cursor.version, generation: image.generation, appliedSeq: image.seq, checksum: image.checksum, durableSeq: image.seq, pending: null, diverged: null };
    try {
      fsyncDirSync(dir);
      failpoint('replica.install.link.after-link');
      // 4.
      unlinkSync(image.imagePath);
      // 5.
      this.#open();
      failpoint('replica.install.link.before-cursor');
      writeCursorSync(cursorPath, this.#cursor);
      this.#unsettled = false;
    } catch (err) {
      this.#broken = `snapshot seq ${image.seq} was installed but a later step failed (${(err as Error).message}); reopen the namespace`;
      throw new ApplyFailedError(this.#broken, { cause: err });
    }
    return { cursor: this.#cursor, method: 'link', journalRecords: 0, bytesWritten: 0, lockWaitMs: 0, totalMs: performance.now() - started };
  }

  /** Step 1 of installByLink (staged-image.ts). */
  #prepareStagedImage(image: InstallImage): DatabaseChecksum {
    return this.#staged.prepare(image, this.#data.verifyReadBytes);
  }

  /** Verifies the chunks staged so far beside the transfer (staged-image.ts). */
  verifyStaged(chunks: StagedChunks): number {
    return this.#staged.verify(chunks);
  }

  /**
   * Undoes a failed install: release the lock, let SQLite play the hot
   * journal back through our read-write connection, then re-verify the
   * database against the unchanged cursor.
   */
  #rollbackInstall(journalWritten: boolean, pagesTouched: boolean, cursor: CursorRecord): void {
    try {
      if (this.#db.inTransaction) this.#db.exec('ROLLBACK');
      if (journalWritten && !pagesTouched) {
        unlinkSync(this.#data.journalPath);
        fsyncDirSync(this.#data.dir);
      } else if (pagesTouched) {
        this.#db.prepare('SELECT count(*) FROM sqlite_schema').get();
        if (existsSync(this.#data.journalPath)) throw new Error('the hot journal was not played back');
      }
      this.#verifyFull();
      this.#cursor = { ...cursor, pending: null };
      writeCursorSync(this.#data.cursorPath, this.#cursor);
      this.#checksumStale = this.#checksum.value !== cursor.checksum;
      if (this.#checksumStale) this.#broken = 'a failed snapshot install left the database at an unknown state; reopen the namespace';
    } catch (err) {
      this.#broken = `a failed snapshot install could not be rolled back (${(err as Error).message}); reopen the namespace to roll back its hot journal`;
    }
  }

  /**
   * Undoes a failed batch while the EXCLUSIVE lock is still held: exactly
   * what SQLite's hot-journal playback would do (restore the original pages,
   * truncate to the original size, sync, end the journal). A crash during
   * the undo leaves the journal hot, and the next opener finishes the
   * playback; the header is zeroed only after the restored pages are synced.
   */
  #abort(journalArmed: boolean, pagesTouched: boolean, oldSize: number, originals: readonly JournalRecord[], pageSize: number): void {
    try {
      if (pagesTouched) {
        const fd = this.#fd;
        for (const r of originals) writevFully(fd, [r.data], (r.pgno - 1) * pageSize);
        ftruncateSync(fd, oldSize * pageSize);
        fdatasyncSync(fd);
      }
      if (journalArmed) {
        this.#journal.disarm();
        this.#journal.sync();
      }
    } catch (err) {
      // The hot journal stays; the next opener (this daemon's recover at the
      // next start) plays it back. Until then, refuse to apply.
      this.#broken = `a failed apply could not be undone (${(err as Error).message}); reopen the namespace to roll back its hot journal`;
    } finally {
      if (this.#db.inTransaction) this.#db.exec('ROLLBACK');
    }
  }

  #noop(cursor: CursorRecord, skipped: number, started: number): ApplyResult {
    return {
      cursor,
      txnsApplied: 0,
      txnsSkipped: skipped,
      pagesWritten: 0,
      journalRecords: 0,
      bytesWritten: 0,
      lockWaitMs: 0,
      totalMs: performance.now() - started,
      diverged: null,
    };
  }

  #requireCursor(): CursorRecord {
    if (this.#cursor === null) throw new ApplyFailedError('apply worker used before recover');
    return this.#cursor;
  }

  #validate(txns: readonly Txn[], pageSize: number): void {
    const lockPage = lockBytePage(pageSize);
    let prev = 0;
    for (const t of txns) {
      if (!(t.seq > prev)) throw new InvalidTxnError(`batch seqs must increase strictly, seq ${t.seq} follows ${prev}`);
      prev = t.seq;
      if (!Number.isInteger(t.commitSize) || t.commitSize < 1) throw new InvalidTxnError(`seq ${t.seq} has commit size ${t.commitSize}`);
      for (const p of t.pages) {
        if (p.pgno < 1 || p.pgno > t.commitSize) throw new InvalidTxnError(`seq ${t.seq} page ${p.pgno} lies outside commit size ${t.commitSize}`);
        if (p.pgno === lockPage) throw new InvalidTxnError(`seq ${t.seq} writes the lock-byte page ${p.pgno}`);
      }
    }
  }

  /**
   * Merges the first `limit` txns (last version of a page wins), checking
   * each one's checksum against the primary's. Stops at the first mismatch:
   * that txn and every later one are left out and reported as diverged.
   */
  #plan(txns: readonly Txn[], pageSize: number, oldSize: number, limit: number, checksum: DatabaseChecksum | null): Plan {
    const pages = new Map<number, Uint8Array>();
    const lockPage = lockBytePage(pageSize);
    let size = oldSize;
    const kept: Txn[] = [];
    for (let i = 0; i < limit; i++) {
      const t = txns[i]!;
      const written = new Set<number>();
      for (const p of t.pages) {
        checksum?.setPage(p.pgno, p.data);
        pages.set(p.pgno, p.data);
        written.add(p.pgno);
      }
      if (t.commitSize < size) {
        checksum?.truncate(t.commitSize);
        for (const pgno of pages.keys()) if (pgno > t.commitSize) pages.delete(pgno);
      } else if (t.commitSize > size) {
        // Growth without a page image: the file extension reads as zeros.
        for (let p = size + 1; p <= t.commitSize; p++) {
          if (written.has(p) || p === lockPage) continue;
          const zero = new Uint8Array(pageSize);
          checksum?.setPage(p, zero);
          pages.set(p, zero);
        }
      }
      size = t.commitSize;
      if (checksum !== null && checksum.value !== t.checksum) {
        return {
          txns: kept,
          pages,
          newSize: size,
          checksum: kept[kept.length - 1]?.checksum ?? this.#requireCursor().checksum,
          diverged: {
            seq: t.seq,
            expected: t.checksum,
            actual: checksum.value,
            reason: `the database checksum after seq ${t.seq} differs from the primary's`,
            at: Date.now(),
          },
        };
      }
      kept.push(t);
    }
    // Without hashing (null), the kept txns were verified by an earlier pass.
    return { txns: kept, pages, newSize: size, checksum: kept[kept.length - 1]!.checksum, diverged: null };
  }

  /**
   * Takes SQLite's EXCLUSIVE lock. Returns the time waited.
   *
   * First, for up to lockSpinMs, attempts that do not wait (busy timeout 0)
   * every 50–150 µs: one that meets a reader's SHARED lock fails at once and
   * gives PENDING back (btree.c unlocks after a failed BEGIN), so readers
   * are not locked out between attempts, and a reader's query (microseconds)
   * has usually ended by the next one. A waiting attempt would hold PENDING
   * through SQLite's first 1 ms sleep (sqliteDefaultBusyCallback), and each
   * reader arriving meanwhile would back off in its own busy handler.
   *
   * Then attempts that wait up to lockAttemptMs each in SQLite's busy
   * handler while holding PENDING, so readers that are already in drain and
   * no new reader starts: a stream of readers, or a long one, cannot starve
   * the applier. Between attempts the wait is reported to the main thread,
   * which logs it and shows it in the namespace status.
   */
  #beginExclusive(): number {
    const start = performance.now();
    if (this.#data.lockSpinMs > 0 && this.#trySpin(start)) return performance.now() - start;
    for (;;) {
      try {
        this.#db.exec('BEGIN EXCLUSIVE');
        return performance.now() - start;
      } catch (err) {
        if (this.#db.inTransaction) this.#db.exec('ROLLBACK');
        const code = (err as { code?: string }).code;
        if (code !== 'SQLITE_BUSY' && code !== 'SQLITE_BUSY_SNAPSHOT' && code !== 'SQLITE_LOCKED') throw err;
        if (Atomics.load(this.#data.abortFlag, 0) === 1) {
          throw new ClosedError(`namespace closing: gave up waiting ${Math.round(performance.now() - start)} ms for readers' locks`);
        }
        this.#post({ kind: 'lock-wait', waitedMs: performance.now() - start });
      }
    }
  }

  /** The non-waiting attempts of #beginExclusive; true when one took the lock. */
  #trySpin(start: number): boolean {
    const db = this.#db;
    db.pragma('busy_timeout = 0');
    try {
      for (;;) {
        try {
          db.exec('BEGIN EXCLUSIVE');
          return true;
        } catch (err) {
          if (db.inTransaction) db.exec('ROLLBACK');
          const code = (err as { code?: string }).code;
          if (code !== 'SQLITE_BUSY' && code !== 'SQLITE_BUSY_SNAPSHOT' && code !== 'SQLITE_LOCKED') throw err;
        }
        if (performance.now() - start >= this.#data.lockSpinMs || Atomics.load(this.#data.abortFlag, 0) === 1) return false;
        Atomics.wait(SPIN_CELL, 0, 0, SPIN_PAUSE_MS);
      }
    } finally {
      db.pragma(`busy_timeout = ${this.#data.lockAttemptMs}`);
    }
  }
}

/** Pause asked for between the non-waiting lock attempts (see #beginExclusive); the kernel makes it about 50–150 µs. */
const SPIN_PAUSE_MS = 0.05;
/** Never notified: Atomics.wait on it is a sub-millisecond sleep. */
const SPIN_CELL = new Int32Array(new SharedArrayBuffer(4));

function unpack(batch: PackedBatch): Txn[] {
  const out: Txn[] = [];
  let k = 0;
  for (const t of batch.txns) {
    const pages: { pgno: number; data: Uint8Array }[] = [];
    for (let i = 0; i < t.pageCount; i++, k++) {
      pages.push({ pgno: batch.pgnos[k]!, data: batch.data.subarray(k * batch.pageSize, (k + 1) * batch.pageSize) });
    }
    out.push({ seq: t.seq, commitSize: t.commitSize, checksum: t.checksum, pages });
  }
  return out;
}

// ---------------------------------------------------------------------------
// Thread entry.
// ---------------------------------------------------------------------------

if (parentPort !== null && (workerData as { walwireApplyWorker?: boolean } | null)?.walwireApplyWorker === true) {
  const port = parentPort;
  const post = (event: WorkerEvent): void => port.postMessage(event);
  let worker: ApplyWorker | undefined;
  let initError: unknown;
  try {
    worker = new ApplyWorker(workerData as ApplyWorkerData, post);
  } catch (err) {
    initError = err;
  }
  port.on('message', (req: WorkerRequest) => {
    try {
      if (worker === undefined) throw initError;
      let result: unknown;
      switch (req.kind) {
        case 'recover':
          result = worker.recover();
          break;
        case 'apply':
          result = worker.apply(req.generation, req.batch, req.durableCap, req.settle);
          break;
        case 'install':
          result = worker.install(req.image);
          break;
        case 'verify-staged':
          result = worker.verifyStaged(req.chunks);
          break;
        case 'settle':
          result = worker.settle();
          break;
        case 'set-durable':
          result = worker.setDurable(req.durableSeq);
          break;
        case 'close':
          worker.close();
          result = null;
          break;
      }
      post({ kind: 'reply', id: req.id, ok: true, result });
      if (req.kind === 'close') port.close();
    } catch (err) {
      const e = err as { name?: string; code?: string; message?: string };
      post({
        kind: 'reply',
        id: req.id,
        ok: false,
        error: { name: e?.name ?? 'Error', code: typeof e?.code === 'string' ? e.code : 'WALWIRE_ERR_APPLY_FAILED', message: e?.message ?? String(err) },
      });
    }
  });
}
