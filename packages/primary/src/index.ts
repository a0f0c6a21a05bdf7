export { Primary, type PrimaryEvents, type PrimaryStatus, type RecordEvent, type NamespaceErrorEvent, type DegradedEvent } from './primary.js';
export { PrimaryNamespace, type Position, type GenerationEvent, type NamespaceStatus, type NamespaceState } from './namespace.js';
export { DEFAULT_PRIMARY_LIMITS, resolvePrimaryOptions, type PrimaryOptions, type PrimaryLimits, type NamespaceConfig, type ResolvedPrimaryOptions } from './options.js';
export { ReplicationLog, type ReplicationLogOptions, type GenerationStart, type LogRecovery } from './replication-log.js';
export type { LogRecord, TxnRecord, BlobPutRecord, BlobDeleteRecord, WalPosition, RecordState, SegmentHeader } from './log-record.js';
export { Checkpointer, type CheckpointStatus, type CheckpointMode, type CheckpointResult } from './checkpointer.js';
export { WalTailer, DiscontinuityError, type TailRead, type WalSnapshot } from './wal-tailer.js';
export { checksumDatabaseImage, databaseDescriptor } from './database-file.js';
