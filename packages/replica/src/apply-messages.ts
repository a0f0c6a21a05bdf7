/**
 * Messages between the applier (main thread, applier.ts) and the apply
 * worker (apply-worker.ts): the worker's start data, requests, results and
 * events. Types only; both sides import them.
 */
import type { CursorRecord, DivergedState } from './cursor-store.js';

export interface ApplyWorkerData {
  readonly dbPath: string;
  readonly journalPath: string;
  readonly cursorPath: string;
  readonly dir: string;
  /**
   * The kept read-write descriptor of dbPath, or null when the file did not
   * exist at open (a fresh namespace: it is created by the first apply, or
   * is the first snapshot's image, linked in).
   */
  readonly fd: number | null;
  readonly lockAttemptMs: number;
  /** See ReplicaOptions.lockSpinMs. */
  readonly lockSpinMs: number;
  readonly verifyReadBytes: number;
  /** Set to 1 by the main thread to abandon a lock wait (namespace closing). */
  readonly abortFlag: Int32Array;
  /** [ready flag, fd]: the main thread's answer to 'fd-needed' (the kept descriptor, or -1). */
  readonly fdCell: Int32Array;
}

/**
 * A batch as it crosses to the worker: transaction headers, and every page's
 * number and bytes packed into two transferred buffers (no per-page clone).
 * The pages of txn i are the next `txns[i].pageCount` entries.
 */
export interface PackedBatch {
  readonly txns: readonly { seq: number; commitSize: number; checksum: string; pageCount: number }[];
  readonly pgnos: Uint32Array;
  readonly data: Uint8Array;
  readonly pageSize: number;
}

export type WorkerRequest =
  | { readonly id: number; readonly kind: 'recover' }
  | {
      readonly id: number;
      readonly kind: 'apply';
      readonly generation: string;
      readonly batch: PackedBatch;
      readonly durableCap: number;
      /** Write cursor record 2 now (nothing else is queued), rather than defer it. */
      readonly settle: boolean;
    }
  | { readonly id: number; readonly kind: 'install'; readonly image: InstallImage }
  | { readonly id: number; readonly kind: 'verify-staged'; readonly chunks: StagedChunks }
  | { readonly id: number; readonly kind: 'settle' }
  | { readonly id: number; readonly kind: 'set-durable'; readonly durableSeq: number }
  | { readonly id: number; readonly kind: 'close' };

export interface RecoverResult {
  readonly cursor: CursorRecord;
  /** Checksum of the database as read from disk. */
  readonly checksum: string;
  readonly pageSize: number;
  readonly pageCount: number;
  /** A hot journal was found (and rolled back by SQLite). */
  readonly hadJournal: boolean;
  /** How the database state was decided. */
  readonly decision: 'at-cursor' | 'committed-pending' | 'installed-pending' | 'diverged' | 'latched-diverged';
  readonly verifyBytes: number;
  readonly verifyMs: number;
}

export interface ApplyResult {
  readonly cursor: CursorRecord;
  /** Transactions committed by this batch (after skipping already-applied seqs). */
  readonly txnsApplied: number;
  readonly txnsSkipped: number;
  readonly pagesWritten: number;
  readonly journalRecords: number;
  readonly bytesWritten: number;
  readonly lockWaitMs: number;
  readonly totalMs: number;
  /** Set when a txn's checksum did not match: the batch was cut before it. */
  readonly diverged: DivergedState | null;
}

/** A verified snapshot image staged on disk, to replace the whole database. */
export interface InstallImage {
  readonly generation: string;
  readonly seq: number;
  readonly checksum: string;
  readonly pageSize: number;
  readonly pageCount: number;
  /**
   * The staged image file. Not a SQLite file until installByLink links it in
   * as the database: until then opening and closing it is safe.
   */
  readonly imagePath: string;
  /** The manifest's chunk geometry and CRC-32 per chunk: the image is checked against them as read back. */
  readonly chunkPages?: number;
  readonly chunkCrcs?: readonly number[];
  /**
   * Set when every chunk was verified and hashed while it was staged
   * (ApplyWorker.verifyStaged with this id): a link install then needs no
   * pass over the image of its own. Without it the image is read back,
   * checked and hashed at install time.
   */
  readonly stagingId?: number;
}

/** The chunks of a snapshot image staged so far, to verify (ApplyWorker.verifyStaged). */
export interface StagedChunks {
  /** New for each staging (each SNAPSHOT_BEGIN): a new id starts over at chunk 0. */
  readonly stagingId: number;
  readonly imagePath: string;
  readonly pageSize: number;
  readonly pageCount: number;
  readonly chunkPages: number;
  readonly chunkCrcs: readonly number[];
  /** Chunks 0..upTo-1 are written to imagePath. */
  readonly upTo: number;
}

export interface InstallResult {
  readonly cursor: CursorRecord;
  /** 'link': the image became the database file (fresh namespace); 'journal': written into it as one transaction. */
  readonly method: 'link' | 'journal';
  readonly journalRecords: number;
  readonly bytesWritten: number;
  readonly lockWaitMs: number;
  readonly totalMs: number;
}

export type WorkerEvent =
  | { readonly kind: 'reply'; readonly id: number; readonly ok: true; readonly result: unknown }
  | { readonly kind: 'reply'; readonly id: number; readonly ok: false; readonly error: { name: string; code: string; message: string } }
  | { readonly kind: 'lock-wait'; readonly waitedMs: number }
  /** The worker needs the database's kept descriptor (the file did not exist at open): the main thread opens it and answers in fdCell. */
  | { readonly kind: 'fd-needed' };
