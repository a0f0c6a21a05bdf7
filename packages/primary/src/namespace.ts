/**
 * PrimaryNamespace: one replicated database. It glues the WalTailer, the
 * ReplicationLog and the incremental DatabaseChecksum together, owns the
 * generation decision (invariant 6), and runs its checkpoint procedure for
 * the Checkpointer.
 *
 * Every step that reads the WAL or appends to the log runs under one
 * per-namespace mutex, so the tailer state, the checksum and the log head
 * always describe the same position.
 */
import Database from 'better-sqlite3';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import {
  ClosedError,
  DatabaseChecksum,
  DatabaseCorruptError,
  EMPTY_CHECKSUM,
  TimeoutError,
  UnknownNamespaceError,
  WAL_FRAME_HEADER_BYTES,
  WalFormatError,
  initialWalState,
  scanWalFrames,
  type PageImage,
  type WalCommit,
  type WalScanState,
} from '@walwire/protocol';
import { failpointAsync, type Logger } from '@walwire/runtime';
import { BlobStore } from './blob-store.js';
import type { CheckpointStatus, Checkpointer, RunCheckpoint } from './checkpointer.js';
import { checksumDatabaseImage, databaseDescriptor } from './database-file.js';
import { NO_WAL_POSITION, type LogRecord, type WalPosition } from './log-record.js';
import type { ResolvedPrimaryOptions } from './options.js';
import { ReplicationLog } from './replication-log.js';
import type { SnapshotSource } from './snapshot-sender.js';
import { SnapshotStore } from './snapshot-store.js';
import { DiscontinuityError, WalTailer, type TailRead } from './wal-tailer.js';

/** A position in a namespace's log: the checksum is the database checksum after `seq`. */
export interface Position {
  readonly generation: string;
  readonly seq: number;
  readonly checksum: string;
}

export interface GenerationEvent {
  readonly ns: string;
  readonly generation: string;
  readonly previous: string | null;
  readonly reason: string;
  /** Database state at seq 0 of the new generation. */
  readonly checksum: string;
  readonly commitSize: number;
  readonly pageSize: number;
}

export type NamespaceState = 'starting' | 'running' | 'failed' | 'closed';

export interface NamespaceStatus {
  readonly name: string;
  readonly path: string;
  readonly state: NamespaceState;
  readonly generation: string | null;
  readonly headSeq: number;
  readonly firstSeq: number;
  readonly checksum: string | null;
  readonly commitSize: number;
  readonly walBytes: number;
  /** Memory held for reuse under load: the tailer's read buffer, the log's record arena and the log cache (options.idleReleaseMs). */
  readonly bufferBytes: number;
  readonly lastError: string | null;
  readonly checkpoint: CheckpointStatus | null;
  /** Live blobs of the namespace; null when it failed to open. */
  readonly blobs: { readonly count: number; readonly bytes: number } | null;
}

export interface ResetResult {
  readonly elapsedMs: number;
  readonly generation: string;
  readonly previous: string | null;
}

export interface NamespaceHooks {
  readonly onRecord: (ns: string, record: LogRecord) => void;
  readonly onGeneration: (event: GenerationEvent) => void;
  readonly onError: (ns: string, error: Error) => void;
}

/** Commits per read from which the tailer counts as busy (see #onChange). */
const BUSY_COMMITS = 8;

/** Longest wait of a bootstrap for the image of a generation that just started (see openSnapshot). */
const SNAPSHOT_WAIT_MS = 60_000;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function walPosition(state: WalScanState | undefined): WalPosition {
  if (state === undefined) return NO_WAL_POSITION;
  return { salt1: state.header.salt1, salt2: state.header.salt2, offset: state.offset, chain: [state.checksum[0], state.checksum[1]] };
}

/** The cumulative checksum stored in a frame's header (§4.1: bytes 16–23). */
function frameChain(commit: WalCommit): [number, number] {
  const page = commit.frames.at(-1)!.page;
  const view = new DataView(page.buffer, page.byteOffset - WAL_FRAME_HEADER_BYTES, WAL_FRAME_HEADER_BYTES);
  return [view.getUint32(16, false), view.getUint32(20, false)];
}

export class PrimaryNamespace {
  readonly name: string;
  readonly path: string;
  /** The namespace's blob store, `<dataDir>/<name>/blobs`; its events go to this log. */
  readonly blobs: BlobStore;
  readonly #options: ResolvedPrimaryOptions;
  readonly #logger: Logger;
  readonly #hooks: NamespaceHooks;
  readonly #checkpointer: Checkpointer;
  readonly #control: Database.Database;
  readonly #tailer: WalTailer;
  readonly #log: ReplicationLog;
  readonly #snapshots: SnapshotStore;
  readonly #fd: number;
  #checksum = new DatabaseChecksum(16);
  #commitSize = 0;
  #pageSize: number;
  #state: NamespaceState = 'starting';
  #lastError: string | null = null;
  #mutex: Promise<unknown> = Promise.resolve();
  #polling = false;
  #dirty = false;
  #framesSinceCheckpoint = 0;
  #lastSealAt = 0;
  /** The current pin was taken under the seal (see #onChange). */
  #sealedPin = false;
  #walBytes = 0;
  #retryTimer: NodeJS.Timeout | undefined;
  /** The rebuild of a damaged snapshot image under way, or null. */
  #snapshotRebuild: Promise<void> | null = null;
  #retryDelay: number;
  #emitNext = 1;
  readonly #ready = new Map<number, LogRecord>();
  /** The reset-replication in progress (checkpoint jobs skip meanwhile). */
  #resetting: Promise<ResetResult> | undefined;

  private constructor(
    name: string,
    path: string,
    options: ResolvedPrimaryOptions,
    control: Database.Database,
    log: ReplicationLog,
    snapshots: SnapshotStore,
    checkpointer: Checkpointer,
    hooks: NamespaceHooks,
    logger: Logger,
  ) {
    this.name = name;
    this.path = path;
    this.#options = options;
    this.#logger = logger;
    this.#hooks = hooks;
    this.#checkpointer = checkpointer;
    this.#control = control;
    this.#log = log;
    this.#snapshots = snapshots;
    this.#pageSize = control.pragma('page_size', { simple: true }) as number;
    this.#fd = databaseDescriptor(path);
    this.#retryDelay = options.namespaceRetryMs;
    this.#tailer = new WalTailer(control, {
      dbPath: path,
      walReadBytes: options.walReadBytes,
      walStallTimeoutMs: options.walStallTimeoutMs,
      sealTimeoutMs: options.sealTimeoutMs,
    });
    this.blobs = new BlobStore({ dir: join(options.dataDir, name, 'blobs'), maxBlobBytes: options.maxBlobBytes, log: this, logger });
  }

  /**
   * Opens the database (creating it when configured), switches it to WAL
   * mode, recovers the log, and establishes the position (possibly a new
   * generation). Then tails.
   */
  static async open(name: string, options: ResolvedPrimaryOptions, checkpointer: Checkpointer, hooks: NamespaceHooks, logger: Logger): Promise<PrimaryNamespace> {
    const config = options.namespaces.get(name);
    if (config === undefined) throw new UnknownNamespaceError(`namespace ${JSON.stringify(name)} is not configured`);
    if (!config.create && !existsSync(config.path)) {
      throw new UnknownNamespaceError(`namespace ${name}: database ${config.path} does not exist and create is false`);
    }
    mkdirSync(dirname(config.path), { recursive: true });
    const control = new Database(config.path, { fileMustExist: !config.create, timeout: 0 });
    let log: ReplicationLog | undefined;
    try {
      // busy_timeout 0 here: this connection only takes the write lock
      // through the non-blocking retry loop of WalTailer.seal.
      if ((control.pragma('journal_mode', { simple: true }) as string).toLowerCase() !== 'wal') {
        control.pragma('busy_timeout = 5000');
        control.pragma('journal_mode = WAL');
        control.pragma('busy_timeout = 0');
      }
      log = await ReplicationLog.open({ dir: join(options.dataDir, name, 'log'), segmentBytes: options.segmentBytes, tailCacheBytes: options.logCacheBytes, logger });
      const snapshots = await SnapshotStore.open(join(options.dataDir, name, 'snapshots'), logger, options.snapshotChunkBytes);
      const ns = new PrimaryNamespace(name, config.path, options, control, log, snapshots, checkpointer, hooks, logger);
      checkpointer.register(name, (run) => ns.#checkpoint(run));
      await ns.#exclusive(() => ns.#establish(undefined));
      ns.#state = 'running';
      ns.#tailer.watch(options.pollIntervalMs, () => ns.#onChange());
      return ns;
    } catch (err) {
      checkpointer.unregister(name);
      await log?.close().catch(() => undefined);
      control.close();
      throw err;
    }
  }

  get state(): NamespaceState {
    return this.#state;
  }

  /** Snapshot images of this namespace (bootstrap source). */
  get snapshots(): SnapshotStore {
    return this.#snapshots;
  }

  /**
   * A consistent image for bootstrapping a replica: the newest snapshot
   * image, rolled forward to the log head first when the log since it holds
   * at least `snapshotAdvanceSeqs` seqs (and verified against the head's
   * checksum). With `resume` naming the newest image, it is served as is.
   * Reads only immutable files, never the live database.
   */
  async openSnapshot(resume?: { readonly generation: string; readonly seq: number }): Promise<SnapshotSource> {
    // Only an image of the log's current generation is ever served. Right
    // after the log starts a new generation (#establish: a discontinuity,
    // the retry after an error, reset-replication), the previous
    // generation's image stays the latest until the new one is written; a
    // replica of the previous generation that had streamed past that image
    // installed it and went back in time (found by the chaos soak: its
    // invariant reader saw journal_rows shrink). So wait for the new image;
    // #establish writes it right after starting the generation.
    const deadline = Date.now() + SNAPSHOT_WAIT_MS;
    while (this.#snapshots.latest === undefined || this.#snapshots.latest.generation !== this.#log.generation) {
      if (this.#state === 'closed') throw new ClosedError(`namespace ${this.name} is closed`);
      if (Date.now() > deadline) {
        throw new TimeoutError(
          `no snapshot image of generation ${String(this.#log.generation)} of ${this.name} after ${SNAPSHOT_WAIT_MS} ms (latest: ${String(this.#snapshots.latest?.generation)}); the replica retries`,
        );
      }
      await sleep(20);
    }
    const head = this.#log.head;
    const latest = this.#snapshots.latest;
    const resumable = resume !== undefined && latest !== undefined && resume.generation === latest.generation && resume.seq === latest.seq;
    // The image is rolled forward only once the log since it is long: a
    // replica that installs an older image streams the rest from the log, and
    // a stable image lets interrupted bootstraps resume where they stopped.
    if (
      !resumable &&
      head !== undefined &&
      latest !== undefined &&
      latest.generation === this.#log.generation &&
      head.seq - latest.seq >= this.#options.snapshotAdvanceSeqs
    ) {
      await this.#snapshots.advance(this.#log, head.seq, head.checksum);
    }
    return this.#snapshots.openReader();
  }

  /**
   * A bootstrap found the snapshot image `damaged` no longer matching the
   * chunk CRCs stored when it was published. Every later bootstrap would
   * fail the same way, and advancing the image would only copy the damage,
   * so the image is rebuilt from the database, with reset-replication's
   * discipline: a running checkpoint is awaited and new ones return early
   * (both take the write lock), then under the namespace's exclusive
   * section the new WAL frames are logged, the images removed, and the
   * namespace established again, which writes the image of the log head.
   * Logging the frames first means the continuity proof starts from the
   * WAL as the tailer last read it, so the generation continues (a new one
   * starts only when the proof fails, as at start-up). A report about an
   * image that is no longer the newest (a bootstrap still streaming the old
   * image after a rebuild) is ignored, and reports coalesce while a rebuild
   * runs; a reset-replication writes a new image anyway.
   *
   * Crash between the steps: images removed, none written yet → the next
   * start writes one (start-up writes an image whenever the generation has
   * none), and bootstraps wait for it meanwhile.
   */
  rebuildDamagedSnapshot(err: Error, damaged: { readonly generation: string; readonly seq: number }): void {
    if (this.#state !== 'running' || this.#snapshotRebuild !== null || this.#resetting !== undefined) return;
    const latest = this.#snapshots.latest;
    if (latest === undefined || latest.generation !== damaged.generation || latest.seq !== damaged.seq) return;
    this.#logger.error({ ns: this.name, generation: damaged.generation, seq: damaged.seq, err: err.message }, 'snapshot image damaged; rebuilding it from the database');
    this.#snapshotRebuild = (async () => {
      await this.#checkpointFinished();
      await this.#exclusive(async () => {
        if (this.#state !== 'running') return;
        await this.#ingest(await this.#tailer.readNew());
        await this.#snapshots.clear();
        await this.#establish(undefined);
      });
    })()
      .then(
        () => this.#logger.info({ ns: this.name, generation: this.#log.generation, seq: this.#snapshots.latest?.seq }, 'snapshot image rebuilt'),
        (e: unknown) => this.#fail(e),
      )
      .finally(() => {
        this.#snapshotRebuild = null;
      });
  }

  /**
   * Rolls the snapshot image forward to the log head (verified against its
   * checksum) and returns its seq: retention may then drop log records at or
   * below it.
   */
  async advanceSnapshot(): Promise<number> {
    const head = this.#log.head;
    const latest = this.#snapshots.latest;
    if (head === undefined || latest === undefined || latest.generation !== this.#log.generation) return latest?.seq ?? 0;
    if (head.seq > latest.seq) return (await this.#snapshots.advance(this.#log, head.seq, head.checksum)).seq;
    return latest.seq;
  }

  get log(): ReplicationLog {
    return this.#log;
  }

  /** The newest durable position. */
  head(): Position {
    const head = this.#log.head;
    return { generation: this.#log.generation ?? '', seq: head?.seq ?? 0, checksum: head?.checksum ?? EMPTY_CHECKSUM };
  }

  status(): NamespaceStatus {
    const head = this.#log.head;
    return {
      name: this.name,
      path: this.path,
      state: this.#state,
      generation: this.#log.generation ?? null,
      headSeq: head?.seq ?? 0,
      firstSeq: this.#log.firstSeq,
      checksum: head?.checksum ?? null,
      commitSize: head?.commitSize ?? 0,
      walBytes: this.#walBytes,
      bufferBytes: this.#tailer.bufferBytes + this.#log.bufferBytes,
      lastError: this.#lastError,
      checkpoint: this.#checkpointer.status(this.name) ?? null,
      blobs: { count: this.blobs.files.count, bytes: this.blobs.files.bytes },
    };
  }

  async appendBlobPut(event: { blobId: string; size: number; sha256: string }): Promise<LogRecord> {
    const record = await this.#log.appendBlobPut(event);
    this.#emit(record);
    return record;
  }

  async appendBlobDelete(blobId: string): Promise<LogRecord> {
    const record = await this.#log.appendBlobDelete(blobId);
    this.#emit(record);
    return record;
  }

  /** Stops watching; in-flight reads finish. Part one of shutdown. */
  async stopTailing(): Promise<void> {
    if (this.#retryTimer !== undefined) clearTimeout(this.#retryTimer);
    this.#retryTimer = undefined;
    const wasRunning = this.#state === 'running';
    this.#state = 'closed';
    // A last read so that commits made up to now are logged.
    await this.#exclusive(async () => {
      if (wasRunning) await this.#ingest(await this.#tailer.readNew()).catch(() => undefined);
    });
  }

  /** Closes the tailer, the log and the connections. Part two of shutdown (after checkpoints drained). */
  async close(): Promise<void> {
    this.#state = 'closed';
    this.#checkpointer.unregister(this.name);
    // Blob puts and deletes in their locked section finish before the log closes.
    await this.blobs.close();
    await this.#exclusive(async () => {
      await this.#tailer.close();
      await this.#log.close();
      this.#control.close();
    });
  }

  /**
   * reset-replication: starts a new generation from the live database file
   * once SQLite has checkpointed and quick-checked it. Replicas of the old
   * generation bootstrap again (their senders stop with generation-changed).
   * Only this namespace's log segments and snapshot images are touched. A
   * call while one runs joins it; a later call starts yet another generation
   * (repeating is always safe).
   *
   * Steps, and what a kill -9 between them leaves behind:
   * 1. seal (write lock), log what is new, drop the pins, PASSIVE checkpoint
   *    in a worker, pin, unseal. A crash leaves the log intact; the restart
   *    proves continuity and the old generation goes on (unless writers
   *    restarted the checkpointed WAL meanwhile: then, as after any stop, a
   *    new generation starts with that reason).
   * 2. quick_check in the checkpoint worker. Corruption (here
   *    or in step 1) throws WALWIRE_ERR_DATABASE_CORRUPT and changes nothing.
   *    Failpoint `primary.reset.after-check`.
   * 3. remove the snapshot images. A crash leaves the old generation's log
   *    without an image; the restart writes one at its head (#establish).
   *    Failpoint `primary.reset.after-clear`.
   * 4. #establish with a forced reason: a new generation's segment (the old
   *    segments are unlinked only after it exists) and a fresh image. A
   *    crash before the image is written is repaired at restart as in 3.
   * From step 1 on the namespace mutex is held, so no tail read interleaves;
   * checkpoint jobs return early while a reset runs, and the reset first
   * waits for a running one (it takes the mutex and the seal itself).
   */
  resetReplication(): Promise<ResetResult> {
    if (this.#resetting !== undefined) return this.#resetting;
    if (this.#state !== 'running') {
      return Promise.reject(new ClosedError(`namespace ${this.name} is ${this.#state}; reset-replication needs it running`));
    }
    const run = this.#reset().finally(() => {
      this.#resetting = undefined;
    });
    this.#resetting = run;
    return run;
  }

  async #reset(): Promise<ResetResult> {
    const started = performance.now();
    const previous = this.#log.generation ?? null;
    this.#logger.info({ ns: this.name, generation: previous }, 'reset-replication started');
    let cleared = false;
    /** Step durations for the finish line (ms). */
    const steps: Record<string, number> = {};
    let mark = started;
    const step = (name: string): void => {
      const now = performance.now();
      steps[name] = Math.round((now - mark) * 10) / 10;
      mark = now;
    };
    try {
      // A snapshot rebuild also establishes under the write lock: let it finish.
      if (this.#snapshotRebuild !== null) await this.#snapshotRebuild;
      await this.#checkpointFinished();
      await this.#tailer.seal();
      step('sealMs');
      await this.#exclusive(async () => {
        let copied: { log: number; checkpointed: number } | undefined;
        try {
          // What was committed before the seal goes to the old generation; a
          // failed read is moot, since a new generation starts anyway.
          await this.#tailer.readNew().then((r) => this.#ingest(r)).catch(() => undefined);
          this.#tailer.releasePins();
          copied = await this.#checkpointer.runNow(this.path, 'PASSIVE');
        } catch (err) {
          const code = (err as { code?: string }).code ?? '';
          if (code.startsWith('SQLITE_CORRUPT') || code === 'SQLITE_NOTADB') {
            throw new DatabaseCorruptError(
              `reset-replication of ${this.name} refused: the checkpoint of ${this.path} failed with ${code}: ${(err as Error).message}. The database is corrupt; restore it from a backup. Nothing was changed and replication continues in generation ${String(previous)}`,
            );
          }
          throw err;
        } finally {
          // Pinning rule 2: never leave the seal without a pin.
          try {
            this.#tailer.pinSealed();
            this.#sealedPin = true;
          } finally {
            this.#tailer.unseal();
          }
        }
        this.#framesSinceCheckpoint = 0;
        step('checkpointMs');
        // In a warm checkpoint worker thread, on a fresh read-only connection.
        const check = await this.#checkpointer.quickCheckNow(this.path);
        step('quickCheckMs');
        if (check !== 'ok') {
          throw new DatabaseCorruptError(
            `reset-replication of ${this.name} refused: PRAGMA quick_check of ${this.path} failed: ${check.split('\n').slice(0, 5).join('; ')}. The database is corrupt; restore it from a backup. Nothing was changed and replication continues in generation ${String(previous)}`,
          );
        }
        this.#logger.debug({ ns: this.name, walFrames: copied?.log, checkpointed: copied?.checkpointed }, 'reset-replication: checkpointed and quick-checked');
        await failpointAsync('primary.reset.after-check');
        cleared = true;
        await this.#snapshots.clear();
        await failpointAsync('primary.reset.after-clear');
        step('clearMs');
        await this.#establish('reset-replication requested by an operator');
        step('establishMs');
      });
    } catch (err) {
      const ms = Math.round(performance.now() - started);
      this.#logger.error({ ns: this.name, ms, code: (err as { code?: string }).code, err: (err as Error).message }, 'reset-replication failed');
      // Past step 3 the namespace may lack an image: fail it, so the retry
      // loop establishes a generation with a fresh image.
      if (cleared) this.#fail(err);
      throw err;
    }
    const elapsedMs = performance.now() - started;
    const generation = this.#log.generation ?? '';
    this.#logger.info({ ns: this.name, generation, previous, ms: Math.round(elapsedMs), ...steps }, 'reset-replication finished');
    return { elapsedMs, generation, previous };
  }

  // -------------------------------------------------------------------------

  /** Waits for this namespace's running checkpoint, if any (it takes the write lock outside the mutex). */
  async #checkpointFinished(): Promise<void> {
    while (this.#checkpointer.status(this.name)?.running === true) await sleep(2);
  }

  #exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#mutex.then(fn, fn);
    this.#mutex = run.catch(() => undefined);
    return run;
  }

  #onChange(): void {
    if (this.#state !== 'running') return;
    if (this.#polling) {
      this.#dirty = true;
      return;
    }
    this.#polling = true;
    void this.#exclusive(async () => {
      do {
        this.#dirty = false;
        if (this.#state !== 'running') return;
        const read = await this.#tailer.readNew(this.#options.walReadBytes);
        await this.#ingest(read);
        if (read.commits.length === 0 && performance.now() - this.#log.lastAppendAt >= this.#options.idleReleaseMs) {
          // Idle: the memory reused under load is given back (options.idleReleaseMs).
          this.#tailer.releaseBuffer();
          this.#log.releaseBuffers();
        }
        if (this.#sealedPin && read.commits.length > 0) {
          // The pin taken under the seal may sit in read-mark slot 0. Once
          // writers have added frames, such a pin blocks every copy, and each
          // writer's auto-checkpoint then sorts the whole WAL on every commit
          // (walIteratorInit runs before READ_LOCK(0) is tried). A new pin
          // now lands in a slot >= 1 (un-copied frames exist): rule 1.
          this.#sealedPin = false;
          await this.#ingest(await this.#tailer.repin());
        }
        if (read.more === true) {
          // A writer far ahead: the next slice at once.
          this.#dirty = true;
        } else if (read.commits.length >= BUSY_COMMITS) {
          // Under load, read again after a short delay (the one-shot watch
          // stays disarmed meanwhile), so that reads, log writes and
          // fdatasyncs come in bigger groups and leave CPU to the writers.
          await sleep(this.#options.busyReadDelayMs);
          this.#dirty = true;
        } else if (!this.#dirty && this.#tailer.armWatch()) {
          // Caught up: watch again, and read once more for a commit made
          // before the watch was armed.
          this.#dirty = true;
        }
      } while (this.#dirty);
    })
      .catch((err: unknown) => this.#handleError(err))
      .finally(() => {
        this.#polling = false;
        // An event that arrived after the loop's last check must not wait
        // for the polling timer.
        if (this.#dirty) this.#onChange();
      });
  }

  #handleError(err: unknown): void {
    if (this.#state === 'closed') return;
    if (err instanceof DiscontinuityError) {
      this.#logger.warn({ ns: this.name, reason: err.message }, 'WAL continuity lost while running');
      void this.#exclusive(() => this.#establish(err.message)).catch((e: unknown) => this.#fail(e));
      return;
    }
    this.#fail(err);
  }

  /** Marks the namespace failed and retries from a fresh establish after a backoff. */
  #fail(err: unknown): void {
    if (this.#state === 'closed') return;
    const error = err instanceof Error ? err : new Error(String(err));
    this.#state = 'failed';
    this.#lastError = `${(error as { code?: string }).code ?? error.name}: ${error.message}`;
    this.#logger.error({ ns: this.name, err: this.#lastError, retryInMs: this.#retryDelay }, 'namespace failed; other namespaces are unaffected');
    this.#hooks.onError(this.name, error);
    if (this.#retryTimer !== undefined) return;
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      if (this.#state !== 'failed') return;
      // A failed append latches the log (see ReplicationLog.reopen): without
      // reopening it here, every retry failed again on the same latch and
      // the namespace stayed failed until the process restarted.
      const recover = async (): Promise<void> => {
        if (this.#log.failed) await this.#log.reopen();
        await this.#establish(`recovering after an error: ${this.#lastError}`);
      };
      void this.#exclusive(recover).then(
        () => {
          if (this.#state !== 'failed') return;
          this.#state = 'running';
          this.#lastError = null;
          this.#retryDelay = this.#options.namespaceRetryMs;
          this.#logger.info({ ns: this.name }, 'namespace recovered');
        },
        (e: unknown) => {
          this.#retryDelay = Math.min(this.#retryDelay * 2, 30_000);
          this.#fail(e);
        },
      );
    }, this.#retryDelay);
    this.#retryTimer.unref();
  }

  /**
   * Finds where the log stands relative to the database (start-up, and after
   * a discontinuity or an error). Under the seal it reads the whole WAL and
   * pins; then it checksums the whole image (database file + WAL overlay).
   *
   * Continuity is proven when the WAL still holds, with the same salts, the
   * very frames the log ends at (same offset and cumulative checksum, §4.3):
   * then every commit after that offset is appended as one seq whose
   * checksum is the image's. It is also kept when the WAL holds no frame
   * and the image checksum equals the log head's (nothing changed; e.g. the
   * last connection deleted the WAL on close). In every other case a new
   * generation starts from this image, and the reason is logged.
   *
   * `forcedReason` (a discontinuity seen while running) skips the proof.
   */
  async #establish(forcedReason: string | undefined): Promise<void> {
    const snap = await this.#tailer.establish();
    this.#sealedPin = true;
    const header = snap.header;
    if (header !== undefined) this.#pageSize = header.pageSize;
    const full = header === undefined ? undefined : scanWalFrames(snap.bytes, 0, initialWalState(header));
    const commits = full?.commits ?? [];
    const overlay = new Map<number, Uint8Array>();
    for (const c of commits) for (const f of c.frames) overlay.set(f.pgno, f.page);
    const commitSize = snap.pageCount;
    const lastCommit = commits.at(-1);
    if (lastCommit !== undefined && lastCommit.commitSize !== commitSize) {
      // The pin began right after this read, under the seal: SQLite's view
      // must end at the same commit. It does not, so the WAL as read here
      // (its checksum chain, §4.3) disagrees with SQLite's index: corrupt.
      throw new WalFormatError(
        `${this.path}-wal: the last valid commit frame (offset ${lastCommit.endOffset}) says ${lastCommit.commitSize} pages but SQLite sees ${commitSize}; the WAL fails its checksums before its end`,
      );
    }
    const image = await checksumDatabaseImage(this.#fd, this.#pageSize, commitSize, overlay);
    this.#walBytes = snap.bytes.length;
    const generation = this.#log.generation;
    const head = this.#log.head;
    let reason = forcedReason;
    let after: WalCommit[] = [];
    if (generation === undefined || head === undefined) {
      reason = 'first start: the log is empty';
    } else if (reason === undefined) {
      const w = head.wal;
      let proven = false;
      if (header === undefined || w.offset < 32) {
        reason = header === undefined ? 'the WAL is missing or empty' : 'the log holds no WAL position';
      } else if (w.salt1 !== header.salt1 || w.salt2 !== header.salt2) {
        reason = `WAL salts changed from ${w.salt1}/${w.salt2} to ${header.salt1}/${header.salt2} while the daemon was stopped (restarted or truncated by another process)`;
      } else if (snap.bytes.length < w.offset) {
        reason = `the WAL is ${snap.bytes.length} bytes, shorter than the logged offset ${w.offset}`;
      } else {
        const prefix = scanWalFrames(snap.bytes.subarray(0, w.offset), 0, initialWalState(header));
        if (prefix.state.offset !== w.offset || prefix.state.checksum[0] !== w.chain[0] || prefix.state.checksum[1] !== w.chain[1]) {
          reason = `WAL frames up to the logged offset ${w.offset} were overwritten (checksum chain differs)`;
        } else {
          proven = true;
          after = commits.filter((c) => c.endOffset > w.offset);
          if (after.length === 0 && image.value !== head.checksum) {
            proven = false;
            reason = `the database checksum ${image.value} differs from the log head's ${head.checksum} with no new WAL frame`;
          }
        }
      }
      if (!proven && commits.length === 0 && image.value === head.checksum && commitSize === head.commitSize) {
        this.#logger.info({ ns: this.name, generation, seq: head.seq, why: reason }, 'WAL position changed while stopped, database content unchanged: generation continues');
        reason = undefined;
      } else if (proven) {
        reason = undefined;
      }
    }
    this.#tailer.state = full?.state;
    this.#ready.clear();
    this.#emitNext = (this.#log.head?.seq ?? 0) + 1;
    this.#checksum = image;
    this.#commitSize = commitSize;
    if (reason !== undefined) {
      const previous = generation ?? null;
      const next = randomBytes(16).toString('hex');
      await this.#log.startGeneration({
        generation: next,
        checksum: image.value,
        commitSize,
        pageSize: this.#pageSize,
        wal: walPosition(full?.state),
        reason,
      });
      this.#emitNext = 1;
      this.#logger.warn({ ns: this.name, generation: next, previous, reason, checksum: image.value, commitSize }, 'new generation');
      this.#hooks.onGeneration({ ns: this.name, generation: next, previous, reason, checksum: image.value, commitSize, pageSize: this.#pageSize });
    } else if (after.length > 0) {
      // Commits made while the daemon was stopped: one seq, since only the
      // state after the last of them is known (the image).
      const record = await this.#log.appendTxn(
        { commitSize, checksum: image.value, commitTime: Date.now(), pages: dedupe(after, commitSize) },
        after.length,
        walPosition(full?.state),
      );
      this.#emit(record);
    }
    // Bootstraps are served from a snapshot image, never from the live
    // database. The image read here is the state at the log head (the new
    // generation's base, or the head the proof continued from), so when the
    // store has no image of this generation, this is the moment to write one.
    const generationNow = this.#log.generation;
    if (generationNow !== undefined && this.#snapshots.latest?.generation !== generationNow) {
      // Test hook: widens the window in which the log has a new generation
      // and the store still only the previous generation's image.
      await failpointAsync('primary.establish.before-image');
      const meta = { generation: generationNow, seq: this.#log.head?.seq ?? 0, checksum: image.value, pageSize: this.#pageSize, pageCount: commitSize };
      await this.#snapshots.writeImage(meta, (write) => checksumDatabaseImage(this.#fd, this.#pageSize, commitSize, overlay, write).then(() => undefined));
    }
  }

  /** Turns commits read by the tailer into seqs, appends them durably, and emits them. */
  async #ingest(read: TailRead): Promise<void> {
    this.#walBytes = read.walBytes;
    if (read.newIncarnation) {
      this.#logger.debug({ ns: this.name, salt1: read.state?.header.salt1 }, 'WAL restarted or truncated; every frame before it was read (pinned)');
    }
    if (read.commits.length === 0) return;
    const header = read.state!.header;
    const groups: WalCommit[][] = [];
    let group: WalCommit[] = [];
    let pages = new Set<number>();
    for (const c of read.commits) {
      for (const f of c.frames) pages.add(f.pgno);
      group.push(c);
      if (pages.size * header.pageSize >= this.#options.maxSeqBytes) {
        groups.push(group);
        group = [];
        pages = new Set();
      }
    }
    if (group.length > 0) groups.push(group);
    const appends: Promise<LogRecord>[] = [];
    let frames = 0;
    for (const g of groups) {
      const last = g.at(-1)!;
      const seqPages = dedupe(g, last.commitSize);
      for (const p of seqPages) this.#checksum.setPage(p.pgno, p.data);
      this.#checksum.truncate(last.commitSize);
      this.#commitSize = last.commitSize;
      for (const c of g) frames += c.frames.length;
      const chain = frameChain(last);
      const wal: WalPosition = { salt1: header.salt1, salt2: header.salt2, offset: last.endOffset, chain };
      appends.push(this.#log.appendTxn({ commitSize: last.commitSize, checksum: this.#checksum.value, commitTime: Date.now(), pages: seqPages }, g.length, wal));
    }
    const records = await Promise.all(appends);
    for (const r of records) this.#emit(r);
    this.#framesSinceCheckpoint += frames;
    if (this.#framesSinceCheckpoint >= this.#options.checkpointPages || read.walBytes > this.#options.walTruncateBytes) {
      this.#checkpointer.schedule(this.name);
    }
  }

  /** Emits records strictly in seq order, whatever order their appends resolved in. */
  #emit(record: LogRecord): void {
    if (record.generation !== this.#log.generation) return;
    this.#ready.set(record.seq, record);
    for (let r = this.#ready.get(this.#emitNext); r !== undefined; r = this.#ready.get(this.#emitNext)) {
      this.#ready.delete(this.#emitNext);
      this.#emitNext++;
      this.#hooks.onRecord(this.name, r);
    }
  }

  /**
   * The checkpoint procedure (Checkpointer job), never a RESTART:
   * 1. re-pin and log what is new, then PASSIVE without any lock: copies
   *    the bulk of the frames while writers keep going;
   * 2. seal (write lock), log the remaining frames durably, drop the pins,
   *    PASSIVE again (now every frame is in the log and no reader holds
   *    the WAL, so all of it is copied), pin again, unseal. SQLite can then
   *    restart the WAL at the next write, and the next pin is in slot 0;
   * 3. above walTruncateBytes, TRUNCATE: it can only complete when no frame
   *    exists beyond what was read (our slot-0 pin blocks copying any later
   *    frame), so it never discards an unread frame; when it cannot, it
   *    reports busy and is retried at the next checkpoint.
   */
  async #checkpoint(run: RunCheckpoint): Promise<void> {
    if (this.#state !== 'running' || this.#resetting !== undefined || this.#snapshotRebuild !== null) return;
    const started = performance.now();
    await this.#exclusive(async () => this.#ingest(await this.#tailer.repin()));
    const bulk = await run(this.path, 'PASSIVE');
    if (this.#state !== 'running') return;
    const truncate = this.#walBytes > this.#options.walTruncateBytes;
    this.#framesSinceCheckpoint = 0;
    if (!truncate && Date.now() - this.#lastSealAt < this.#options.sealIntervalMs) return;
    // The write lock is awaited outside the mutex, so tailing goes on meanwhile.
    await this.#tailer.seal();
    this.#lastSealAt = Date.now();
    const sealedAt = performance.now();
    await this.#exclusive(async () => {
      try {
        await this.#ingest(await this.#tailer.readNew());
        this.#tailer.releasePins();
        await run(this.path, 'PASSIVE');
      } finally {
        // Pinning rule 2: never leave the seal without a pin.
        try {
          this.#tailer.pinSealed();
          this.#sealedPin = true;
        } finally {
          this.#tailer.unseal();
        }
      }
    });
    this.#logger.debug(
      { ns: this.name, bulkFrames: bulk.checkpointed, totalMs: Math.round(performance.now() - started), sealedMs: Math.round(performance.now() - sealedAt) },
      'checkpoint: WAL copied under the seal; SQLite may restart it',
    );
    this.#framesSinceCheckpoint = 0;
    if (truncate && this.#state === 'running') {
      const r = await run(this.path, 'TRUNCATE');
      this.#logger.info({ ns: this.name, walBytes: this.#walBytes, busy: r.busy }, r.busy ? 'TRUNCATE checkpoint deferred: frames not yet read or readers active' : 'WAL truncated');
    }
  }
}

/** Pages of consecutive commits, deduplicated (last version wins), none beyond `commitSize`. */
function dedupe(commits: readonly WalCommit[], commitSize: number): PageImage[] {
  const latest = new Map<number, Uint8Array>();
  for (const c of commits) for (const f of c.frames) latest.set(f.pgno, f.page);
  const pages: PageImage[] = [];
  for (const [pgno, data] of latest) if (pgno <= commitSize) pages.push({ pgno, data });
  pages.sort((a, b) => a.pgno - b.pgno);
  return pages;
}
