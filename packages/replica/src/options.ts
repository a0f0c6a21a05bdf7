/**
 * Replica options: every limit and timeout of the applier, with its default.
 * `resolveReplicaOptions` fills the defaults and validates each value; a bad
 * value raises InvalidOptionError naming the option and the value received.
 */
import { InvalidOptionError, checkIntegerOption, describe } from '@walwire/protocol';
import { type Logger, silentLogger } from '@walwire/runtime';

export interface ReplicaOptions {
  /**
   * Directory holding one sub-directory per namespace
   * (`<dataDir>/<ns>/db.sqlite`, `<dataDir>/<ns>/cursor.json`). Created when missing.
   */
  readonly dataDir: string;
  /**
   * Logger; namespaces log through `logger.child({ ns })`.
   * @default a silent logger
   */
  readonly logger?: Logger;
  /**
   * Largest number of primary transactions (seqs) applied in one journal.
   * 1 disables batching: every seq costs its own journal and syncs.
   * @default 1024
   */
  readonly maxBatchTxns?: number;
  /**
   * Largest sum of page bytes applied in one journal. A single seq larger
   * than this is still applied, alone.
   * @default 67108864 (64 MiB)
   */
  readonly maxBatchBytes?: number;
  /**
   * Largest sum of page bytes waiting in a namespace's apply queue. `apply`
   * calls beyond it wait until the queue drains below the limit, which is
   * how the stream is back-pressured.
   * @default 134217728 (128 MiB)
   */
  readonly maxQueuedBytes?: number;
  /**
   * How long one `BEGIN EXCLUSIVE` attempt waits for readers, in ms. SQLite's
   * busy handler retries inside the attempt with its own backoff (1, 2, 5 …
   * 100 ms) while holding the PENDING lock, so no new reader can start and
   * existing readers drain. Between attempts the applier reports the wait.
   * @default 250
   */
  readonly lockAttemptMs?: number;
  /**
   * Before those attempts, how long the applier tries to take the lock
   * without waiting inside SQLite: an attempt every 50–150 µs that fails at once
   * when a reader holds its lock and gives the PENDING lock back. Readers'
   * queries take microseconds, so one of these attempts usually finds a
   * gap; a waiting attempt instead holds PENDING through SQLite's first 1 ms
   * sleep, and every reader arriving meanwhile backs off itself. 0 goes
   * straight to the waiting attempts.
   * @default 2
   */
  readonly lockSpinMs?: number;
  /**
   * A lock wait longer than this is logged at warn level and reported by an
   * `apply-delayed` event (repeated every `lockAttemptMs` while it lasts).
   * @default 1000
   */
  readonly lockWaitWarnMs?: number;
  /**
   * Bytes read per slice by the start-up verification (full database checksum).
   * @default 8388608 (8 MiB)
   */
  readonly verifyReadBytes?: number;
  /**
   * Extra pause between two apply batches while transactions are queued
   * (queued transactions join the next, larger batch). Readers already get
   * in between batches: each batch plans, writes its cursor record and its
   * journal before it takes SQLite's EXCLUSIVE lock. A pause lowers the share
   * of time the lock is held further, at the cost of lag.
   * @default 0
   */
  readonly applyGapMs?: number;
  /**
   * A streamed blob that has received content but makes no progress for
   * this long counts as a failed save (the durable cursor holds below it
   * and the next connection re-streams it).
   * @default 60000
   */
  readonly blobStallTimeoutMs?: number;
}

export interface ResolvedReplicaOptions {
  readonly dataDir: string;
  readonly logger: Logger;
  readonly maxBatchTxns: number;
  readonly maxBatchBytes: number;
  readonly maxQueuedBytes: number;
  readonly lockAttemptMs: number;
  readonly lockSpinMs: number;
  readonly lockWaitWarnMs: number;
  readonly verifyReadBytes: number;
  readonly applyGapMs: number;
  readonly blobStallTimeoutMs: number;
}

export const DEFAULT_REPLICA_OPTIONS = Object.freeze({
  maxBatchTxns: 1024,
  maxBatchBytes: 64 * 1024 * 1024,
  maxQueuedBytes: 128 * 1024 * 1024,
  lockAttemptMs: 250,
  lockSpinMs: 2,
  lockWaitWarnMs: 1000,
  verifyReadBytes: 8 * 1024 * 1024,
  applyGapMs: 0,
  blobStallTimeoutMs: 60_000,
});

/** Fills unset options with their defaults and validates every value. */
export function resolveReplicaOptions(options: ReplicaOptions): ResolvedReplicaOptions {
  if (typeof options !== 'object' || options === null) {
    throw new InvalidOptionError(`replica options must be an object, received ${describe(options)}`);
  }
  if (typeof options.dataDir !== 'string' || options.dataDir.length === 0) {
    throw new InvalidOptionError(`option dataDir must be a non-empty path, received ${describe(options.dataDir)}`);
  }
  const merged = { ...DEFAULT_REPLICA_OPTIONS, ...stripUndefined(options) };
  checkIntegerOption('maxBatchTxns', merged.maxBatchTxns, 1, 1 << 20);
  checkIntegerOption('maxBatchBytes', merged.maxBatchBytes, 4096, 2 ** 31);
  checkIntegerOption('maxQueuedBytes', merged.maxQueuedBytes, 4096, 2 ** 40);
  checkIntegerOption('lockAttemptMs', merged.lockAttemptMs, 1, 60_000);
  checkIntegerOption('lockSpinMs', merged.lockSpinMs, 0, 1000);
  checkIntegerOption('lockWaitWarnMs', merged.lockWaitWarnMs, 0, 3_600_000);
  checkIntegerOption('verifyReadBytes', merged.verifyReadBytes, 65536, 1 << 30);
  checkIntegerOption('applyGapMs', merged.applyGapMs, 0, 1000);
  checkIntegerOption('blobStallTimeoutMs', merged.blobStallTimeoutMs, 10, 3_600_000);
  return Object.freeze({
    dataDir: options.dataDir,
    logger: options.logger ?? silentLogger(),
    maxBatchTxns: merged.maxBatchTxns,
    maxBatchBytes: merged.maxBatchBytes,
    maxQueuedBytes: merged.maxQueuedBytes,
    lockAttemptMs: merged.lockAttemptMs,
    lockSpinMs: merged.lockSpinMs,
    lockWaitWarnMs: merged.lockWaitWarnMs,
    verifyReadBytes: merged.verifyReadBytes,
    applyGapMs: merged.applyGapMs,
    blobStallTimeoutMs: merged.blobStallTimeoutMs,
  });
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
