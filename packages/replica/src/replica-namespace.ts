/**
 * One replicated namespace on the replica: its database file, cursor, apply
 * worker and bounded apply queue.
 *
 * `apply(generation, txns)` queues transactions; the namespace merges queued
 * calls into batches of up to maxBatchTxns seqs / maxBatchBytes page bytes
 * and commits each batch with one journal (apply-worker.ts), which spreads
 * the syncs over many primary transactions. A call's promise settles when
 * all of its seqs are committed (or rejected). Calls beyond maxQueuedBytes
 * wait for room: that is the stream's back-pressure.
 *
 * States: ready → (diverged | failed) → closed. A diverged namespace never
 * applies again (invariant 4: never build on a diverged copy); it emits
 * `snapshot-request`, which the streaming layer answers with a snapshot.
 */
import { EventEmitter } from 'node:events';
import { mkdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import {
  ApplyFailedError,
  ClosedError,
  DivergedError,
  InvalidTxnError,
  type NamespacePosition,
  SnapshotRequiredError,
  type Txn,
  assertNamespace,
  isGeneration,
} from '@walwire/protocol';
import { type Logger, removeStaleTemps } from '@walwire/runtime';
import { Applier } from './applier.js';
import { BlobWriter, type BlobWriterStatus } from './blob-writer.js';
import type { ApplyResult, InstallImage, RecoverResult, StagedChunks } from './apply-messages.js';
import type { CursorRecord, DivergedState } from './cursor-store.js';
import { keptDatabaseFdIfExists } from './database-file.js';
import { DurabilityTracker } from './durability-tracker.js';
import type { ResolvedReplicaOptions } from './options.js';
import { STAGED_IMAGE, STAGING_DIR } from './snapshot-installer.js';

/** File names inside a namespace's directory. */
export const DATABASE_FILE = 'db.sqlite';
export const CURSOR_FILE = 'cursor.json';
/** Directory of the namespace's blobs (BlobDirectory layout). */
export const BLOBS_DIR = 'blobs';

export interface ReplicaPosition {
  /** null until the namespace holds a copy. */
  readonly generation: string | null;
  /** Last seq whose pages are committed in the database. */
  readonly appliedSeq: number;
  /** Last seq whose blob events are all durably saved; ≤ appliedSeq. */
  readonly durableSeq: number;
  /** Database checksum at appliedSeq. */
  readonly checksum: string;
}

export type NamespaceState = 'ready' | 'diverged' | 'failed' | 'closed';

export interface StartupReport {
  /** How the database state was decided against the cursor (ApplyWorker.recover). */
  readonly decision: RecoverResult['decision'];
  /** A hot journal was found and rolled back. */
  readonly hadJournal: boolean;
  readonly verifyBytes: number;
  readonly verifyMs: number;
}

export interface LastApply {
  readonly seq: number;
  readonly txns: number;
  readonly pages: number;
  readonly bytes: number;
  readonly lockWaitMs: number;
  readonly ms: number;
  /** ms since the epoch. */
  readonly at: number;
}

export interface NamespaceStatus {
  readonly ns: string;
  readonly state: NamespaceState;
  readonly position: ReplicaPosition;
  readonly queuedTxns: number;
  readonly queuedBytes: number;
  readonly applying: boolean;
  /** How long the batch in flight has waited for readers' locks so far; 0 when not waiting. */
  readonly lockWaitMs: number;
  /** Longest lock wait of any batch since open. */
  readonly maxLockWaitMs: number;
  readonly batches: number;
  readonly txnsApplied: number;
  readonly lastApply: LastApply | null;
  readonly diverged: DivergedState | null;
  readonly error: string | null;
  readonly startup: StartupReport;
  /** Blob saves: in flight, totals, failures, the latched gap. */
  readonly blobs: BlobWriterStatus;
}

export interface AppliedEvent extends ReplicaPosition {
  readonly ns: string;
  readonly txns: number;
  readonly pages: number;
  readonly bytes: number;
  readonly lockWaitMs: number;
  readonly ms: number;
}

export interface DivergedEvent extends DivergedState {
  readonly ns: string;
}

export interface SnapshotRequestEvent {
  readonly ns: string;
  readonly reason: string;
  /** The applied seq the database is at (its content is not trusted once diverged). */
  readonly appliedSeq: number;
}

export interface NamespaceEvents {
  applied: [AppliedEvent];
  durable: [{ readonly ns: string; readonly durableSeq: number }];
  'apply-delayed': [{ readonly ns: string; readonly waitedMs: number }];
  diverged: [DivergedEvent];
  'snapshot-request': [SnapshotRequestEvent];
  failed: [{ readonly ns: string; readonly error: Error }];
  /** A snapshot replaced the database (bootstrap, new generation, divergence). */
  installed: [InstalledEvent];
}

export interface InstalledEvent extends ReplicaPosition {
  readonly ns: string;
  readonly pageCount: number;
  readonly bytes: number;
  readonly lockWaitMs: number;
  readonly ms: number;
}

interface QueueItem {
  readonly generation: string;
  readonly txns: readonly Txn[];
  readonly bytes: number;
  readonly resolve: (position: ReplicaPosition) => void;
  readonly reject: (err: Error) => void;
}

export class ReplicaNamespace extends EventEmitter<NamespaceEvents> {
  readonly name: string;
  readonly dir: string;
  /** The replica database; readers open it read-only with a busy timeout. */
  readonly dbPath: string;
  readonly #options: ResolvedReplicaOptions;
  readonly #log: Logger;
  readonly #applier: Applier;
  readonly #durability: DurabilityTracker;
  /** Saves streamed blobs; its releases move the durable cursor. */
  readonly blobs: BlobWriter;
  #durableSync: Promise<unknown> | null = null;
  #durableAgain = false;
  readonly #startup: StartupReport;
  #cursor: CursorRecord;
  #state: NamespaceState;
  #error: Error | null = null;
  readonly #queue: QueueItem[] = [];
  #queuedBytes = 0;
  #queuedTxns = 0;
  #room: (() => void)[] = [];
  #applying = false;
  #lockWaitMs = 0;
  #maxLockWaitMs = 0;
  #batches = 0;
  #txnsApplied = 0;
  #lastApply: LastApply | null = null;
  #idle: Promise<void> = Promise.resolve();
  #idleResolve: (() => void) | null = null;
  #settleScheduled = false;

  private constructor(name: string, dir: string, options: ResolvedReplicaOptions, applier: Applier, recovered: RecoverResult) {
    super();
    this.name = name;
    this.dir = dir;
    this.dbPath = join(dir, DATABASE_FILE);
    this.#options = options;
    this.#log = options.logger.child({ ns: name });
    this.#applier = applier;
    this.#cursor = recovered.cursor;
    this.#durability = new DurabilityTracker(recovered.cursor.appliedSeq, recovered.cursor.durableSeq);
    this.#startup = { decision: recovered.decision, hadJournal: recovered.hadJournal, verifyBytes: recovered.verifyBytes, verifyMs: recovered.verifyMs };
    this.#state = recovered.cursor.diverged === null ? 'ready' : 'diverged';
    applier.onLockWait = (waitedMs) => this.#onLockWait(waitedMs);
    this.blobs = new BlobWriter({ ns: name, dir: join(dir, BLOBS_DIR), durability: this.#durability, logger: this.#log, stallTimeoutMs: options.blobStallTimeoutMs, generation: () => this.#cursor.generation });
    this.blobs.on('release', () => this.scheduleDurableSync());
  }

  /**
   * Writes the durable seq the tracker allows, one write at a time: releases
   * that arrive during a write are covered by one more write after it.
   */
  scheduleDurableSync(): void {
    if (this.#durableSync !== null) {
      this.#durableAgain = true;
      return;
    }
    if (this.#state !== 'ready') return;
    this.#durableSync = this.syncDurable()
      .catch((err: unknown) => this.#log.warn({ err: (err as Error).message }, 'durable cursor write failed; it is retried at the next release'))
      .finally(() => {
        this.#durableSync = null;
        if (this.#durableAgain) {
          this.#durableAgain = false;
          this.scheduleDurableSync();
        }
      });
  }

  /**
   * Opens (creating when missing) the namespace under `options.dataDir`:
   * keeps the database descriptor, starts the apply worker, rolls back any
   * hot journal, verifies the full database checksum and decides the
   * applied position. A diverged namespace opens in state `diverged` and
   * emits `snapshot-request` right after open.
   */
  static async open(name: string, options: ResolvedReplicaOptions): Promise<ReplicaNamespace> {
    assertNamespace(name);
    const dir = join(options.dataDir, name);
    mkdirSync(dir, { recursive: true });
    removeStaleTemps(dir);
    const dbPath = join(dir, DATABASE_FILE);
    dropStagedLink(dir, dbPath);
    // No descriptor while the file does not exist: the first apply creates
    // it, or the first snapshot becomes it (ApplyWorker.installByLink).
    const fd = keptDatabaseFdIfExists(dbPath);
    const applier = new Applier({
      dbPath,
      journalPath: `${dbPath}-journal`,
      cursorPath: join(dir, CURSOR_FILE),
      dir,
      fd,
      lockAttemptMs: options.lockAttemptMs,
      lockSpinMs: options.lockSpinMs,
      verifyReadBytes: options.verifyReadBytes,
    });
    let recovered: RecoverResult;
    try {
      recovered = await applier.recover();
    } catch (err) {
      await applier.close();
      throw err;
    }
    const ns = new ReplicaNamespace(name, dir, options, applier, recovered);
    const mbps = recovered.verifyBytes / 1e6 / Math.max(recovered.verifyMs / 1000, 1e-9);
    ns.#log.info(
      { decision: recovered.decision, hadJournal: recovered.hadJournal, appliedSeq: recovered.cursor.appliedSeq, verifyBytes: recovered.verifyBytes, verifyMs: Math.round(recovered.verifyMs), verifyMBps: Math.round(mbps) },
      'replica namespace opened',
    );
    if (recovered.cursor.diverged !== null) {
      const diverged = recovered.cursor.diverged;
      setImmediate(() => ns.#announceDiverged(diverged));
    }
    return ns;
  }

  get state(): NamespaceState {
    return this.#state;
  }

  get position(): ReplicaPosition {
    const c = this.#cursor;
    return { generation: c.generation, appliedSeq: c.appliedSeq, durableSeq: c.durableSeq, checksum: c.checksum };
  }

  /** This namespace's entry in a HELLO message. */
  get helloPosition(): NamespacePosition {
    const c = this.#cursor;
    return { ns: this.name, generation: c.generation, appliedSeq: c.appliedSeq, durableSeq: c.durableSeq, checksum: c.generation === null ? null : c.checksum };
  }

  /** The durable-cursor tracker the blob writer holds back (hold/release/latchGap). */
  get durability(): DurabilityTracker {
    return this.#durability;
  }

  get status(): NamespaceStatus {
    return {
      ns: this.name,
      state: this.#state,
      position: this.position,
      queuedTxns: this.#queuedTxns,
      queuedBytes: this.#queuedBytes,
      applying: this.#applying,
      lockWaitMs: this.#lockWaitMs,
      maxLockWaitMs: this.#maxLockWaitMs,
      batches: this.#batches,
      txnsApplied: this.#txnsApplied,
      lastApply: this.#lastApply,
      diverged: this.#cursor.diverged,
      error: this.#error?.message ?? null,
      startup: this.#startup,
      blobs: this.blobs.status,
    };
  }

  /**
   * Queues `txns` (ordered by seq, of one generation) and resolves with the
   * position once all of them are committed. Seqs at or below the applied
   * seq are skipped, so re-sending after a reconnect is harmless.
   *
   * Rejects with DivergedError when a checksum mismatches (the seqs before
   * it are still committed), SnapshotRequiredError for another generation,
   * InvalidTxnError for a malformed batch, ApplyFailedError on I/O failure
   * (the batch is rolled back), ClosedError after close.
   */
  async apply(generation: string, txns: readonly Txn[]): Promise<ReplicaPosition> {
    this.#checkUsable();
    if (!isGeneration(generation)) throw new InvalidTxnError(`generation must be 32 hex digits, received ${JSON.stringify(generation)}`);
    let bytes = 0;
    let prev = -1;
    for (const t of txns) {
      if (!(t.seq > prev)) throw new InvalidTxnError(`txns must be ordered by strictly increasing seq, seq ${t.seq} follows ${prev}`);
      prev = t.seq;
      for (const p of t.pages) bytes += p.data.length;
    }
    if (txns.length === 0) return this.position;
    while (this.#queuedBytes > 0 && this.#queuedBytes + bytes > this.#options.maxQueuedBytes) {
      await new Promise<void>((resolve) => this.#room.push(resolve));
      this.#checkUsable();
    }
    return new Promise<ReplicaPosition>((resolve, reject) => {
      this.#queue.push({ generation, txns, bytes, resolve, reject });
      this.#queuedBytes += bytes;
      this.#queuedTxns += txns.length;
      this.#pump();
    });
  }

  /**
   * Replaces the database with a verified snapshot image staged on disk
   * (bootstrap, generation change, divergence): one journal transaction, so
   * readers switch atomically (ApplyWorker.install). When the namespace has
   * no database file yet (a fresh replica), the image file itself becomes
   * the database by a link, and its own name is removed
   * (ApplyWorker.installByLink). Queued batches are rejected with
   * SnapshotRequiredError; the batch in flight finishes first. A diverged
   * namespace becomes ready again.
   */
  async installSnapshot(image: InstallImage): Promise<ReplicaPosition> {
    if (this.#state === 'closed') throw new ClosedError(`namespace ${this.name} is closed`);
    if (this.#state === 'failed') throw new ApplyFailedError(`namespace ${this.name} failed: ${this.#error?.message ?? 'unknown error'}; reopen it`);
    const replaced = new SnapshotRequiredError(`namespace ${this.name} is installing a snapshot of ${image.generation} at seq ${image.seq}`);
    for (const item of this.#queue.splice(0)) item.reject(replaced);
    this.#queuedBytes = 0;
    this.#queuedTxns = 0;
    while (this.#applying) await this.#idle.catch(() => {});
    this.#applying = true;
    if (this.#idleResolve === null) this.#idle = new Promise((resolve) => (this.#idleResolve = resolve));
    try {
      const result = await this.#applier.install(image);
      this.#cursor = result.cursor;
      this.#durability.reset(result.cursor.appliedSeq, result.cursor.durableSeq);
      this.#state = 'ready';
      this.#error = null;
      const event: InstalledEvent = {
        ns: this.name,
        ...this.position,
        pageCount: image.pageCount,
        bytes: result.bytesWritten,
        lockWaitMs: result.lockWaitMs,
        ms: result.totalMs,
      };
      const { ns: _ns, ...fields } = event; // the namespace logger already carries ns
      this.#log.info({ ...fields, method: result.method, journalRecords: result.journalRecords }, 'snapshot installed');
      this.emit('installed', event);
      this.emit('applied', { ...event, txns: 0, pages: image.pageCount });
      return this.position;
    } catch (err) {
      if (err instanceof ApplyFailedError) {
        this.#error = err;
        this.#state = 'failed';
        this.#log.error({ err }, 'snapshot install failed; namespace stopped');
        this.emit('failed', { ns: this.name, error: err });
      }
      throw err;
    } finally {
      this.#applying = false;
      for (const wake of this.#room.splice(0)) wake();
      const done = this.#idleResolve;
      this.#idleResolve = null;
      done?.();
    }
  }

  /**
   * Verifies and hashes, on the apply worker, the chunks of a snapshot image
   * staged so far (ApplyWorker.verifyStaged). Resolves with the number of
   * chunks verified; rejects with DivergedError when one does not match its
   * CRC as read back.
   */
  verifyStaged(chunks: StagedChunks): Promise<number> {
    if (this.#state === 'closed') return Promise.reject(new ClosedError(`namespace ${this.name} is closed`));
    return this.#applier.verifyStaged(chunks);
  }

  /** Resolves when the queue is empty and no batch is in flight. */
  whenIdle(): Promise<void> {
    return this.#applying || this.#queue.length > 0 ? this.#idle : Promise.resolve();
  }

  /** Writes the durable seq the tracker allows now (after a blob release or a STREAM_MARK). */
  async syncDurable(): Promise<ReplicaPosition> {
    this.#checkUsable();
    const target = this.#durability.noteApplied(this.#cursor.appliedSeq);
    if (target !== this.#cursor.durableSeq) {
      this.#cursor = await this.#applier.setDurable(target);
      this.emit('durable', { ns: this.name, durableSeq: this.#cursor.durableSeq });
    }
    return this.position;
  }

  /** Rejects queued calls, waits for the batch in flight, and stops the worker. The database descriptor stays open. */
  async close(): Promise<void> {
    if (this.#state === 'closed') return;
    const queued = this.#queue.splice(0);
    for (const item of queued) item.reject(new ClosedError(`namespace ${this.name} closed`));
    this.#queuedBytes = 0;
    this.#queuedTxns = 0;
    // A batch still waiting for a reader's lock gives up rather than hold the close.
    this.#applier.abortLockWait();
    await this.#idle.catch(() => {});
    this.#state = 'closed';
    for (const wake of this.#room.splice(0)) wake();
    await this.#applier.close();
  }

  #checkUsable(): void {
    if (this.#state === 'closed') throw new ClosedError(`namespace ${this.name} is closed`);
    if (this.#state === 'diverged') {
      const d = this.#cursor.diverged;
      throw new DivergedError(`namespace ${this.name} diverged at seq ${d?.seq ?? '?'}; a snapshot is required before applying`);
    }
    if (this.#state === 'failed') throw new ApplyFailedError(`namespace ${this.name} failed: ${this.#error?.message ?? 'unknown error'}; reopen it`);
  }

  #pump(): void {
    if (this.#applying || this.#queue.length === 0 || this.#state !== 'ready') return;
    const items: QueueItem[] = [this.#queue.shift()!];
    let txnCount = items[0]!.txns.length;
    let bytes = items[0]!.bytes;
    while (this.#queue.length > 0) {
      const next = this.#queue[0]!;
      if (next.generation !== items[0]!.generation) break;
      if (txnCount + next.txns.length > this.#options.maxBatchTxns || bytes + next.bytes > this.#options.maxBatchBytes) break;
      items.push(this.#queue.shift()!);
      txnCount += next.txns.length;
      bytes += next.bytes;
    }
    this.#applying = true;
    if (this.#idleResolve === null) this.#idle = new Promise((resolve) => (this.#idleResolve = resolve));
    void this.#run(items, txnCount, bytes);
  }

  async #run(items: QueueItem[], txnCount: number, bytes: number): Promise<void> {
    // Calls may overlap (a re-send); keep seqs strictly increasing within the batch.
    const txns: Txn[] = [];
    for (const item of items) for (const t of item.txns) if (txns.length === 0 || t.seq > txns[txns.length - 1]!.seq) txns.push(t);
    // One journal holds at most maxBatchTxns seqs; a single call larger than that is split.
    let error: Error | null = null;
    try {
      for (let i = 0; i < txns.length && error === null; ) {
        let j = i;
        let chunkBytes = 0;
        while (j < txns.length && j - i < this.#options.maxBatchTxns) {
          const tb = txns[j]!.pages.reduce((n, p) => n + p.data.length, 0);
          if (j > i && chunkBytes + tb > this.#options.maxBatchBytes) break;
          chunkBytes += tb;
          j++;
        }
        // The post-commit cursor record is deferred (ApplyWorker.apply, step 8)
        // and written by #settleWhenIdle unless more work arrives first.
        const result = await this.#applier.apply(items[0]!.generation, txns.slice(i, j), this.#durability.capFor(txns[j - 1]!.seq), false);
        this.#afterBatch(result);
        if (result.diverged !== null) error = new DivergedError(`seq ${result.diverged.seq}: ${result.diverged.reason} (expected ${result.diverged.expected}, computed ${result.diverged.actual})`);
        i = j;
      }
    } catch (err) {
      error = err as Error;
      if (err instanceof ApplyFailedError) {
        this.#error = err;
        this.#state = 'failed';
        this.#log.error({ err }, 'apply failed; namespace stopped');
        this.emit('failed', { ns: this.name, error: err });
      }
    }
    this.#queuedBytes -= bytes;
    this.#queuedTxns -= txnCount;
    const applied = this.#cursor.appliedSeq;
    for (const item of items) {
      const last = item.txns[item.txns.length - 1]!.seq;
      if (error === null || last <= applied) item.resolve(this.position);
      else item.reject(error);
    }
    if (this.#state !== 'ready') {
      const stopped = error ?? new ClosedError(`namespace ${this.name} is ${this.#state}`);
      for (const item of this.#queue.splice(0)) item.reject(stopped);
      this.#queuedBytes = 0;
      this.#queuedTxns = 0;
    }
    this.#applying = false;
    this.#lockWaitMs = 0;
    for (const wake of this.#room.splice(0)) wake();
    if (this.#queue.length > 0 && this.#state === 'ready') {
      // Optionally a pause between back-to-back batches (options.applyGapMs);
      // at 0, one turn of the event loop, so that what has arrived joins the batch.
      this.#applying = true;
      const next = (): void => {
        this.#applying = false;
        if (this.#queue.length > 0 && this.#state === 'ready') {
          this.#pump();
          return;
        }
        // close() or installSnapshot() emptied the queue during the pause
        // and waits for idle: nothing else would resolve it.
        const done = this.#idleResolve;
        this.#idleResolve = null;
        done?.();
        this.#settleWhenIdle();
      };
      if (this.#options.applyGapMs === 0) setImmediate(next);
      else setTimeout(next, this.#options.applyGapMs);
    } else {
      const done = this.#idleResolve;
      this.#idleResolve = null;
      done?.();
      this.#settleWhenIdle();
    }
  }

  /**
   * Writes the deferred post-commit cursor record once the caller has had a
   * turn of the event loop to queue more work: a caller applying seq after
   * seq (await, apply, await …) never pays for it between applies.
   */
  #settleWhenIdle(): void {
    if (this.#settleScheduled) return;
    this.#settleScheduled = true;
    setImmediate(() => {
      this.#settleScheduled = false;
      if (this.#applying || this.#queue.length > 0 || this.#state === 'closed') return;
      this.#applier.settle().catch((err: unknown) => this.#log.warn({ err }, 'deferred cursor write failed; recovery decides by checksum'));
    });
  }

  #afterBatch(result: ApplyResult): void {
    const before = this.#cursor;
    this.#cursor = result.cursor;
    if (result.lockWaitMs >= this.#options.lockWaitWarnMs) {
      this.#log.warn({ lockWaitMs: Math.round(result.lockWaitMs), seq: result.cursor.appliedSeq }, 'apply resumed after waiting for readers');
    }
    this.#maxLockWaitMs = Math.max(this.#maxLockWaitMs, result.lockWaitMs);
    if (result.txnsApplied > 0) {
      this.#batches++;
      this.#txnsApplied += result.txnsApplied;
      this.#durability.noteApplied(result.cursor.appliedSeq);
      this.#durability.noteDurable(result.cursor.durableSeq);
      this.#lastApply = {
        seq: result.cursor.appliedSeq,
        txns: result.txnsApplied,
        pages: result.pagesWritten,
        bytes: result.bytesWritten,
        lockWaitMs: result.lockWaitMs,
        ms: result.totalMs,
        at: Date.now(),
      };
      this.#log.debug(this.#lastApply, 'batch applied');
      this.emit('applied', {
        ns: this.name,
        ...this.position,
        txns: result.txnsApplied,
        pages: result.pagesWritten,
        bytes: result.bytesWritten,
        lockWaitMs: result.lockWaitMs,
        ms: result.totalMs,
      });
      if (result.cursor.durableSeq !== before.durableSeq) this.emit('durable', { ns: this.name, durableSeq: result.cursor.durableSeq });
      // The batch recorded the cap of its dispatch; a hold released or a
      // barrier lifted while it ran allows more, which must be written too
      // (else the durable seq waits for the next apply or release).
      if (this.#durability.durableSeq > result.cursor.durableSeq) this.scheduleDurableSync();
    }
    if (result.diverged !== null) this.#announceDiverged(result.diverged);
  }

  #announceDiverged(d: DivergedState): void {
    this.#state = 'diverged';
    this.#log.error({ seq: d.seq, expected: d.expected, actual: d.actual, reason: d.reason }, 'replica diverged; applying stopped, snapshot requested');
    this.emit('diverged', { ns: this.name, ...d });
    this.emit('snapshot-request', { ns: this.name, reason: `diverged at seq ${d.seq}: ${d.reason}`, appliedSeq: this.#cursor.appliedSeq });
  }

  #onLockWait(waitedMs: number): void {
    this.#lockWaitMs = waitedMs;
    this.#maxLockWaitMs = Math.max(this.#maxLockWaitMs, waitedMs);
    if (waitedMs >= this.#options.lockWaitWarnMs) {
      this.#log.warn({ waitedMs: Math.round(waitedMs) }, 'apply delayed: readers hold the database lock');
      this.emit('apply-delayed', { ns: this.name, waitedMs });
    }
  }
}

/**
 * A crash inside a link install (ApplyWorker.installByLink, step 4) can
 * leave the staged image as a second name of the database. Reading it as
 * staging would open and close a descriptor of the database file, which
 * drops the process's SQLite locks (design.md), so the staging goes before
 * anything opens the database. It holds nothing else: the image was complete.
 */
function dropStagedLink(dir: string, dbPath: string): void {
  try {
    const staged = statSync(join(dir, STAGING_DIR, STAGED_IMAGE));
    const db = statSync(dbPath);
    if (staged.ino !== db.ino || staged.dev !== db.dev) return;
  } catch {
    return;
  }
  rmSync(join(dir, STAGING_DIR), { recursive: true, force: true });
}
