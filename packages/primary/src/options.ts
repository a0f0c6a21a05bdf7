/**
 * Primary options: every limit and timeout, its default, and validation.
 * Validation messages name the option and the value received
 * (WALWIRE_ERR_INVALID_OPTION), as everywhere in walwire.
 */
import { InvalidOptionError, assertNamespace, checkIntegerOption, describe } from '@walwire/protocol';
import type { Logger } from '@walwire/runtime';

/** One replicated database. */
export interface NamespaceConfig {
  /** Path of the SQLite database file. */
  readonly path: string;
  /**
   * Create the database when the file does not exist. When false, a missing
   * file is an error.
   * @default true
   */
  readonly create?: boolean;
}

/** Tuning shared by every namespace of a primary. All fields are optional. */
export interface PrimaryLimits {
  /**
   * Interval of the polling fallback that looks for new WAL frames when
   * fs.watch misses an event (or is unavailable).
   * @default 50
   */
  readonly pollIntervalMs: number;
  /**
   * When a read finds many commits (a busy writer), the tailer waits this
   * long before the next read, so that work is done in bigger groups and
   * leaves CPU to the writers. A lone commit is always read at once.
   * @default 2
   */
  readonly busyReadDelayMs: number;
  /**
   * A seq holds whole commits read together; a new seq starts once the
   * distinct pages of the current one exceed this many bytes. A single
   * commit larger than this is one seq on its own.
   * @default 8388608 (8 MiB)
   */
  readonly maxSeqBytes: number;
  /**
   * Bytes of WAL the tailer reads in one pass before it logs them (a single
   * commit larger than this is still read whole). A writer far ahead is
   * captured in slices of this size, which bounds the memory of a pass: its
   * frames, then the log records made of them. At the default, every read of
   * a pass lands in the tailer's reused buffer and every record of the pass
   * in the log's reused arena, so a backlog (the log's fdatasync stalled, a
   * checkpoint) allocates nothing; a larger value reads into new memory.
   * @default 1048576 (1 MiB)
   */
  readonly walReadBytes: number;
  /**
   * A checkpoint is scheduled once this many WAL frames were logged since the
   * namespace's last checkpoint (PASSIVE).
   * @default 1000
   */
  readonly checkpointPages: number;
  /**
   * The sealed part of a checkpoint (write lock held for a few ms, which
   * lets SQLite restart the WAL afterwards) runs at most this often; in
   * between, checkpoints copy frames without any lock. Writers pay for each
   * seal with a busy-handler sleep, so this bounds that cost; the WAL grows
   * by what writers commit in this interval.
   * @default 100
   */
  readonly sealIntervalMs: number;
  /**
   * When the WAL file is larger than this, the checkpoint also tries TRUNCATE
   * (it succeeds only when no frame would be lost; otherwise it is retried
   * at the next checkpoint).
   * @default 67108864 (64 MiB)
   */
  readonly walTruncateBytes: number;
  /**
   * At most this many checkpoints run at once across all namespaces, each in
   * its own worker thread.
   * @default 2
   */
  readonly checkpointConcurrency: number;
  /**
   * First delay before retrying a failed checkpoint; doubled after each
   * consecutive failure up to `checkpointBackoffMaxMs`.
   * @default 200
   */
  readonly checkpointBackoffMs: number;
  /**
   * Longest delay between checkpoint retries.
   * @default 30000
   */
  readonly checkpointBackoffMaxMs: number;
  /**
   * After this many consecutive checkpoint failures the namespace is marked
   * degraded (status and logs) until a checkpoint succeeds again.
   * @default 3
   */
  readonly degradedAfterErrors: number;
  /**
   * SQLite busy timeout of the checkpoint worker's connection (it waits for
   * the write lock and for readers there, never on the main thread).
   * @default 1000
   */
  readonly checkpointBusyTimeoutMs: number;
  /**
   * How long the seal (taking SQLite's write lock with BEGIN IMMEDIATE,
   * polled without blocking the event loop) may wait for other writers.
   * @default 10000
   */
  readonly sealTimeoutMs: number;
  /**
   * A WAL frame whose checksum stays wrong for this long while later bytes
   * exist is reported as a corrupt WAL (a frame being written resolves in
   * microseconds).
   * @default 5000
   */
  readonly walStallTimeoutMs: number;
  /**
   * Delay before a failed namespace retries from scratch; doubled after each
   * failure up to 30 s.
   * @default 1000
   */
  readonly namespaceRetryMs: number;
  /**
   * After this long without an append, a namespace gives back the memory it
   * reuses under load: the tailer's read buffer, the log's record arena and
   * the log cache (a replica that connects then reads the newest records
   * from the log's files). Each comes back at the next append. Reported as
   * `bufferBytes` in the namespace's status.
   * @default 30000
   */
  readonly idleReleaseMs: number;
  /**
   * Size at which the replication log starts a new segment file.
   * @default 67108864 (64 MiB)
   */
  readonly segmentBytes: number;
  /**
   * Encoded bytes of the newest durable log records each namespace keeps in
   * memory, so that replicas that keep up are streamed without reading the
   * log back from disk. Replicas further behind read the segments.
   * @default 4194304 (4 MiB)
   */
  readonly logCacheBytes: number;
  /**
   * A bootstrap rolls the snapshot image forward to the log head only when
   * the log holds at least this many seqs after the image; otherwise the
   * replica installs the image and streams the rest from the log.
   * @default 10000
   */
  readonly snapshotAdvanceSeqs: number;
  /**
   * Largest blob a put accepts, in bytes. A larger declared size is refused
   * before any byte is read, a larger body as soon as its count passes this
   * (WALWIRE_ERR_BLOB_TOO_LARGE, HTTP 413).
   * @default 4294967296 (4 GiB)
   */
  readonly maxBlobBytes: number;
  /**
   * Bytes per SNAPSHOT_CHUNK (at most the protocol's maxChunkBytes); a crash
   * mid-bootstrap re-fetches at most about one chunk. Snapshot images store
   * a CRC-32 per chunk of this size when they are published, so a bootstrap
   * reads its image once.
   * @default 4194304 (4 MiB)
   */
  readonly snapshotChunkBytes: number;
}

export interface PrimaryOptions extends Partial<PrimaryLimits> {
  /** Directory for the replication logs: one sub-directory per namespace. */
  readonly dataDir: string;
  /** Namespace name → database. Names match `[a-z0-9][a-z0-9_-]{0,63}`. */
  readonly namespaces: Readonly<Record<string, NamespaceConfig>>;
  /** pino logger; silent when omitted. */
  readonly logger?: Logger;
}

export const DEFAULT_PRIMARY_LIMITS: PrimaryLimits = Object.freeze({
  pollIntervalMs: 50,
  busyReadDelayMs: 2,
  maxSeqBytes: 8 * 1024 * 1024,
  walReadBytes: 1024 * 1024,
  checkpointPages: 1000,
  sealIntervalMs: 100,
  walTruncateBytes: 64 * 1024 * 1024,
  checkpointConcurrency: 2,
  checkpointBackoffMs: 200,
  checkpointBackoffMaxMs: 30_000,
  degradedAfterErrors: 3,
  checkpointBusyTimeoutMs: 1000,
  sealTimeoutMs: 10_000,
  walStallTimeoutMs: 5000,
  namespaceRetryMs: 1000,
  idleReleaseMs: 30_000,
  segmentBytes: 64 * 1024 * 1024,
  logCacheBytes: 4 * 1024 * 1024,
  snapshotAdvanceSeqs: 10_000,
  maxBlobBytes: 4 * 1024 * 1024 * 1024,
  snapshotChunkBytes: 4 * 1024 * 1024,
});

export interface ResolvedPrimaryOptions extends PrimaryLimits {
  readonly dataDir: string;
  readonly namespaces: ReadonlyMap<string, Required<NamespaceConfig>>;
}

/** Fills defaults and validates every option; throws WALWIRE_ERR_INVALID_OPTION / _INVALID_NAMESPACE. */
export function resolvePrimaryOptions(options: PrimaryOptions): ResolvedPrimaryOptions {
  if (typeof options !== 'object' || options === null) {
    throw new InvalidOptionError(`primary options must be an object, received ${describe(options)}`);
  }
  if (typeof options.dataDir !== 'string' || options.dataDir === '') {
    throw new InvalidOptionError(`option dataDir must be a non-empty path, received ${describe(options.dataDir)}`);
  }
  if (typeof options.namespaces !== 'object' || options.namespaces === null) {
    throw new InvalidOptionError(`option namespaces must map names to { path }, received ${describe(options.namespaces)}`);
  }
  const namespaces = new Map<string, Required<NamespaceConfig>>();
  for (const [name, config] of Object.entries(options.namespaces)) {
    assertNamespace(name);
    if (typeof config !== 'object' || config === null || typeof config.path !== 'string' || config.path === '') {
      throw new InvalidOptionError(`option namespaces.${name}.path must be a non-empty path, received ${describe(config?.path)}`);
    }
    if (config.create !== undefined && typeof config.create !== 'boolean') {
      throw new InvalidOptionError(`option namespaces.${name}.create must be a boolean, received ${describe(config.create)}`);
    }
    namespaces.set(name, { path: config.path, create: config.create ?? true });
  }
  const paths = new Set<string>();
  for (const [name, config] of namespaces) {
    if (paths.has(config.path)) {
      throw new InvalidOptionError(`option namespaces.${name}.path names a database another namespace already uses, received ${describe(config.path)}`);
    }
    paths.add(config.path);
  }
  const limits: PrimaryLimits = { ...DEFAULT_PRIMARY_LIMITS };
  for (const key of Object.keys(DEFAULT_PRIMARY_LIMITS) as (keyof PrimaryLimits)[]) {
    const value = options[key];
    if (value !== undefined) (limits as { -readonly [K in keyof PrimaryLimits]: number })[key] = value;
  }
  const MiB = 1024 * 1024;
  checkIntegerOption('pollIntervalMs', limits.pollIntervalMs, 1, 60_000);
  checkIntegerOption('busyReadDelayMs', limits.busyReadDelayMs, 0, 1000);
  checkIntegerOption('maxSeqBytes', limits.maxSeqBytes, 64 * 1024, 1024 * MiB);
  checkIntegerOption('walReadBytes', limits.walReadBytes, 128 * 1024, 1024 * MiB);
  checkIntegerOption('checkpointPages', limits.checkpointPages, 1, 1 << 30);
  checkIntegerOption('sealIntervalMs', limits.sealIntervalMs, 0, 3_600_000);
  checkIntegerOption('walTruncateBytes', limits.walTruncateBytes, 0, Number.MAX_SAFE_INTEGER);
  checkIntegerOption('checkpointConcurrency', limits.checkpointConcurrency, 1, 64);
  checkIntegerOption('checkpointBackoffMs', limits.checkpointBackoffMs, 1, 3_600_000);
  checkIntegerOption('checkpointBackoffMaxMs', limits.checkpointBackoffMaxMs, limits.checkpointBackoffMs, 3_600_000);
  checkIntegerOption('degradedAfterErrors', limits.degradedAfterErrors, 1, 1_000_000);
  checkIntegerOption('checkpointBusyTimeoutMs', limits.checkpointBusyTimeoutMs, 0, 600_000);
  checkIntegerOption('sealTimeoutMs', limits.sealTimeoutMs, 1, 600_000);
  checkIntegerOption('walStallTimeoutMs', limits.walStallTimeoutMs, 1, 3_600_000);
  checkIntegerOption('namespaceRetryMs', limits.namespaceRetryMs, 1, 3_600_000);
  checkIntegerOption('idleReleaseMs', limits.idleReleaseMs, 1, 86_400_000);
  checkIntegerOption('segmentBytes', limits.segmentBytes, 64 * 1024, 64 * 1024 * MiB);
  checkIntegerOption('logCacheBytes', limits.logCacheBytes, 0, 1024 * MiB);
  checkIntegerOption('snapshotAdvanceSeqs', limits.snapshotAdvanceSeqs, 0, Number.MAX_SAFE_INTEGER);
  checkIntegerOption('maxBlobBytes', limits.maxBlobBytes, 1, Number.MAX_SAFE_INTEGER);
  checkIntegerOption('snapshotChunkBytes', limits.snapshotChunkBytes, 4096, 1024 * MiB);
  return Object.freeze({ ...limits, dataDir: options.dataDir, namespaces });
}
