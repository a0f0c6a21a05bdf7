/**
 * The replication log of one namespace: append-only segment files with a
 * CRC-32 on every record (format in log-record.ts), group commit, reads by
 * seq range, retention, and crash recovery. docs/architecture.md explains
 * why segment files rather than a SQLite log database.
 *
 * Files in `dir`:
 *   NNNNNNNNNN.wwlog  segments, numbered in creation order; the newest one's
 *                     generation is the current generation
 *   .sentinel         exists while the log is open; found at start, it means
 *                     the last run did not close cleanly, so every segment is
 *                     verified (CRCs and seq continuity), not only the tail
 *
 * Durability: a record is acknowledged (its promise resolves, the namespace
 * emits it) only once it is durable: the active segment is opened O_DSYNC,
 * so a write returns when its data is (write + fdatasync in one call, one
 * thread-pool round trip). Appends queued while a write is in flight go out
 * together in the next one (group commit).
 *
 * Crash behaviour, append: write(batch, O_DSYNC) → acknowledge.
 * - Crash before the write returns: any prefix or
 *   subset of the batch's blocks may be on disk. At start the first record
 *   that is short or fails its CRC ends the log; it and everything after it
 *   is cut off (torn tail). None of it was acknowledged, so no reader ever
 *   saw those seqs, and the tailer re-reads their frames from the WAL
 *   position of the last surviving record.
 * - Crash after the write returned: the records survive; the seq counter restarts
 *   after the last one, so a seq is never reused within a generation.
 */
import { constants, existsSync, mkdirSync, readdirSync, statSync, unlinkSync } from 'node:fs';
import { open, readFile, truncate, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { ClosedError, LogCorruptError, SnapshotRequiredError, type PageImage, type Txn } from '@walwire/protocol';
import { failpointAsync, fsyncDir, removeStaleTemps, writeFileDurable, type Logger } from '@walwire/runtime';
import { LogTailCache } from './log-tail-cache.js';
import {
  decodeSegmentHeader,
  encodeBlobRecord,
  encodeSegmentHeader,
  encodeTxnRecord,
  txnRecordBytes,
  readRecord,
  type BlobDeleteRecord,
  type BlobPutRecord,
  type LogRecord,
  type RecordState,
  type SegmentHeader,
  type TxnRecord,
  type WalPosition,
} from './log-record.js';

const SEGMENT_NAME = /^(\d{10})\.wwlog$/;
const SENTINEL = '.sentinel';
/**
 * Size of the arena txn records are encoded into (ReplicationLog.#staging):
 * the records of one tailer pass at the default walReadBytes (up to about
 * 2 MiB of frames) fit with room to spare.
 */
const STAGING_BYTES = 4 * 1024 * 1024;

interface Segment {
  readonly segno: number;
  readonly path: string;
  readonly header: SegmentHeader;
  readonly headerBytes: number;
  /** Byte offset of each record, index seq - firstSeq; null until indexed. */
  offsets: number[] | null;
  /** Bytes of valid data (header + records). */
  size: number;
}

interface Pending {
  readonly buf: Buffer;
  /** `buf` lies in the staging arena (see ReplicationLog.#staging). */
  readonly staged: boolean;
  readonly state: RecordState;
  readonly record: LogRecord;
  readonly resolve: (r: LogRecord) => void;
  readonly reject: (e: unknown) => void;
}

/** A new generation's starting point: the database state at seq 0. */
export interface GenerationStart {
  readonly generation: string;
  readonly checksum: string;
  readonly commitSize: number;
  readonly pageSize: number;
  readonly wal: WalPosition;
  readonly reason: string;
}

export interface ReplicationLogOptions {
  readonly dir: string;
  /** Roll to a new segment past this size. */
  readonly segmentBytes: number;
  /**
   * Encoded bytes of the newest durable records kept in memory, so that a
   * replica that keeps up reads them without touching the disk.
   * @default 4194304 (4 MiB)
   */
  readonly tailCacheBytes?: number;
  readonly logger: Logger;
}

/** What recovery found at open. */
export interface LogRecovery {
  readonly unclean: boolean;
  readonly verifiedSegments: number;
  readonly discardedBytes: number;
  readonly removedSegments: number;
}

export class ReplicationLog {
  readonly #dir: string;
  readonly #segmentBytes: number;
  readonly #logger: Logger;
  #segments: Segment[] = [];
  #active: FileHandle | undefined;
  /** State after the last durable record (or the segment base when none). */
  #head: RecordState | undefined;
  /** State of the last record queued for append (it may not be durable yet). */
  #lastQueued: RecordState | undefined;
  #pageSize = 0;
  #reason = '';
  #nextSeq = 1;
  #pending: Pending[] = [];
  #flushing: Promise<void> = Promise.resolve();
  #flushRunning = false;
  /**
   * Set while startGeneration runs. Appends made meanwhile wait for it and
   * then take their seq in the new generation: reserved before it, they
   * would carry the old generation's seq and state into the new one's
   * segments (or into the segment being closed), and its tail cache.
   */
  #generationChange: Promise<void> | null = null;
  #failed: unknown;
  #closed = false;
  /**
   * Txn records are encoded into this reused arena instead of a new buffer
   * each. At 50 MB/s of writes the fresh record buffers were the primary's
   * largest allocation stream (about 1 GB per 20 s), and between garbage
   * collections the allocator kept much of it as resident memory.
   * The arena is refilled from its start only when no record encoded in it
   * is still queued or being written (#staged counts those), so bytes that
   * are not yet durable are never overwritten. A record that does not fit
   * gets its own buffer.
   */
  #staging: Buffer | undefined;
  #stagingUsed = 0;
  #staged = 0;
  /** performance.now() of the last append (0: none since open). */
  #lastAppendAt = 0;
  #recovery: LogRecovery = { unclean: false, verifiedSegments: 0, discardedBytes: 0, removedSegments: 0 };
  /**
   * The newest durable records of the current generation (see
   * log-tail-cache.ts). Only records made durable by this process enter it,
   * it is emptied when the generation changes, and every record read from it
   * is verified (CRC) like a read from the segment.
   */
  readonly #tail: LogTailCache;

  private constructor(options: ReplicationLogOptions) {
    this.#dir = options.dir;
    this.#segmentBytes = options.segmentBytes;
    this.#tail = new LogTailCache(options.tailCacheBytes ?? 4 * 1024 * 1024);
    this.#logger = options.logger;
  }

  /** Opens (creating when absent) and recovers the log in `options.dir`. */
  static async open(options: ReplicationLogOptions): Promise<ReplicationLog> {
    const log = new ReplicationLog(options);
    await log.#recover();
    return log;
  }

  get recovery(): LogRecovery {
    return this.#recovery;
  }

  /** Current generation id; undefined for a log that never started one. */
  get generation(): string | undefined {
    return this.#segments.at(-1)?.header.generation;
  }

  /** Why the current generation started. */
  get reason(): string {
    return this.#reason;
  }

  get pageSize(): number {
    return this.#pageSize;
  }

  /** performance.now() of the last append since open, or 0. */
  get lastAppendAt(): number {
    return this.#lastAppendAt;
  }

  /** Bytes of reused memory held: the record arena and the log cache's ring. */
  get bufferBytes(): number {
    return (this.#staging?.length ?? 0) + this.#tail.ringBytes;
  }

  /**
   * Gives back the reused memory (see bufferBytes) while no append is in
   * flight; each piece is allocated again by the next append that needs it.
   * The log cache is emptied: readers then read those records from the
   * segments.
   */
  releaseBuffers(): void {
    if (this.#staged === 0) {
      this.#staging = undefined;
      this.#stagingUsed = 0;
    }
    if (this.#pending.length === 0 && !this.#flushRunning) this.#tail.release();
  }

  /** State after the last durable seq; seq 0 is the generation base. */
  get head(): RecordState | undefined {
    return this.#head;
  }

  /** First seq still held (retention); headSeq + 1 when the log holds none. */
  get firstSeq(): number {
    return this.#segments[0]?.header.firstSeq ?? 1;
  }

  /** The generation's base: the state at seq 0 (from the oldest segment's header). */
  get base(): SegmentHeader['base'] | undefined {
    return this.#segments[0]?.header.base;
  }

  /** The segments, oldest first: where each starts, its size, and when it was created (retention). */
  get segments(): readonly { readonly firstSeq: number; readonly bytes: number; readonly createdAt: number }[] {
    return this.#segments.map((s) => ({ firstSeq: s.header.firstSeq, bytes: s.size, createdAt: s.header.createdAt }));
  }

  /** Seq the next append receives. */
  get nextSeq(): number {
    return this.#nextSeq;
  }

  /**
   * Starts a new generation whose seq 0 is `start`, then removes every
   * segment of older generations.
   * Crash behaviour: the new segment appears whole or not at all
   * (writeFileDurable: temp, fsync, rename, dir fsync). Crash before the
   * rename: the old generation is still current. Crash after it, before or
   * during the removal of old segments: at open the newest segment's
   * generation wins and the leftovers are removed.
   *
   * Failure behaviour: until the new segment is open for appends, a failure
   * leaves the old generation current in memory, and the new segment is
   * removed again (if that fails too, the log refuses appends until
   * `reopen`: a restart would find the new generation, and the retry's
   * startGeneration writes over that segment, same number). After
   * that, the switch is one synchronous step, and failing to remove the old
   * segments only leaves leftovers that the next open removes.
   */
  async startGeneration(start: GenerationStart): Promise<void> {
    this.#assertOpen();
    while (this.#generationChange !== null) await this.#generationChange;
    this.#assertOpen();
    let done = (): void => {};
    this.#generationChange = new Promise<void>((resolve) => (done = resolve));
    try {
      await this.#startGeneration(start);
    } finally {
      this.#generationChange = null;
      done();
    }
  }

  async #startGeneration(start: GenerationStart): Promise<void> {
    await this.#idle();
    const segno = (this.#segments.at(-1)?.segno ?? 0) + 1;
    const header: SegmentHeader = {
      version: 1,
      generation: start.generation,
      firstSeq: 1,
      base: { checksum: start.checksum, commitSize: start.commitSize, pageSize: start.pageSize, wal: start.wal },
      reason: start.reason,
      createdAt: Date.now(),
    };
    const segment = await this.#createSegment(segno, header);
    let active: FileHandle;
    try {
      await failpointAsync('primary.log.generation.open');
      active = await openForAppend(segment.path);
    } catch (err) {
      try {
        await unlink(segment.path);
        await fsyncDir(this.#dir);
      } catch (cleanup) {
        this.#failed ??= cleanup;
      }
      throw err;
    }
    // The switch, in one synchronous step.
    const old = this.#segments;
    const oldActive = this.#active;
    this.#tail.clear();
    this.#segments = [segment];
    this.#active = active;
    this.#pageSize = start.pageSize;
    this.#reason = start.reason;
    this.#head = { seq: 0, checksum: start.checksum, commitSize: start.commitSize, wal: start.wal };
    this.#lastQueued = undefined;
    this.#nextSeq = 1;
    await oldActive?.close().catch(() => undefined);
    try {
      await failpointAsync('primary.log.generation.remove-old');
      for (const s of old) await unlink(s.path).catch(() => undefined);
      if (old.length > 0) await fsyncDir(this.#dir);
    } catch (err) {
      this.#logger.warn({ dir: this.#dir, err: (err as Error).message }, 'old generation segments not yet removed; the next open removes them');
    }
  }

  /**
   * Appends one seq of transactions; resolves once durable. The resolved
   * record's page data views memory that appends made after it resolved
   * may reuse: copy what must outlive the current task (the 'record'
   * listeners run in it).
   */
  appendTxn(txn: Omit<Txn, 'seq'>, commits: number, wal: WalPosition): Promise<TxnRecord> {
    if (this.#generationChange !== null) {
      // Encoded after this call returns: copy the pages now, since the
      // caller may reuse their memory (the tailer's read buffer) by then.
      const owned = { ...txn, pages: txn.pages.map((p) => ({ pgno: p.pgno, data: new Uint8Array(p.data) })) };
      return this.#generationChange.then(() => this.appendTxn(owned, commits, wal));
    }
    const seq = this.#reserve();
    const state: RecordState = { seq, checksum: txn.checksum, commitSize: txn.commitSize, wal };
    // The returned record's pages are views into the encoded record, never
    // the caller's: the tailer reuses its read buffer for the next read.
    // The encoded record may lie in the staging arena, which an append made
    // after this one resolves may overwrite (see above).
    const full: Txn = { ...txn, seq };
    const pages: PageImage[] = [];
    const into = this.#stage(txnRecordBytes(txn.pages.length, this.#pageSize));
    let buf: Buffer;
    try {
      buf = encodeTxnRecord(full, commits, this.#pageSize, wal, pages, into);
    } catch (err) {
      if (into !== undefined) this.#staged--;
      // Nothing ran between the reservation and here (no await), so the
      // seq is still the newest one: give it back, or it would be a gap.
      this.#nextSeq = seq;
      throw err;
    }
    const record: TxnRecord = { kind: 'txn', seq, generation: this.generation!, txn: { ...full, pages }, commits };
    return this.#enqueue(buf, state, record, into !== undefined) as Promise<TxnRecord>;
  }

  /** Room for `bytes` in the staging arena, or undefined when it has none. */
  #stage(bytes: number): Buffer | undefined {
    if (this.#staged === 0) this.#stagingUsed = 0;
    if (bytes > STAGING_BYTES - this.#stagingUsed) return undefined;
    this.#staging ??= Buffer.allocUnsafeSlow(STAGING_BYTES);
    const into = this.#staging.subarray(this.#stagingUsed, this.#stagingUsed + bytes);
    this.#stagingUsed += bytes;
    this.#staged++;
    return into;
  }

  /** Appends a blob-put event as its own seq; the database state is unchanged. */
  appendBlobPut(event: { blobId: string; size: number; sha256: string }): Promise<BlobPutRecord> {
    if (this.#generationChange !== null) return this.#generationChange.then(() => this.appendBlobPut(event));
    const seq = this.#reserve();
    const state = this.#stateForBlob(seq);
    const time = Date.now();
    const record: BlobPutRecord = { kind: 'blob-put', seq, generation: this.generation!, ...event, time, checksum: state.checksum, commitSize: state.commitSize };
    return this.#enqueue(encodeBlobRecord({ kind: 'blob-put', ...event }, state, time), state, record) as Promise<BlobPutRecord>;
  }

  /** Appends a blob-delete event as its own seq. */
  appendBlobDelete(blobId: string): Promise<BlobDeleteRecord> {
    if (this.#generationChange !== null) return this.#generationChange.then(() => this.appendBlobDelete(blobId));
    const seq = this.#reserve();
    const state = this.#stateForBlob(seq);
    const time = Date.now();
    const record: BlobDeleteRecord = { kind: 'blob-delete', seq, generation: this.generation!, blobId, time, checksum: state.checksum, commitSize: state.commitSize };
    return this.#enqueue(encodeBlobRecord({ kind: 'blob-delete', blobId }, state, time), state, record) as Promise<BlobDeleteRecord>;
  }

  /**
   * Durable records with from ≤ seq ≤ to (default: the head), read lazily in
   * order. Throws WALWIRE_ERR_SNAPSHOT_REQUIRED when `from` is below the
   * retained range, WALWIRE_ERR_LOG_CORRUPT when a record fails its CRC.
   */
  async *read(from: number, to?: number): AsyncGenerator<LogRecord> {
    const generation = this.generation;
    const head = this.#head?.seq ?? 0;
    const last = Math.min(to ?? head, head);
    if (from < this.firstSeq) {
      throw new SnapshotRequiredError(`seq ${from} is no longer in the log of generation ${generation}; the first retained seq is ${this.firstSeq}`);
    }
    let seq = Math.max(from, 1);
    while (seq <= last) {
      const cached = this.#cached(seq, generation!);
      if (cached !== undefined) {
        yield cached;
        seq++;
        continue;
      }
      const segment = this.#segmentFor(seq);
      if (segment === undefined || segment.header.generation !== generation) {
        throw new SnapshotRequiredError(`seq ${seq} of generation ${generation} is no longer in the log`);
      }
      const offsets = await this.#index(segment);
      const handle = await open(segment.path, 'r').catch((err: unknown) => {
        throw new SnapshotRequiredError(`segment holding seq ${seq} is gone (${(err as Error).message})`);
      });
      try {
        while (seq <= last && seq - segment.header.firstSeq < offsets.length && !this.#tail.has(generation, seq)) {
          const i = seq - segment.header.firstSeq;
          const start = offsets[i]!;
          const end = i + 1 < offsets.length ? offsets[i + 1]! : segment.size;
          const buf = Buffer.allocUnsafe(end - start);
          const { bytesRead } = await handle.read(buf, 0, buf.length, start);
          const r = readRecord(buf.subarray(0, bytesRead), 0, segment.header.generation);
          if (r.status !== 'ok' || r.decoded.record.seq !== seq) {
            throw new LogCorruptError(`${segment.path}: record for seq ${seq} at offset ${start} failed verification (${r.status === 'torn' ? r.reason : r.status})`);
          }
          yield r.decoded.record;
          seq++;
        }
      } finally {
        await handle.close();
      }
    }
  }

  /** Collects `read(from, to)` into an array. */
  async readRange(from: number, to?: number): Promise<LogRecord[]> {
    const out: LogRecord[] = [];
    for await (const r of this.read(from, to)) out.push(r);
    return out;
  }

  /**
   * Retention: removes whole segments whose every seq is below `seq`. The
   * newest segment is always kept. Returns the number removed.
   * Crash behaviour: segments are unlinked oldest first, then the directory
   * is fsynced; a crash in between leaves a contiguous suffix, which is a
   * valid log (the first seq is just lower than asked).
   */
  async truncateBefore(seq: number): Promise<number> {
    this.#assertOpen();
    let removed = 0;
    while (this.#segments.length > 1 && this.#segments[1]!.header.firstSeq <= seq) {
      const s = this.#segments.shift()!;
      await unlink(s.path).catch(() => undefined);
      removed++;
    }
    if (removed > 0) await fsyncDir(this.#dir);
    return removed;
  }

  /** True after a failed append: the log refuses appends until `reopen()`. */
  get failed(): boolean {
    return this.#failed !== undefined;
  }

  /**
   * After a failed append (a write or fsync error): accepts appends again
   * from the last durable record. Whatever the failed batch may have left
   * in the active segment past that record was never acknowledged, and
   * after an fsync error the page cache cannot be trusted to match the
   * disk, so those bytes are cut off (truncate, then fdatasync) rather than
   * scanned. Every byte before the cut was made durable by an earlier
   * successful fdatasync. Throws (and stays failed) when the cut itself
   * fails; the caller retries later.
   */
  async reopen(): Promise<void> {
    await this.#idle();
    if (this.#failed === undefined || this.#closed) return;
    await this.#active?.close().catch(() => undefined);
    this.#active = undefined;
    const segment = this.#segments.at(-1);
    if (segment !== undefined) {
      await truncate(segment.path, segment.size);
      const handle = await openForAppend(segment.path);
      try {
        await handle.datasync();
      } catch (err) {
        await handle.close().catch(() => undefined);
        throw err;
      }
      this.#active = handle;
    }
    // Seqs reserved by the failed appends were never acknowledged: reuse them.
    this.#nextSeq = (this.#head?.seq ?? 0) + 1;
    this.#tail.clear();
    this.#failed = undefined;
    this.#logger.warn({ dir: this.#dir, seq: this.#head?.seq ?? 0 }, 'replication log reopened after a failed append');
  }

  /**
   * Waits for every append made before the call to be durable, including
   * appends waiting for a generation change to finish (they take their seq
   * in the new generation once it has started).
   */
  async flush(): Promise<void> {
    await this.#settleGenerationChange();
    await this.#idle();
    if (this.#failed !== undefined) throw this.#failed;
  }

  /**
   * Returns once no generation change is under way and the appends that
   * waited for it have been queued: their continuations were registered on
   * the change's promise before this one's, so they run first.
   */
  async #settleGenerationChange(): Promise<void> {
    while (this.#generationChange !== null) await this.#generationChange;
  }

  /**
   * Clean close: flushes, closes the segment, removes the sentinel.
   * Crash before the sentinel's removal is durable: the next open verifies
   * every segment, which costs time but loses nothing.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    await this.#settleGenerationChange();
    await this.#idle();
    this.#closed = true;
    await this.#active?.close();
    this.#active = undefined;
    if (this.#failed === undefined) {
      await unlink(join(this.#dir, SENTINEL)).catch(() => undefined);
      await fsyncDir(this.#dir);
    }
  }

  // -------------------------------------------------------------------------

  /** The record at `seq` from the tail cache (a copy), verified; undefined when not cached. */
  #cached(seq: number, generation: string): LogRecord | undefined {
    const buf = this.#tail.get(generation, seq);
    if (buf === undefined) return undefined;
    const r = readRecord(buf, 0, generation);
    if (r.status !== 'ok' || r.decoded.record.seq !== seq) {
      throw new LogCorruptError(`${this.#dir}: cached record for seq ${seq} failed verification (${r.status === 'torn' ? r.reason : r.status})`);
    }
    return r.decoded.record;
  }

  #assertOpen(): void {
    if (this.#closed) throw new ClosedError(`replication log ${this.#dir} is closed`);
    if (this.#failed !== undefined) throw this.#failed;
  }

  #reserve(): number {
    this.#assertOpen();
    if (this.generation === undefined) throw new LogCorruptError(`replication log ${this.#dir} has no generation; start one first`);
    return this.#nextSeq++;
  }

  /**
   * A blob event leaves the database as the record before it did. That
   * record may be queued, being flushed (out of #pending, not yet #head),
   * or durable: #lastQueued covers all three.
   */
  #stateForBlob(seq: number): RecordState {
    const last = this.#lastQueued !== undefined && this.#lastQueued.seq === seq - 1 ? this.#lastQueued : this.#head!;
    return { ...last, seq };
  }

  #enqueue(buf: Buffer, state: RecordState, record: LogRecord, staged = false): Promise<LogRecord> {
    this.#lastQueued = state;
    this.#lastAppendAt = performance.now();
    return new Promise<LogRecord>((resolve, reject) => {
      this.#pending.push({ buf, state, record, staged, resolve, reject });
      if (!this.#flushRunning) {
        this.#flushRunning = true;
        this.#flushing = this.#flushLoop();
      }
    });
  }

  async #idle(): Promise<void> {
    while (this.#flushRunning) await this.#flushing;
  }

  /** Group commit: everything queued goes out in one durable (O_DSYNC) write. */
  async #flushLoop(): Promise<void> {
    for (;;) {
      // Checked and cleared synchronously, so an append never finds the
      // flag set by a loop that has already decided to stop.
      if (this.#pending.length === 0) {
        this.#flushRunning = false;
        return;
      }
      const batch = this.#pending.splice(0);
      try {
        if (this.#failed !== undefined) throw this.#failed;
        let bytes = 0;
        for (const p of batch) bytes += p.buf.length;
        let segment = this.#segments.at(-1)!;
        if (segment.size > segment.headerBytes && segment.size + bytes > this.#segmentBytes) {
          segment = await this.#roll(batch[0]!.state.seq);
        }
        const start = segment.size;
        // O_DSYNC: each write returns once durable, as write + fdatasync
        // would, with one thread-pool round trip instead of two.
        await writeAll(this.#active!, batch.map((p) => p.buf), start);
        // Crash here: written (durable unless the write failed part-way,
        // when recovery cuts whatever is torn), not yet acknowledged.
        await failpointAsync('primary.log.append');
        // Crash here: durable but not yet acknowledged; the records count.
        await failpointAsync('primary.log.append.after-sync');
        let at = start;
        for (const p of batch) {
          segment.offsets?.push(at);
          at += p.buf.length;
        }
        segment.size = at;
        this.#head = batch.at(-1)!.state;
        for (const p of batch) this.#tail.add(this.generation!, p.state.seq, p.buf);
        for (const p of batch) this.#settle(p);
      } catch (err) {
        // A failed write or fsync leaves the file in an unknown state
        // (fsync errors are not retryable): the log refuses further appends
        // until it is reopened and recovered.
        this.#failed ??= err;
        for (const p of batch) this.#settle(p, err);
        for (const p of this.#pending.splice(0)) this.#settle(p, err);
      }
    }
  }

  /** Resolves (or rejects with `err`) one append; its staging bytes are free from here on. */
  #settle(p: Pending, err?: unknown): void {
    if (p.staged) this.#staged--;
    if (err === undefined) p.resolve(p.record);
    else p.reject(err);
  }

  /**
   * Starts the next segment of the current generation at `firstSeq`.
   * Crash behaviour: the new segment appears whole (writeFileDurable) or
   * not at all; an empty newest segment is a valid log whose head is its
   * header's base state.
   */
  async #roll(firstSeq: number): Promise<Segment> {
    const prev = this.#segments.at(-1)!;
    const header: SegmentHeader = {
      version: 1,
      generation: prev.header.generation,
      firstSeq,
      base: { ...this.#head!, pageSize: this.#pageSize },
      reason: '',
      createdAt: Date.now(),
    };
    const segment = await this.#createSegment(prev.segno + 1, header);
    await this.#active!.close();
    this.#active = await openForAppend(segment.path);
    this.#segments.push(segment);
    return segment;
  }

  async #createSegment(segno: number, header: SegmentHeader): Promise<Segment> {
    const path = join(this.#dir, `${String(segno).padStart(10, '0')}.wwlog`);
    const bytes = encodeSegmentHeader(header);
    await writeFileDurable(path, bytes);
    return { segno, path, header, headerBytes: bytes.length, offsets: [], size: bytes.length };
  }

  #segmentFor(seq: number): Segment | undefined {
    for (let i = this.#segments.length - 1; i >= 0; i--) {
      if (this.#segments[i]!.header.firstSeq <= seq) return this.#segments[i];
    }
    return undefined;
  }

  async #index(segment: Segment): Promise<number[]> {
    if (segment.offsets !== null) return segment.offsets;
    const scan = await this.#scan(segment, false);
    if (scan.validEnd !== segment.size) {
      throw new LogCorruptError(`${segment.path}: ${scan.reason} at offset ${scan.validEnd}, before the end of a sealed segment`);
    }
    segment.offsets = scan.offsets;
    return scan.offsets;
  }

  /** Reads a whole segment, checking every CRC and the seq order. */
  async #scan(segment: Segment, decodePages: boolean): Promise<{ offsets: number[]; validEnd: number; fileSize: number; last: RecordState | undefined; reason: string }> {
    const buf = await readFile(segment.path);
    const offsets: number[] = [];
    let at = segment.headerBytes;
    let last: RecordState | undefined;
    let reason = 'end';
    for (;;) {
      const r = readRecord(buf, at, segment.header.generation, decodePages);
      if (r.status === 'end') break;
      if (r.status !== 'ok') {
        reason = r.status === 'short' ? 'incomplete record' : r.reason;
        break;
      }
      const expected = segment.header.firstSeq + offsets.length;
      if (r.decoded.state.seq !== expected) {
        throw new LogCorruptError(`${segment.path}: record at offset ${at} has seq ${r.decoded.state.seq}, expected ${expected}`);
      }
      offsets.push(at);
      last = r.decoded.state;
      at = r.next;
    }
    return { offsets, validEnd: at, fileSize: buf.length, last, reason };
  }

  async #recover(): Promise<void> {
    mkdirSync(this.#dir, { recursive: true });
    removeStaleTemps(this.#dir);
    const sentinel = join(this.#dir, SENTINEL);
    const unclean = existsSync(sentinel);
    let removed = 0;
    const names = readdirSync(this.#dir).filter((n) => SEGMENT_NAME.test(n)).sort();
    const segments: Segment[] = [];
    for (const name of names) {
      const path = join(this.#dir, name);
      const head = await readHead(path);
      const decoded = decodeSegmentHeader(head);
      if (decoded === undefined) {
        // Segments are created whole by rename, so an invalid header is damage.
        throw new LogCorruptError(`${path}: segment header is missing or fails its CRC-32`);
      }
      // size is the file's: a sealed segment is not scanned after a clean
      // stop, and #index checks its scan against this size (it was once
      // the header's length, which made every later read of a sealed
      // segment fail with WALWIRE_ERR_LOG_CORRUPT after a clean restart).
      // Scanned segments get their verified end below.
      segments.push({ segno: Number(SEGMENT_NAME.exec(name)![1]), path, header: decoded.header, headerBytes: decoded.length, offsets: null, size: statSync(path).size });
    }
    const current = segments.at(-1)?.header.generation;
    // Leftovers of an interrupted startGeneration: older generations.
    const kept = segments.filter((s) => s.header.generation === current);
    for (const s of segments) {
      if (s.header.generation !== current) {
        unlinkSync(s.path);
        removed++;
      }
    }
    if (removed > 0) await fsyncDir(this.#dir);
    let verified = 0;
    let discarded = 0;
    for (let i = 0; i < kept.length; i++) {
      const s = kept[i]!;
      const isLast = i === kept.length - 1;
      if (!isLast && !unclean) continue;
      const scan = await this.#scan(s, false);
      verified++;
      const next = kept[i + 1];
      const lastSeq = s.header.firstSeq + scan.offsets.length - 1;
      if (next !== undefined && next.header.firstSeq !== lastSeq + 1) {
        throw new LogCorruptError(`${next.path}: first seq ${next.header.firstSeq} does not follow seq ${lastSeq} of ${s.path}`);
      }
      if (scan.validEnd < scan.fileSize) {
        if (!isLast) throw new LogCorruptError(`${s.path}: ${scan.reason} at offset ${scan.validEnd}, before the end of a sealed segment`);
        // Torn tail: never acknowledged (see the header comment); cut it off.
        discarded = scan.fileSize - scan.validEnd;
        await truncate(s.path, scan.validEnd);
        const fh = await open(s.path, 'r+');
        await fh.datasync();
        await fh.close();
        this.#logger.warn({ segment: s.path, discardedBytes: discarded, reason: scan.reason }, 'replication log: discarded torn tail');
      }
      s.offsets = scan.offsets;
      s.size = scan.validEnd;
      if (isLast) {
        const base = s.header.base;
        this.#head = scan.last ?? { seq: s.header.firstSeq - 1, checksum: base.checksum, commitSize: base.commitSize, wal: base.wal };
        this.#nextSeq = this.#head.seq + 1;
      }
    }
    this.#segments = kept;
    const first = kept[0];
    if (first !== undefined) {
      this.#pageSize = first.header.base.pageSize;
      this.#reason = first.header.firstSeq === 1 ? first.header.reason : '';
      this.#active = await openForAppend(kept.at(-1)!.path);
    }
    // The sentinel marks "open": written durably before any append.
    await writeFileDurable(sentinel, `${process.pid}\n`);
    this.#recovery = { unclean, verifiedSegments: verified, discardedBytes: discarded, removedSegments: removed };
    if (unclean) this.#logger.warn({ dir: this.#dir, ...this.#recovery }, 'replication log: unclean shutdown detected, log verified');
  }
}

async function readHead(path: string): Promise<Buffer> {
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.alloc(64 * 1024);
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    return buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

/** The active segment: every write through it is durable when it returns (O_DSYNC). */
function openForAppend(path: string): Promise<FileHandle> {
  return open(path, constants.O_RDWR | constants.O_DSYNC);
}

async function writeAll(handle: FileHandle, buffers: Buffer[], position: number): Promise<void> {
  let bufs = buffers;
  let pos = position;
  while (bufs.length > 0) {
    const { bytesWritten } = await handle.writev(bufs, pos);
    pos += bytesWritten;
    let skip = bytesWritten;
    const rest: Buffer[] = [];
    for (const b of bufs) {
      if (skip >= b.length) {
        skip -= b.length;
        continue;
      }
      rest.push(skip > 0 ? b.subarray(skip) : b);
      skip = 0;
    }
    bufs = rest;
  }
}
