export { Replica } from './replica.js';
export {
  ReplicaNamespace,
  DATABASE_FILE,
  CURSOR_FILE,
  type ReplicaPosition,
  type NamespaceState,
  type NamespaceStatus,
  type StartupReport,
  type LastApply,
  type AppliedEvent,
  type DivergedEvent,
  type SnapshotRequestEvent,
  type NamespaceEvents,
} from './replica-namespace.js';
export { DurabilityTracker } from './durability-tracker.js';
export {
  type CursorRecord,
  type PendingBatch,
  type DivergedState,
  INITIAL_CURSOR,
  CURSOR_FORMAT_VERSION,
  CURSOR_SLOT_BYTES,
  readCursorSync,
  writeCursorSync,
} from './cursor-store.js';
export { type ReplicaOptions, type ResolvedReplicaOptions, DEFAULT_REPLICA_OPTIONS, resolveReplicaOptions } from './options.js';
export { keptDatabaseFd } from './database-file.js';
export { packBatch } from './applier.js';
export type { ApplyResult, RecoverResult } from './apply-messages.js';
export type { InstallImage, InstallResult } from './apply-messages.js';
export type { InstalledEvent } from './replica-namespace.js';
export { Receiver, type ReceiverSink, type ReceiverState } from './receiver.js';
export { ReplicationClient, type ClientState, type ClientStatus, type ClientEvents } from './primary-client.js';
export { type ClientOptions, type ResolvedClientOptions, resolveClientOptions } from './client-options.js';
export { SnapshotInstaller, readStaging, STAGING_DIR, type BootstrapProgress } from './snapshot-installer.js';
export { ReplicaDaemon, type ReplicaDaemonOptions } from './replica-daemon.js';
export { REPLICA_FLAGS } from './replica-flags.js';
export { BlobWriter, type BlobWriterStatus, type BlobWriterEvents, type BlobAckFn } from './blob-writer.js';
export { BLOBS_DIR } from './replica-namespace.js';
